import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import PROJECT_ROOT
from mlops.profile import profile_table
from mlops.report.compare import (
    Delta,
    deltas,
    distribution_shift,
    flatten,
    metric_intervals,
    params_diff,
)
from mlops.report.inputs import (
    PLOTS_DIR,
    PROBABILITY_PREFIX,
    STAGE_FILES,
    NoIntervals,
    Outputs,
    Plot,
    ReportInputs,
)
from mlops.report.intervals import Intervals, RowPredictions, change_intervals, metric_values
from mlops.report.overlays import confusion_change, curves_over_base, points_over_base
from mlops.report.plots import plot_images
from mlops.report.sections import build_report
from mlops.report.sources import (
    evaluate_images,
    load_outputs,
    parse_predictions,
    retrain_trigger,
    write_plot_images,
)
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


def test_deltas_are_marked_by_their_interval_and_the_direction_of_the_metric() -> None:
    improved = {**METRICS, "macro_f1": 0.97, "log_loss": 0.20, "balanced_accuracy": 0.91}
    base = outputs(metrics={**METRICS, "balanced_accuracy": 0.89})
    bounds = {"macro_f1": (0.004, 0.036), "log_loss": (0.04, 0.16), "accuracy": (-0.03, 0.03)}
    bounds["balanced_accuracy"] = (-0.02, 0.06)  # +0.02 within the rows' noise
    intervals = Intervals(bounds, paired=True, rows=52, total_rows=52)
    verdict = {**VERDICT, "metrics": {**VERDICT["metrics"], "macro_f1": 0.98}}
    current = outputs(metrics=improved, verdict={**verdict, "checks": CHECKS, "champion": None})
    report = build_report(inputs(current, base, intervals=intervals))
    assert "| `macro_f1` | 0.97 | 0.95 | 🟢 +0.02 | +0.004 to +0.036 |" in report
    assert "| `log_loss` | 0.2 | 0.1 | 🔴 +0.1 | +0.04 to +0.16 |" in report  # lower is better
    assert "| `balanced_accuracy` | 0.91 | 0.89 | ⚪ +0.02 | -0.02 to +0.06 |" in report
    assert "| `accuracy` | 0.96 | 0.96 | ⚪ +0 | -0.03 to +0.03 |" in report
    assert "| `rows` | 52 | 52 | +0 |  |" in report  # a count is neither better nor worse
    assert "bootstrap of the 52 validation rows (1000 resamples, seed 0; paired" in report
    test_set = report.split("Test set")[1].split("Per class")[0]
    test_rows = [line for line in test_set.splitlines() if line.startswith("| `")]
    assert "| `macro_f1` | 0.98 | 0.95 | +0.03 |" in test_rows  # no per-row predictions: no
    assert "The test set's changes are not marked" in test_set  # interval, no mark


def test_without_an_interval_a_change_is_not_marked() -> None:
    improved = {**METRICS, "macro_f1": 0.97}
    why = NoIntervals("`main` has no per-row predictions")
    report = build_report(inputs(outputs(metrics=improved), outputs(), intervals=why))
    assert "| `macro_f1` | 0.97 | 0.95 | +0.02 |" in report
    assert "| `accuracy` | 0.96 | 0.96 | ⚪ +0 |" in report  # no change at all is certain
    assert "not marked better or worse: `main` has no per-row predictions." in report


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
    assert "| `macro_f1` | 0.95 | 0.94 | +0.01 |" in report  # test rows: no interval, no mark
    assert "| `accuracy` | 0.96 | 0.97 | -0.01 |" in report


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
    assert rows[0].change is None and rows[0].trend is None


def test_an_unparsable_output_is_reported_with_its_path() -> None:
    files = {"params.yaml": yaml.safe_dump(PARAMS), "reports/evaluate/metrics.json": "{not json"}
    with pytest.raises(StageError, match=r"reports/evaluate/metrics\.json: cannot be parsed"):
        load_outputs(files.get, "params.yaml")


def test_the_report_reads_the_files_dvc_yaml_declares() -> None:
    """Each file is an output of its stage, itself or inside an output directory."""
    dvc = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for stage, path in STAGE_FILES.values():
        declared = [
            next(iter(entry)) if isinstance(entry, dict) else entry
            for key in ("outs", "metrics")
            for entry in dvc[stage].get(key, [])
        ]
        assert any(path == out or path.startswith(f"{out}/") for out in declared), (
            f"{path} is not an output of stage {stage}"
        )


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


# -- the task switch: regression and binary runs ---------------------------------------------------

