"""This run's plots drawn over the base's: what a pull request changes, in one picture each.

The base is dashed (curves) or orange (points, bars, a single curve), this run solid or blue,
each class in one colour in both. The confusion matrix is shown as its change: cells where this
run puts more rows are positive; green where that is better (more right on the diagonal, fewer
wrong off it). Pure: tables in, matplotlib figures out (``mlops.figures`` draws both runs as the
evaluate stage draws one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from mlops.figures import (
    AXIS_LABELS,
    BASE_COLOUR,
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
    new_figure,
    title_axes,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

THIS_RUN = "this run"


def curves_over_base(
    name: str, current: pd.DataFrame, base: pd.DataFrame, base_name: str, binary: bool
) -> Figure:
    """ROC, precision-recall or calibration curves of both runs, the base's dashed."""
    x, y, diagonal = CURVES[name]
    figure = new_figure()
    axes = figure.subplots()
    classes = list(dict.fromkeys([*map(str, current["class"]), *map(str, base["class"])]))
    colours = class_colours(classes)
    base_colours = colours if len(classes) > 1 else {classes[0]: BASE_COLOUR}
    if len(classes) == 1:  # one curve each (a positive class): the base's orange too
        colours = {classes[0]: THIS_RUN_COLOUR}
    draw_curves(axes, base, x, y, base_colours, linestyle="--", suffix=f" ({base_name})")
    draw_curves(axes, current, x, y, colours, suffix=f" ({THIS_RUN})")
    finish_curves(axes, curves_title(name, binary), x, y, diagonal)
    return figure


def points_over_base(
    name: str, current: pd.DataFrame, base: pd.DataFrame, base_name: str
) -> Figure:
    """Predicted against actual, or residuals, of both runs: the base's orange, under."""
    x, y, reference, title = SCATTERS[name]
    figure = new_figure()
    axes = figure.subplots()
    draw_points(axes, base, x, y, BASE_COLOUR, base_name)
    draw_points(axes, current, x, y, THIS_RUN_COLOUR, THIS_RUN)
    draw_reference(axes, pd.concat([current[x], base[x]]), reference)
    axes.legend(loc="best", fontsize="small", markerscale=3)
    title_axes(axes, title, AXIS_LABELS[x], AXIS_LABELS[y])
    return figure


def importance_over_base(
    current: pd.DataFrame, base: pd.DataFrame, base_name: str, measured: str
) -> Figure:
    series = [(current, THIS_RUN_COLOUR, THIS_RUN), (base, BASE_COLOUR, base_name)]
    return importance_figure(series, measured)


class ConfusionChange(NamedTuple):
    classes: list[str]
    change: np.ndarray  # actual x predicted: this run minus the base
    unit: str  # "rows", or "points" (percentage points of each actual class)


def confusion_change(current: pd.DataFrame, base: pd.DataFrame) -> ConfusionChange:
    """This run's confusion matrix minus the base's: row counts when both evaluated as many
    rows of each actual class, else each actual class's shares in percentage points (so that
    a larger validation set is not read as more errors)."""
    classes = sorted(
        {*current["actual"], *current["predicted"], *base["actual"], *base["predicted"]}
    )
    now, before = _counts(current, classes), _counts(base, classes)
    if np.array_equal(now.sum(axis=1), before.sum(axis=1)):
        return ConfusionChange(classes, now - before, "rows")
    return ConfusionChange(classes, 100 * (_shares(now) - _shares(before)), "points")


def _counts(confusion: pd.DataFrame, classes: list[str]) -> np.ndarray:
    table = pd.crosstab(confusion["actual"], confusion["predicted"])
    return table.reindex(index=classes, columns=classes, fill_value=0).to_numpy(dtype=np.float64)


def _shares(counts: np.ndarray) -> np.ndarray:
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


def confusion_change_figure(change: ConfusionChange, base_name: str) -> Figure:
    """The change per cell, green where better (the diagonal up, the rest down), red where
    worse, blank where unchanged."""
    size = len(change.classes)
    figure = new_figure(height=max(4.2, 1.2 + 0.45 * size), width=max(4.8, 1.6 + 0.5 * size))
    axes = figure.subplots()
    better = np.where(np.eye(size, dtype=bool), change.change, -change.change)
    limit = float(np.abs(better).max()) or 1.0
    axes.imshow(better, cmap="RdYlGn", vmin=-limit, vmax=limit)
    for (row, column), value in np.ndenumerate(change.change):
        if value != 0:
            text = f"{value:+.0f}" if change.unit == "rows" else f"{value:+.1f}"
            colour = "white" if abs(better[row, column]) > limit / 2 else "black"
            axes.text(column, row, text, ha="center", va="center", color=colour)
    ticks = range(size)
    axes.set_xticks(ticks, change.classes, rotation=30, ha="right")
    axes.set_yticks(ticks, change.classes)
    unit = "rows" if change.unit == "rows" else "points of the actual class"
    title_axes(axes, f"Confusion matrix: this run - {base_name} ({unit})", "predicted", "actual")
    return figure
