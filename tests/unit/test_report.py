import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import PROJECT_ROOT
from mlops.profile import profile_table
from mlops.report.compare import Delta, deltas, distribution_shift, params_diff
from mlops.report.inputs import STAGE_FILES, Outputs, Plot, ReportInputs
from mlops.report.sections import build_report
from mlops.report.sources import load_outputs, retrain_trigger
from mlops.stage import StageError

PARAMS = {"train": {"model": "random_forest", "n_iter": 8}, "package": {"model_name": "penguins"}}
METRICS = {
    "rows": 52,
    "accuracy": 0.96,
    "macro_f1": 0.95,
    "log_loss": 0.10,
    "per_class": {"Adelie": {"f1": 0.97, "support": 23}},
}
CHECKS = [
    {"name": "accuracy", "value": 0.96, "threshold": 0.9, "passed": True},
    {"name": "macro_f1", "value": 0.95, "threshold": 0.9, "passed": True},
]
VERDICT = {"passed": True, "metrics": {"rows": 51, "accuracy": 0.96, "macro_f1": 0.95}}
SLICES = {"column": "island", "slices": {"Dream": {"rows": 17, "accuracy": 0.9, "macro_f1": 0.88}}}


def outputs(**changes: Any) -> Outputs:
    params = changes.pop("params", PARAMS)
    files: dict[str, Any] = {
        "metrics": METRICS,
        "verdict": {**VERDICT, "checks": CHECKS, "champion": None},
        "slices": SLICES,
        "validation": {"passed": True, "rows": 344, "failures": []},
    }
    files.update(changes)
    return Outputs(params=params, files=files)


def inputs(current: Outputs, base: Outputs | None = None, **extra: Any) -> ReportInputs:
    return ReportInputs(
        model_name="penguins",
        current=current,
        base=base or Outputs(),
        base_name="main",
        base_commit="0123456789abcdef0123",
        **extra,
    )


def test_a_first_run_shows_this_runs_numbers_without_deltas() -> None:
    report = build_report(inputs(outputs()))
    assert "which has no metrics yet: this is the first run" in report
    assert "| `macro_f1` | 0.95 |" in report
    assert "change" not in report.split("### Params")[0]
    assert "✅ **Accepted**" in report


def test_deltas_against_the_base_are_marked_better_or_worse() -> None:
    improved = {**METRICS, "macro_f1": 0.97, "log_loss": 0.20}
    report = build_report(inputs(outputs(metrics=improved), outputs()))
    assert "| `macro_f1` | 0.97 | 0.95 | 🟢 +0.02 |" in report
    assert "| `log_loss` | 0.2 | 0.1 | 🔴 +0.1 |" in report  # a loss is better when lower
    assert "| `accuracy` | 0.96 | 0.96 | ⚪ +0 |" in report
    assert "| `rows` | 52 | 52 |  +0 |" in report  # a count is neither better nor worse


def test_params_diff_lists_changed_added_and_removed_keys() -> None:
    changed = {"train": {"model": "logistic_regression"}, "package": {"model_name": "penguins"}}
    rows = params_diff(changed, PARAMS)
    assert [(row.key, row.base, row.current) for row in rows] == [
        ("train.model", "random_forest", "logistic_regression"),
        ("train.n_iter", 8, "(absent)"),
    ]
    report = build_report(inputs(outputs(params=changed), outputs()))
    assert "| `train.model` | `random_forest` | `logistic_regression` |" in report


def test_a_rejected_model_names_its_failed_checks_and_the_champion_reason() -> None:
    champion_check = {
        "name": "champion_macro_f1",
        "value": 0.95,
        "threshold": None,
        "passed": False,
        "reason": "champion v1.0.0 cannot score the test data",
    }
    verdict = {**VERDICT, "passed": False, "checks": [*CHECKS, champion_check]}
    verdict["champion"] = {"path": "models/champion", "model_version": "v1.0.0"}
    report = build_report(inputs(outputs(verdict=verdict)))
    assert "❌ **Rejected**: failed `champion_macro_f1`." in report
    assert "❌ champion v1.0.0 cannot score the test data" in report


def test_the_champion_comparison_shows_both_models_on_the_same_rows() -> None:
    check = {
        "name": "champion_macro_f1",
        "value": 0.95,
        "threshold": 0.92,
        "passed": True,
        "champion_value": 0.94,
        "max_regression": 0.02,
    }
    verdict = {**VERDICT, "checks": [*CHECKS, check]}
    verdict["champion"] = {"model_version": "v1.0.0", "macro_f1": 0.94, "accuracy": 0.97}
    champion = {"status": "fetched", "summary": "v1.0.0 (abc) fetched into models/champion"}
    report = build_report(inputs(outputs(verdict=verdict), champion=champion))
    assert "Champion: v1.0.0 (abc) fetched into models/champion." in report
    assert "| `macro_f1` | 0.95 | 0.94 | 🟢 +0.01 |" in report
    assert "| `accuracy` | 0.96 | 0.97 | 🔴 -0.01 |" in report