REGRESSION_PARAMS = {"data": {"target": "Price (€)"}, "package": {"model_name": None}}
REGRESSION_METRICS = {
    "task": "regression",
    "rows": 150,
    "mae": 12.5,
    "rmse": 20.0,
    "r2": 0.81,
    "mape": 0.07,
    "mape_rows": 150,
    "target_mean": 310.0,
    "target_std": 45.0,
}
DECISION = {"task": "regression", "reason": "target 'Price (€)' holds fractional numbers"}
REGRESSION_CHECKS = [
    {"name": "max_rmse", "value": 21.0, "threshold": 30.0, "passed": True},
    {"name": "baseline_rmse", "value": 21.0, "threshold": 44.0, "passed": True},
]
REGRESSION_VERDICT = {
    "passed": True,
    "metrics": {"rows": 149, "mae": 13.0, "rmse": 21.0, "r2": 0.8, "slice_min_r2": 0.5},
    "checks": REGRESSION_CHECKS,
    "champion": None,
}


def regression_outputs(**changes: Any) -> Outputs:
    files: dict[str, Any] = {
        "metrics": REGRESSION_METRICS,
        "verdict": REGRESSION_VERDICT,
        "validation": {"passed": True, "rows": 1000, "failures": [], "task": DECISION},
        "label": {
            "method": "column",
            "labelled": 990,
            "unlabelled": 10,
            "task": DECISION,
            "target_statistics": {"count": 990, "mean": 310.0, "std": 45.0, "min": 120, "max": 560},
        },
        "training": {
            "model": "random_forest",
            "search": "random",
            "scoring": "neg_root_mean_squared_error",
            "best_cv_score": -21.5,
            "best_params": {"max_depth": 8},
            "excluded": {
                "listing id": "identifier: every value distinct",
                "listed at": "date-time",
            },
        },
        "slices": {
            "column": "Région",
            "slices": {"Île-de-France": {"rows": 40, "mae": 15.0, "rmse": 25.0, "r2": 0.7}},
            "min_r2": 0.7,
        },
        "parity": {
            "task": "regression",
            "rows": 149,
            "max_abs_diff": 3e-5,
            "scale": 45.0,
            "max_relative_diff": 6.7e-7,
            "tolerance": 1e-4,
            "passed": True,
        },
    }
    files.update(changes)
    return Outputs(params=REGRESSION_PARAMS, files=files)


def test_a_regression_run_shows_its_metrics_decision_and_excluded_columns() -> None:
    report = build_report(inputs(regression_outputs()))
    assert (
        "Task: **regression** of `Price (€)`: target 'Price (€)' holds fractional numbers."
        in report
    )
    validation = report.split("Validation set")[1].split("Test set")[0]
    names = [line.split("`")[1] for line in validation.splitlines() if line.startswith("| `")]
    assert names == ["mae", "rmse", "r2", "mape", "rows"]  # the task's headline, in order
    assert "accuracy" not in report and "Per class" not in report
    assert "| `slice_min_r2`" not in report  # a check's input, not a test metric
    assert "target mean 310, standard deviation 45, from 120 to 560" in report
    assert "| `listing id` | identifier: every value distinct |" in report
    assert "| `listed at` | date-time |" in report
    assert "| Île-de-France | 40 | 15 | 25 | 0.7 |" in report
    assert "| slice | rows | MAE | RMSE | R² |" in report
    assert "largest prediction difference 3e-05, 6.7e-07 of the target's standard deviation 45" in (
        report
    )


def test_regression_deltas_are_better_when_errors_fall_and_r2_rises() -> None:
    base = regression_outputs()
    improved = {**REGRESSION_METRICS, "mae": 10.0, "rmse": 22.0, "r2": 0.85, "mape": None}
    bounds = {"mae": (-3.5, -1.5), "rmse": (0.5, 3.5), "r2": (0.01, 0.07)}
    intervals = Intervals(bounds, paired=False, rows=150, total_rows=150)
    report = build_report(inputs(regression_outputs(metrics=improved), base, intervals=intervals))
    assert "| `mae` | 10 | 12.5 | 🟢 -2.5 | -3.5 to -1.5 |" in report  # lower is better
    assert "| `rmse` | 22 | 20 | 🔴 +2 | +0.5 to +3.5 |" in report
    assert "| `r2` | 0.85 | 0.81 | 🟢 +0.04 | +0.01 to +0.07 |" in report
    assert "| `target_mean` | 310 | 310 | +0 |" in report  # data, not quality: no mark
    assert "unpaired: `main` evaluated other rows" in report
    assert "`mape` is not defined: no validation row has a non-zero target" in report
    assert "The task changed" not in report


def test_a_task_change_says_so_and_shows_no_deltas() -> None:
    """main trained a classifier (metrics from before the task switch: no "task" key); the
    branch a regressor on another target."""
    report = build_report(inputs(regression_outputs(), outputs()))
    assert (
        "⚠️ The task changed: `main` trained a classification model, this run a regression model."
        in report
    )
    assert "| `rmse` | 20 |" in report
    metrics = report.split("### Metrics")[1].split("### Params")[0]
    assert "🟢" not in metrics and "🔴" not in metrics and "| main |" not in metrics
    assert "macro_f1" not in metrics  # the base's metrics are not listed against this run's
    slices = report.split("### Slices")[1].split("###")[0]
    assert "change" not in slices
    assert "| `package.model_name` | `penguins` | `null` |" in report  # as params.yaml says it


