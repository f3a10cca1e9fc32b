"""The report's plots: the evaluate stage's images, each drawn over the base's where both runs
have its data and measure the same thing, and the change of the confusion matrix.

Pure: images and tables in, ``PlotImage`` (file name, title, PNG bytes) out; the report's shell
writes them next to the report (``reports/pr/plots/``), so that the report's directory holds all
it links and is uploaded as one artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops.core.artifacts import Task
from mlops.figures import CURVES, SCATTERS, importance_label, png
from mlops.report.inputs import Outputs
from mlops.report.overlays import (
    confusion_change,
    confusion_change_figure,
    curves_over_base,
    importance_over_base,
    points_over_base,
)
from mlops.report.tasks import RunTask, run_task
from mlops.task import primary_metric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONFUSION_CHANGE = "confusion_change.png"
# Plots first in this order, then any other PNG the evaluate stage writes, by name.
PLOT_TITLES = {
    "predicted_actual.png": "Predicted against actual",
    "residuals.png": "Residuals against predicted",
    "confusion_matrix.png": "Confusion matrix",
    CONFUSION_CHANGE: "Change of the confusion matrix",
    "roc.png": "ROC curves (one class against the rest)",
    "precision_recall.png": "Precision and recall",
    "calibration.png": "Calibration",
    "importance.png": "Permutation importance",
}
# An evaluate image -> the plot data (reports/evaluate/<name>.csv) it is drawn from.
PLOT_DATA = {
    "predicted_actual.png": "predicted_actual",
    "residuals.png": "residuals",
    "roc.png": "roc",
    "precision_recall.png": "precision_recall",
    "calibration.png": "calibration",
    "importance.png": "importance",
}


@dataclass(frozen=True)
class PlotImage:
    name: str  # file name, as the evaluate stage names it
    title: str
    image: bytes
    over_base: bool  # drawn over the base's


def plot_title(name: str) -> str:
    return PLOT_TITLES.get(name, name.removesuffix(".png").replace("_", " "))


def report_order(names: list[str]) -> list[str]:
    order = list(PLOT_TITLES)
    return sorted(
        names, key=lambda name: (name not in order, order.index(name) if name in order else 0, name)
    )


def plot_images(
    images: Mapping[str, bytes], current: Outputs, base: Outputs | None, base_name: str
) -> list[PlotImage]:
    """The evaluate stage's ``images`` (file name -> PNG) in report order; with a ``base`` whose
    metrics compare with this run's (None: none does), those whose data both runs have drawn
    over the base's, and the confusion matrix followed by its change."""
    same_kind = base is not None and run_task(base).kind == run_task(current).kind
    shown = []
    for name in report_order(list(images)):
        figure = _over_base(name, current, base, base_name) if same_kind and base else None
        if figure is None:
            shown.append(PlotImage(name, plot_title(name), images[name], over_base=False))
        else:
            shown.append(PlotImage(name, plot_title(name), png(figure), over_base=True))
        if name == "confusion_matrix.png" and same_kind and base:
            change = _confusion_change(current, base, base_name)
            if change is not None:
                shown.append(
                    PlotImage(CONFUSION_CHANGE, plot_title(CONFUSION_CHANGE), change, True)
                )
    return shown


def _over_base(name: str, current: Outputs, base: Outputs, base_name: str) -> Figure | None:
    data = PLOT_DATA.get(name)
    now, before = current.tables.get(data or ""), base.tables.get(data or "")
    if data is None or now is None or before is None or now.empty or before.empty:
        return None
    task = run_task(current)
    if data in CURVES:
        return curves_over_base(data, now, before, base_name, task.kind == "binary")
    if data in SCATTERS:
        return points_over_base(data, now, before, base_name)
    return importance_over_base(now, before, base_name, _importance_measure(task))


def _importance_measure(task: RunTask) -> str:
    kind: Task = "regression" if task.kind == "regression" else "classification"
    return importance_label(primary_metric(kind, 2 if task.kind == "binary" else 3))


def _confusion_change(current: Outputs, base: Outputs, base_name: str) -> bytes | None:
    now, before = current.tables.get("confusion"), base.tables.get("confusion")
    if now is None or before is None or now.empty or before.empty:
        return None
    return png(confusion_change_figure(confusion_change(now, before), base_name))
