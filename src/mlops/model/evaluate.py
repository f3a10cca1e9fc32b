"""Evaluate stage: score the trained model on the validation split.

Writes the headline metrics of the model's task, metrics per slice of ``evaluate.slice_column``,
the data of every DVC plot and the same plots as PNG images:

- classification: confusion matrix, ROC, precision-recall and calibration curves (per class, or
  of the positive class alone when there are two classes);
- regression: predicted against actual values, and residuals against predictions;
- both: permutation importance of the original feature columns, on the task's primary metric.

Two classes: ``evaluate.decision_threshold`` sets the probability of the positive class from
which it is predicted; ``max_f1`` chooses it here, on the validation split, and records it in
metrics.json, from which the acceptance test and the package take it.

It also writes ``predictions.csv``, the per-row predictions (of a seeded sample on a large split),
from which the review report bootstraps the intervals of the metric changes a pull request makes.

The parts the stage calls live apart: the metrics (``metrics``, which the acceptance test shares),
the decision threshold (``threshold``), the curves' data (``curves``) and permutation importance
(``importance``), the drawing (``mlops.figures``, which the review report shares); this module
predicts, draws the images and writes the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from mlops.core.artifacts import Task
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
from mlops.model.curves import calibration_curves, precision_recall_curves, roc_curves
from mlops.model.features import TrainedModel, load_model, model_input, model_target
from mlops.model.importance import importance_rows, permutation_importances
from mlops.model.metrics import (
    Prediction,
    predict,
    prediction_metrics,
    slice_metrics,
    slice_values,
)
from mlops.model.summaries import Metrics, Slices
from mlops.model.threshold import Decision, choose_decision
from mlops.params import EvaluateParams, load_section
from mlops.progress import step
from mlops.stage import StageError, atomic_write_bytes, parser, run, write_json, write_text
from mlops.tables import read_table
from mlops.task import primary_metric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
class Evaluation:
    task: Task
    classes: tuple[str, ...]
    metrics: Metrics
    slices: Slices
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


def check_known_classes(actual: pd.Series, classes: Sequence[str], where: str) -> None:
    unseen = sorted(set(actual) - set(classes))
    if unseen:
        raise StageError(
            f"{where}: class(es) {unseen} never appear in the training data; the model knows "
            f"{list(classes)}"
        )


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
    if metrics["task"] == "regression":
        line = (
            f"evaluate: {metrics['rows']} rows, MAE {_number(metrics['mae'])}, "
            f"RMSE {_number(metrics['rmse'])}, R² {_number(metrics['r2'])}"
        )
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
    if slices["slices"]:
        name, value = _weakest(slices)
        line += f"; lowest {name} per {slices['column']} {_number(value)}"
    return line


def _weakest(slices: Slices) -> tuple[str, float | None]:
    """The metric the weakest slice is named by, and its value there."""
    if "min_r2" in slices:
        return "R²", slices["min_r2"]
    return "macro F1", slices["min_macro_f1"]


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