def test_a_changed_target_in_the_same_task_shows_no_deltas() -> None:
    other = Outputs(params={"data": {"target": "Rent (€)"}}, files=regression_outputs().files)
    report = build_report(inputs(regression_outputs(), other))
    assert "The target changed from `Rent (€)` on `main` to `Price (€)`" in report
    assert "🟢" not in report.split("### Metrics")[1].split("### Params")[0]


BINARY_METRICS = {
    **METRICS,
    "task": "classification",
    "positive_class": "yes",
    "roc_auc": 0.91,
    "pr_auc": 0.62,
    "positive_f1": 0.58,
    "positive_precision": 0.5,
    "positive_recall": 0.69,
    "brier": 0.09,
    "decision_threshold": 0.31,
    "threshold_method": "max_f1",
}


def test_a_binary_run_leads_with_the_positive_class_and_its_threshold() -> None:
    base = outputs(metrics={**BINARY_METRICS, "brier": 0.08, "decision_threshold": 0.35})
    plots = (
        Plot("ROC curves (one class against the rest)", "../evaluate/plots/roc.png"),
        Plot("Confusion matrix", "../evaluate/plots/confusion_matrix.png"),
        Plot("Residuals against predicted", "../evaluate/plots/residuals.png"),  # stale
    )
    intervals = Intervals({"brier": (0.002, 0.018)}, paired=True, rows=52, total_rows=52)
    current = outputs(metrics=BINARY_METRICS)
    report = build_report(inputs(current, base, plots=plots, intervals=intervals))
    assert (
        "Positive class: `yes`; predicted from a probability of 0.31 (chosen on the validation "
        "set for the best F1 of the positive class)." in report
    )
    validation = report.split("Validation set")[1].split("Test set")[0]
    names = [line.split("`")[1] for line in validation.splitlines() if line.startswith("| `")]
    assert names[:3] == ["roc_auc", "pr_auc", "positive_f1"]
    assert "| `brier` | 0.09 | 0.08 | 🔴 +0.01 | +0.002 to +0.018 |" in report  # lower is better
    assert "| `decision_threshold` | 0.31 | 0.35 | -0.04 |  |" in report  # a setting, no mark
    assert "Task: **classification** (binary)" in report
    assert "ROC curves (one class against the rest): positive class `yes`" in report
    assert "residuals.png" not in report and "confusion_matrix.png" in report


def test_a_regression_run_shows_its_plots_and_not_a_stale_confusion_matrix() -> None:
    plots = (
        Plot("Predicted against actual", "../evaluate/plots/predicted_actual.png"),
        Plot("Residuals against predicted", "../evaluate/plots/residuals.png"),
        Plot("Confusion matrix", "../evaluate/plots/confusion_matrix.png"),
        Plot("Permutation importance", "../evaluate/plots/importance.png"),
    )
    report = build_report(inputs(regression_outputs(), plots=plots))
    shown = [line for line in report.splitlines() if line.startswith("![")]
    assert shown == [
        "![Predicted against actual](../evaluate/plots/predicted_actual.png)",
        "![Residuals against predicted](../evaluate/plots/residuals.png)",
        "![Permutation importance](../evaluate/plots/importance.png)",
    ]


def test_the_regression_plots_are_found_titled_and_kept_next_to_the_report(
    tmp_path: Path,
) -> None:
    plots_dir = tmp_path / "reports" / "evaluate" / "plots"
    plots_dir.mkdir(parents=True)
    for name in ("importance.png", "residuals.png", "predicted_actual.png"):
        (plots_dir / name).write_bytes(b"\x89PNG " + name.encode())
    report_plots = tmp_path / "reports" / "pr" / "plots"
    report_plots.mkdir(parents=True)
    (report_plots / "roc.png").write_bytes(b"an earlier run's")
    images = plot_images(evaluate_images(tmp_path), regression_outputs(), None, "main")
    found = write_plot_images(report_plots, images)
    assert [plot.title for plot in found] == [
        "Predicted against actual",
        "Residuals against predicted",
        "Permutation importance",
    ]
    assert found[0].link == "plots/predicted_actual.png" and not found[0].over_base
    assert sorted(path.name for path in report_plots.iterdir()) == [
        "importance.png",
        "predicted_actual.png",
        "residuals.png",
    ]
    assert (report_plots / "residuals.png").read_bytes() == b"\x89PNG residuals.png"


