"""The acceptance test: thresholds per task, slices, the baseline, the champion comparison on the
task's primary metric, the decision threshold, and the verdict file."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from conftest import PROJECT_ROOT
from mlops.model import accept
from mlops.model.features import TrainedModel, model_input, model_target
from mlops.model.metrics import slice_values
from mlops.model.threshold import Decision
from mlops.params import AcceptParams, load_section
from mlops.stage import run
from model_fixtures import (
    BINARY_TARGET,
    POSITIVE,
    REGRESSION_TARGET,
    binary_table,
    evaluation_metrics,
    packaged,
    penguins,
    regression_table,
    split,
    trained,
    trained_on,
)

PROJECT_PARAMS = load_section(PROJECT_ROOT / "params.yaml", "accept", AcceptParams)
FLOORS = replace(PROJECT_PARAMS, min_accuracy=0.9, min_macro_f1=0.9, min_slice_macro_f1=0.8)
NO_THRESHOLDS = AcceptParams(max_regression=0.02)
CHAMPION_MACRO_F1 = "champion_macro_f1"
Data = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def data() -> Data:
    return split(penguins())


@pytest.fixture(scope="module")
def good(data: Data) -> TrainedModel:
    return trained(data[0], "random_forest")


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, good: TrainedModel, data: Data) -> Path:
    """The good model, packaged by the package stage: the model in production."""
    return packaged(tmp_path_factory.mktemp("champion"), good, *data)


def shuffled_model(train: pd.DataFrame, target: str = "species") -> TrainedModel:
    """A deliberately worse model: trained on targets shuffled across rows."""
    shuffled = train[target].sample(frac=1.0, random_state=3).set_axis(train.index)
    if target == "species":
        return trained(train, "random_forest", shuffled)
    return trained_on(train, target, "random_forest", labels=shuffled)


def verdict_of(
    model: TrainedModel,
    data: Data,
    params: AcceptParams,
    slice_column: str | None = None,
    champion: Path | None = None,
    decision: Decision | None = None,
) -> dict[str, Any]:
    train, test = data
    return accept.acceptance(
        model, test, params, slice_column, champion, train=train, decision=decision
    )


def checks_by_name(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in verdict["checks"]}


def test_a_good_model_passes_every_check_on_a_first_run(
    good: TrainedModel, data: Data, tmp_path: Path
) -> None:
    test = data[1]
    verdict = verdict_of(good, data, FLOORS, "island", tmp_path / "absent")

    assert verdict["passed"] is True
    assert verdict["champion"] is None
    assert verdict["task"] == "classification" and verdict["primary_metric"] == "macro_f1"
    checks = checks_by_name(verdict)
    assert list(checks) == [
        "accuracy",
        "macro_f1",
        "slice_macro_f1[island=Biscoe]",
        "slice_macro_f1[island=Dream]",
        "slice_macro_f1[island=Torgersen]",
        "baseline_macro_f1",
    ]
    assert checks["accuracy"]["threshold"] == FLOORS.min_accuracy
    assert checks["accuracy"]["comparison"] == ">="
    assert checks["slice_macro_f1[island=Dream]"]["rows"] == (test["island"] == "Dream").sum()
    assert verdict["metrics"]["rows"] == len(test)
    assert verdict["metrics"]["macro_f1"] == checks["macro_f1"]["value"]
    assert set(verdict["metrics"]["slice_macro_f1"]) == {"Biscoe", "Dream", "Torgersen"}


def test_null_thresholds_leave_their_checks_out_but_not_the_metrics(
    good: TrainedModel, data: Data
) -> None:
    verdict = verdict_of(good, data, PROJECT_PARAMS, "island")

    assert [check["name"] for check in verdict["checks"]] == ["baseline_macro_f1"]
    assert verdict["passed"] is True
    assert {"accuracy", "macro_f1", "roc_auc_ovr", "slice_macro_f1"} <= set(verdict["metrics"])


def test_the_other_tasks_thresholds_are_ignored(good: TrainedModel, data: Data) -> None:
    regression_keys = replace(NO_THRESHOLDS, min_r2=0.99, max_rmse=0.0, min_slice_r2=1.0)

    verdict = verdict_of(good, data, regression_keys, "island")

    assert [check["name"] for check in verdict["checks"]] == ["baseline_macro_f1"]


def test_an_empty_champion_directory_counts_as_a_first_run(
    good: TrainedModel, data: Data, tmp_path: Path
) -> None:
    verdict = verdict_of(good, data, FLOORS, "island", tmp_path)

    assert verdict["champion"] is None and verdict["passed"]


def test_metrics_below_their_thresholds_fail(good: TrainedModel, data: Data) -> None:
    strict = replace(PROJECT_PARAMS, min_accuracy=1.01, min_macro_f1=1.01)

    verdict = verdict_of(good, data, strict)

    checks = checks_by_name(verdict)
    assert verdict["passed"] is False
    assert not checks["accuracy"]["passed"] and checks["accuracy"]["threshold"] == 1.01
    assert not checks["macro_f1"]["passed"]
    message = accept.failure_message(verdict, Path("verdict.json"))
    assert message.startswith("acceptance failed: 2 of 3 check(s) (see verdict.json)")
    assert "accuracy: " in message and "is below the threshold 1.0100" in message


def test_a_weak_slice_fails_on_its_own() -> None:
    truth = pd.Series(["a", "b", "a", "b", "a", "b"])
    predicted = pd.Series(["a", "b", "a", "b", "b", "a"])
    sites = pd.DataFrame({"site": ["x", "x", "y", "y", "z", None]})
    slices = slice_values(sites, "site", "sites")

    checks = accept.slice_checks(truth, predicted, slices, threshold=0.8)

    assert [(c["name"], c["value"], c["passed"]) for c in checks] == [
        ("slice_macro_f1[site=__missing__]", 0.0, False),
        ("slice_macro_f1[site=x]", 1.0, True),
        ("slice_macro_f1[site=y]", 1.0, True),
        ("slice_macro_f1[site=z]", 0.0, False),
    ]
    assert [c["rows"] for c in checks] == [1, 2, 2, 1]


def test_a_missing_slice_column_is_named(good: TrainedModel, data: Data, tmp_path: Path) -> None:
    with pytest.raises(accept.StageError, match="column 'region' is not in test table"):
        verdict_of(good, data, FLOORS, "region", tmp_path / "absent")


def test_a_model_no_better_than_the_majority_class_fails_the_baseline(
    good: TrainedModel, data: Data
) -> None:
    train = data[0]
    majority = train["species"].mode()[0]
    features, labels = model_input(train, good.spec), model_target(train, "species")
    ignoring = Pipeline([("model", DummyClassifier(strategy="most_frequent"))]).fit(
        features, labels
    )
    constant = replace(good, pipeline=ignoring)

    verdict = verdict_of(constant, data, NO_THRESHOLDS)

    check = checks_by_name(verdict)["baseline_macro_f1"]
    assert check["passed"] is False and check["comparison"] == ">"
    assert check["value"] == check["threshold"]  # it predicts what the baseline predicts
    assert check["baseline"] == f"the most frequent training class {majority!r}"
    assert verdict["baseline"]["macro_f1"] == check["threshold"]
    assert "does not beat the baseline's" in accept.failure_message(verdict, Path("v.json"))


def test_a_candidate_as_good_as_the_champion_passes(
    good: TrainedModel, data: Data, champion: Path
) -> None:
    verdict = verdict_of(good, data, FLOORS, "island", champion)

    check = checks_by_name(verdict)[CHAMPION_MACRO_F1]
    assert verdict["passed"] is True
    assert check["champion_value"] == check["value"]  # the same model, scored by ONNX
    assert check["threshold"] == pytest.approx(check["value"] - FLOORS.max_regression)
    assert verdict["champion"]["macro_f1"] == check["champion_value"]
    assert verdict["champion"]["model_version"]
    assert verdict["champion"]["task"] == "classification"
    assert verdict["champion"]["path"] == str(champion)


def test_a_deliberately_worse_model_is_blocked_by_the_champion(data: Data, champion: Path) -> None:
    verdict = verdict_of(shuffled_model(data[0]), data, NO_THRESHOLDS, None, champion)

    checks = checks_by_name(verdict)
    assert not checks[CHAMPION_MACRO_F1]["passed"]
    check = checks[CHAMPION_MACRO_F1]
    assert check["value"] < check["champion_value"] - NO_THRESHOLDS.max_regression
    assert verdict["passed"] is False
    assert "champion_macro_f1: " in accept.failure_message(verdict, Path("v.json"))


def test_a_champion_needing_a_dropped_feature_is_reported_as_incompatible(
    data: Data, champion: Path
) -> None:
    train, test = data
    candidate = trained(train.drop(columns="sex"), "random_forest")

    verdict = verdict_of(
        candidate, (train, test.drop(columns="sex")), NO_THRESHOLDS, None, champion
    )

    check = checks_by_name(verdict)[CHAMPION_MACRO_F1]
    assert check["passed"] is False and check["threshold"] is None
    assert "incompatible with the test data" in check["reason"]
    assert "['sex']" in check["reason"]
    assert check["reason"] in accept.failure_message(verdict, Path("v.json"))


def test_a_tampered_champion_fails_the_comparison(
    good: TrainedModel, data: Data, champion: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(champion, tmp_path / "champion")
    with (copy / "model.onnx").open("ab") as model:
        model.write(b"\0")

    verdict = verdict_of(good, data, NO_THRESHOLDS, None, copy)

    check = checks_by_name(verdict)[CHAMPION_MACRO_F1]
    assert not check["passed"]
    assert check["reason"].startswith("champion package is not valid: ")
    assert "model.onnx: sha256" in check["reason"]


def as_old_package(champion: Path, copy: Path) -> Path:
    """``champion`` as a package from before the task switch: its signature without task,
    positive class, threshold and input names, its manifest's sha256 updated."""
    shutil.copytree(champion, copy)
    signature = json.loads((copy / "signature.json").read_text())
    for key in ("task", "positive_class", "threshold"):
        signature.pop(key)
    for feature in signature["features"]:
        feature.pop("input_name")
    (copy / "signature.json").write_text(json.dumps(signature))
    manifest = json.loads((copy / "manifest.json").read_text())
    digest = hashlib.sha256((copy / "signature.json").read_bytes()).hexdigest()
    manifest["files"]["signature.json"] = digest
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_an_old_champion_without_a_task_is_compared_as_a_classifier(
    good: TrainedModel, data: Data, champion: Path, tmp_path: Path
) -> None:
    old = as_old_package(champion, tmp_path / "old")  # penguins' inputs need no renaming

    verdict = verdict_of(good, data, NO_THRESHOLDS, None, old)

    check = checks_by_name(verdict)[CHAMPION_MACRO_F1]
    assert check["passed"] and check["champion_value"] == check["value"]
    assert verdict["champion"]["task"] == "classification"


