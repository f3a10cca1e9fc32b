"""The data of a classifier's curve plots: ROC, precision-recall and calibration.

One table per plot, one curve per class (one-vs-rest), for the classes with both positive and
negative rows among those scored; DVC draws the tables (``dvc plots``), the evaluate stage draws
the same as PNG images. With two classes the stage asks for the positive class's curves only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from mlops.model.metrics import classes_with_both_outcomes

CALIBRATION_BINS = 10


def roc_curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    parts = []
    for index, label, truth in classes_with_both_outcomes(actual, classes, only):
        fpr, tpr, _ = roc_curve(truth, probabilities[:, index])
        parts.append(pd.DataFrame({"class": label, "fpr": fpr, "tpr": tpr}))
    return _concat(parts, ["class", "fpr", "tpr"])


def precision_recall_curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    parts = []
    for index, label, truth in classes_with_both_outcomes(actual, classes, only):
        precision, recall, _ = precision_recall_curve(truth, probabilities[:, index])
        parts.append(pd.DataFrame({"class": label, "recall": recall, "precision": precision}))
    return _concat(parts, ["class", "recall", "precision"])


def calibration_curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per class (one-vs-rest): observed share of the class per bin of predicted probability."""
    parts = []
    for index, label, truth in classes_with_both_outcomes(actual, classes, only):
        observed, predicted = calibration_curve(
            truth, probabilities[:, index], n_bins=CALIBRATION_BINS
        )
        parts.append(
            pd.DataFrame(
                {"class": label, "mean_predicted": predicted, "fraction_positive": observed}
            )
        )
    return _concat(parts, ["class", "mean_predicted", "fraction_positive"])


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
