"""The metrics of a model's predictions, for the evaluate stage and the acceptance test alike.

Evaluate scores the validation split with them, accept the test split, the baseline and the
champion: one implementation, so a metric means the same in ``metrics.json``, in the verdict and
in the champion comparison. Per task: accuracy, balanced accuracy, macro F1, ROC AUC, log loss and
per-class scores (with two classes the positive class's scores at the decision threshold), or
MAE, RMSE, R², MAPE; and the same per slice of ``evaluate.slice_column``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)

from mlops.core.artifacts import MISSING_CATEGORY, Task
from mlops.core.decision import apply_threshold
from mlops.model.features import TrainedModel
from mlops.model.summaries import (
    BinaryScores,
    ClassificationMetrics,
    ClassificationScores,
    ClassificationSlice,
    ClassificationSliceScores,
    Headline,
    Metrics,
    RegressionScores,
    RegressionSlice,
    RegressionSliceScores,
    Slices,
)
from mlops.model.threshold import Decision
from mlops.stage import StageError


@dataclass(frozen=True)
class Prediction:
    values: pd.Series  # class labels (str) or numbers (float64), indexed as the scored table
    probabilities: np.ndarray | None  # a classifier's, columns in ``model.classes`` order


def predict(
    model: TrainedModel,
    features: pd.DataFrame,
    threshold: float | None,
    probabilities: np.ndarray | None = None,
) -> Prediction:
    """The model's predictions on ``features``; with ``threshold`` (two classes) the positive
    class where its probability is at least the threshold (``mlops.core.decision``)."""
    if model.task == "regression":
        values = np.asarray(model.pipeline.predict(features), dtype=np.float64).reshape(-1)
        return Prediction(pd.Series(values, index=features.index, dtype=np.float64), None)
    if probabilities is None:
        probabilities = np.asarray(model.pipeline.predict_proba(features), dtype=np.float64)
    if threshold is None or model.positive_class is None:
        labels = np.asarray(model.pipeline.predict(features)).astype(str)
    else:
        labels = apply_threshold(probabilities, model.classes, model.positive_class, threshold)
    return Prediction(pd.Series(labels, index=features.index, dtype=object), probabilities)


def classification_metrics(
    actual: pd.Series, predicted: pd.Series, probabilities: np.ndarray, classes: Sequence[str]
) -> ClassificationScores:
    """Accuracy, balanced accuracy, macro F1, ROC AUC (one-vs-rest, macro), log loss, per class."""
    labels = list(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0
    )
    return {
        "rows": len(actual),
        "accuracy": float(accuracy_score(actual, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(actual, predicted)),
        "macro_f1": float(f1_score(actual, predicted, average="macro", zero_division=0)),
        "roc_auc_ovr": roc_auc_one_vs_rest(actual, probabilities, classes),
        "log_loss": float(log_loss(actual, probabilities, labels=labels)),
        "per_class": {
            label: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(support[index]),
            }
            for index, label in enumerate(labels)
        },
    }


def prediction_metrics(
    model: TrainedModel, actual: pd.Series, prediction: Prediction, decision: Decision
) -> Metrics:
    """metrics.json: the task, and its metrics of ``prediction`` against ``actual``."""
    if model.task == "regression":
        return {"task": model.task, **regression_metrics(actual, prediction.values)}
    assert prediction.probabilities is not None
    metrics: ClassificationMetrics = {
        "task": model.task,
        **classification_metrics(
            actual, prediction.values, prediction.probabilities, model.classes
        ),
    }
    if model.positive_class is not None:
        metrics |= binary_metrics(
            actual,
            prediction.values,
            prediction.probabilities,
            model.classes,
            model.positive_class,
            decision,
        )
    return metrics


def headline_metrics(
    task: Task,
    actual: pd.Series,
    prediction: Prediction,
    positive_class: str | None,
    classes: Sequence[str],
) -> Headline:
    """The metrics any model of the task can be compared on, one known only by its outputs (a
    champion, a baseline) too; computed as ``prediction_metrics`` computes them: accuracy, macro
    F1 and, with a positive class, its ROC AUC; or MAE, RMSE and R²."""
    if task == "regression":
        errors: Headline = {**_regression_slice(actual, prediction.values)}
        return errors
    scores: Headline = {**_classification_slice(actual, prediction.values)}
    if positive_class is not None:
        assert prediction.probabilities is not None
        column = prediction.probabilities[:, list(classes).index(positive_class)]
        scores["roc_auc"] = positive_roc_auc(actual, column, positive_class)
    return scores


def positive_roc_auc(actual: pd.Series, scores: np.ndarray, positive_class: str) -> float | None:
    """ROC AUC of the positive class's probability; None without both outcomes in ``actual``."""
    truth = np.asarray(actual == positive_class)
    return float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else None


def binary_metrics(
    actual: pd.Series,
    predicted: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    positive_class: str,
    decision: Decision,
) -> BinaryScores:
    """The positive class's ROC AUC, PR AUC (average precision), Brier score, and its F1,
    precision and recall at the decision threshold; the AUCs are None without both outcomes."""
    truth = np.asarray(actual == positive_class)
    scores = probabilities[:, list(classes).index(positive_class)]
    both = 0 < truth.sum() < len(truth)
    precision, recall, f1, _ = precision_recall_fscore_support(
        actual, predicted, labels=[positive_class], zero_division=0
    )
    return {
        "positive_class": positive_class,
        "roc_auc": positive_roc_auc(actual, scores, positive_class),
        "pr_auc": float(average_precision_score(truth, scores)) if both else None,
        "positive_f1": float(f1[0]),
        "positive_precision": float(precision[0]),
        "positive_recall": float(recall[0]),
        "brier": float(brier_score_loss(truth, scores)),
        "decision_threshold": decision.recorded,
        "threshold_method": decision.method,
    }