def test_the_stage_writes_the_verdict_and_fails_readably(
    data: Data, champion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import joblib

    train, test = data
    worse = shuffled_model(train)
    joblib.dump(worse, tmp_path / "pipeline.joblib")
    test.to_parquet(tmp_path / "test.parquet")
    train.to_parquet(tmp_path / "train.parquet")
    (tmp_path / "metrics.json").write_text(json.dumps(evaluation_metrics(worse, test)))
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["accept"] |= {"min_accuracy": 0.9, "min_macro_f1": 0.9}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "reports" / "verdict.json"
    argv = ["--params", str(tmp_path / "params.yaml"), "--model", str(tmp_path / "pipeline.joblib")]
    argv += ["--data", str(tmp_path / "test.parquet"), "--train", str(tmp_path / "train.parquet")]
    argv += ["--metrics", str(tmp_path / "metrics.json"), "--champion", str(champion)]

    assert run(accept.main, [*argv, "--out", str(out)]) == 1

    error = capsys.readouterr().err
    verdict = json.loads(out.read_text())
    failed = [check["name"] for check in verdict["checks"] if not check["passed"]]
    assert verdict["passed"] is False
    assert {"accuracy", "macro_f1", CHAMPION_MACRO_F1} <= set(failed)
    assert error.startswith(f"error: acceptance failed: {len(failed)} of")
    assert all(f"  - {name}: " in error for name in failed)
    assert "Traceback" not in error


def test_the_stage_refuses_metrics_of_another_model(
    good: TrainedModel, data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import joblib

    joblib.dump(good, tmp_path / "pipeline.joblib")
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "regression", "rmse": 1.0}))
    argv = [
        "--params",
        str(PROJECT_ROOT / "params.yaml"),
        "--model",
        str(tmp_path / "pipeline.joblib"),
    ]
    argv += ["--data", "unused", "--train", "unused", "--metrics", str(tmp_path / "metrics.json")]

    assert run(accept.main, [*argv, "--out", str(tmp_path / "verdict.json")]) == 1

    assert "metrics.json: written for a regression model" in capsys.readouterr().err
    assert not (tmp_path / "verdict.json").exists()


