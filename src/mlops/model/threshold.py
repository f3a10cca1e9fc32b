"""The decision threshold of a binary classifier: chosen on the validation split, recorded in
metrics.json, read back by the acceptance test and the package.

``evaluate.decision_threshold`` is null (the model's own label: the more probable class),
``max_f1`` (chosen here) or a probability. The rule that applies a threshold to probabilities is
``mlops.core.decision.apply_threshold``, which the scorer shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.model.features import TrainedModel
from mlops.stage import StageError

DEFAULT_THRESHOLD = 0.5  # what a binary model's own label amounts to


@dataclass(frozen=True)
class Decision:
    """How a binary classifier turns the positive class's probability into a label."""

    threshold: float | None  # None: the model's own label (the more probable class)
    method: str | None  # None, "max_f1" (chosen on validation) or "fixed" (given in params)

    @property
    def recorded(self) -> float:
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


def choose_decision(
    setting: float | str | None,
    model: TrainedModel,
    actual: pd.Series,
    probabilities: np.ndarray,
) -> Decision:
    """``evaluate.decision_threshold`` for a binary model: null, ``max_f1`` or a probability."""
    if setting is None:
        return Decision(None, None)
    if setting == "max_f1":
        assert model.positive_class is not None
        positive = np.asarray(actual == model.positive_class)
        scores = probabilities[:, model.classes.index(model.positive_class)]
        return Decision(max_f1_threshold(positive, scores, model.positive_class), "max_f1")
    if isinstance(setting, str) or not 0.0 < setting < 1.0:
        raise StageError(
            f"evaluate.decision_threshold: {setting!r} must be null, max_f1 or a probability "
            "between 0 and 1 (exclusive)"
        )
    return Decision(float(setting), "fixed")


def max_f1_threshold(positive: np.ndarray, scores: np.ndarray, positive_class: str) -> float:
    """The threshold giving the best F1 of the positive class on these rows (on a tie, the
    highest), set halfway between the probabilities either side of the cut, so that a
    probability that rounds differently in ONNX (float32) is not flipped by it."""
    if not positive.any():
        raise StageError(
            f"evaluate.decision_threshold: max_f1 needs rows of the positive class "
            f"{positive_class!r} in the validation split; it has none"
        )
    distinct = np.unique(scores.astype(np.float32).astype(np.float64))[::-1]  # high to low
    order = np.argsort(-scores, kind="stable")
    ranked_scores = scores.astype(np.float32).astype(np.float64)[order]
    # rows predicted positive and true positives when the cut is at each distinct score
    predicted = np.searchsorted(-ranked_scores, -distinct, side="right")
    hits = np.cumsum(positive[order])[predicted - 1]
    f1 = 2 * hits / (predicted + positive.sum())
    best = int(np.argmax(f1))
    below = distinct[best + 1] if best + 1 < len(distinct) else 0.0
    return float((distinct[best] + below) / 2)


def recorded_decision(metrics: Mapping[str, Any], model: TrainedModel, path: Path) -> Decision:
    """The decision threshold evaluate recorded in ``metrics`` (metrics.json) for ``model``:
    what the acceptance test and the package apply to its probabilities."""
    if metrics.get("task") != model.task:
        raise StageError(
            f"{path}: written for a {metrics.get('task')} model, but the model is for "
            f"{model.task}; run the evaluate stage again"
        )
    method = metrics.get("threshold_method")
    if method is None:
        return Decision(None, None)
    threshold = metrics.get("decision_threshold")
    if (
        model.positive_class is None
        or metrics.get("positive_class") != model.positive_class
        or isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0.0 < threshold < 1.0
    ):
        raise StageError(
            f"{path}: decision_threshold {threshold!r} ({method}) for positive class "
            f"{metrics.get('positive_class')!r} does not fit the model (classes "
            f"{list(model.classes)}, positive class {model.positive_class!r}); run the evaluate "
            "stage again"
        )
    return Decision(float(threshold), str(method))
