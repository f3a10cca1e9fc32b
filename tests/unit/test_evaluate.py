"""Evaluate stage: metrics, slices, plot data, images, and the files dvc.yaml declares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import PROJECT_ROOT
from mlops.artifacts import MISSING_CATEGORY
from mlops.model.evaluate import (
    PLOT_FILES,
    calibration_curves,
    check_known_classes,
    classification_metrics,
    main,
    roc_curves,
    slice_metrics,
    slice_values,
)
from mlops.model.features import save_model
from mlops.model.train import train_model
from mlops.params import TrainParams
from mlops.stage import StageError, run

CLASSES = ("a", "b", "c")


def test_metrics_of_a_known_prediction() -> None:
    actual = pd.Series(["a", "a", "b", "b", "c", "c"])
    predicted = pd.Series(["a", "b", "b", "b", "c", "c"])
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.4, 0.5, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.7, 0.1],
            [0, 0, 1],
            [0, 0.1, 0.9],
        ]
    )

    metrics = classification_metrics(actual, predicted, probabilities, CLASSES)

    assert metrics["rows"] == 6
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    assert metrics["roc_auc_ovr"] == pytest.approx(1.0)
    expected_loss = -np.mean(np.log([0.8, 0.4, 0.8, 0.7, 1.0, 0.9]))
    assert metrics["log_loss"] == pytest.approx(expected_loss, abs=1e-6)


def test_roc_auc_is_none_when_only_one_class_is_present() -> None:
    actual = pd.Series(["a", "a"])
    probabilities = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])

    metrics = classification_metrics(actual, pd.Series(["a", "a"]), probabilities, CLASSES)

    assert metrics["roc_auc_ovr"] is None
    assert metrics["per_class"]["b"]["support"] == 0


def test_slices_handle_a_single_class_slice_and_missing_values() -> None:
    frame = pd.DataFrame({"island": ["x", "x", "y", "y", None]})
    actual = pd.Series(["a", "b", "a", "a", "b"])
    predicted = pd.Series(["a", "a", "a", "a", "b"])

    slices = slice_metrics(actual, predicted, slice_values(frame, "island", "validation"))

    assert slices["column"] == "island"
    assert slices["slices"]["y"] == {"rows": 2, "accuracy": 1.0, "macro_f1": 1.0}
    assert slices["slices"]["x"]["accuracy"] == 0.5
    assert slices["slices"][MISSING_CATEGORY]["rows"] == 1
    assert slices["min_macro_f1"] == slices["slices"]["x"]["macro_f1"]


def test_slices_without_a_slice_column_are_empty() -> None:
    labels = pd.Series(["a"])

    assert slice_metrics(labels, labels, slice_values(pd.DataFrame(), None, "x"))["slices"] == {}


def test_unknown_slice_column_names_the_key() -> None:
    with pytest.raises(StageError, match=r"evaluate\.slice_column: column 'isle' is not in val"):
        slice_values(pd.DataFrame({"island": ["x"]}), "isle", "val")


def test_a_class_unseen_in_training_is_refused() -> None:
    with pytest.raises(StageError, match=r"class\(es\) \['d'\] never appear in the training"):
        check_known_classes(pd.Series(["a", "d"]), CLASSES, "validation.parquet")


def test_curves_skip_classes_without_positives() -> None:
    actual = pd.Series(["a", "b", "a", "b"])
    probabilities = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.3, 0.1], [0.5, 0.5, 0]])

    roc = roc_curves(actual, probabilities, CLASSES)
    calibration = calibration_curves(actual, probabilities, CLASSES)

    assert set(roc["class"]) == set(calibration["class"]) == {"a", "b"}
    assert roc[["fpr", "tpr"]].stack().between(0, 1).all()


def stage_outputs(stage: str) -> list[str]:
    """The metrics and plots paths the stage declares in the project's dvc.yaml."""
    declared = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]
    entries = declared.get("metrics", []) + declared.get("plots", []) + declared.get("outs", [])
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]


@pytest.fixture
def trained_project(tmp_path: Path, penguins_csv: Path) -> tuple[Path, pd.DataFrame]:
    frame = pd.read_csv(penguins_csv).dropna(subset=["species"]).reset_index(drop=True)
    validation = frame.iloc[::4]
    params = TrainParams(
        model="logistic_regression",
        search="grid",
        cv_folds=3,
        n_jobs=1,
        search_spaces={"logistic_regression": {"C": [1.0]}},
    )
    result = train_model(frame.drop(index=validation.index), "species", ["year"], params)
    save_model(tmp_path / "models" / "pipeline.joblib", result.model)
    validation.to_parquet(tmp_path / "validation.parquet", index=False)
    settings = {"evaluate": {"slice_column": "island", "permutation_repeats": 2, "seed": 0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    return tmp_path, validation


def arguments(root: Path) -> list[str]:
    return [
        "--params",
        str(root / "params.yaml"),
        "--model",
        str(root / "models" / "pipeline.joblib"),
        "--data",
        str(root / "validation.parquet"),
        "--reports",
        str(root / "reports" / "evaluate"),
    ]


def test_main_writes_every_declared_metric_and_plot(
    trained_project: tuple[Path, pd.DataFrame],
) -> None:
    root, validation = trained_project

    assert run(main, arguments(root)) == 0

    for declared in stage_outputs("evaluate"):
        assert (root / declared).exists(), declared
    reports = root / "reports" / "evaluate"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["rows"] == len(validation) and metrics["macro_f1"] > 0.9
    slices = json.loads((reports / "slices.json").read_text())
    assert set(slices["slices"]) == set(validation["island"])
    confusion = pd.read_csv(reports / "confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == len(validation)
    importance = pd.read_csv(reports / "importance.csv")
    assert set(importance["feature"]) == {"island", "sex", *validation.columns[2:6]}
    for table in ("roc", "precision_recall", "calibration"):
        assert set(pd.read_csv(reports / f"{table}.csv")["class"]) == set(validation["species"])
    for image in PLOT_FILES.values():
        content = (reports / "plots" / image).read_bytes()
        assert content.startswith(b"\x89PNG") and 5_000 < len(content) < 100_000


def test_main_stops_with_one_line_on_a_validation_table_without_a_feature(
    trained_project: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    root, validation = trained_project
    validation.drop(columns="bill_depth_mm").to_parquet(root / "validation.parquet", index=False)

    assert run(main, arguments(root)) == 1

    error = capsys.readouterr().err
    assert "validation.parquet: missing column(s) ['bill_depth_mm']" in error
    assert error.count("\n") == 1
