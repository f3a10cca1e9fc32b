"""The data of a classifier's curve plots: ROC, precision-recall and calibration.

One table per plot, one curve per class (one-vs-rest), for the classes with both positive and
negative rows among those scored; DVC draws the tables (``dvc plots``), the evaluate stage draws
the same as PNG images. With two classes the stage asks for the positive class's curves only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from mlops.model.metrics import classes_with_both_outcomes

CALIBRATION_BINS = 10


# A curve of one class: (x, y) from its 0/1 truth and its predicted probability.
Curve = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def roc_curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per class (one-vs-rest): false positive rate against true positive rate."""
    return _curves(actual, probabilities, classes, only, _roc, ("fpr", "tpr"))


def precision_recall_curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per class (one-vs-rest): recall against precision."""
    return _curves(actual, probabilities, classes, only, _precision_recall, ("recall", "precision"))


def calibration_curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per class (one-vs-rest): observed share of the class per bin of predicted probability."""
    columns = ("mean_predicted", "fraction_positive")
    return _curves(actual, probabilities, classes, only, _calibration, columns)


def _curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None,
    curve: Curve,
    columns: tuple[str, str],
) -> pd.DataFrame:
    """One ``curve`` per class (of ``only``, if given) with both outcomes among the rows, as the
    columns ``class`` and ``columns``; no rows when no class has both."""
    parts = []
    for index, label, truth in classes_with_both_outcomes(actual, classes, only):
        x, y = curve(truth, probabilities[:, index])
        parts.append(pd.DataFrame({"class": label, columns[0]: x, columns[1]: y}))
    if not parts:
        return pd.DataFrame(columns=["class", *columns])
    return pd.concat(parts, ignore_index=True)


def _roc(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(truth, scores)
    return fpr, tpr


def _precision_recall(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision, recall, _ = precision_recall_curve(truth, scores)
    return recall, precision


def _calibration(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    observed, predicted = calibration_curve(truth, scores, n_bins=CALIBRATION_BINS)
    return predicted, observed
