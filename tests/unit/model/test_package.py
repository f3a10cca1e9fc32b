"""The package stage: contents and lineage of the package for every task, verification, the safe
swap, refusals, and byte-reproducible packaging."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from mlops.core import artifacts
from mlops.gitops import versions as registry
from mlops.model import package
from mlops.model.features import TrainedModel, model_input
from mlops.model.lineage import params_hash
from mlops.model.package_files import install_package, json_bytes
from mlops.model.resources import kubernetes_resources
from mlops.model.summaries import Latency, ParityReport, ResourceProfile
from mlops.profile import profile_column, profile_table
from mlops.stage import StageError, run
from model_fixtures import (
    BINARY_TARGET,
    POSITIVE,
    REGRESSION_TARGET,
    arguments,
    binary_table,
    evaluation_metrics,
    penguins,
    regression_table,
    split,
    trained,
    trained_on,
)
from package_fixtures import build_package, inputs, verdict

REPRODUCED_FILES = (artifacts.MODEL_FILE, artifacts.SIGNATURE_FILE, artifacts.PROFILE_FILE)
Split = tuple[pd.DataFrame, pd.DataFrame]


@pytest.fixture(scope="module")
def data() -> Split:
    return split(penguins())


@pytest.fixture(scope="module")
def model(data: Split) -> TrainedModel:
    return trained(data[0], "random_forest")


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory, model: TrainedModel, data: Split) -> Any:
    """One real run of the package stage (penguins, three classes), shared read-only."""
    return build_package(tmp_path_factory.mktemp("package"), model, *data)


@pytest.fixture(scope="module")
def spending() -> Split:
    return split(regression_table(), target=REGRESSION_TARGET)


@pytest.fixture(scope="module")
def regressor(spending: Split) -> TrainedModel:
    return trained_on(spending[0], REGRESSION_TARGET)


@pytest.fixture(scope="module")
def regression(
    tmp_path_factory: pytest.TempPathFactory, regressor: TrainedModel, spending: Split
) -> Any:
    """One real run of the package stage on a regressor, shared read-only."""
    return build_package(tmp_path_factory.mktemp("regression"), regressor, *spending)


@pytest.fixture(scope="module")
def churn() -> Split:
    return split(binary_table(), target=BINARY_TARGET)


@pytest.fixture(scope="module")
def binary(churn: Split) -> TrainedModel:
    return trained_on(churn[0], BINARY_TARGET, positive_class=POSITIVE)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def onnx_metadata(directory: Path) -> dict[str, str]:
    model = onnx.load(directory / artifacts.MODEL_FILE)
    return {prop.key: prop.value for prop in model.metadata_props}


def test_the_package_holds_every_contract_file_and_verifies(packaged: dict[str, Path]) -> None:
    out = packaged["out"]
    manifest = artifacts.verify(out)

    assert set(manifest["files"]) == {
        artifacts.MODEL_FILE,
        artifacts.SIGNATURE_FILE,
        artifacts.PROFILE_FILE,
        artifacts.MODEL_CARD_FILE,
        artifacts.RESOURCES_FILE,
    }
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["files"], "manifest.json"])
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".package")] == []


def test_the_manifest_carries_the_lineage_and_the_model_only_what_identifies_it(
    packaged: dict[str, Path],
) -> None:
    manifest = artifacts.load_manifest(packaged["out"])
    lineage = manifest["lineage"]
    metadata = onnx_metadata(packaged["out"])

    assert re.fullmatch(r"[0-9a-f]{12}", manifest["model_version"])
    assert manifest["model_name"] == "penguins"  # from data.source: data/penguins.csv
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", lineage["git_commit"])
    assert lineage["data_hash"] == hashlib.md5(packaged["train"].read_bytes()).hexdigest()
    assert lineage["params_hash"] == params_hash(packaged["params"])
    assert datetime.fromisoformat(lineage["created"]).tzinfo is not None
    assert metadata == {
        "model_name": "penguins",
        "model_version": manifest["model_version"],
        "task": "classification",
        "target": "species",
    }
    assert manifest["metrics"]["validation"] == read_json(packaged["metrics"])
    assert manifest["metrics"]["acceptance_passed"] is True


def test_signature_describes_features_ranges_categories_and_classes(
    packaged: dict[str, Path], data: Split
) -> None:
    train = data[0]
    signature = artifacts.load_signature(packaged["out"])
    features = {feature["name"]: feature for feature in signature["features"]}

    assert list(features) == [
        "island",
        *[n for n in train.columns if n.endswith(("_mm", "_g"))],
        "sex",
    ]
    assert all(feature["input_name"] == name for name, feature in features.items())
    assert features["island"]["type"] == "string"
    assert features["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert features["body_mass_g"]["type"] == "number"
    assert features["body_mass_g"]["min"] == train["body_mass_g"].min()
    assert features["body_mass_g"]["max"] == train["body_mass_g"].max()
    assert all(feature["nullable"] for feature in signature["features"])
    assert signature["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert (signature["target"], signature["task"]) == ("species", "classification")
    assert (signature["positive_class"], signature["threshold"]) == (None, None)


def test_reference_profile_is_the_validate_profile_of_the_training_features(
    packaged: dict[str, Path], data: Split, model: TrainedModel
) -> None:
    train, test = data[0], data[-1]
    profile = artifacts.load_reference_profile(packaged["out"])
    expected = json.loads(json.dumps(profile_table(train[list(model.spec.features)])))
    predicted = model.pipeline.predict(model_input(test, model.spec))

    assert profile["columns"] == expected["columns"]
    assert profile["rows"] == len(train)
    # beside them, the raw data's statistics of the features (the validate stage's profile):
    # live traffic is compared with those, its gaps unfilled and its outliers unclipped
    raw = read_json(packaged["raw-profile"])
    assert profile["raw"] == {
        "rows": raw["rows"],
        "columns": {name: raw["columns"][name] for name in model.spec.features},
    }
    assert model.target not in profile["raw"]["columns"]
    assert profile["predicted_rows"] == len(test)
    # the live predictions are compared with the model's own predictions on unseen rows
    assert profile["classes"]["Adelie"] == pytest.approx(np.mean(predicted == "Adelie"))
    assert sum(profile["classes"].values()) == pytest.approx(1.0)
    assert "prediction" not in profile


def test_reports_hold_parity_and_resources_as_metrics(packaged: dict[str, Path]) -> None:
    parity = read_json(packaged["reports"] / "parity.json")
    resources = read_json(packaged["reports"] / "resources.json")

    assert parity["passed"] is True and parity["task"] == "classification"
    assert parity["label_mismatches"] == 0
    assert parity["max_abs_diff"] <= 1e-4
    assert resources == read_json(packaged["out"] / artifacts.RESOURCES_FILE)
    for rows in ("rows_1", "rows_1000"):
        latency = resources["latency"][rows]
        assert 0 < latency["median_ms"] <= latency["p99_ms"]
        assert latency["runs"] >= 1
    assert resources["intra_op_num_threads"] == 1
    memory = resources["memory"]
    assert memory["rows"] == 1000
    assert 0 < memory["runtime_rss_mib"] <= memory["peak_rss_mib"] < 1024
    requests = resources["kubernetes"]["requests"]
    assert re.fullmatch(r"\d+m", requests["cpu"])
    assert int(requests["memory"].removesuffix("Mi")) > memory["peak_rss_mib"]


def test_model_card_covers_use_data_metrics_acceptance_limitations_and_lineage(
    packaged: dict[str, Path],
) -> None:
    card = (packaged["out"] / artifacts.MODEL_CARD_FILE).read_text()
    version = artifacts.load_manifest(packaged["out"])["model_version"]

    for heading in ("Intended use", "Training data", "Features", "Metrics", "Acceptance test"):
        assert f"## {heading}" in card
    for heading in ("Serving", "Limitations", "Lineage"):
        assert f"## {heading}" in card
    assert version in card
    assert "| island | string | Biscoe, Dream, Torgersen |" in card
    assert "the most likely class" in card


# --- regression ------------------------------------------------------------------------------


def test_a_regressor_is_packaged_under_the_users_column_names(
    regression: dict[str, Path], regressor: TrainedModel, spending: Split
) -> None:
    out = regression["out"]
    artifacts.verify(out)
    signature = artifacts.load_signature(out)
    features = {feature["name"]: feature for feature in signature["features"]}

    assert (signature["task"], signature["target"]) == ("regression", REGRESSION_TARGET)
    assert (signature["classes"], signature["positive_class"], signature["threshold"]) == (
        [],
        None,
        None,
    )
    assert list(features) == list(regressor.spec.features)
    assert "customer id" not in features and "signup date" not in features
    assert features["Monthly Charge ($)"]["input_name"] == "Monthly_Charge____"
    assert features["plan/type"]["categories"] == ["basic", "plus", "premium"]
    session_inputs = [value.name for value in onnx.load(out / artifacts.MODEL_FILE).graph.input]
    assert session_inputs == [feature["input_name"] for feature in signature["features"]]
    outputs = [value.name for value in onnx.load(out / artifacts.MODEL_FILE).graph.output]
    assert outputs == [artifacts.PREDICTION_OUTPUT]
    assert onnx_metadata(out)["task"] == "regression"
    raw = (out / artifacts.SIGNATURE_FILE).read_text(encoding="utf-8")
    assert '"Größe"' in raw  # the user's names as written, not escaped


def test_a_regressors_reference_profile_holds_its_predictions_on_the_test_split(
    regression: dict[str, Path], regressor: TrainedModel, spending: Split
) -> None:
    profile = artifacts.load_reference_profile(regression["out"])
    predictions = regressor.pipeline.predict(model_input(spending[-1], regressor.spec))
    expected = profile_column(pd.Series(np.asarray(predictions, dtype=np.float64)))

    assert "classes" not in profile
    assert profile["prediction"] == json.loads(json.dumps(expected))
    assert profile["prediction"]["kind"] == "numeric" and profile["prediction"]["bins"]
    assert set(profile["columns"]) == set(regressor.spec.features)


def test_a_regressors_parity_is_relative_to_the_training_target(
    regression: dict[str, Path], spending: Split
) -> None:
    parity = read_json(regression["reports"] / "parity.json")
    scale = float(spending[0][REGRESSION_TARGET].std(ddof=0))

    assert parity["task"] == "regression" and parity["passed"] is True
    assert parity["scale"] == pytest.approx(scale)
    assert parity["max_relative_diff"] <= parity["tolerance"] == 1e-4
    assert "label_mismatches" not in parity
    assert len(parity["worst_rows"]) == 5


def test_a_regressors_model_card_speaks_of_the_target_and_its_errors(
    regression: dict[str, Path], spending: Split
) -> None:
    card = (regression["out"] / artifacts.MODEL_CARD_FILE).read_text()
    target = spending[0][REGRESSION_TARGET]

    assert f"Predicts `{REGRESSION_TARGET}`, a number" in card
    assert "| mean | standard deviation | min | median | max |" in card
    assert f"| {target.mean():.4g} |" in card
    for name in ("Monthly Charge ($)", "Größe", "plan/type", "support calls (#)"):
        assert f"| {name} |" in card
    assert "| rmse |" in card and "| r2 |" in card and "accuracy" not in card
    assert "r2 per slice (test set)" in card and "| plus | 0.8 |" in card
    assert "of the training target's standard deviation" in card
    assert "Class shares" not in card


def test_a_regressor_that_onnx_does_not_reproduce_keeps_the_previous_package(
    tmp_path: Path,
    regression: dict[str, Path],
    regressor: TrainedModel,
    spending: Split,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    train, test = spending
    paths = inputs(tmp_path, regressor, train, test)
    shutil.copytree(regression["out"], paths["out"])
    before = artifacts.verify(paths["out"])
    shuffled = train.assign(**{REGRESSION_TARGET: train[REGRESSION_TARGET].sample(frac=1.0).values})
    other = package.export_onnx(trained_on(shuffled, REGRESSION_TARGET), package.PackageParams())
    monkeypatch.setattr(package, "export_onnx", lambda *_: other)

    with pytest.raises(StageError, match=r"ONNX parity failed .* standard deviation .*\n  row "):
        package.main(arguments(paths))

    parity = read_json(paths["reports"] / "parity.json")
    assert parity["passed"] is False and parity["max_relative_diff"] > 1e-4
    assert artifacts.verify(paths["out"]) == before


# --- binary classification and the decision threshold -----------------------------------------


def test_a_binary_package_records_the_positive_class_and_the_threshold(
    tmp_path: Path, binary: TrainedModel, churn: Split
) -> None:
    out = build_package(tmp_path, binary, *churn, threshold=0.3)["out"]
    signature = artifacts.load_signature(out)

    assert signature["classes"] == ["no", "yes"]
    assert (signature["positive_class"], signature["threshold"]) == ("yes", 0.3)
    parity = read_json(tmp_path / "reports" / "parity.json")
    assert parity["threshold"] == 0.3 and parity["passed"] is True
    card = (out / artifacts.MODEL_CARD_FILE).read_text()
    assert "`yes` when its probability is at least 0.3" in card
    assert "| yes (positive class) |" in card
    # the prediction reference is the class mix the scorer will answer: after the threshold
    test = churn[-1]
    positive = binary.pipeline.predict_proba(model_input(test, binary.spec))[:, 1] >= 0.3
    profile = artifacts.load_reference_profile(out)
    assert profile["classes"]["yes"] == pytest.approx(positive.mean())
    assert positive.mean() != pytest.approx(
        np.mean(binary.pipeline.predict(model_input(test, binary.spec)) == "yes")
    )


def test_without_a_threshold_method_the_models_own_labels_stand(
    tmp_path: Path, binary: TrainedModel, churn: Split
) -> None:
    paths = inputs(tmp_path, binary, *churn)
    metrics = read_json(paths["metrics"])
    assert metrics["threshold_method"] is None and metrics["decision_threshold"] == 0.5

    package.main(arguments(paths))

    signature = artifacts.load_signature(paths["out"])
    assert (signature["positive_class"], signature["threshold"]) == ("yes", None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decision_threshold": None}, r"'decision_threshold' is None; expected a probability"),
        ({"decision_threshold": "0.3"}, r"'decision_threshold' is '0.3'"),
        ({"decision_threshold": 1.5}, r"a decision threshold of 1.5 needs .* between 0 and 1"),
    ],
)
def test_an_unusable_threshold_in_the_metrics_stops_packaging(
    tmp_path: Path,
    binary: TrainedModel,
    churn: Split,
    change: dict[str, Any],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = inputs(tmp_path, binary, *churn, threshold=0.3)
    metrics = read_json(paths["metrics"])
    paths["metrics"].write_text(json.dumps({**metrics, **change}))

    assert run(package.main, arguments(paths)) == 1

    error = capsys.readouterr().err
    assert str(paths["metrics"]) in error and re.search(message, error), error
    assert not paths["out"].exists()


def test_a_threshold_for_a_model_of_three_classes_stops_packaging(
    tmp_path: Path, model: TrainedModel, data: Split, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = inputs(tmp_path, model, *data)
    metrics = read_json(paths["metrics"])
    paths["metrics"].write_text(
        json.dumps({**metrics, "decision_threshold": 0.4, "threshold_method": "fixed"})
    )

    assert run(package.main, arguments(paths)) == 1

    assert "needs a binary classifier with a positive class" in capsys.readouterr().err
    assert not paths["out"].exists()


# --- refusals and the safe swap ----------------------------------------------------------------


def test_a_changed_packaged_file_fails_verification(
    packaged: dict[str, Path], tmp_path: Path
) -> None:
    copy = shutil.copytree(packaged["out"], tmp_path / "copy")
    signature = read_json(copy / artifacts.SIGNATURE_FILE)
    signature["classes"].reverse()
    (copy / artifacts.SIGNATURE_FILE).write_text(json.dumps(signature))

    with pytest.raises(artifacts.ArtifactError, match=r"signature.json: sha256 .* does not match"):
        artifacts.verify(copy)


def test_a_rejected_model_is_not_packaged(
    tmp_path: Path, model: TrainedModel, data: Split, capsys: Any
) -> None:
    paths = inputs(tmp_path, model, *data)
    verdict = read_json(paths["verdict"])
    verdict["passed"] = False
    verdict["checks"][0]["passed"] = False
    paths["verdict"].write_text(json.dumps(verdict))

    assert run(package.main, arguments(paths)) == 1

    assert "did not pass (failed checks: ['roc_auc'])" in capsys.readouterr().err
    assert not paths["out"].exists()
    assert not paths["reports"].exists()


def test_a_parity_failure_keeps_the_previous_package(
    tmp_path: Path,
    model: TrainedModel,
    data: Split,
    packaged: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = inputs(tmp_path, model, *data)
    shutil.copytree(packaged["out"], paths["out"])
    before = artifacts.load_manifest(paths["out"])
    train = data[0]
    shuffled = train["species"].sample(frac=1.0, random_state=1).set_axis(train.index)
    other_onnx = package.export_onnx(
        trained(train, "random_forest", shuffled), package.PackageParams()
    )
    monkeypatch.setattr(package, "export_onnx", lambda *_: other_onnx)

    with pytest.raises(StageError, match=r"ONNX parity failed on .* Worst rows:\n  row "):
        package.main(arguments(paths))

    parity = read_json(paths["reports"] / "parity.json")
    assert parity["passed"] is False and parity["label_mismatches"] > 0
    assert artifacts.verify(paths["out"]) == before


def test_install_replaces_the_package_and_leaves_no_temporary_directory(tmp_path: Path) -> None:
    out = tmp_path / "models" / "package"
    first, second = package_files("first"), package_files("second")

    install_package(out, first, {"model_version": "1"})
    install_package(out, second, {"model_version": "2"})

    assert artifacts.verify(out)["model_version"] == "2"
    assert (out / artifacts.SIGNATURE_FILE).read_bytes() == second[artifacts.SIGNATURE_FILE]
    assert [p.name for p in out.parent.iterdir()] == ["package"]


def test_install_keeps_the_old_package_when_the_new_one_does_not_verify(tmp_path: Path) -> None:
    out = tmp_path / "models" / "package"
    install_package(out, package_files("old"), {"model_version": "1"})
    incomplete = package_files("new")
    del incomplete[artifacts.MODEL_FILE]

    with pytest.raises(StageError, match=r"does not list model.onnx\); .* is unchanged"):
        install_package(out, incomplete, {"model_version": "2"})

    assert artifacts.verify(out)["model_version"] == "1"
    assert [p.name for p in out.parent.iterdir()] == ["package"]


def package_files(tag: str) -> dict[str, bytes]:
    return {name: f"{tag} {name}".encode() for name in REPRODUCED_FILES}


# --- reproducible packaging and the model version -----------------------------------------------


def package_in_a_fresh_process(paths: dict[str, Path], seed: str) -> None:
    """``python -m mlops.model.package`` as dvc runs it, with its own string hashing seed (the
    order of Python's sets and of skl2onnx's internals follows it)."""
    env = {**os.environ, "PYTHONHASHSEED": seed}
    command = [sys.executable, "-m", "mlops.model.package", *arguments(paths)]
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_packaging_twice_gives_the_same_bytes_and_the_same_version(
    tmp_path: Path,
    task: str,
    regressor: TrainedModel,
    spending: Split,
    binary: TrainedModel,
    churn: Split,
) -> None:
    model, (train, test), threshold = (
        (regressor, spending, None) if task == "regression" else (binary, churn, 0.3)
    )
    paths = inputs(tmp_path, model, train, test, threshold)
    runs = []
    for seed in ("1", "3"):  # skl2onnx's set of operator domains iterates in another order
        package_in_a_fresh_process(paths, seed)
        out = shutil.move(paths["out"], tmp_path / f"run-{seed}")
        runs.append(Path(out))

    first, second = runs
    for name in REPRODUCED_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    manifests = [artifacts.verify(run) for run in runs]
    assert manifests[0]["model_version"] == manifests[1]["model_version"]
    assert (
        manifests[0]["files"][artifacts.MODEL_FILE] == manifests[1]["files"][artifacts.MODEL_FILE]
    )


def test_a_model_trained_again_with_the_same_seed_packages_to_the_same_bytes(
    tmp_path: Path, spending: Split
) -> None:
    train, test = spending
    outs = [
        build_package(tmp_path / name, trained_on(train, REGRESSION_TARGET, family), train, test)
        for name, family in (("a", "hist_gradient_boosting"), ("b", "hist_gradient_boosting"))
    ]

    for name in REPRODUCED_FILES:
        assert (outs[0]["out"] / name).read_bytes() == (outs[1]["out"] / name).read_bytes()


def test_repackaging_an_unchanged_model_plans_no_new_registry_version(
    tmp_path: Path, regression: dict[str, Path], regressor: TrainedModel, spending: Split
) -> None:
    first = artifacts.verify(regression["out"])
    sha256 = first["files"][artifacts.MODEL_FILE]
    latest = registry.RegisteredVersion(
        "v1.0.0", "0" * 40, registry.tag_message(first["model_name"], "v1.0.0", sha256)
    )
    again = build_package(tmp_path, regressor, *spending)
    second = artifacts.verify(again["out"])
    verdict = read_json(again["verdict"])

    plan = registry.registration_plan(verdict, second, latest, breaking=False)

    assert not plan.register and "unchanged since v1.0.0" in plan.reason
    assert second["model_version"] == first["model_version"]
    # a new decision threshold is a new model: the version and model.onnx follow the signature
    assert package.model_version(b"graph", b"signature", b"profile") != package.model_version(
        b"graph", b"signature with a threshold", b"profile"
    )


def test_the_model_version_is_a_hash_of_what_the_scorer_and_the_sidecar_act_on() -> None:
    version = package.model_version(b"graph", b"signature", b"profile")

    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert package.model_version(b"graph", b"signature", b"profile") == version
    for changed in (
        (b"graph2", b"signature", b"profile"),
        (b"graph", b"signature2", b"profile"),
        (b"graph", b"signature", b"profile2"),
        (b"graphsignature", b"", b"profile"),  # the parts are hashed apart, not joined
    ):
        assert package.model_version(*changed) != version


def test_params_hash_follows_any_pipeline_param_and_ignores_formatting(tmp_path: Path) -> None:
    original = (PROJECT_ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(original)
    baseline = params_hash(path)
    path.write_text("# a comment\n" + original)
    assert params_hash(path) == baseline
    path.write_text(original.replace("cv_folds: 5", "cv_folds: 4"))
    assert params_hash(path) != baseline


def test_kubernetes_sizing_follows_the_measurements() -> None:
    small = kubernetes_resources(single_row_median_ms=0.05, peak_rss_bytes=60 << 20)
    slow = kubernetes_resources(single_row_median_ms=10.0, peak_rss_bytes=600 << 20)

    assert small["requests"] == {"cpu": "100m", "memory": "160Mi"}  # (60 + 64) * 1.25 -> 160
    assert small["limits"] == {"cpu": "1000m", "memory": "320Mi"}
    assert slow["requests"] == {"cpu": "1000m", "memory": "832Mi"}  # 10 ms * 50 rps * 2
    slower = kubernetes_resources(single_row_median_ms=50.0, peak_rss_bytes=60 << 20)
    assert slower["requests"]["cpu"] == slower["limits"]["cpu"] == "1000m"


def test_metrics_that_are_not_numbers_reach_the_manifest_as_null() -> None:
    evaluation = {"roc_auc": float("nan"), "per_class": {"a": {"f1": float("inf")}}, "rows": 3}
    metrics = package.manifest_metrics(
        evaluation, {"metrics": {}, "passed": True}, {"max_abs_diff": 0.0}
    )

    assert metrics["validation"] == {"roc_auc": None, "per_class": {"a": {"f1": None}}, "rows": 3}
    json.loads(json_bytes(metrics), parse_constant=pytest.fail)  # plain JSON
    with pytest.raises(StageError, match="NaN or infinite number"):
        json_bytes({"mean": float("nan")})


# --- the pure core ---------------------------------------------------------------------------

LINEAGE: artifacts.Lineage = {
    "git_commit": "0" * 40,
    "data_hash": "d" * 32,
    "params_hash": "p" * 64,
    "created": "2026-01-01T00:00:00Z",
}


def measured(onnx_model: bytes, feed: dict[str, np.ndarray]) -> ResourceProfile:
    """A resource profile without timing anything: the same for the same model."""
    latency: Latency = {"rows": 1, "runs": 1, "median_ms": 0.1, "p99_ms": 0.2}
    return {
        "onnxruntime": "test",
        "intra_op_num_threads": 1,
        "model_bytes": len(onnx_model),
        "latency": {"rows_1": latency, "rows_1000": {**latency, "rows": 1000}},
        "memory": {"rows": 1, "runtime_rss_mib": 1.0, "peak_rss_mib": 2.0, "model_rss_mib": 1.0},
        "kubernetes": kubernetes_resources(0.1, 2 << 20),
    }


def built(
    model: TrainedModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    on_parity: package.ParityListener | None = None,
) -> package.Package:
    return package.build_package(
        model,
        train,
        test,
        evaluation=evaluation_metrics(model, test, 0.3),
        verdict=verdict(model.task),
        name="churn",
        params=package.PackageParams(),
        threshold=0.3,
        lineage=LINEAGE,
        raw_profile=json.loads(json.dumps(profile_table(pd.concat([train, test])), default=str)),
        measure=measured,
        on_parity=on_parity,
    )


def test_build_package_gives_the_same_files_for_the_same_inputs_and_writes_nothing(
    tmp_path: Path, binary: TrainedModel, churn: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    first, second = built(binary, *churn), built(binary, *churn)

    assert first.files() == second.files()  # every file, the card and resources.json too
    assert list(tmp_path.iterdir()) == []
    assert set(first.files()) == {
        artifacts.MODEL_FILE,
        artifacts.SIGNATURE_FILE,
        artifacts.PROFILE_FILE,
        artifacts.MODEL_CARD_FILE,
        artifacts.RESOURCES_FILE,
    }
    assert first.manifest["model_version"] == first.version
    assert first.manifest["lineage"] == LINEAGE
    assert first.parity["passed"] and first.parity["threshold"] == 0.3
    assert first.contents.signature["threshold"] == 0.3
    assert "2026-01-01T00:00:00Z" in first.card


def test_build_package_refuses_an_onnx_model_that_disagrees_with_sklearn(
    binary: TrainedModel, churn: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test = churn
    shuffled = train[BINARY_TARGET].sample(frac=1.0, random_state=1).values
    flipped = train.assign(**{BINARY_TARGET: shuffled})
    other = package.export_onnx(trained_on(flipped, BINARY_TARGET), package.PackageParams())
    monkeypatch.setattr(package, "export_onnx", lambda *_: other)

    heard: list[ParityReport] = []

    with pytest.raises(package.ParityError, match=r"ONNX parity failed on \d+ test rows") as error:
        built(binary, train, test, heard.append)

    assert heard == [error.value.report]  # told before the refusal, for the stage to write it
    assert error.value.report["passed"] is False
    assert error.value.report["task"] == "classification"
