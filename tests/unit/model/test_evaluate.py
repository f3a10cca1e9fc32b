"""Evaluate stage: metrics per task, slices, the decision threshold, plot data, images, and the
files dvc.yaml declares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from conftest import PROJECT_ROOT
from mlops.core.artifacts import MISSING_CATEGORY
from mlops.model.curves import calibration_curves, roc_curves
from mlops.model.evaluate import (
    PLOT_FILES,
    TASK_PLOTS,
    Evaluation,
    check_known_classes,
    evaluate_model,
    main,
)
from mlops.model.features import TrainedModel, model_input, save_model
from mlops.model.metrics import (
    classification_metrics,
    regression_metrics,
    slice_metrics,
    slice_values,
)
from mlops.model.threshold import max_f1_threshold, recorded_decision
from mlops.model.train import train_model
from mlops.params import EvaluateParams, TrainParams
from mlops.stage import StageError, run
from model_fixtures import (
    BINARY_TARGET,
    POSITIVE,
    REGRESSION_TARGET,
    binary_table,
    regression_table,
    split,
    trained_on,
)

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


def declared_files() -> tuple[list[str], list[str]]:
    """The evaluate stage's outputs, and the metrics and plots dvc.yaml declares (at the top
    level: which plot files exist depends on the task)."""
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    outs = pipeline["stages"]["evaluate"]["outs"]
    entries = pipeline["metrics"] + pipeline["plots"]
    paths = [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]
    return [next(iter(entry)) for entry in outs], paths


@pytest.fixture
def trained_project(tmp_path: Path, penguins_csv: Path) -> tuple[Path, pd.DataFrame]:
    frame = pd.read_csv(penguins_csv).dropna(subset=["species"]).reset_index(drop=True)
    validation = frame.iloc[::4]
    params = TrainParams(
        model="linear",
        search="grid",
        cv_folds=3,
        n_jobs=1,
        search_spaces={"classification": {"linear": {"C": [1.0]}}},
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

    outs, declared = declared_files()
    assert outs == ["reports/evaluate"]
    written = written_files(root / "reports" / "evaluate")
    assert written == {
        "metrics.json",
        "slices.json",
        "predictions.csv",  # per row, for the report's intervals: not a DVC plot
        *(f"{name}.csv" for name in TASK_PLOTS["classification"]),
        *(f"plots/{PLOT_FILES[name]}" for name in TASK_PLOTS["classification"]),
    }
    # slices.json is an output of the directory, not a metric: `dvc exp show` stays readable
    assert {
        f"reports/evaluate/{name}"
        for name in written - {"predictions.csv", "slices.json"}
        if name.endswith((".json", ".csv"))
    } < set(declared)
    reports = root / "reports" / "evaluate"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["task"] == "classification" and "positive_class" not in metrics
    assert metrics["rows"] == len(validation) and metrics["macro_f1"] > 0.9
    slices = json.loads((reports / "slices.json").read_text())
    assert set(slices["slices"]) == set(validation["island"])
    confusion = pd.read_csv(reports / "confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == len(validation)
    importance = pd.read_csv(reports / "importance.csv")
    assert set(importance["feature"]) == {"island", "sex", *validation.columns[2:6]}
    for table in ("roc", "precision_recall", "calibration"):
        assert set(pd.read_csv(reports / f"{table}.csv")["class"]) == set(validation["species"])
    predictions = pd.read_csv(reports / "predictions.csv", dtype={"row": str})
    classes = sorted(validation["species"].unique())
    assert list(predictions.columns) == [
        "row",
        "actual",
        "predicted",
        *(f"probability {name}" for name in classes),
    ]
    assert len(predictions) == len(validation) and predictions["row"].is_unique
    assert list(predictions["actual"]) == list(validation["species"])
    assert (predictions["actual"] == predictions["predicted"]).mean() == metrics["accuracy"]
    probabilities = predictions[[f"probability {name}" for name in classes]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    for name in TASK_PLOTS["classification"]:
        content = (reports / "plots" / PLOT_FILES[name]).read_bytes()
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


def written_files(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}


# --- regression -------------------------------------------------------------------------------


def test_regression_metrics_of_a_known_prediction() -> None:
    actual = pd.Series([1.0, 2.0, 0.0, 4.0])
    predicted = pd.Series([1.5, 2.0, 1.0, 2.0])

    metrics = regression_metrics(actual, predicted)

    assert metrics == pytest.approx(
        {
            "rows": 4,
            "mae": 0.875,
            "rmse": np.sqrt(5.25 / 4),
            "r2": 1 - 5.25 / 8.75,
            "mape": (0.5 + 0 + 0.5) / 3,  # the row whose target is 0 is left out
            "mape_rows": 3,
            "target_mean": 1.75,
            "target_std": np.sqrt(8.75 / 4),
        }
    )


def test_mape_and_r2_are_none_when_they_cannot_be_computed() -> None:
    zeros = regression_metrics(pd.Series([0.0, 0.0]), pd.Series([1.0, -1.0]))
    one_row = regression_metrics(pd.Series([3.0]), pd.Series([2.0]))

    assert zeros["mape"] is None and zeros["mape_rows"] == 0 and zeros["mae"] == 1.0
    assert one_row["r2"] is None and one_row["rmse"] == 1.0
    json.dumps(zeros, allow_nan=False)  # no NaN ever reaches metrics.json


def test_regression_slices_report_errors_and_the_weakest_r2() -> None:
    frame = pd.DataFrame({"plan/type": ["a", "a", "a", "b", "b", "c"]})
    actual = pd.Series([1.0, 2.0, 3.0, 10.0, 20.0, 5.0])
    predicted = pd.Series([1.0, 2.0, 3.0, 12.0, 18.0, 4.0])

    slices = slice_metrics(
        actual, predicted, slice_values(frame, "plan/type", "v"), task="regression"
    )

    assert slices["slices"]["a"] == {"rows": 3, "mae": 0.0, "rmse": 0.0, "r2": 1.0}
    assert slices["slices"]["b"]["r2"] == pytest.approx(1 - 8 / 50)
    assert slices["slices"]["c"] == {"rows": 1, "mae": 1.0, "rmse": 1.0, "r2": None}
    assert slices["min_r2"] == pytest.approx(1 - 8 / 50) and "min_macro_f1" not in slices


@pytest.fixture
def regression_project(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    train, validation = split(regression_table(rows=200), target=REGRESSION_TARGET)
    save_model(
        tmp_path / "models" / "pipeline.joblib",
        trained_on(train, REGRESSION_TARGET, "random_forest"),
    )
    validation.to_parquet(tmp_path / "validation.parquet", index=False)
    settings = {"evaluate": {"slice_column": "plan/type", "permutation_repeats": 2, "seed": 0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    return tmp_path, validation


def test_main_on_a_regressor_writes_its_metrics_and_plots_and_only_those(
    regression_project: tuple[Path, pd.DataFrame],
) -> None:
    root, validation = regression_project
    reports = root / "reports" / "evaluate"
    (reports / "plots").mkdir(parents=True)
    (reports / "confusion.csv").write_text("actual,predicted\n")  # left by a classifier's run
    (reports / "plots" / "roc.png").write_bytes(b"old")

    assert run(main, arguments(root)) == 0

    assert written_files(reports) == {
        "metrics.json",
        "slices.json",
        "predictions.csv",
        "predicted_actual.csv",
        "residuals.csv",
        "importance.csv",
        "plots/predicted_actual.png",
        "plots/residuals.png",
        "plots/importance.png",
    }
    declared = set(declared_files()[1])
    assert {
        f"reports/evaluate/{name}"
        for name in written_files(reports) - {"predictions.csv", "slices.json"}
        if "/" not in name
    } <= declared
    predictions = pd.read_csv(reports / "predictions.csv")
    assert list(predictions.columns) == ["row", "actual", "predicted"]
    assert len(predictions) == len(validation)
    metrics = json.loads((reports / "metrics.json").read_text())
    assert list(metrics) == [
        "task",
        "rows",
        "mae",
        "rmse",
        "r2",
        "mape",
        "mape_rows",
        "target_mean",
        "target_std",
    ]
    assert metrics["task"] == "regression" and metrics["rows"] == len(validation)
    assert metrics["r2"] > 0.7 and metrics["rmse"] < 0.5 * metrics["target_std"]
    assert metrics["target_mean"] == pytest.approx(validation[REGRESSION_TARGET].mean())
    slices = json.loads((reports / "slices.json").read_text())
    assert slices["column"] == "plan/type" and slices["min_r2"] is not None
    points = pd.read_csv(reports / "predicted_actual.csv")
    assert list(points.columns) == ["actual", "predicted"] and len(points) == len(validation)
    residuals = pd.read_csv(reports / "residuals.csv")
    np.testing.assert_allclose(residuals["residual"], points["actual"] - points["predicted"])
    importance = pd.read_csv(reports / "importance.csv")
    assert importance["feature"][0] == "Monthly Charge ($)"  # what the target mostly follows
    assert importance["importance"][0] > 5  # RMSE rises by more than 5 when it is shuffled
    for name in TASK_PLOTS["regression"]:
        assert (reports / "plots" / PLOT_FILES[name]).read_bytes().startswith(b"\x89PNG")


def test_a_regression_validation_target_holding_text_stops_naming_it(
    regression_project: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    root, validation = regression_project
    broken = validation.assign(**{REGRESSION_TARGET: validation[REGRESSION_TARGET].map(str)})
    broken.iloc[2, broken.columns.get_loc(REGRESSION_TARGET)] = "n/a"
    broken.to_parquet(root / "validation.parquet", index=False)

    assert run(main, arguments(root)) == 1

    error = capsys.readouterr().err
    assert "target column 'Monthly Spend (€)' must hold finite numbers" in error
    assert "1 row(s) do not, e.g. (row: value) {2: 'n/a'}" in error


# --- two classes ------------------------------------------------------------------------------

Binary = tuple[TrainedModel, pd.DataFrame]


@pytest.fixture(scope="module")
def binary() -> Binary:
    train, validation = split(binary_table(rows=400), target=BINARY_TARGET)
    return trained_on(train, BINARY_TARGET, "linear"), validation


def evaluated(binary: Binary, threshold: Any) -> Evaluation:
    model, validation = binary
    params = EvaluateParams(decision_threshold=threshold, permutation_repeats=1)
    return evaluate_model(model, validation, params)


def test_two_classes_are_scored_on_the_positive_class(binary: Binary) -> None:
    model, validation = binary
    evaluation = evaluate_model(model, validation, EvaluateParams(permutation_repeats=1))

    metrics = evaluation.metrics
    truth = (validation[BINARY_TARGET] == POSITIVE).to_numpy()
    probability = model.pipeline.predict_proba(model_input(validation, model.spec))[:, 1]
    assert metrics["positive_class"] == POSITIVE
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, probability))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(truth, probability))
    assert metrics["brier"] == pytest.approx(np.mean((probability - truth) ** 2))
    assert metrics["decision_threshold"] == 0.5 and metrics["threshold_method"] is None
    predicted = evaluation.plot_data["confusion"]["predicted"]
    assert (predicted == model.pipeline.predict(model_input(validation, model.spec))).all()
    assert metrics["positive_recall"] == pytest.approx(
        ((predicted == POSITIVE).to_numpy() & truth).sum() / truth.sum()
    )
    for curve in ("roc", "precision_recall", "calibration"):
        assert set(evaluation.plot_data[curve]["class"]) == {POSITIVE}
    assert evaluation.importance_label == "drop in roc_auc"


def test_max_f1_chooses_the_best_threshold_on_validation_and_records_it(
    binary: Binary,
) -> None:
    chosen = evaluated(binary, "max_f1").metrics
    default = evaluated(binary, None).metrics

    model, validation = binary
    truth = validation[BINARY_TARGET] == POSITIVE
    probability = model.pipeline.predict_proba(model_input(validation, model.spec))[:, 1]
    best = max(f1_score(truth, probability >= cut) for cut in np.unique(probability))
    assert chosen["threshold_method"] == "max_f1"
    assert chosen["positive_f1"] == pytest.approx(best)
    assert chosen["positive_f1"] >= default["positive_f1"]
    assert chosen["positive_f1"] == pytest.approx(
        f1_score(truth, probability >= chosen["decision_threshold"])
    )
    assert chosen["roc_auc"] == default["roc_auc"]  # the threshold moves labels, not scores


def test_a_fixed_threshold_is_applied_and_recorded(binary: Binary) -> None:
    strict = evaluated(binary, 0.9).metrics
    lenient = evaluated(binary, 0.1).metrics

    assert strict["decision_threshold"] == 0.9 and strict["threshold_method"] == "fixed"
    assert strict["positive_recall"] < lenient["positive_recall"]
    assert strict["positive_precision"] > lenient["positive_precision"]


@pytest.mark.parametrize("threshold", [1.5, 0.0, "max_precision"])
def test_a_threshold_that_is_not_a_probability_names_the_key(
    binary: Binary, threshold: Any
) -> None:
    with pytest.raises(StageError, match=r"evaluate\.decision_threshold: .* must be null, max_f1"):
        evaluated(binary, threshold)


def test_max_f1_needs_positive_rows() -> None:
    with pytest.raises(StageError, match=r"max_f1 needs rows of the positive class 'yes'"):
        max_f1_threshold(np.array([False, False]), np.array([0.2, 0.7]), "yes")


def test_max_f1_cuts_halfway_between_the_probabilities_either_side() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
    positive = np.array([True, True, False, True, False])

    # F1 with the cut at 0.9: 0.5, 0.8: 0.8, 0.7: 0.67, 0.3: 0.86, 0.2: 0.75
    assert max_f1_threshold(positive, scores, "yes") == pytest.approx(0.25)
    assert max_f1_threshold(np.array([True, False]), np.array([0.6, 0.4]), "yes") == (
        pytest.approx(0.5)
    )


def test_the_recorded_decision_must_fit_the_model(binary: Binary) -> None:
    model = binary[0]
    metrics = {"task": "classification", "positive_class": POSITIVE}
    path = Path("metrics.json")

    chosen = recorded_decision(
        {**metrics, "decision_threshold": 0.3, "threshold_method": "max_f1"},
        model,
        path,
    )
    none = recorded_decision({**metrics, "threshold_method": None}, model, path)

    assert (chosen.threshold, chosen.method, none.threshold) == (0.3, "max_f1", None)
    with pytest.raises(StageError, match=r"metrics\.json: written for a regression model"):
        recorded_decision({"task": "regression"}, model, path)
    with pytest.raises(
        StageError, match=r"decision_threshold 0\.3 \(fixed\) for positive class 'no'"
    ):
        wrong = {**metrics, "positive_class": "no", "decision_threshold": 0.3}
        recorded_decision({**wrong, "threshold_method": "fixed"}, model, path)


def test_three_classes_ignore_the_decision_threshold(
    trained_project: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    root = trained_project[0]
    settings = {"evaluate": {"decision_threshold": "max_f1", "permutation_repeats": 1}}
    (root / "params.yaml").write_text(yaml.safe_dump(settings))

    assert run(main, arguments(root)) == 0

    metrics = json.loads((root / "reports" / "evaluate" / "metrics.json").read_text())
    assert "decision_threshold" not in metrics and "positive_class" not in metrics
    assert "decision_threshold applies to two classes; ignored for 3 classes" in (
        capsys.readouterr().out
    )
