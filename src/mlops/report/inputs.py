"""What the report is built from: the stage outputs of this run and of the base revision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops.report.intervals import Intervals, RowPredictions

Document = dict[str, Any]

# The stage outputs the report reads, relative to the project root, as dvc.yaml declares them.
STAGE_FILES = {
    "harvest": ("harvest", "reports/harvest/summary.json"),
    "validation": ("validate", "reports/validate/validation.json"),
    "profile": ("validate", "reports/validate/profile.json"),
    "clean": ("clean", "reports/clean/summary.json"),
    "label": ("label", "reports/label/summary.json"),
    "split": ("split", "reports/split/summary.json"),
    "training": ("train", "reports/train/best_params.json"),
    "metrics": ("evaluate", "reports/evaluate/metrics.json"),
    "slices": ("evaluate", "reports/evaluate/slices.json"),
    "verdict": ("accept", "reports/accept/verdict.json"),
    "parity": ("package", "reports/package/parity.json"),
    "resources": ("package", "reports/package/resources.json"),
}
PLOTS_DIR = "reports/evaluate/plots"
# The evaluate stage's plot data (reports/evaluate/<name>.csv) and the columns holding labels or
# names (read as text: a class "1" stays "1"), for the plots of this run over the base's.
PLOT_TABLES = {
    "confusion": ("actual", "predicted"),
    "roc": ("class",),
    "precision_recall": ("class",),
    "calibration": ("class",),
    "predicted_actual": (),
    "residuals": (),
    "importance": ("feature",),
}
# Per-row predictions (the evaluate stage's PROBABILITY_PREFIX names the probability columns).
PREDICTIONS_FILE = "reports/evaluate/predictions.csv"
PROBABILITY_PREFIX = "probability "


@dataclass(frozen=True)
class Outputs:
    """The parsed params and stage outputs of one revision; None where a file is absent."""

    params: Document | None = None
    files: dict[str, Document | None] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # PLOT_TABLES found
    predictions: RowPredictions | None = None

    def get(self, name: str) -> Document | None:
        return self.files.get(name)

    @property
    def has_metrics(self) -> bool:
        return self.get("metrics") is not None


@dataclass(frozen=True)
class Plot:
    title: str
    link: str  # relative to the report's directory
    over_base: bool = False  # drawn over the base's (dashed, orange)


@dataclass(frozen=True)
class NoIntervals:
    """Why the metric changes carry no interval."""

    reason: str


@dataclass(frozen=True)
class ReportInputs:
    model_name: str
    current: Outputs
    base: Outputs  # empty when the base revision does not exist or has no outputs yet
    base_name: str  # as asked, e.g. "main"
    base_commit: str | None  # None when the base revision does not exist
    stale: tuple[str, ...] = ()  # stages DVC reports as not reproduced in this workspace
    shift: dict[str, float] = field(default_factory=dict)  # PSI per column vs the base profile
    plots: tuple[Plot, ...] = ()
    champion: Document | None = None  # reports/pr/champion.json, written by `make champion`
    trigger: Document | None = None  # the retrain event's payload, when a retrain made this run
    # The 95% interval of each validation metric's change; None when nothing is compared.
    intervals: Intervals | NoIntervals | None = None
    images_url: str | None = None  # where the images are kept: the CI run (its artifact)
