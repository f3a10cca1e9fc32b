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

The parts the stage calls live apart: the metrics (``metrics``, which the acceptance test shares),
the decision threshold (``threshold``), the curves' data (``curves``) and permutation importance
(``importance``); this module predicts, draws the images and writes the files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from mlops.core.artifacts import Task
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
from mlops.task import PrimaryMetric, primary_metric

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Scatter plots (their CSV and PNG) show a seeded sample of at most this many rows: more points
# only hide one another, and make the DVC plot slow to render.
SCATTER_POINTS = 5000
AXIS_LABELS = {
    "fpr": "false positive rate",
    "tpr": "true positive rate",
    "recall": "recall",
    "precision": "precision",
    "mean_predicted": "mean predicted probability",
    "fraction_positive": "observed share of the class",
    "actual": "actual value",
    "predicted": "predicted value",
    "residual": "residual (actual - predicted)",
}
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
    importance_label: str  # what the importance measures, e.g. "drop in macro_f1"


def evaluate_model(
    model: TrainedModel, frame: pd.DataFrame, params: EvaluateParams, where: str = "table"
) -> Evaluation:
    features = model_input(frame, model.spec, where)
    actual = model_target(frame, model.target, where, model.task)
    slices = slice_values(frame, params.slice_column, where)
    if model.task == "regression":
        _note_ignored_threshold(params, "a regression")
        return evaluate_regressor(model, features, actual, slices, params)
    check_known_classes(actual, model.classes, where)
    if model.positive_class is None:
        _note_ignored_threshold(params, f"{len(model.classes)} classes")
    return evaluate_classifier(model, features, actual, slices, params)


def _note_ignored_threshold(params: EvaluateParams, kind: str) -> None:
    if params.decision_threshold is not None:
        print(f"evaluate: decision_threshold applies to two classes; ignored for {kind}")


def evaluate_classifier(
    model: TrainedModel,
    features: pd.DataFrame,
    actual: pd.Series,
    slices: pd.Series | None,
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
        importance_label=importance_label(primary),
    )


def evaluate_regressor(
    model: TrainedModel,
    features: pd.DataFrame,
    actual: pd.Series,
    slices: pd.Series | None,
    params: EvaluateParams,
) -> Evaluation:
    with step("evaluate: predict", len(actual)):
        predicted = predict(model, features, None).values
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
        metrics=prediction_metrics(
            model, actual, Prediction(predicted, None), Decision(None, None)
        ),
        slices=slice_metrics(actual, predicted, slices, "regression"),
        plot_data=plot_data,
        importance_label=importance_label(primary),
    )


def check_known_classes(actual: pd.Series, classes: Sequence[str], where: str) -> None:
    unseen = sorted(set(actual) - set(classes))
    if unseen:
        raise StageError(
            f"{where}: class(es) {unseen} never appear in the training data; the model knows "
            f"{list(classes)}"
        )


def importance_label(primary: PrimaryMetric) -> str:
    return f"{'drop' if primary.higher_is_better else 'rise'} in {primary.name}"


def render_plots(evaluation: Evaluation) -> dict[str, bytes]:
    """The PNG images of the evaluation's plots, by file name."""
    return {
        PLOT_FILES[name]: _png(_figure(name, table, evaluation))
        for name, table in evaluation.plot_data.items()
    }


def _figure(name: str, table: pd.DataFrame, evaluation: Evaluation) -> Figure:
    binary = len(evaluation.classes) == 2
    if name == "confusion":
        return confusion_figure(table, evaluation.classes)
    if name == "roc":
        title = "ROC (positive class)" if binary else "ROC (one-vs-rest)"
        return curves_figure(table, "fpr", "tpr", title, diagonal=True)
    if name == "precision_recall":
        return curves_figure(table, "recall", "precision", "Precision-recall", diagonal=False)
    if name == "calibration":
        title = "Calibration (positive class)" if binary else "Calibration (one-vs-rest)"
        return curves_figure(table, "mean_predicted", "fraction_positive", title, diagonal=True)
    if name == "predicted_actual":
        return scatter_figure(table, "actual", "predicted", "Predicted against actual", "identity")
    if name == "residuals":
        return scatter_figure(table, "predicted", "residual", "Residuals", "zero")
    return importance_figure(table, evaluation.importance_label)


def new_figure(height: float = 4.2) -> Figure:
    from matplotlib.figure import Figure  # only when drawing: accept imports this module

    return Figure(figsize=(4.8, height))


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
    _label(axes, "Confusion matrix", "predicted", "actual")
    return figure


def curves_figure(curves: pd.DataFrame, x: str, y: str, title: str, diagonal: bool) -> Figure:
    figure = new_figure()
    axes = figure.subplots()
    for label, curve in curves.groupby("class", sort=False):
        axes.plot(curve[x], curve[y], marker="." if len(curve) < 20 else None, label=str(label))
    if diagonal:
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    if not curves.empty:
        axes.legend(loc="best", fontsize="small")
    _label(axes, title, AXIS_LABELS[x], AXIS_LABELS[y])
    return figure


def scatter_figure(points: pd.DataFrame, x: str, y: str, title: str, reference: str) -> Figure:
    """One dot per row, with the line a perfect model would follow (y = x, or y = 0)."""
    figure = new_figure()
    axes = figure.subplots()
    axes.scatter(points[x], points[y], s=6, alpha=0.5, color="tab:blue", linewidths=0)
    if len(points):
        low, high = float(points[x].min()), float(points[x].max())
        line = [low, high] if reference == "identity" else [0.0, 0.0]
        axes.plot([low, high], line, linestyle=":", color="grey")
    _label(axes, title, AXIS_LABELS[x], AXIS_LABELS[y])
    return figure


def importance_figure(importance: pd.DataFrame, measured: str) -> Figure:
    ordered = importance.iloc[::-1]
    figure = new_figure(height=0.6 + 0.35 * max(len(ordered), 3))
    axes = figure.subplots()
    axes.barh(ordered["feature"], ordered["importance"], xerr=ordered["std"], color="tab:blue")
    axes.axvline(0, color="grey", linewidth=0.8)
    _label(axes, "Permutation importance", measured, "")
    return figure


def _label(axes: Axes, title: str, x: str, y: str) -> None:
    axes.set_title(title)
    axes.set_xlabel(x)
    axes.set_ylabel(y)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_evaluation(evaluation: Evaluation, reports: Path) -> None:
    """The metrics, plot data and images; the plot files of the other task, left by an earlier
    run in the same directory, are removed, so no report shows a plot of another model."""
    write_json(reports / "metrics.json", evaluation.metrics)
    write_json(reports / "slices.json", evaluation.slices)
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
