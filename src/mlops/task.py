"""Classification or regression: decided once from the target, then carried by the data and model.

``data.task: auto`` decides from the target column (``decide_task``): strings, booleans and a few
integer codes are classes; other numbers (floats, wide integers) are a quantity to predict. The
label stage decides on the labelled table and stores the target typed by the decision (class
labels as strings, a regression target as float64), so every later stage reads the task from the
target's type (``task_of``) and no stage decides again on a subset of the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mlops.artifacts import Task

# An integer target with at most this many distinct values is a set of class codes (ratings 1-5,
# a 0/1 flag); with more it is a count or an amount (age, price in cents).
MAX_INTEGER_CLASSES = 10
DeclaredTask = Literal["auto", "classification", "regression"]


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
    if pd.api.types.is_bool_dtype(present) or (len(present) and present.map(type).eq(bool).all()):
        return TaskDecision("classification", f"target '{name}' holds true/false values")
    if not pd.api.types.is_numeric_dtype(present):
        distinct = present.nunique()
        return TaskDecision(
            "classification", f"target '{name}' holds text ({distinct} distinct values)"
        )
    values = present.to_numpy(dtype=np.float64)
    distinct = len(np.unique(values))
    if np.all(np.mod(values, 1) == 0):
        if distinct <= MAX_INTEGER_CLASSES:
            return TaskDecision(
                "classification",
                f"target '{name}' holds {distinct} distinct whole numbers "
                f"(at most {MAX_INTEGER_CLASSES}: class codes)",
            )
        return TaskDecision(
            "regression",
            f"target '{name}' holds {distinct} distinct whole numbers "
            f"(more than {MAX_INTEGER_CLASSES}: a quantity)",
        )
    return TaskDecision("regression", f"target '{name}' holds fractional numbers")


def task_of(target: pd.Series) -> Task:
    """The task a labelled table's target was stored for: float64 for regression, else classes."""
    return "regression" if pd.api.types.is_float_dtype(target) else "classification"


@dataclass(frozen=True)
class PrimaryMetric:
    """The metric by which a model is tuned by default, and compared with the champion."""

    name: str  # the key in reports/evaluate/metrics.json
    higher_is_better: bool
    scoring: str  # the scikit-learn scorer ``train.scoring: auto`` tunes with


def primary_metric(task: Task, class_count: int) -> PrimaryMetric:
    if task == "regression":
        return PrimaryMetric("rmse", False, "neg_root_mean_squared_error")
    if class_count == 2:
        return PrimaryMetric("roc_auc", True, "roc_auc")
    return PrimaryMetric("macro_f1", True, "f1_macro")