def test_the_regressors_champion_is_compared_on_rmse_in_the_right_direction() -> None:
    check = {
        "name": "champion_rmse",
        "value": 21.0,
        "threshold": 20.4,
        "passed": False,
        "champion_value": 20.0,
        "max_regression": 0.02,
    }
    verdict = {**REGRESSION_VERDICT, "passed": False, "checks": [*REGRESSION_CHECKS, check]}
    verdict["champion"] = {"model_version": "v1.2.0", "rmse": 20.0, "mae": 14.0, "r2": 0.82}
    report = build_report(inputs(regression_outputs(verdict=verdict)))
    assert "❌ **Rejected**: failed `champion_rmse`." in report
    champion = report.split("### Champion")[1].split("###")[0]
    rows = [line for line in champion.splitlines() if line.startswith("| `")]
    assert rows == [  # the test rows' changes: no interval, no mark; the rule decides below
        "| `rmse` | 21 | 20 | +1 |",
        "| `mae` | 13 | 14 | -1 |",
        "| `r2` | 0.8 | 0.82 | -0.02 |",
    ]
    assert "❌ The candidate's rmse may exceed the champion's by at most 2%." in champion


def test_a_performance_retrain_of_a_regressor_says_how_far_it_fell() -> None:
    """The payload as the sidecar sends it."""
    from mlops.monitor.detect import DriftReport, PredictionDrift
    from mlops.monitor.feedback import PerformanceReport
    from mlops.monitor.reference import Reference
    from mlops.monitor.retrain import retrain_payload

    validation = {"mae": 2.0, "rmse": 2.5}
    reference = Reference("prices", "v1.2.0", (), {}, validation=validation, task="regression")
    prediction = PredictionDrift(0.31, 0.2, True, {}, numeric=True, mean=14.0, reference_mean=11.0)
    performance = PerformanceReport(80, {"mae": 2.9, "rmse": 3.4}, validation, True)
    sent = retrain_payload(reference, DriftReport(1000, (), prediction), performance, None, 1.7e9)
    payload = retrain_trigger(json.dumps(sent))
    report = build_report(inputs(regression_outputs(), trigger=payload))
    assert "The predictions drifted: PSI 0.31." in report
    assert (
        "Performance on 80 labelled predictions: MAE 2.9 (validation 2), RMSE 3.4 "
        "(validation 2.5): ❌ degraded." in report
    )


def test_a_label_decision_that_overrides_the_validate_preview_is_pointed_out() -> None:
    preview = {"task": "regression", "reason": "target 'grade' holds 12 distinct whole numbers"}
    label = {"task": {"task": "classification", "reason": "data.task says classification"}}
    current = outputs(validation={"passed": True, "rows": 10, "failures": [], "task": preview})
    current.files["label"] = {**label, "classes": {"A": 5, "B": 5}}
    report = build_report(inputs(current))
    assert "Task: **classification** (multiclass): data.task says classification." in report
    assert "The validate stage's preview on the raw data said regression" in report


def test_make_report_on_a_branch_that_turns_a_classifier_into_a_regressor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real entry point on a real git + DVC repository: main holds a classification run
    (from before the task switch), the workspace a regression run of another target."""
    from conftest import run
    from mlops.report.__main__ import main

    def write(files: dict[str, Any]) -> None:
        for name, content in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content if isinstance(content, str) else json.dumps(content))

    params = {"data": {"source": "data/Flat Rents.csv", "target": "species"}, "package": {}}
    write({"params.yaml": yaml.safe_dump(params), "dvc.yaml": "stages: {}\n"})
    write({path: document for path, document in _files(outputs()).items()})
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    run(["git", "config", "user.email", "test@example.com"], tmp_path)
    run(["git", "config", "user.name", "test"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "a classifier"], tmp_path)

    params["data"]["target"] = "Price (€)"
    write({"params.yaml": yaml.safe_dump(params, allow_unicode=True)})
    write({path: document for path, document in _files(regression_outputs()).items()})
    write({f"{PLOTS_DIR}/predicted_actual.png": "png", f"{PLOTS_DIR}/confusion_matrix.png": "png"})
    monkeypatch.chdir(tmp_path)
    main(["--out", "reports/pr/report.md", "--summary", "reports/pr/summary.md"])

    report = (tmp_path / "reports/pr/report.md").read_text()
    assert report.startswith("## Model report: flat-rents\n")  # named after data.source
    assert "⚠️ The task changed: `main` trained a classification model" in report
    assert "Task: **regression** of `Price (€)`" in report
    assert "🟢" not in report.split("### Metrics")[1].split("### Params")[0]
    assert "![Predicted against actual](plots/predicted_actual.png)" in report
    assert (tmp_path / "reports/pr/plots/predicted_actual.png").read_text() == "png"
    assert "confusion_matrix" not in report
    assert "| `data.target` | `species` | `Price (€)` |" in report


def _files(revision: Outputs) -> dict[str, Any]:
    """The stage outputs of ``revision`` at the paths the stages write them."""
    paths = {name: path for name, (_, path) in STAGE_FILES.items()}
    return {paths[name]: document for name, document in revision.files.items() if document}


# -- this run against the base: intervals of the changes, plots over the base's ---------------

CLASSES = ("1", "Adélie", "Chinstrap [b]")  # sorted, as a model's; a class "1" stays text


def predictions_of(
    actual: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...] = CLASSES
) -> tuple[dict[str, Any], RowPredictions]:
    """metrics.json and predictions.csv as the evaluate stage writes them (its own functions),
    and the report's reading of that CSV."""
    from mlops.model.evaluate import prediction_table
    from mlops.model.metrics import Prediction, classification_metrics

    labels = pd.Series(np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)])
    truth = pd.Series(actual, dtype=object)
    metrics = {
        "task": "classification",
        **classification_metrics(truth, labels, probabilities, classes),
    }
    keys = pd.Series([f"{index:016x}" for index in range(len(actual))], dtype=object)
    table = prediction_table(keys, truth, Prediction(labels, probabilities), classes, seed=42)
    parsed = parse_predictions(table.to_csv(index=False), metrics, "predictions.csv")
    assert parsed is not None
    return metrics, parsed


