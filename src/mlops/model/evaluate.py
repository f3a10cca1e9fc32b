"""Evaluate stage: score the trained model on the validation split.

Writes the headline metrics, metrics per slice of ``evaluate.slice_column``, the data of every
DVC plot (confusion, ROC and precision-recall per class, calibration per class, permutation
importance of the original feature columns), and the same plots as PNG images.

Permutation importance scores the model ``permutation_repeats`` times per feature, so on a large
validation set it runs on a seeded random sample of at most ``max_importance_rows`` rows: its
error shrinks as one over the square root of the rows, and past a few ten thousand rows more rows
cost time, not precision (its spread over the repeats is reported next to it).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from mlops.artifacts import MISSING_CATEGORY
from mlops.model.features import TrainedModel, load_model, model_input, model_target
from mlops.params import EvaluateParams, load_section
from mlops.progress import step
from mlops.stage import StageError, atomic_write_bytes, parser, run, write_json, write_text
from mlops.tables import read_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CALIBRATION_BINS = 10
IMPORTANCE_SCORING = "f1_macro"
AXIS_LABELS = {
    "fpr": "false positive rate",
    "tpr": "true positive rate",
    "recall": "recall",
    "precision": "precision",
    "mean_predicted": "mean predicted probability",
    "fraction_positive": "observed share of the class",
}
PLOT_FILES = {
    "confusion": "confusion_matrix.png",
    "roc": "roc.png",
    "precision_recall": "precision_recall.png",
    "calibration": "calibration.png",
    "importance": "importance.png",
}


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    slices: dict[str, Any]
    confusion: pd.DataFrame  # actual, predicted: one row per scored row
    roc: pd.DataFrame  # class, fpr, tpr
    precision_recall: pd.DataFrame  # class, recall, precision
    calibration: pd.DataFrame  # class, mean_predicted, fraction_positive
    importance: pd.DataFrame  # feature, importance, std


def evaluate_model(
    model: TrainedModel, frame: pd.DataFrame, params: EvaluateParams, where: str = "table"
) -> Evaluation:
    features = model_input(frame, model.spec, where)
    actual = model_target(frame, model.target, where)
    check_known_classes(actual, model.classes, where)
    with step("evaluate: predict", len(frame)):
        predicted = pd.Series(model.pipeline.predict(features), index=frame.index, dtype=object)
        probabilities = np.asarray(model.pipeline.predict_proba(features))
    return Evaluation(
        classes=model.classes,
        metrics=classification_metrics(actual, predicted, probabilities, model.classes),
        slices=slice_metrics(actual, predicted, slice_values(frame, params.slice_column, where)),
        confusion=pd.DataFrame({"actual": actual.to_numpy(), "predicted": predicted.to_numpy()}),
        roc=roc_curves(actual, probabilities, model.classes),
        precision_recall=precision_recall_curves(actual, probabilities, model.classes),
        calibration=calibration_curves(actual, probabilities, model.classes),
        importance=permutation_importances(model, features, actual, params),
    )


def check_known_classes(actual: pd.Series, classes: Sequence[str], where: str) -> None:
    unseen = sorted(set(actual) - set(classes))
    if unseen:
        raise StageError(
            f"{where}: class(es) {unseen} never appear in the training data; the model knows "
            f"{list(classes)}"
        )


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
    actual: pd.Series, predicted: pd.Series, slices: pd.Series | None
) -> dict[str, Any]:
    """Rows, accuracy and macro F1 per slice value; macro F1 over the classes seen in the slice."""
    if slices is None:
        return {"column": None, "min_macro_f1": None, "slices": {}}
    per_slice: dict[str, Any] = {}
    for value in sorted(slices.unique()):
        rows = slices == value
        per_slice[value] = {
            "rows": int(rows.sum()),
            "accuracy": float(accuracy_score(actual[rows], predicted[rows])),
            "macro_f1": float(
                f1_score(actual[rows], predicted[rows], average="macro", zero_division=0)
            ),
        }
    worst = min((scores["macro_f1"] for scores in per_slice.values()), default=None)
    return {"column": slices.name, "min_macro_f1": worst, "slices": per_slice}


def _classes_with_both_outcomes(
    actual: pd.Series, classes: Sequence[str]
) -> list[tuple[int, str, np.ndarray]]:
    """(index, class, 0/1 truth) for every class that has positives and negatives in ``actual``."""
    indicators = one_vs_rest(actual, classes)
    return [
        (index, label, indicators[:, index])
        for index, label in enumerate(classes)
        if 0 < indicators[:, index].sum() < len(actual)
    ]


def roc_curves(
    actual: pd.Series, probabilities: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    parts = []
    for index, label, truth in _classes_with_both_outcomes(actual, classes):
        fpr, tpr, _ = roc_curve(truth, probabilities[:, index])
        parts.append(pd.DataFrame({"class": label, "fpr": fpr, "tpr": tpr}))
    return _concat(parts, ["class", "fpr", "tpr"])


def precision_recall_curves(
    actual: pd.Series, probabilities: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    parts = []
    for index, label, truth in _classes_with_both_outcomes(actual, classes):
        precision, recall, _ = precision_recall_curve(truth, probabilities[:, index])
        parts.append(pd.DataFrame({"class": label, "recall": recall, "precision": precision}))
    return _concat(parts, ["class", "recall", "precision"])


def calibration_curves(
    actual: pd.Series, probabilities: np.ndarray, classes: Sequence[str]
) -> pd.DataFrame:
    """Per class (one-vs-rest): observed share of the class per bin of predicted probability."""
    parts = []
    for index, label, truth in _classes_with_both_outcomes(actual, classes):
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
    model: TrainedModel, features: pd.DataFrame, actual: pd.Series, params: EvaluateParams
) -> pd.DataFrame:
    """Drop in macro F1 when one original feature column is shuffled, most important first."""
    if params.permutation_repeats < 1:
        raise StageError(
            f"evaluate.permutation_repeats: must be at least 1, got {params.permutation_repeats}"
        )
    rows = importance_rows(len(actual), params.max_importance_rows, params.seed)
    with step(
        f"evaluate: permutation importance ({len(rows):,} of {len(actual):,} rows)", len(rows)
    ):
        result = permutation_importance(
            model.pipeline,
            features.iloc[rows],
            actual.iloc[rows],
            scoring=IMPORTANCE_SCORING,
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
    """The PNG images, by file name."""
    figures = {
        "confusion": confusion_figure(evaluation.confusion, evaluation.classes),
        "roc": curves_figure(evaluation.roc, "fpr", "tpr", "ROC (one-vs-rest)", diagonal=True),
        "precision_recall": curves_figure(
            evaluation.precision_recall, "recall", "precision", "Precision-recall", diagonal=False
        ),
        "calibration": curves_figure(
            evaluation.calibration,
            "mean_predicted",
            "fraction_positive",
            "Calibration (one-vs-rest)",
            diagonal=True,
        ),
        "importance": importance_figure(evaluation.importance),
    }
    return {PLOT_FILES[name]: _png(figure) for name, figure in figures.items()}


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


def importance_figure(importance: pd.DataFrame) -> Figure:
    ordered = importance.iloc[::-1]
    figure = new_figure(height=0.6 + 0.35 * max(len(ordered), 3))
    axes = figure.subplots()
    axes.barh(ordered["feature"], ordered["importance"], xerr=ordered["std"], color="tab:blue")
    axes.axvline(0, color="grey", linewidth=0.8)
    _label(axes, "Permutation importance", f"drop in {IMPORTANCE_SCORING}", "")
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
    write_json(reports / "metrics.json", evaluation.metrics)
    write_json(reports / "slices.json", evaluation.slices)
    for name in ("confusion", "roc", "precision_recall", "calibration", "importance"):
        table: pd.DataFrame = getattr(evaluation, name)
        write_text(reports / f"{name}.csv", table.to_csv(index=False))
    for file_name, image in render_plots(evaluation).items():
        atomic_write_bytes(reports / "plots" / file_name, image)


def describe(evaluation: Evaluation) -> str:
    metrics, slices = evaluation.metrics, evaluation.slices
    line = (
        f"evaluate: {metrics['rows']} rows, accuracy {metrics['accuracy']:.4f}, "
        f"macro F1 {metrics['macro_f1']:.4f}, log loss {metrics['log_loss']:.4f}"
    )
    if slices["slices"]:
        line += f"; lowest macro F1 per {slices['column']} {slices['min_macro_f1']:.4f}"
    return line


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
