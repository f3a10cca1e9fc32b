"""The acceptance test: thresholds, slices, the champion comparison, and the verdict file."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from mlops.model import accept
from mlops.model.evaluate import slice_values
from mlops.model.features import TrainedModel
from mlops.params import AcceptParams, load_section
from mlops.stage import run
from model_fixtures import packaged, penguins, split, trained

PROJECT_PARAMS = load_section(PROJECT_ROOT / "params.yaml", "accept", AcceptParams)
NO_THRESHOLDS = AcceptParams(max_regression=0.02)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return split(penguins())


@pytest.fixture(scope="module")
def good(data: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    return trained(data[0], "random_forest")


@pytest.fixture(scope="module")
def champion(
    tmp_path_factory: pytest.TempPathFactory,
    good: TrainedModel,
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> Path:
    """The good model, packaged by the package stage: the model in production."""
    return packaged(tmp_path_factory.mktemp("champion"), good, *data)


def shuffled_model(train: pd.DataFrame) -> TrainedModel:
    """A deliberately worse model: trained on labels shuffled across rows."""
    labels = train["species"].sample(frac=1.0, random_state=3).set_axis(train.index)
    return trained(train, "random_forest", labels)


def checks_by_name(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in verdict["checks"]}


def test_a_good_model_passes_every_check_on_a_first_run(
    good: TrainedModel, data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    test = data[1]
    verdict = accept.acceptance(good, test, PROJECT_PARAMS, "island", tmp_path / "absent")

    assert verdict["passed"] is True
    assert verdict["champion"] is None
    checks = checks_by_name(verdict)
    assert list(checks) == [
        "accuracy",
        "macro_f1",
        "slice_macro_f1[island=Biscoe]",
        "slice_macro_f1[island=Dream]",
        "slice_macro_f1[island=Torgersen]",
    ]
    assert checks["accuracy"]["threshold"] == PROJECT_PARAMS.min_accuracy
    assert checks["slice_macro_f1[island=Dream]"]["rows"] == (test["island"] == "Dream").sum()
    assert verdict["metrics"]["rows"] == len(test)
    assert verdict["metrics"]["macro_f1"] == checks["macro_f1"]["value"]
    assert set(verdict["metrics"]["slice_macro_f1"]) == {"Biscoe", "Dream", "Torgersen"}


def test_an_empty_champion_directory_counts_as_a_first_run(
    good: TrainedModel, data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    verdict = accept.acceptance(good, data[1], PROJECT_PARAMS, "island", tmp_path)

    assert verdict["champion"] is None and verdict["passed"]


def test_metrics_below_their_thresholds_fail(
    good: TrainedModel, data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    strict = replace(PROJECT_PARAMS, min_accuracy=1.01, min_macro_f1=1.01)

    verdict = accept.acceptance(good, data[1], strict, None, tmp_path / "absent")

    checks = checks_by_name(verdict)
    assert verdict["passed"] is False
    assert not checks["accuracy"]["passed"] and checks["accuracy"]["threshold"] == 1.01
    assert not checks["macro_f1"]["passed"]
    message = accept.failure_message(verdict, Path("verdict.json"))
    assert message.startswith("acceptance failed: 2 of 2 check(s) (see verdict.json)")
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


def test_a_missing_slice_column_is_named(
    good: TrainedModel, data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    with pytest.raises(accept.StageError, match="column 'region' is not in test table"):
        accept.acceptance(good, data[1], PROJECT_PARAMS, "region", tmp_path / "absent")


def test_a_candidate_as_good_as_the_champion_passes(
    good: TrainedModel, data: tuple[pd.DataFrame, pd.DataFrame], champion: Path
) -> None:
    verdict = accept.acceptance(good, data[1], PROJECT_PARAMS, "island", champion)

    check = checks_by_name(verdict)[accept.CHAMPION_CHECK]
    assert verdict["passed"] is True
    assert check["champion_value"] == check["value"]  # the same model, scored by ONNX
    assert check["threshold"] == pytest.approx(check["value"] - PROJECT_PARAMS.max_regression)
    assert verdict["champion"]["macro_f1"] == check["champion_value"]
    assert verdict["champion"]["model_version"]
    assert verdict["champion"]["path"] == str(champion)


def test_a_deliberately_worse_model_is_blocked_by_the_champion(
    data: tuple[pd.DataFrame, pd.DataFrame], champion: Path
) -> None:
    train, test = data
    verdict = accept.acceptance(shuffled_model(train), test, NO_THRESHOLDS, None, champion)

    checks = checks_by_name(verdict)
    assert [name for name, check in checks.items() if not check["passed"]] == [
        accept.CHAMPION_CHECK
    ]
    check = checks[accept.CHAMPION_CHECK]
    assert check["value"] < check["champion_value"] - NO_THRESHOLDS.max_regression
    assert verdict["passed"] is False
    assert "champion_macro_f1: " in accept.failure_message(verdict, Path("v.json"))


def test_a_champion_needing_a_dropped_feature_is_reported_as_incompatible(
    data: tuple[pd.DataFrame, pd.DataFrame], champion: Path
) -> None:
    train, test = data
    candidate = trained(train.drop(columns="sex"), "random_forest")

    verdict = accept.acceptance(candidate, test.drop(columns="sex"), NO_THRESHOLDS, None, champion)

    check = checks_by_name(verdict)[accept.CHAMPION_CHECK]
    assert check["passed"] is False and check["threshold"] is None
    assert "incompatible with the test data" in check["reason"]
    assert "['sex']" in check["reason"]
    assert check["reason"] in accept.failure_message(verdict, Path("v.json"))


def test_a_tampered_champion_fails_the_comparison(
    good: TrainedModel, data: tuple[pd.DataFrame, pd.DataFrame], champion: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(champion, tmp_path / "champion")
    with (copy / "model.onnx").open("ab") as model:
        model.write(b"\0")

    verdict = accept.acceptance(good, data[1], NO_THRESHOLDS, None, copy)

    check = checks_by_name(verdict)[accept.CHAMPION_CHECK]
    assert not check["passed"]
    assert check["reason"].startswith("champion package is not valid: ")
    assert "model.onnx: sha256" in check["reason"]


def test_the_stage_writes_the_verdict_and_fails_readably(
    data: tuple[pd.DataFrame, pd.DataFrame],
    champion: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import joblib

    train, test = data
    joblib.dump(shuffled_model(train), tmp_path / "pipeline.joblib")
    test.to_parquet(tmp_path / "test.parquet")
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    out = tmp_path / "reports" / "verdict.json"
    argv = ["--params", str(tmp_path / "params.yaml"), "--model", str(tmp_path / "pipeline.joblib")]
    argv += ["--data", str(tmp_path / "test.parquet"), "--champion", str(champion)]

    assert run(accept.main, [*argv, "--out", str(out)]) == 1

    error = capsys.readouterr().err
    verdict = json.loads(out.read_text())
    failed = [check["name"] for check in verdict["checks"] if not check["passed"]]
    assert verdict["passed"] is False
    assert {"accuracy", "macro_f1", accept.CHAMPION_CHECK} <= set(failed)
    assert error.startswith(f"error: acceptance failed: {len(failed)} of")
    assert all(f"  - {name}: " in error for name in failed)
    assert "Traceback" not in error
