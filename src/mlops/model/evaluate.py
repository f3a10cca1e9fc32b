"""Evaluate stage: score the trained model on the validation split.

Writes the headline metrics of the model's task, metrics per slice of ``evaluate.slice_column``,
the data of every DVC plot and the same plots as PNG images:

- classification: confusion matrix, ROC, precision-recall and calibration curves (per class, or
  of the positive class alone when there are two classes);
- regression: predicted against actual values, and residuals against predictions;
- both: permutation importance of the original feature columns, on the task's primary metric.

It also writes ``predictions.csv``, the per-row predictions (of a seeded sample on a large split),
from which the review report bootstraps the intervals of the metric changes a pull request makes.

Two classes: ``evaluate.decision_threshold`` sets the probability of the positive class from
which it is predicted; ``max_f1`` chooses it here, on the validation split, and records it in
metrics.json, from which the acceptance test and the package take it.

Permutation importance scores the model ``permutation_repeats`` times per feature, so on a large
validation set it runs on a seeded random sample of at most ``max_importance_rows`` rows: its
error shrinks as one over the square root of the rows, and past a few ten thousand rows more rows
cost time, not precision (its spread over the repeats is reported next to it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
    roc_curve,
)

from mlops.core.artifacts import MISSING_CATEGORY, Task
from mlops.core.decision import apply_threshold
from mlops.figures import (
    AXIS_LABELS,
    CURVES,
    SCATTERS,
    THIS_RUN_COLOUR,
    class_colours,
    curves_title,
    draw_curves,
    draw_points,
    draw_reference,
    finish_curves,
    importance_figure,
    importance_label,
    new_figure,
    png,
    title_axes,
)
from mlops.model.features import TrainedModel, load_model, model_input, model_target
from mlops.params import EvaluateParams, load_section
from mlops.progress import step
from mlops.stage import StageError, atomic_write_bytes, parser, run, write_json, write_text
from mlops.tables import read_table
from mlops.task import PrimaryMetric, primary_metric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CALIBRATION_BINS = 10
DEFAULT_THRESHOLD = 0.5  # what a binary model's own label amounts to
# Scatter plots (their CSV and PNG) show a seeded sample of at most this many rows: more points
# only hide one another, and make the DVC plot slow to render.
SCATTER_POINTS = 5000
# predictions.csv holds the per-row predictions of a seeded sample of at most this many validation
# rows (all of a smaller split): the review report bootstraps the intervals of its metric deltas
# from them, and scales a sample's spread to the whole split (src/mlops/report/intervals.py).
PREDICTION_ROWS = 10_000
PROBABILITY_PREFIX = "probability "  # predictions.csv: one column per class, "probability <class>"
# Plot data (reports/evaluate/<name>.csv) -> its image in reports/evaluate/plots/.
PLOT_FILES = {
    "confusion": "confusion_matrix.png",
    "roc": "roc.png",
    "precision_recall": "precision_recall.png",
    "calibration": "calibration.png",
    "predicted_actual": "predicted_actual.png",
    "residuals": "residuals.png",
    "importance": "importance.png",
}
TASK_PLOTS: dict[str, tuple[str, ...]] = {
    "classification": ("confusion", "roc", "precision_recall", "calibration", "importance"),
    "regression": ("predicted_actual", "residuals", "importance"),
}


@dataclass(frozen=True)
class Prediction:
    values: pd.Series  # class labels (str) or numbers (float64), indexed as the scored table
    probabilities: np.ndarray | None  # a classifier's, columns in ``model.classes`` order


@dataclass(frozen=True)
class Decision:
    """How a binary classifier turns the positive class's probability into a label."""

    threshold: float | None  # None: the model's own label (the more probable class)
    method: str | None  # None, "max_f1" (chosen on validation) or "fixed" (given in params)

    @property
    def recorded(self) -> float:
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold


@dataclass(frozen=True)
class Evaluation:
    task: Task
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    slices: dict[str, Any]
    plot_data: dict[str, pd.DataFrame]  # name in PLOT_FILES -> table; the task's plots only
    predictions: pd.DataFrame  # predictions.csv: row, actual, predicted[, probability <class>]
    importance_label: str  # what the importance measures, e.g. "drop in macro_f1"


def evaluate_model(
    model: TrainedModel, frame: pd.DataFrame, params: EvaluateParams, where: str = "table"
) -> Evaluation:
    features = model_input(frame, model.spec, where)
    actual = model_target(frame, model.target, where, model.task)
    slices = slice_values(frame, params.slice_column, where)
    keys = row_keys(frame)
    if model.task == "regression":
        _note_ignored_threshold(params, "a regression")
        return evaluate_regressor(model, features, actual, slices, keys, params)
    check_known_classes(actual, model.classes, where)
    if model.positive_class is None:
        _note_ignored_threshold(params, f"{len(model.classes)} classes")
    return evaluate_classifier(model, features, actual, slices, keys, params)


