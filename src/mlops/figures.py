"""The evaluation plots' drawing, written once: the evaluate stage draws one run, the review
report draws a run over its base with the same functions (the base dashed or grey).

matplotlib is imported when a figure is made, never at import: the acceptance stage and the
report import their modules without drawing anything.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from mlops.task import PrimaryMetric

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
THIS_RUN_COLOUR = "tab:blue"
BASE_COLOUR = "tab:orange"
# reports/evaluate/<name>.csv of class curves: x, y, and whether the diagonal is drawn.
CURVES = {
    "roc": ("fpr", "tpr", True),
    "precision_recall": ("recall", "precision", False),
    "calibration": ("mean_predicted", "fraction_positive", True),
}
# reports/evaluate/<name>.csv of one point per row: x, y, the reference line, title.
SCATTERS = {
    "predicted_actual": ("actual", "predicted", "identity", "Predicted against actual"),
    "residuals": ("predicted", "residual", "zero", "Residuals"),
}


def curves_title(name: str, binary: bool) -> str:
    """ROC and calibration are of the positive class (two classes) or one class against the
    rest; precision-recall likewise, without saying so."""
    if name == "precision_recall":
        return "Precision-recall"
    scope = "positive class" if binary else "one-vs-rest"
    return f"{'ROC' if name == 'roc' else 'Calibration'} ({scope})"


def new_figure(height: float = 4.2, width: float = 4.8) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def title_axes(axes: Axes, title: str, x: str, y: str) -> None:
    axes.set_title(title)
    axes.set_xlabel(x)
    axes.set_ylabel(y)


def class_colours(classes: list[str]) -> dict[str, str]:
    """One colour per class, so that a class keeps its colour in this run and in the base."""
    return {name: f"C{index % 10}" for index, name in enumerate(classes)}


def draw_curves(
    axes: Axes,
    curves: pd.DataFrame,
    x: str,
    y: str,
    colours: dict[str, str],
    linestyle: str = "-",
    suffix: str = "",
) -> None:
    """One line per class of a ``class, <x>, <y>`` table (ROC, precision-recall, calibration)."""
    for name, curve in curves.groupby("class", sort=False):
        axes.plot(
            curve[x],
            curve[y],
            marker="." if len(curve) < 20 else None,
            linestyle=linestyle,
            color=colours.get(str(name)),
            label=f"{name}{suffix}",
        )


def finish_curves(axes: Axes, title: str, x: str, y: str, diagonal: bool) -> None:
    if diagonal:
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small")
    title_axes(axes, title, AXIS_LABELS[x], AXIS_LABELS[y])


def draw_points(
    axes: Axes, points: pd.DataFrame, x: str, y: str, colour: str, name: str | None = None
) -> None:
    axes.scatter(points[x], points[y], s=6, alpha=0.5, color=colour, linewidths=0, label=name)


def draw_reference(axes: Axes, x_values: pd.Series, reference: str) -> None:
    """The line a perfect model's points follow: y = x (``identity``) or y = 0 (``zero``)."""
    if len(x_values) == 0:
        return
    low, high = float(x_values.min()), float(x_values.max())
    line = [low, high] if reference == "identity" else [0.0, 0.0]
    axes.plot([low, high], line, linestyle=":", color="grey")


def importance_label(primary: PrimaryMetric) -> str:
    """What permutation importance measures: how far the task's primary metric falls (rises)."""
    return f"{'drop' if primary.higher_is_better else 'rise'} in {primary.name}"


def importance_figure(
    series: Sequence[tuple[pd.DataFrame, str, str | None]], measured: str
) -> Figure:
    """Permutation importance as horizontal bars with their spread over the repeats, most
    important at the top; ``series`` is (table, colour, legend name) per run, bars side by side,
    features in the first table's order (then any only another run has)."""
    features = list(dict.fromkeys(f for table, _, _ in series for f in table["feature"]))[::-1]
    height = 0.8 / len(series)
    figure = new_figure(height=0.6 + 0.35 * max(len(features), 3) * (1 + 0.4 * (len(series) - 1)))
    axes = figure.subplots()
    for index, (table, colour, name) in enumerate(series):
        values = table.set_index("feature").reindex(features)
        offset = (len(series) - 1 - 2 * index) * height / 2 if len(series) > 1 else 0.0
        positions = [position + offset for position in range(len(features))]
        axes.barh(
            positions,
            values["importance"],
            height=height,
            xerr=values["std"],
            color=colour,
            label=name,
        )
    axes.set_yticks(range(len(features)), features)
    axes.axvline(0, color="grey", linewidth=0.8)
    if len(series) > 1:
        axes.legend(loc="best", fontsize="small")
    title_axes(axes, "Permutation importance", measured, "")
    return figure