def noisy_model(actual: np.ndarray, right: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities that put the actual class first on the rows ``right`` marks, else another."""
    rng = np.random.default_rng(seed)
    index = np.array([CLASSES.index(label) for label in actual])
    chosen = np.where(right, index, (index + rng.integers(1, len(CLASSES), len(index))) % 3)
    probabilities = rng.dirichlet(np.ones(len(CLASSES)), len(actual)) * 0.4
    probabilities[np.arange(len(actual)), chosen] += 0.6
    return probabilities


def runs(rows: int, base_right: float, fixed: int, seed: int = 0) -> tuple[Outputs, Outputs]:
    """The base right on a share of ``rows`` rows, this run right on ``fixed`` rows more."""
    rng = np.random.default_rng(seed)
    actual = np.asarray(CLASSES, dtype=object)[rng.integers(0, len(CLASSES), rows)]
    right = rng.uniform(size=rows) < base_right
    base_metrics, base_rows = predictions_of(actual, noisy_model(actual, right, seed))
    right[np.flatnonzero(~right)[:fixed]] = True
    metrics, rows_now = predictions_of(actual, noisy_model(actual, right, seed))
    current = Outputs(params=PARAMS, files={"metrics": metrics}, predictions=rows_now)
    return current, Outputs(params=PARAMS, files={"metrics": base_metrics}, predictions=base_rows)


def test_one_more_row_right_of_52_is_no_change_and_a_real_gain_is_better() -> None:
    current, base = runs(52, base_right=0.9, fixed=1)
    intervals = metric_intervals(current, base, "main")
    assert isinstance(intervals, Intervals) and intervals.paired
    low, high = intervals.bounds["accuracy"]
    # paired, the one row is left out of a resample about e^-1 of the time: a change of zero
    assert low <= 0 < high
    assert metric_intervals(current, base, "main") == intervals  # seeded: the same every time
    report = build_report(inputs(current, base, intervals=intervals))
    assert "| `accuracy` | 0.8846 | 0.8654 | ⚪ +0.01923 | +0 to +0.05769 |" in report

    current, base = runs(2000, base_right=0.7, fixed=200)
    intervals = metric_intervals(current, base, "main")
    assert isinstance(intervals, Intervals)
    assert intervals.bounds["accuracy"][0] > 0.07 and intervals.bounds["log_loss"][1] < 0
    report = build_report(inputs(current, base, intervals=intervals))
    assert re.search(r"\| `accuracy` \| [\d.]+ \| [\d.]+ \| 🟢 \+0\.1 \| \+0\.0[789]", report)
    assert re.search(r"\| `log_loss` \| [\d.]+ \| [\d.]+ \| 🟢 -", report)  # lower is better


def test_the_bootstrap_recomputes_the_metrics_as_the_evaluate_stage_computes_them() -> None:
    from mlops.model.metrics import binary_metrics, regression_metrics
    from mlops.model.threshold import Decision

    rng = np.random.default_rng(7)
    actual = np.asarray(CLASSES, dtype=object)[rng.integers(0, 3, 300)]
    probabilities = np.round(noisy_model(actual, rng.uniform(size=300) < 0.6, 7), 1)  # ties
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    metrics, rows = predictions_of(actual, probabilities)
    recomputed = metric_values(rows, np.ones((rows.rows, 1)))
    expected = {name: value for name, value in flatten(metrics).items() if name in recomputed}
    assert set(expected) >= {"accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc_ovr"}
    assert len([name for name in expected if name.startswith("per_class.")]) == 9
    for name, value in expected.items():
        assert recomputed[name][0] == pytest.approx(value, abs=1e-12), name

    truth = pd.Series(np.where(actual == "1", "yes", "no"), dtype=object)
    scores = probabilities[:, 2:3]
    binary = np.hstack([1 - scores, scores])
    labels = pd.Series(np.where(scores[:, 0] >= 0.3, "yes", "no"), dtype=object)
    expected = binary_metrics(truth, labels, binary, ("no", "yes"), "yes", Decision(0.3, "fixed"))
    rows = RowPredictions(
        truth.index.astype(str).to_numpy(),
        truth.to_numpy(),
        labels.to_numpy(),
        binary,
        ("no", "yes"),
        "yes",
        len(truth),
    )
    recomputed = metric_values(rows, np.ones((len(truth), 1)))
    for name in ("roc_auc", "pr_auc", "positive_f1", "positive_precision", "positive_recall"):
        assert recomputed[name][0] == pytest.approx(expected[name], abs=1e-12), name
    assert recomputed["brier"][0] == pytest.approx(expected["brier"], abs=1e-12)

    values = rng.normal(300, 40, 200)
    values[:7] = 0.0  # MAPE leaves these out
    guesses = values + rng.normal(0, 20, 200)
    expected = regression_metrics(pd.Series(values), pd.Series(guesses))
    rows = RowPredictions(np.arange(200).astype(str), values, guesses, None, (), None, 200)
    recomputed = metric_values(rows, np.ones((200, 1)))
    for name in ("mae", "rmse", "r2", "mape"):
        assert recomputed[name][0] == pytest.approx(expected[name], rel=1e-12), name


def test_other_rows_are_resampled_apart_and_give_a_wider_interval() -> None:
    current, base = runs(400, base_right=0.8, fixed=12)
    paired = metric_intervals(current, base, "main")
    assert base.predictions is not None
    shuffled = replace(base.predictions, keys=base.predictions.keys[::-1])  # other rows
    unpaired = metric_intervals(current, replace(base, predictions=shuffled), "main")
    assert isinstance(paired, Intervals) and isinstance(unpaired, Intervals)
    assert paired.paired and not unpaired.paired
    width = {name: high - low for name, (low, high) in paired.bounds.items()}
    wider = {name: high - low for name, (low, high) in unpaired.bounds.items()}
    assert wider["accuracy"] > 1.5 * width["accuracy"]
    assert paired.bounds["accuracy"][0] > 0 > unpaired.bounds["accuracy"][0]


def test_a_sample_of_a_large_split_gives_the_interval_of_the_whole_split() -> None:
    """predictions.csv holds a sample past 10,000 rows: the spread of its resamples, scaled by
    sqrt(sample / split), matches the whole split's bootstrap."""
    rows = 20_000
    rng = np.random.default_rng(3)
    actual = np.asarray(CLASSES, dtype=object)[rng.integers(0, 3, rows)]
    right = rng.uniform(size=rows) < 0.75
    base_probabilities = noisy_model(actual, right, 1)
    right[rng.uniform(size=rows) < 0.05] = True
    probabilities = noisy_model(actual, right, 2)
    keys = np.arange(rows).astype(str)

    def side(chosen: np.ndarray, scores: np.ndarray) -> RowPredictions:
        labels = np.asarray(CLASSES, dtype=object)[scores.argmax(axis=1)]
        return RowPredictions(
            keys[chosen], actual[chosen], labels[chosen], scores[chosen], CLASSES, None, rows
        )

    everything, sample = np.arange(rows), np.sort(rng.choice(rows, 4000, replace=False))
    whole = [side(everything, probabilities), side(everything, base_probabilities)]
    change = {
        name: float(metric_values(whole[0], np.ones((rows, 1)))[name][0])
        - float(metric_values(whole[1], np.ones((rows, 1)))[name][0])
        for name in ("accuracy", "macro_f1", "log_loss", "roc_auc_ovr")
    }
    exact = change_intervals(*whole, change, resamples=300)
    sampled = change_intervals(
        side(sample, probabilities), side(sample, base_probabilities), change, resamples=300
    )
    assert sampled.rows == 4000 and sampled.total_rows == rows and sampled.paired
    for name, (low, high) in exact.bounds.items():
        sampled_low, sampled_high = sampled.bounds[name]
        assert sampled_high - sampled_low == pytest.approx(high - low, rel=0.25), name
        assert sampled_low < change[name] < sampled_high


def test_predictions_csv_is_read_as_the_evaluate_stage_writes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops.model import evaluate

    monkeypatch.setattr(evaluate, "PREDICTION_ROWS", 10)
    rng = np.random.default_rng(0)
    actual = np.asarray(("1", "NA"), dtype=object)[rng.integers(0, 2, 25)]
    probabilities = rng.dirichlet([1, 1], 25)
    metrics, rows = predictions_of(actual, probabilities, ("1", "NA"))
    assert rows.rows == 10 and rows.total_rows == 25 == metrics["rows"]  # a seeded sample
    assert set(rows.actual) <= {"NA", "1"} and rows.classes == ("1", "NA")
    assert evaluate.PROBABILITY_PREFIX == PROBABILITY_PREFIX
    with pytest.raises(StageError, match=r"predictions.csv on main: no column \['predicted'\]"):
        parse_predictions("row,actual\nab,1\n", metrics, "predictions.csv on main")
    regression = {"task": "regression", "rows": 2}
    with pytest.raises(StageError, match=r"row 3 holds 'n/a', not a number"):
        parse_predictions("row,actual,predicted\na,1.5,2\nb,n/a,3\n", regression, "p.csv")


def curve_tables(
    actual: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...] = CLASSES
) -> dict[str, pd.DataFrame]:
    from mlops.model.curves import calibration_curves, precision_recall_curves, roc_curves

    truth = pd.Series(actual, dtype=object)
    labels = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    importance = pd.DataFrame(
        {"feature": ["bill (mm)", "Größe"], "importance": [0.3, 0.1], "std": [0.02, 0.01]}
    )
    return {
        "confusion": pd.DataFrame({"actual": actual, "predicted": labels}),
        "roc": roc_curves(truth, probabilities, classes),
        "precision_recall": precision_recall_curves(truth, probabilities, classes),
        "calibration": calibration_curves(truth, probabilities, classes),
        "importance": importance,
    }


