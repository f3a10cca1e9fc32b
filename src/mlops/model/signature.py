"""The signature of a packaged model (``signature.json``): what a client must send, and what
the scorer checks a request against.

Features in input order, each with its name as in the data, its ONNX input name, its type and
what training saw (the categories of a string, the range of a number); the task, the classes, the
target, and a binary classifier's positive class and decision threshold. The scorer, the batch
scorer, the sidecar and the acceptance test's champion scoring read it
(``mlops.core.artifacts.Signature``).
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from mlops.core import artifacts
from mlops.model.features import TrainedModel


def build_signature(
    model: TrainedModel, train: pd.DataFrame, model_name: str, threshold: float | None
) -> artifacts.Signature:
    """Features with their type, ONNX input name, the categories and numeric ranges seen in
    training; the task, the classes, the positive class and the decision threshold.

    Every feature is nullable: the pipeline imputes a missing number and treats a missing category
    as a category of its own (``MISSING_CATEGORY``), in training and serving alike.
    """
    input_names = artifacts.input_names(model.spec.features)
    features: list[artifacts.Feature] = []
    for name in model.spec.features:
        column = train[name]
        if name in model.spec.numeric:
            values = column.astype("float64").dropna()
            low = float(values.min()) if len(values) else None
            high = float(values.max()) if len(values) else None
            features.append(_feature(name, input_names[name], "number", None, low, high))
        else:
            categories = sorted(column.dropna().map(str).unique())
            features.append(_feature(name, input_names[name], "string", categories, None, None))
    return {
        "model_name": model_name,
        "target": model.target,
        "task": model.task,
        "features": features,
        "classes": list(model.classes),
        "positive_class": model.positive_class,
        "threshold": threshold,
    }


def _feature(
    name: str,
    input_name: str,
    kind: Literal["number", "string"],
    categories: list[str] | None,
    low: float | None,
    high: float | None,
) -> artifacts.Feature:
    return {
        "name": name,
        "input_name": input_name,
        "type": kind,
        "nullable": True,
        "categories": categories,
        "min": low,
        "max": high,
    }
