"""Classification or regression: decided once from the target, then carried by the data and model.

``data.task: auto`` decides from the target column (``decide_task``): strings, booleans and a few
integer codes are classes; other numbers (floats, wide integers, also when a CSV or an annotation
tool wrote them as text) are a quantity to predict. The
label stage decides on the labelled table and stores the target typed by the decision (class
labels as strings, a regression target as float64), so every later stage reads the task from the
target's type (``task_of``) and no stage decides again on a subset of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mlops.core.artifacts import Task

# An integer target with at most this many distinct values is a set of class codes (ratings 1-5,
# a 0/1 flag); with more it is a count or an amount (age, price in cents).
MAX_INTEGER_CLASSES = 10
# A text target is read as numbers when at least this share of its values are numbers (a price
# column with a stray "n/a"); a few codes among labels ("1", "2", "unknown") stay classes.
MIN_NUMBERS_IN_TEXT = 0.9
TEXT_KINDS = ("string", "mixed", "mixed-integer", "mixed-integer-float", "integer", "floating")
DeclaredTask = Literal["auto", "classification", "regression"]
PrimaryMetricName = Literal["macro_f1", "roc_auc", "rmse"]


@dataclass(frozen=True)
class TaskDecision:
    task: Task
    reason: str  # one sentence for the reports: what decided it

    def as_dict(self) -> dict[str, str]:
        return {"task": self.task, "reason": self.reason}


def decide_task(target: pd.Series, declared: DeclaredTask = "auto") -> TaskDecision:
    """The task for predicting ``target`` (its missing values ignored)."""
    name = target.name
    if declared != "auto":
        return TaskDecision(declared, f"data.task says {declared}")
    present = target.dropna()
    if present.empty:
        return TaskDecision(
            "classification", f"target '{name}' has no values to decide from (set data.task)"
        )
    if pd.api.types.is_bool_dtype(present) or _infer(present) == "boolean":
        return TaskDecision("classification", f"target '{name}' holds true/false values")
    if pd.api.types.is_numeric_dtype(present):
        return _decide_numbers(name, present.to_numpy(dtype=np.float64), "")
    return _decide_text(name, present)


def _decide_numbers(name: object, values: np.ndarray, written: str) -> TaskDecision:
    if not np.all(np.mod(values, 1) == 0):
        return TaskDecision("regression", f"target '{name}' holds fractional numbers{written}")
    distinct = len(pd.unique(values))
    if distinct <= MAX_INTEGER_CLASSES:
        return TaskDecision(
            "classification",
            f"target '{name}' holds {distinct} distinct whole numbers{written} "
            f"(at most {MAX_INTEGER_CLASSES}: class codes)",
        )
    return TaskDecision(
        "regression",
        f"target '{name}' holds {distinct} distinct whole numbers{written} "
        f"(more than {MAX_INTEGER_CLASSES}: a quantity)",
    )


def _decide_text(name: object, present: pd.Series) -> TaskDecision:
    """Text is classes, unless it is (nearly) all numbers that would be a regression target as
    numbers: then the few that are not numbers are errors the label stage names, not classes."""
    numbers = numbers_in_text(present)
    parsed = numbers.notna()
    if parsed.mean() >= MIN_NUMBERS_IN_TEXT:
        decision = _decide_numbers(name, numbers[parsed].to_numpy(np.float64), " written as text")
        if decision.task == "regression":
            unparsed = present[~parsed]
            if unparsed.empty:
                return decision
            examples = ", ".join(repr(value) for value in unparsed.unique()[:3])
            return TaskDecision(
                "regression",
                f"{decision.reason}; {len(unparsed)} value(s) are not numbers (e.g. {examples})",
            )
    return TaskDecision(
        "classification", f"target '{name}' holds text ({present.nunique()} distinct values)"
    )


def numbers_in_text(values: pd.Series) -> pd.Series:
    """``values`` as float64 where they read as numbers (surrounding spaces allowed), else NaN."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.astype(np.float64)
    kind = _infer(values)
    if kind not in TEXT_KINDS:
        return pd.Series(np.nan, index=values.index, dtype=np.float64)
    stripped = values.map(lambda value: value.strip() if isinstance(value, str) else value)
    return pd.to_numeric(stripped, errors="coerce").astype(np.float64)


def _infer(values: pd.Series) -> str:
    return str(pd.api.types.infer_dtype(values, skipna=True))


def task_preview(frame: pd.DataFrame, target: str, declared: DeclaredTask) -> dict[str, str | None]:
    """``{"task", "reason"}`` as validate and ``make schema`` report it on the raw table: the
    decision the label stage will take, or, when the label stage makes the target (from
    ``label.column``, annotations or rules), a note that it decides then (``task`` None)."""
    if declared == "auto" and target not in frame.columns:
        return {
            "task": None,
            "reason": f"data.target '{target}' is not a column of the raw table: the label stage "
            "makes it (label.column, annotations or rules) and decides the task on the labels",
        }
    values = frame[target] if target in frame.columns else pd.Series(dtype=object, name=target)
    decision = decide_task(values, declared)
    return {"task": decision.task, "reason": decision.reason}


def task_of(target: pd.Series) -> Task:
    """The task a labelled table's target was stored for: float64 for regression, else classes."""
    return "regression" if pd.api.types.is_float_dtype(target) else "classification"


def target_statistics(target: pd.Series) -> dict[str, float]:
    """``count``, ``mean``, ``std`` (sample), ``min`` and ``max`` of a regression target's
    present values: the label and split summaries' account of it, in place of class counts."""
    values = target.dropna().to_numpy(dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
    }


@dataclass(frozen=True)
class PrimaryMetric:
    """The metric by which a model is tuned by default, and compared with the champion."""

    name: PrimaryMetricName  # the key in reports/evaluate/metrics.json
    higher_is_better: bool
    scoring: str  # the scikit-learn scorer ``train.scoring: auto`` tunes with


def primary_metric(task: Task, class_count: int) -> PrimaryMetric:
    if task == "regression":
        return PrimaryMetric("rmse", False, "neg_root_mean_squared_error")
    if class_count == 2:
        return PrimaryMetric("roc_auc", True, "roc_auc")
    return PrimaryMetric("macro_f1", True, "f1_macro")