def test_the_plots_are_drawn_over_the_base_and_the_confusion_matrix_shows_its_change() -> None:
    current, base = runs(60, base_right=0.6, fixed=6)
    assert current.predictions is not None and base.predictions is not None
    now = replace(
        current, tables=curve_tables(current.predictions.actual, current.predictions.probabilities)
    )
    before = replace(
        base, tables=curve_tables(base.predictions.actual, base.predictions.probabilities)
    )
    evaluate_pngs = {
        name: b"this run's own " + name.encode()
        for name in (
            "roc.png",
            "importance.png",
            "calibration.png",
            "confusion_matrix.png",
            "precision_recall.png",
        )
    }
    images = plot_images(evaluate_pngs, now, before, "main")
    assert [(image.name, image.over_base) for image in images] == [
        ("confusion_matrix.png", False),  # this run's own matrix, then its change
        ("confusion_change.png", True),
        ("roc.png", True),
        ("precision_recall.png", True),
        ("calibration.png", True),
        ("importance.png", True),
    ]
    assert images[0].image == b"this run's own confusion_matrix.png"
    assert all(image.image.startswith(b"\x89PNG\r\n") for image in images[1:])
    alone = plot_images(evaluate_pngs, now, None, "main")  # no comparable base: this run only
    assert [image.image for image in alone] == [evaluate_pngs[image.name] for image in alone]

    figure = curves_over_base("roc", now.tables["roc"], before.tables["roc"], "main", False)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    for name in CLASSES:
        assert lines[f"{name} (main)"].get_linestyle() == "--"
        assert lines[f"{name} (this run)"].get_linestyle() == "-"
        assert lines[f"{name} (main)"].get_color() == lines[f"{name} (this run)"].get_color()

    change = confusion_change(now.tables["confusion"], before.tables["confusion"])
    assert change.unit == "rows" and change.classes == sorted(CLASSES)
    diagonal = np.trace(change.change)
    assert diagonal == 6 and change.change.sum() == 0  # six more rows right, none lost
    fewer = before.tables["confusion"].iloc[:30]
    assert confusion_change(now.tables["confusion"], fewer).unit == "points"