def row_keys(frame: pd.DataFrame) -> pd.Series:
    """A hash of each row's values: the report pairs this run's predictions with the base's
    only when both evaluated the same rows."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return pd.Series([f"{value:016x}" for value in hashes], index=frame.index, dtype=object)


def prediction_table(
    keys: pd.Series,
    actual: pd.Series,
    prediction: Prediction,
    classes: Sequence[str],
    seed: int,
) -> pd.DataFrame:
    """predictions.csv: per row (a seeded sample of at most ``PREDICTION_ROWS``, in table order)
    its key, actual value, prediction and, of a classifier, the probability of each class."""
    shown = importance_rows(len(actual), PREDICTION_ROWS, seed)
    table = pd.DataFrame(
        {
            "row": keys.to_numpy()[shown],
            "actual": actual.to_numpy()[shown],
            "predicted": prediction.values.to_numpy()[shown],
        }
    )
    if prediction.probabilities is not None:
        for index, name in enumerate(classes):
            table[f"{PROBABILITY_PREFIX}{name}"] = prediction.probabilities[shown, index]
    return table


def _note_ignored_threshold(params: EvaluateParams, kind: str) -> None:
    if params.decision_threshold is not None:
        print(f"evaluate: decision_threshold applies to two classes; ignored for {kind}")


def evaluate_classifier(
    model: TrainedModel,
    features: pd.DataFrame,
    actual: pd.Series,
    slices: pd.Series | None,
    keys: pd.Series,
    params: EvaluateParams,
) -> Evaluation:
    with step("evaluate: predict", len(actual)):
        probabilities = np.asarray(model.pipeline.predict_proba(features), dtype=np.float64)
    decision = Decision(None, None)
    if model.positive_class is not None:
        decision = choose_decision(params.decision_threshold, model, actual, probabilities)
    prediction = predict(model, features, decision.threshold, probabilities)
    predicted = prediction.values
    metrics = prediction_metrics(model, actual, prediction, decision)
    curve_classes = model.classes if model.positive_class is None else (model.positive_class,)
    primary = primary_metric(model.task, len(model.classes))
    plot_data = {
        "confusion": pd.DataFrame({"actual": actual.to_numpy(), "predicted": predicted.to_numpy()}),
        "roc": roc_curves(actual, probabilities, model.classes, curve_classes),
        "precision_recall": precision_recall_curves(
            actual, probabilities, model.classes, curve_classes
        ),
        "calibration": calibration_curves(actual, probabilities, model.classes, curve_classes),
        "importance": permutation_importances(model, features, actual, params, primary),
    }
    return Evaluation(
        task=model.task,
        classes=model.classes,
        metrics=metrics,
        slices=slice_metrics(actual, predicted, slices),
        plot_data=plot_data,
        predictions=prediction_table(keys, actual, prediction, model.classes, params.seed),
        importance_label=importance_label(primary),
    )


def evaluate_regressor(
    model: TrainedModel,
    features: pd.DataFrame,
    actual: pd.Series,
    slices: pd.Series | None,
    keys: pd.Series,
    params: EvaluateParams,
) -> Evaluation:
    with step("evaluate: predict", len(actual)):
        prediction = predict(model, features, None)
    predicted = prediction.values
    shown = importance_rows(len(actual), SCATTER_POINTS, params.seed)
    primary = primary_metric("regression", 0)
    plot_data = {
        "predicted_actual": pd.DataFrame(
            {"actual": actual.to_numpy()[shown], "predicted": predicted.to_numpy()[shown]}
        ),
        "residuals": pd.DataFrame(
            {
                "predicted": predicted.to_numpy()[shown],
                "residual": (actual - predicted).to_numpy()[shown],
            }
        ),
        "importance": permutation_importances(model, features, actual, params, primary),
    }
    return Evaluation(
        task="regression",
        classes=(),
        metrics=prediction_metrics(model, actual, prediction, Decision(None, None)),
        slices=slice_metrics(actual, predicted, slices, "regression"),
        plot_data=plot_data,
        predictions=prediction_table(keys, actual, prediction, (), params.seed),
        importance_label=importance_label(primary),
    )


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


def check_known_classes(actual: pd.Series, classes: Sequence[str], where: str) -> None:
    unseen = sorted(set(actual) - set(classes))
    if unseen:
        raise StageError(
            f"{where}: class(es) {unseen} never appear in the training data; the model knows "
            f"{list(classes)}"
        )


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


def classification_metrics(
    actual: pd.Series, predicted: pd.Series, probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """metrics.json: the task, and its metrics of ``prediction`` against ``actual``."""
    if model.task == "regression":
        return {"task": model.task, **regression_metrics(actual, prediction.values)}
    assert prediction.probabilities is not None
    metrics = {
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
) -> dict[str, float | None]:
    """The metrics any model of the task can be compared on, one known only by its outputs (a
    champion, a baseline) too; computed as ``prediction_metrics`` computes them: accuracy, macro
    F1 and, with a positive class, its ROC AUC; or MAE, RMSE and R²."""
    if task == "regression":
        return _regression_slice(actual, prediction.values)
    scores: dict[str, float | None] = {**_classification_slice(actual, prediction.values)}
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
) -> dict[str, Any]:
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


def regression_metrics(actual: pd.Series, predicted: pd.Series) -> dict[str, Any]:
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
    present = [index for index, _, _ in _classes_with_both_outcomes(actual, classes)]
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
) -> dict[str, Any]:
    """Per slice value: rows and accuracy, macro F1 (over the classes seen in the slice), or
    MAE, RMSE, R²; and the weakest slice's macro F1 (``min_macro_f1``) or R² (``min_r2``)."""
    weakest = "min_r2" if task == "regression" else "min_macro_f1"
    if slices is None:
        return {"column": None, weakest: None, "slices": {}}
    per_slice: dict[str, Any] = {}
    for value in sorted(slices.unique()):
        rows = (slices == value).to_numpy()
        scores = (
            _regression_slice(actual[rows], predicted[rows])
            if task == "regression"
            else _classification_slice(actual[rows], predicted[rows])
        )
        per_slice[value] = {"rows": int(rows.sum()), **scores}
    key = weakest.removeprefix("min_")
    values = [scores[key] for scores in per_slice.values() if scores[key] is not None]
    return {"column": slices.name, weakest: min(values, default=None), "slices": per_slice}


