"""What the report shows for each kind of model, and whether this run and the base compare.

A run's kind follows its evaluate stage's metrics: a regression, a binary classification (the
metrics name a positive class) or a multiclass one. A base from before the task switch has no
``task`` in its metrics and was a classification. Metrics of a run and its base are compared only
when both predict the same target in the same task: otherwise a delta means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlops.report.inputs import Document, Outputs

Kind = Literal["regression", "binary", "multiclass"]

# The metrics in the headline table, in order; the others go in a collapsed table.
HEADLINE: dict[Kind, tuple[str, ...]] = {
    "regression": ("mae", "rmse", "r2", "mape", "rows"),
    "binary": (
        "roc_auc",
        "pr_auc",
        "positive_f1",
        "positive_precision",
        "positive_recall",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "brier",
        "log_loss",
        "decision_threshold",
        "rows",
    ),
    "multiclass": ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "log_loss", "rows"),
}
# Per slice: the metrics shown, and the one compared with the base.
SLICE_METRICS: dict[Kind, tuple[str, ...]] = {
    "regression": ("mae", "rmse", "r2"),
    "binary": ("accuracy", "macro_f1"),
    "multiclass": ("accuracy", "macro_f1"),
}
SLICE_COMPARED: dict[Kind, str] = {
    "regression": "r2",
    "binary": "macro_f1",
    "multiclass": "macro_f1",
}
METRIC_NAMES = {
    "mae": "MAE",
    "rmse": "RMSE",
    "r2": "R²",
    "mape": "MAPE",
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
}
# Plots only one task produces: a stale one of the other task is not shown.
TASK_PLOTS = {
    "regression": frozenset({"predicted_actual.png", "residuals.png"}),
    "classification": frozenset(
        {
            "confusion_matrix.png",
            "confusion_change.png",
            "roc.png",
            "precision_recall.png",
            "calibration.png",
        }
    ),
}
# Binary classification: these curves are of the positive class.
POSITIVE_CLASS_PLOTS = frozenset({"roc.png", "precision_recall.png", "calibration.png"})


@dataclass(frozen=True)
class RunTask:
    """The task of one revision's run, and why (the label stage's decision, if recorded)."""

    task: str  # classification | regression
    kind: Kind
    target: str | None  # data.target in that revision's params
    reason: str | None


def run_task(outputs: Outputs) -> RunTask:
    metrics = outputs.get("metrics") or {}
    decision = _decision(outputs.get("label")) or _decision(outputs.get("validation")) or {}
    task = str(metrics.get("task") or decision.get("task") or "classification")
    kind: Kind = (
        "regression"
        if task == "regression"
        else "binary"
        if metrics.get("positive_class") is not None
        else "multiclass"
    )
    target = ((outputs.params or {}).get("data") or {}).get("target")
    return RunTask(task, kind, None if target is None else str(target), decision.get("reason"))


def _decision(report: Document | None) -> Document | None:
    """The ``{"task", "reason"}`` a validate or label report records, when it decided one."""
    decision = (report or {}).get("task")
    return decision if isinstance(decision, dict) and decision.get("task") else None


def incomparable(current: RunTask, base: RunTask, base_name: str) -> str | None:
    """Why this run's metrics cannot be compared with the base's, or None when they can."""
    if current.task != base.task:
        return (
            f"The task changed: `{base_name}` trained a {base.task} model, this run a "
            f"{current.task} model. Their metrics measure different things: no deltas are shown."
        )
    if current.target is not None and base.target is not None and current.target != base.target:
        return (
            f"The target changed from `{base.target}` on `{base_name}` to `{current.target}`: "
            "the models predict different things, so no deltas are shown."
        )
    return None


def comparable(current: Outputs, base: Outputs) -> bool:
    """Whether this run's metrics and plots are shown against the base's: it has metrics, and
    they measure the same thing (same task, same target)."""
    return base.has_metrics and incomparable(run_task(current), run_task(base), "") is None
