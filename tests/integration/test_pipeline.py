"""The DVC pipeline run for real in a fresh git + DVC repository, as a fork would run it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run

pytestmark = pytest.mark.slow


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def set_params(root: Path, **changes: object) -> None:
    """Set dotted params.yaml keys, e.g. ``set_params(root, **{"split.seed": 7})``."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_the_full_pipeline_packages_a_model_and_a_second_run_does_nothing(
    reproduced_project: Path,
) -> None:
    package = reproduced_project / "models" / "package"
    for name in ("model.onnx", "signature.json", "reference_profile.json", "model_card.md"):
        assert (package / name).is_file(), name
    manifest = json.loads((package / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"model.onnx", "signature.json", "reference_profile.json"}
    verdict = json.loads((reproduced_project / "reports/accept/verdict.json").read_text())
    assert verdict["passed"] is True

    second = run(["dvc", "repro"], reproduced_project)
    assert stages_run(second.stdout) == []
    status = run(["dvc", "status"], reproduced_project)
    assert "Data and pipelines are up to date" in status.stdout


def test_a_param_change_reruns_only_the_stages_that_read_it(project_copy: Path) -> None:
    run(["dvc", "repro", "split"], project_copy)

    set_params(project_copy, **{"split.seed": 7})
    second = run(["dvc", "repro", "split"], project_copy)
    assert stages_run(second.stdout) == ["split"]

    # A clean param whose new value changes nothing re-runs clean, and stops there.
    set_params(project_copy, **{"clean.outliers.threshold": 3.5})
    third = run(["dvc", "repro", "split"], project_copy)
    assert stages_run(third.stdout) == ["clean"]


def test_bad_data_is_stopped_at_validate_and_later_outputs_stay_restorable(
    project_copy: Path,
) -> None:
    run(["dvc", "repro", "split"], project_copy)
    train = project_copy / "data" / "split" / "train.parquet"
    good_train = md5(train)

    source = project_copy / "data" / "penguins.csv"
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    frame.loc[3, "island"] = "Atlantis"  # unknown category
    frame.loc[5, "body_mass_g"] = "99999"  # out of range
    frame.loc[7, "bill_length_mm"] = "abc"  # wrong type in a numeric column
    frame.to_csv(source, index=False)

    failed = run(["dvc", "repro", "split"], project_copy, check=False)
    assert failed.returncode != 0
    assert stages_run(failed.stdout) == ["ingest", "validate"]  # and no further
    report = json.loads((project_copy / "reports/validate/validation.json").read_text())
    assert report["passed"] is False
    failing = {(f["column"], f["rows"][0]) for f in report["failures"]}
    assert {("island", 3), ("body_mass_g", 5), ("bill_length_mm", 7)} <= failing
    for column in ("island", "body_mass_g", "bill_length_mm"):
        assert column in failed.stderr

    # Nothing downstream was touched, and what DVC cached is restorable.
    assert md5(train) == good_train
    shutil.rmtree(project_copy / "data" / "split")
    run(["dvc", "checkout", "data/split"], project_copy)
    assert md5(train) == good_train

    # Fixing the data brings back the cached raw table (DVC's run cache) and re-runs validate,
    # whose report the failure rewrote; clean, label and split are already up to date.
    run(["git", "checkout", "--", "data/penguins.csv"], project_copy)
    fixed = run(["dvc", "repro", "split"], project_copy)
    assert set(stages_run(fixed.stdout)) <= {"ingest", "validate"}
    assert md5(train) == good_train


def test_a_new_champion_reruns_the_acceptance_test(
    reproduced_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(reproduced_project, project, symlinks=True)
    shutil.copytree(
        project / "models" / "package", project / "models" / "champion", dirs_exist_ok=True
    )

    rerun = run(["dvc", "repro"], project)
    # accept re-runs; its verdict now holds the champion check, so package records it too.
    assert stages_run(rerun.stdout) == ["accept", "package"]
    verdict = json.loads((project / "reports/accept/verdict.json").read_text())
    champion_checks = [check for check in verdict["checks"] if check["name"] == "champion_macro_f1"]
    assert len(champion_checks) == 1 and champion_checks[0]["passed"] is True


def test_an_experiment_with_another_model_family_is_listed_by_exp_show(
    reproduced_project: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    shutil.copytree(reproduced_project, project, symlinks=True)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "reproduced"], project)

    run(["dvc", "exp", "run", "-n", "linear", "-S", "train.model=linear"], project)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    experiments = {
        experiment["name"]: experiment
        for baseline in shown
        for experiment in (baseline.get("experiments") or [])
    }
    assert "linear" in experiments, shown
    (revision,) = experiments["linear"]["revs"]
    data = revision["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["model"] == "linear"
    assert data["metrics"]["reports/train/best_params.json"]["data"]["model"] == "linear"