def _classification_slice(actual: pd.Series, predicted: pd.Series) -> dict[str, Any]:
    return {
        "accuracy": float(accuracy_score(actual, predicted)),
        "macro_f1": float(f1_score(actual, predicted, average="macro", zero_division=0)),
    }


def _regression_slice(actual: pd.Series, predicted: pd.Series) -> dict[str, Any]:
    metrics = regression_metrics(actual, predicted)
    return {"mae": metrics["mae"], "rmse": metrics["rmse"], "r2": metrics["r2"]}


def _classes_with_both_outcomes(
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


def roc_curves(
    actual: pd.Series,
    probabilities: np.ndarray,
    classes: Sequence[str],
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    parts = []
    for index, label, truth in _classes_with_both_outcomes(actual, classes, only):
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
    for index, label, truth in _classes_with_both_outcomes(actual, classes, only):
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
    for index, label, truth in _classes_with_both_outcomes(actual, classes, only):
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


def permutation_importances(
    model: TrainedModel,
    features: pd.DataFrame,
    actual: pd.Series,
    params: EvaluateParams,
    primary: PrimaryMetric,
) -> pd.DataFrame:
    """How much the task's primary metric worsens when one original feature column is shuffled
    (macro F1 or ROC AUC drops, RMSE rises), most important first."""
    if params.permutation_repeats < 1:
        raise StageError(
            f"evaluate.permutation_repeats: must be at least 1, got {params.permutation_repeats}"
        )
    rows = importance_rows(len(actual), params.max_importance_rows, params.seed)
    scoring = primary.scoring
    if scoring == "roc_auc" and actual.iloc[rows].nunique() < 2:
        scoring = "accuracy"  # ROC AUC needs both classes among the rows
    with step(
        f"evaluate: permutation importance ({len(rows):,} of {len(actual):,} rows)", len(rows)
    ):
        result = permutation_importance(
            model.pipeline,
            features.iloc[rows],
            actual.iloc[rows],
            scoring=scoring,
            n_repeats=params.permutation_repeats,
            random_state=params.seed,
        )
    table = pd.DataFrame(
        {
            "feature": list(features.columns),
            "importance": result.importances_mean,
            "std": result.importances_std,
        }
    )
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def importance_rows(total: int, max_rows: int, seed: int) -> np.ndarray:
    """Positions of the rows permutation importance scores: all, or a seeded random sample of
    ``max_rows`` in table order."""
    if max_rows < 1:
        raise StageError(f"evaluate.max_importance_rows: must be at least 1, got {max_rows}")
    if total <= max_rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))


def render_plots(evaluation: Evaluation) -> dict[str, bytes]:
    """The PNG images of the evaluation's plots, by file name."""
    return {
        PLOT_FILES[name]: png(_figure(name, table, evaluation))
        for name, table in evaluation.plot_data.items()
    }