def test_stages_that_did_not_run_are_called_out() -> None:
    report = build_report(inputs(outputs(), stale=("accept", "package")))
    assert "❌ **The pipeline did not complete**: not reproduced: `accept`, `package`." in report
    assert "⚠️ `accept` did not complete in this run" in report


def test_a_failing_stage_report_is_this_runs_and_the_later_ones_are_not() -> None:
    failed = [{**CHECKS[0], "value": 0.85, "passed": False}, CHECKS[1]]
    verdict = {**VERDICT, "passed": False, "checks": failed, "champion": None}
    report = build_report(inputs(outputs(verdict=verdict), stale=("accept", "package")))
    assert "❌ **Rejected**: failed `accuracy`." in report
    assert "`accept` did not complete" not in report
    validation = {"passed": False, "rows": 3, "failures": []}
    invalid = build_report(inputs(outputs(validation=validation), stale=("validate", "clean")))
    assert "❌ **The data failed validation**" in invalid
    assert "⚠️ `clean` did not complete" not in invalid  # no section shows clean's numbers


def test_a_failed_validation_lists_each_column_and_check() -> None:
    failure = {
        "column": "body_mass_g",
        "check": "greater_than_or_equal_to(2000)",
        "count": 3,
        "failure_cases": [-1, 12],
        "hint": "values below the allowed minimum",
    }
    validation = {"passed": False, "rows": 344, "failures": [failure]}
    report = build_report(inputs(outputs(validation=validation)))
    assert "❌ Validation against the schema failed (344 rows)" in report
    assert "| `body_mass_g` | greater_than_or_equal_to(2000) | 3 | -1, 12 |" in report


def test_images_link_the_plots_and_the_summary_only_names_them() -> None:
    plots = (Plot("Confusion matrix", "../evaluate/plots/confusion_matrix.png"),)
    with_images = build_report(inputs(outputs(), plots=plots))
    assert "![Confusion matrix](../evaluate/plots/confusion_matrix.png)" in with_images
    text = build_report(inputs(outputs(), plots=plots), images=False)
    assert "![" not in text and "Confusion matrix" in text


def test_the_retrain_reason_heads_the_report() -> None:
    payload = '{"reasons": ["drift"], "model_version": "v1.0.0", "window_size": 1000,'
    payload += ' "drifted_features": {"body_mass_g": {"psi": 0.42, "reasons": ["psi"]}}}'
    trigger = retrain_trigger(payload)
    report = build_report(inputs(outputs(), trigger=trigger))
    assert "### Why this retrain" in report and "| body_mass_g | 0.42 | psi |" in report
    assert "Window: 1000 predictions." in report
    assert retrain_trigger("null") is None and retrain_trigger("") is None


def test_distribution_shift_is_zero_for_the_same_data_and_large_for_shifted_data() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"mass": rng.normal(4000, 500, 500), "island": rng.choice(["Biscoe", "Dream"], 500)}
    )
    base = profile_table(frame)
    same = distribution_shift(frame, base)
    assert same["mass"] == pytest.approx(0.0, abs=1e-6)
    assert same["island"] == pytest.approx(0.0, abs=1e-6)
    shifted = frame.assign(mass=frame["mass"] + 600, island="Torgersen")
    moved = distribution_shift(shifted, base)
    assert moved["mass"] > 0.2 and moved["island"] > 0.2


def test_deltas_cover_keys_of_either_side() -> None:
    rows = deltas({"a": 1.0}, {"b": 2.0})
    assert rows == [Delta("a", 1.0, None), Delta("b", None, 2.0)]
    assert rows[0].change is None and rows[0].trend == 0


def test_an_unparsable_output_is_reported_with_its_path() -> None:
    files = {"params.yaml": yaml.safe_dump(PARAMS), "reports/evaluate/metrics.json": "{not json"}
    with pytest.raises(StageError, match=r"reports/evaluate/metrics\.json: cannot be parsed"):
        load_outputs(files.get, "params.yaml")


def test_the_report_reads_the_files_dvc_yaml_declares() -> None:
    dvc = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for stage, path in STAGE_FILES.values():
        declared = [
            next(iter(entry)) for key in ("outs", "metrics") for entry in dvc[stage].get(key, [])
        ]
        assert path in declared, f"{path} is not an output of stage {stage}"


def test_a_huge_report_is_cut_to_fit_a_pull_request() -> None:
    many = copy.deepcopy(SLICES)
    many["slices"] = {
        f"slice-{i}": {"rows": 1, "accuracy": 1.0, "macro_f1": 1.0} for i in range(3000)
    }
    report = build_report(inputs(outputs(slices=many)))
    assert len(report) < 65_536 and "Report cut at" in report


def test_loading_outputs_from_a_directory(tmp_path: Path) -> None:
    from mlops.report.sources import workspace_reader

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    metrics = tmp_path / "reports" / "evaluate" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"accuracy": 0.5}')
    loaded = load_outputs(workspace_reader(tmp_path), "params.yaml")
    assert loaded.get("metrics") == {"accuracy": 0.5}
    assert loaded.get("verdict") is None and loaded.params == PARAMS