def test_a_regression_is_drawn_over_the_base() -> None:
    rng = np.random.default_rng(0)
    actual = rng.normal(300, 40, 80)

    def regression(noise: float) -> Outputs:
        predicted = actual + rng.normal(0, noise, 80)
        tables = {
            "predicted_actual": pd.DataFrame({"actual": actual, "predicted": predicted}),
            "residuals": pd.DataFrame({"predicted": predicted, "residual": actual - predicted}),
        }
        return replace(regression_outputs(), tables=tables)

    now, before = regression(10), regression(30)
    pngs = {"predicted_actual.png": b"own", "residuals.png": b"own"}
    images = plot_images(pngs, now, before, "main")
    assert [(image.name, image.over_base) for image in images] == [
        ("predicted_actual.png", True),
        ("residuals.png", True),
    ]
    figure = points_over_base(
        "residuals", now.tables["residuals"], before.tables["residuals"], "main"
    )
    drawn = {
        collection.get_label(): len(collection.get_offsets())
        for collection in figure.axes[0].collections
    }
    assert drawn == {"main": 80, "this run": 80}


def test_make_report_against_a_base_draws_over_it_and_publishes_no_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real entry point on a real git repository, the evaluate stage run for real on main
    (a random forest) and on the branch (a linear model): the images sit next to the report,
    linked relatively; the text-only summary links the CI run that keeps them, and neither
    links an image anywhere else."""
    from conftest import run
    from mlops.model.evaluate import evaluate_model, write_evaluation
    from mlops.params import EvaluateParams
    from mlops.report.__main__ import main
    from model_fixtures import BINARY_TARGET, binary_table, split, trained_on

    train, validation = split(binary_table(300), target=BINARY_TARGET)
    params = {"data": {"source": "data/churn.csv", "target": BINARY_TARGET}, "package": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")

    def evaluated(model: str) -> None:
        trained = trained_on(train, BINARY_TARGET, model, exclude=["customer id", "signup date"])
        evaluation = evaluate_model(trained, validation, EvaluateParams(permutation_repeats=2))
        write_evaluation(evaluation, tmp_path / "reports" / "evaluate")

    evaluated("random_forest")
    for command in (["git", "init", "-q", "-b", "main"], ["dvc", "init", "-q"]):
        run(command, tmp_path)
    run(["git", "config", "user.email", "test@example.com"], tmp_path)
    run(["git", "config", "user.name", "test"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "a random forest"], tmp_path)
    evaluated("linear")
    monkeypatch.chdir(tmp_path)
    ci = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "owner/churn"}
    for name, value in {**ci, "GITHUB_RUN_ID": "4242"}.items():
        monkeypatch.setenv(name, value)
    main(["--out", "reports/pr/report.md", "--summary", "reports/pr/summary.md"])

    report = (tmp_path / "reports/pr/report.md").read_text()
    summary = (tmp_path / "reports/pr/summary.md").read_text()
    metrics = report.split("### Metrics")[1].split("Test set")[0]
    assert "| 95% interval of the change |" in metrics and "paired: both runs" in report
    assert re.search(
        r"\| `roc_auc` \| [\d.]+ \| [\d.]+ \| (🟢|🔴|⚪) [+-][\d.e-]+ \| [+-]", metrics
    )
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert {Path(link).name for link in links} >= {
        "confusion_matrix.png",
        "confusion_change.png",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
        "importance.png",
    }
    for link in links:  # relative, inside the report's folder, real images
        assert not re.match(r"^[a-z]+:|^/|\.\.", link), link
        assert (tmp_path / "reports/pr" / link).read_bytes().startswith(b"\x89PNG")
    assert "Over `main`: its curves dashed" in report
    assert "![" not in summary and "ROC curves" in summary
    run_page = "https://github.com/owner/churn/actions/runs/4242"
    assert f"[the CI run]({run_page})" in summary
    for text in (report, summary):
        assert set(re.findall(r"https?://[^\s)]+", text)) <= {run_page}
        assert "cml.dev" not in text


def test_a_binary_curve_drawn_over_the_base_keeps_its_key() -> None:
    plots = (Plot("ROC curves (one class against the rest)", "plots/roc.png", over_base=True),)
    base = outputs(metrics=BINARY_METRICS)
    report = build_report(inputs(outputs(metrics=BINARY_METRICS), base, plots=plots))
    assert "**ROC curves (one class against the rest): positive class `yes`**" in report
    assert "Over `main`: its curves dashed, its points and bars orange" in report
    alone = build_report(
        inputs(outputs(metrics=BINARY_METRICS), base, plots=(replace(plots[0], over_base=False),))
    )
    assert "Over `main`" not in alone


def test_the_harvested_rows_their_share_and_what_was_left_out_are_reported() -> None:
    harvest = {
        "enabled": True, "source": "s3://bucket/inference", "labels": 480,
        "labels_without_prediction": 30, "duplicate_labels": 2, "refused": 1, "rows": 449,
        "model_versions": {"7ad19f3e31ba": 449},
        "failures": [{"column": "body_mass_g", "check": "in_range(900.0, 8100.0)", "count": 1,
                      "failure_cases": [9500.0], "rows": [12], "hint": "values outside the range"}],
    }  # fmt: skip
    validation = {
        "passed": True,
        "rows": 793,
        "failures": [],
        "harvested": {"rows": 449, "share": 449 / 793},
    }
    report = build_report(inputs(outputs(validation=validation, harvest=harvest)))
    assert "Harvested: **449 rows** of labelled inference data (56.6% of the raw table)" in report
    assert "from `s3://bucket/inference`, scored by model version(s) `7ad19f3e31ba` 449" in report
    assert "480 labels read, 30 without a shipped prediction, 2 superseded" in report
    assert "Harvested rows the schema refused" in report and "9500.0" in report
    off = build_report(inputs(outputs(harvest={**harvest, "enabled": False})))
    assert "Harvested" not in off