# --- regression -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regression_data() -> Data:
    return split(regression_table(rows=300), target=REGRESSION_TARGET)


@pytest.fixture(scope="module")
def regressor(regression_data: Data) -> TrainedModel:
    return trained_on(regression_data[0], REGRESSION_TARGET, "random_forest")


@pytest.fixture(scope="module")
def regression_champion(
    tmp_path_factory: pytest.TempPathFactory, regressor: TrainedModel, regression_data: Data
) -> Path:
    return packaged(tmp_path_factory.mktemp("regression-champion"), regressor, *regression_data)


def test_a_regressor_is_held_to_the_regression_thresholds_and_slices(
    regressor: TrainedModel, regression_data: Data
) -> None:
    params = replace(NO_THRESHOLDS, min_r2=0.8, max_rmse=100.0, max_mae=50.0, min_slice_r2=0.5)
    params = replace(params, min_accuracy=0.99, min_macro_f1=0.99)  # ignored: classification keys

    verdict = verdict_of(regressor, regression_data, params, "plan/type")

    checks = checks_by_name(verdict)
    assert verdict["passed"] is True and verdict["primary_metric"] == "rmse"
    assert list(checks) == [
        "r2",
        "rmse",
        "mae",
        "slice_r2[plan/type=__missing__]",
        "slice_r2[plan/type=basic]",
        "slice_r2[plan/type=plus]",
        "slice_r2[plan/type=premium]",
        "baseline_rmse",
    ]
    assert checks["rmse"]["comparison"] == "<=" and checks["rmse"]["threshold"] == 100.0
    baseline = checks["baseline_rmse"]
    assert baseline["comparison"] == "<" and baseline["value"] < 0.5 * baseline["threshold"]
    assert baseline["baseline"].startswith("the mean of the training target (")
    metrics = verdict["metrics"]
    assert {"mae", "rmse", "r2", "mape", "target_std"} <= set(metrics)
    assert set(metrics["slice_r2"]) == {"__missing__", "basic", "plus", "premium"}