def regression_metrics(actual: pd.Series, predicted: pd.Series) -> RegressionScores:
    """MAE, RMSE, R² (None below two rows), MAPE over the rows whose target is not zero (None if
    there are none), and the target's mean and standard deviation (population) on these rows."""
    truth = actual.to_numpy(dtype=np.float64)
    guess = predicted.to_numpy(dtype=np.float64)
    errors = np.abs(truth - guess)
    nonzero = truth != 0
    present = len(truth) > 0
    return {
        "rows": len(truth),
        "mae": float(errors.mean()) if present else None,
        "rmse": float(np.sqrt(np.mean(errors**2))) if present else None,
        "r2": float(r2_score(truth, guess)) if len(truth) >= 2 else None,
        "mape": float(np.mean(errors[nonzero] / np.abs(truth[nonzero]))) if nonzero.any() else None,
        "mape_rows": int(nonzero.sum()),
        "target_mean": float(truth.mean()) if present else None,
        "target_std": float(truth.std()) if present else None,
    }


def roc_auc_one_vs_rest(
    actual: pd.Series, probabilities: np.ndarray, classes: Sequence[str]
) -> float | None:
    """Macro average over the classes present in ``actual``; None when fewer than two are."""
    present = [index for index, _, _ in classes_with_both_outcomes(actual, classes)]
    if len(present) < 2:
        return None
    truth = one_vs_rest(actual, classes)[:, present]
    return float(roc_auc_score(truth, probabilities[:, present], average="macro"))


def one_vs_rest(actual: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """One 0/1 column per class, in ``classes`` order."""
    return (actual.to_numpy()[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(int)


def slice_values(frame: pd.DataFrame, column: str | None, where: str) -> pd.Series | None:
    if column is None:
        return None
    if column not in frame.columns:
        raise StageError(
            f"evaluate.slice_column: column '{column}' is not in {where}; "
            f"it has {list(map(str, frame.columns))}"
        )
    values = frame[column]
    return values.astype(object).where(values.notna(), MISSING_CATEGORY).map(str)


def slice_metrics(
    actual: pd.Series,
    predicted: pd.Series,
    slices: pd.Series | None,
    task: Task = "classification",
) -> Slices:
    """Per slice value: rows and accuracy, macro F1 (over the classes seen in the slice), or
    MAE, RMSE, R²; and the weakest slice's macro F1 (``min_macro_f1``) or R² (``min_r2``)."""
    column = None if slices is None else _name(slices)
    parts = [] if slices is None else _slice_rows(slices)
    if task == "regression":
        scored: dict[str, RegressionSlice] = {
            value: {"rows": int(rows.sum()), **_regression_slice(actual[rows], predicted[rows])}
            for value, rows in parts
        }
        weakest = _lowest(scores["r2"] for scores in scored.values())
        return {"column": column, "min_r2": weakest, "slices": scored}
    counted: dict[str, ClassificationSlice] = {
        value: {"rows": int(rows.sum()), **_classification_slice(actual[rows], predicted[rows])}
        for value, rows in parts
    }
    weakest = _lowest(scores["macro_f1"] for scores in counted.values())
    return {"column": column, "min_macro_f1": weakest, "slices": counted}


def _slice_rows(slices: pd.Series) -> list[tuple[str, np.ndarray]]:
    """(value, its rows as a boolean mask) for every slice value, in sorted order."""
    return [(value, (slices == value).to_numpy()) for value in sorted(slices.unique())]


def _name(slices: pd.Series) -> str | None:
    """The slice column's name (``slice_values`` names the series after it)."""
    return slices.name if isinstance(slices.name, str) else None


def _lowest(values: Iterable[float | None]) -> float | None:
    return min((value for value in values if value is not None), default=None)


def _classification_slice(actual: pd.Series, predicted: pd.Series) -> ClassificationSliceScores:
    return {
        "accuracy": float(accuracy_score(actual, predicted)),
        "macro_f1": float(f1_score(actual, predicted, average="macro", zero_division=0)),
    }


def _regression_slice(actual: pd.Series, predicted: pd.Series) -> RegressionSliceScores:
    metrics = regression_metrics(actual, predicted)
    return {"mae": metrics["mae"], "rmse": metrics["rmse"], "r2": metrics["r2"]}


def classes_with_both_outcomes(
    actual: pd.Series, classes: Sequence[str], only: Sequence[str] | None = None
) -> list[tuple[int, str, np.ndarray]]:
    """(index, class, 0/1 truth) for every class (of ``only``, if given) that has positives and
    negatives in ``actual``."""
    indicators = one_vs_rest(actual, classes)
    return [
        (index, label, indicators[:, index])
        for index, label in enumerate(classes)
        if 0 < indicators[:, index].sum() < len(actual) and (only is None or label in only)
    ]


def metric_value(metrics: Mapping[str, object], name: str) -> float | None:
    """The number ``metrics`` (a ``Metrics`` or a ``Headline``) holds under ``name``; None when
    it holds none (a metric of another task, or one that could not be computed)."""
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
