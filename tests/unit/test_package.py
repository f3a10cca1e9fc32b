"""The package stage: contents and lineage of the package, verification, the safe swap, refusals."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx
import pandas as pd
import pytest

from mlops import artifacts
from mlops.model import package
from mlops.model.features import TrainedModel
from mlops.profile import profile_table
from mlops.stage import StageError, run
from model_fixtures import arguments, package_inputs, penguins, split, trained


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return split(penguins())


@pytest.fixture(scope="module")
def model(data: tuple[pd.DataFrame, pd.DataFrame]) -> TrainedModel:
    return trained(data[0], "random_forest")


@pytest.fixture(scope="module")
def packaged(
    tmp_path_factory: pytest.TempPathFactory,
    model: TrainedModel,
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> dict[str, Path]:
    """One real run of the package stage, shared read-only by the tests that inspect its output."""
    paths = package_inputs(tmp_path_factory.mktemp("package"), model, *data)
    package.main(arguments(paths))
    return paths


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


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


def test_manifest_and_onnx_metadata_carry_the_lineage(packaged: dict[str, Path]) -> None:
    manifest = artifacts.load_manifest(packaged["out"])
    lineage = manifest["lineage"]
    metadata = {
        prop.key: prop.value
        for prop in onnx.load(packaged["out"] / artifacts.MODEL_FILE).metadata_props
    }

    assert re.fullmatch(r"\d{8}-[0-9a-f]{8}", manifest["model_version"])
    assert manifest["model_name"] == "penguins"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", lineage["git_commit"])
    assert lineage["data_hash"] == hashlib.md5(packaged["train"].read_bytes()).hexdigest()
    assert lineage["params_hash"] == package.params_hash(packaged["params"])
    assert datetime.fromisoformat(lineage["created"]).tzinfo is not None
    for key in ("git_commit", "data_hash", "params_hash", "created"):
        assert metadata[key] == lineage[key]
    assert metadata["model_version"] == manifest["model_version"]
    assert json.loads(metadata["metrics"]) == manifest["metrics"]["test"]
    assert manifest["metrics"]["validation"] == read_json(packaged["metrics"])
    assert manifest["metrics"]["acceptance_passed"] is True


def test_signature_describes_features_ranges_categories_and_classes(
    packaged: dict[str, Path], data: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train = data[0]
    signature = artifacts.load_signature(packaged["out"])
    features = {feature["name"]: feature for feature in signature["features"]}

    assert list(features) == [
        "island",
        *[n for n in train.columns if n.endswith(("_mm", "_g"))],
        "sex",
    ]
    assert features["island"]["type"] == "string"
    assert features["island"]["categories"] == ["Biscoe", "Dream", "Torgersen"]
    assert features["body_mass_g"]["type"] == "number"
    assert features["body_mass_g"]["min"] == train["body_mass_g"].min()
    assert features["body_mass_g"]["max"] == train["body_mass_g"].max()
    assert all(feature["nullable"] for feature in signature["features"])
    assert signature["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert signature["target"] == "species"


def test_reference_profile_is_the_validate_profile_of_the_training_features(
    packaged: dict[str, Path], data: tuple[pd.DataFrame, pd.DataFrame], model: TrainedModel
) -> None:
    train = data[0]
    profile = artifacts.load_reference_profile(packaged["out"])
    expected = json.loads(json.dumps(profile_table(train[list(model.spec.features)])))

    assert profile["columns"] == expected["columns"]
    assert profile["rows"] == len(train)
    assert profile["classes"]["Adelie"] == pytest.approx((train["species"] == "Adelie").mean())
    assert sum(profile["classes"].values()) == pytest.approx(1.0)


def test_reports_hold_parity_and_resources_as_metrics(packaged: dict[str, Path]) -> None:
    parity = read_json(packaged["reports"] / "parity.json")
    resources = read_json(packaged["reports"] / "resources.json")

    assert parity["passed"] is True
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
    tmp_path: Path, model: TrainedModel, data: tuple[pd.DataFrame, pd.DataFrame], capsys: Any
) -> None:
    paths = package_inputs(tmp_path, model, *data)
    verdict = read_json(paths["verdict"])
    verdict["passed"] = False
    verdict["checks"][0]["passed"] = False
    paths["verdict"].write_text(json.dumps(verdict))

    assert run(package.main, arguments(paths)) == 1

    assert "did not pass (failed checks: ['macro_f1'])" in capsys.readouterr().err
    assert not paths["out"].exists()
    assert not paths["reports"].exists()


def test_a_parity_failure_keeps_the_previous_package(
    tmp_path: Path,
    model: TrainedModel,
    data: tuple[pd.DataFrame, pd.DataFrame],
    packaged: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = package_inputs(tmp_path, model, *data)
    shutil.copytree(packaged["out"], paths["out"])
    before = artifacts.load_manifest(paths["out"])
    train = data[0]
    shuffled = train["species"].sample(frac=1.0, random_state=1).set_axis(train.index)
    other_onnx = package.export_onnx(
        trained(train, "random_forest", shuffled), package.PackageParams(), {}
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

    package.install_package(out, first, {"model_version": "1"})
    package.install_package(out, second, {"model_version": "2"})

    assert artifacts.verify(out)["model_version"] == "2"
    assert (out / artifacts.SIGNATURE_FILE).read_bytes() == second[artifacts.SIGNATURE_FILE]
    assert [p.name for p in out.parent.iterdir()] == ["package"]


def test_install_keeps_the_old_package_when_the_new_one_does_not_verify(tmp_path: Path) -> None:
    out = tmp_path / "models" / "package"
    package.install_package(out, package_files("old"), {"model_version": "1"})
    incomplete = package_files("new")
    del incomplete[artifacts.MODEL_FILE]

    with pytest.raises(StageError, match=r"does not list model.onnx\); .* is unchanged"):
        package.install_package(out, incomplete, {"model_version": "2"})

    assert artifacts.verify(out)["model_version"] == "1"
    assert [p.name for p in out.parent.iterdir()] == ["package"]


def package_files(tag: str) -> dict[str, bytes]:
    return {
        name: f"{tag} {name}".encode()
        for name in (artifacts.MODEL_FILE, artifacts.SIGNATURE_FILE, artifacts.PROFILE_FILE)
    }


def test_params_hash_follows_any_pipeline_param_and_ignores_formatting(tmp_path: Path) -> None:
    from conftest import PROJECT_ROOT

    original = (PROJECT_ROOT / "params.yaml").read_text()
    path = tmp_path / "params.yaml"
    path.write_text(original)
    baseline = package.params_hash(path)
    path.write_text("# a comment\n" + original)
    assert package.params_hash(path) == baseline
    path.write_text(original.replace("cv_folds: 5", "cv_folds: 4"))
    assert package.params_hash(path) != baseline


def test_model_version_is_the_date_and_a_hash_of_data_params_and_model() -> None:
    day = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    version = package.model_version(day, "data", "params", "model")

    assert re.fullmatch(r"20260102-[0-9a-f]{8}", version)
    assert package.model_version(day, "data", "params", "model") == version
    assert package.model_version(day, "other", "params", "model") != version


def test_kubernetes_sizing_follows_the_measurements() -> None:
    small = package.kubernetes_resources(single_row_median_ms=0.05, peak_rss_bytes=60 << 20)
    slow = package.kubernetes_resources(single_row_median_ms=10.0, peak_rss_bytes=600 << 20)

    assert small["requests"] == {"cpu": "100m", "memory": "160Mi"}  # (60 + 64) * 1.25 -> 160
    assert small["limits"] == {"cpu": "1000m", "memory": "320Mi"}
    assert slow["requests"] == {"cpu": "1000m", "memory": "832Mi"}  # 10 ms * 50 rps * 2
    slower = package.kubernetes_resources(single_row_median_ms=50.0, peak_rss_bytes=60 << 20)
    assert slower["requests"]["cpu"] == slower["limits"]["cpu"] == "1000m"