def test_a_regressor_over_a_ceiling_fails_with_the_reason(
    regressor: TrainedModel, regression_data: Data
) -> None:
    params = replace(NO_THRESHOLDS, max_rmse=0.5, min_r2=0.999)

    verdict = verdict_of(regressor, regression_data, params)

    checks = checks_by_name(verdict)
    assert not checks["rmse"]["passed"] and not checks["r2"]["passed"]
    message = accept.failure_message(verdict, Path("v.json"))
    assert f"  - rmse: {checks['rmse']['value']:.4f} is above the ceiling 0.5000" in message
    assert "  - r2: " in message and "is below the threshold 0.9990" in message


def test_a_regressor_that_learned_nothing_fails_the_baseline(regression_data: Data) -> None:
    verdict = verdict_of(
        shuffled_model(regression_data[0], REGRESSION_TARGET), regression_data, NO_THRESHOLDS
    )

    check = checks_by_name(verdict)["baseline_rmse"]
    assert check["passed"] is False and check["value"] >= check["threshold"]
    assert verdict["baseline"]["rmse"] == check["threshold"]


def test_a_regressor_is_compared_with_the_champion_on_rmse(
    regressor: TrainedModel, regression_data: Data, regression_champion: Path
) -> None:
    same = verdict_of(regressor, regression_data, NO_THRESHOLDS, None, regression_champion)
    worse = verdict_of(
        shuffled_model(regression_data[0], REGRESSION_TARGET),
        regression_data,
        NO_THRESHOLDS,
        None,
        regression_champion,
    )

    check = checks_by_name(same)["champion_rmse"]
    assert check["passed"] and check["comparison"] == "<="
    assert check["champion_value"] == pytest.approx(check["value"], rel=1e-5)  # ONNX, float32
    assert check["threshold"] == pytest.approx(check["champion_value"] * 1.02)
    assert same["champion"]["task"] == "regression" and "r2" in same["champion"]
    failed = checks_by_name(worse)["champion_rmse"]
    assert not failed["passed"] and failed["value"] > failed["threshold"]
    assert "champion_rmse: " in accept.failure_message(worse, Path("v.json"))
    assert "is above the ceiling" in accept.failure_message(worse, Path("v.json"))