def _figure(name: str, table: pd.DataFrame, evaluation: Evaluation) -> Figure:
    binary = len(evaluation.classes) == 2
    if name == "confusion":
        return confusion_figure(table, evaluation.classes)
    if name in CURVES:
        return curves_figure(name, table, binary)
    if name in SCATTERS:
        return scatter_figure(name, table)
    return importance_figure([(table, THIS_RUN_COLOUR, None)], evaluation.importance_label)


def confusion_figure(confusion: pd.DataFrame, classes: Sequence[str]) -> Figure:
    counts = confusion_matrix(confusion["actual"], confusion["predicted"], labels=list(classes))
    figure = new_figure()
    axes = figure.subplots()
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if count > counts.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    ticks = range(len(classes))
    axes.set_xticks(ticks, list(classes), rotation=30, ha="right")
    axes.set_yticks(ticks, list(classes))
    title_axes(axes, "Confusion matrix", "predicted", "actual")
    return figure


def curves_figure(name: str, curves: pd.DataFrame, binary: bool) -> Figure:
    x, y, diagonal = CURVES[name]
    figure = new_figure()
    axes = figure.subplots()
    names = [str(value) for value in curves["class"].unique()]
    draw_curves(axes, curves, x, y, class_colours(names))
    finish_curves(axes, curves_title(name, binary), x, y, diagonal)
    return figure


def scatter_figure(name: str, points: pd.DataFrame) -> Figure:
    """One dot per row, with the line a perfect model would follow (y = x, or y = 0)."""
    x, y, reference, title = SCATTERS[name]
    figure = new_figure()
    axes = figure.subplots()
    draw_points(axes, points, x, y, THIS_RUN_COLOUR)
    draw_reference(axes, points[x], reference)
    title_axes(axes, title, AXIS_LABELS[x], AXIS_LABELS[y])
    return figure


def write_evaluation(evaluation: Evaluation, reports: Path) -> None:
    """The metrics, plot data and images; the plot files of the other task, left by an earlier
    run in the same directory, are removed, so no report shows a plot of another model."""
    write_json(reports / "metrics.json", evaluation.metrics)
    write_json(reports / "slices.json", evaluation.slices)
    write_text(reports / "predictions.csv", evaluation.predictions.to_csv(index=False))
    for name, table in evaluation.plot_data.items():
        write_text(reports / f"{name}.csv", table.to_csv(index=False))
    for file_name, image in render_plots(evaluation).items():
        atomic_write_bytes(reports / "plots" / file_name, image)
    for name in set(PLOT_FILES) - set(evaluation.plot_data):
        (reports / f"{name}.csv").unlink(missing_ok=True)
        (reports / "plots" / PLOT_FILES[name]).unlink(missing_ok=True)


def describe(evaluation: Evaluation) -> str:
    metrics, slices = evaluation.metrics, evaluation.slices
    if evaluation.task == "regression":
        line = (
            f"evaluate: {metrics['rows']} rows, MAE {_number(metrics['mae'])}, "
            f"RMSE {_number(metrics['rmse'])}, R² {_number(metrics['r2'])}"
        )
        weakest = ("R²", slices["min_r2"])
    else:
        line = (
            f"evaluate: {metrics['rows']} rows, accuracy {metrics['accuracy']:.4f}, "
            f"macro F1 {metrics['macro_f1']:.4f}, log loss {metrics['log_loss']:.4f}"
        )
        if "positive_class" in metrics:
            line += (
                f", ROC AUC of {metrics['positive_class']!r} {_number(metrics['roc_auc'])}, "
                f"F1 {metrics['positive_f1']:.4f} at threshold {metrics['decision_threshold']:.4f}"
            )
        weakest = ("macro F1", slices["min_macro_f1"])
    if slices["slices"]:
        line += f"; lowest {weakest[0]} per {slices['column']} {_number(weakest[1])}"
    return line


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Evaluate the trained model on the validation split.")
    arguments.add_argument("--model", type=Path, required=True, help="the trained model (joblib)")
    arguments.add_argument("--data", type=Path, required=True, help="validation table (Parquet)")
    arguments.add_argument("--reports", type=Path, required=True, help="reports directory")
    args = arguments.parse_args(argv)
    params = load_section(args.params, "evaluate", EvaluateParams)
    model = load_model(args.model)
    frame = read_table(args.data)
    evaluation = evaluate_model(model, frame, params, where=str(args.data))
    write_evaluation(evaluation, args.reports)
    print(describe(evaluation))


if __name__ == "__main__":
    raise SystemExit(run(main))