def test_a_champion_of_the_other_task_fails_the_comparison_with_the_reason(
    regressor: TrainedModel, regression_data: Data, champion: Path
) -> None:
    verdict = verdict_of(regressor, regression_data, NO_THRESHOLDS, None, champion)

    check = checks_by_name(verdict)["champion_rmse"]
    assert check["passed"] is False and check["threshold"] is None
    assert "is a classifier and the candidate a regressor" in check["reason"]
    assert verdict["champion"]["task"] == "classification"


# --- two classes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binary_data() -> Data:
    return split(binary_table(rows=400), target=BINARY_TARGET)


@pytest.fixture(scope="module")
def binary_model(binary_data: Data) -> TrainedModel:
    return trained_on(binary_data[0], BINARY_TARGET, "linear")


def test_two_classes_are_judged_on_the_positive_class_at_the_recorded_threshold(
    binary_model: TrainedModel, binary_data: Data
) -> None:
    params = replace(NO_THRESHOLDS, min_roc_auc=0.6)

    default = verdict_of(binary_model, binary_data, params)
    lenient = verdict_of(binary_model, binary_data, params, decision=Decision(0.1, "fixed"))

    assert default["primary_metric"] == "roc_auc"
    assert [check["name"] for check in default["checks"]] == ["roc_auc", "baseline_roc_auc"]
    baseline = checks_by_name(default)["baseline_roc_auc"]
    assert baseline["threshold"] == 0.5 and baseline["passed"]
    assert default["metrics"]["positive_class"] == POSITIVE
    assert default["metrics"]["decision_threshold"] == 0.5
    assert lenient["metrics"]["decision_threshold"] == 0.1
    assert lenient["metrics"]["positive_recall"] > default["metrics"]["positive_recall"]
    assert lenient["metrics"]["roc_auc"] == default["metrics"]["roc_auc"]
    test = binary_data[1]
    predicted_positive = (
        lenient["metrics"]["positive_recall"] * (test[BINARY_TARGET] == POSITIVE).sum()
    )
    assert predicted_positive == pytest.approx(round(predicted_positive))


def test_a_binary_champion_is_compared_on_roc_auc_of_the_positive_class(
    binary_model: TrainedModel, binary_data: Data, tmp_path: Path
) -> None:
    champion = packaged(tmp_path / "binary", binary_model, *binary_data, threshold=0.3)
    decision = Decision(0.3, "fixed")

    verdict = verdict_of(binary_model, binary_data, NO_THRESHOLDS, None, champion, decision)

    check = checks_by_name(verdict)["champion_roc_auc"]
    assert check["passed"] and check["champion_value"] == pytest.approx(check["value"], abs=1e-6)
    summary = verdict["champion"]
    # the champion's labels follow its own decision threshold (0.3), as the scorer's do
    assert summary["accuracy"] == pytest.approx(verdict["metrics"]["accuracy"])
    assert summary["macro_f1"] == pytest.approx(verdict["metrics"]["macro_f1"])


def test_a_binary_champion_without_the_positive_class_fails_with_the_reason(
    binary_model: TrainedModel, binary_data: Data, tmp_path: Path
) -> None:
    relabelled = [
        frame.assign(
            **{BINARY_TARGET: frame[BINARY_TARGET].map({"yes": "churned", "no": "stayed"})}
        )
        for frame in binary_data
    ]
    other = trained_on(relabelled[0], BINARY_TARGET, "linear")
    champion = packaged(tmp_path / "other", other, relabelled[0], relabelled[1])

    verdict = verdict_of(binary_model, binary_data, NO_THRESHOLDS, None, champion)

    check = checks_by_name(verdict)["champion_roc_auc"]
    assert not check["passed"]
    assert "without the candidate's positive class 'yes'" in check["reason"]


def test_a_value_that_cannot_be_computed_fails_with_a_reason() -> None:
    check = accept.make_check("roc_auc", None, 0.7)

    assert check["passed"] is False and "cannot be computed on the test split" in check["reason"]
    assert accept.make_check("rmse", 1.0, 2.0, "<=")["passed"]
    assert not accept.make_check("rmse", np.float64(3.0), 2.0, "<=")["passed"]
