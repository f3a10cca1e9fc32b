"""What the report is built from: the stage outputs of this run and of the base revision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Document = dict[str, Any]

# The stage outputs the report reads, relative to the project root, as dvc.yaml declares them.
STAGE_FILES = {
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


@dataclass(frozen=True)
class Outputs:
    """The parsed params and stage outputs of one revision; None where a file is absent."""

    params: Document | None = None
    files: dict[str, Document | None] = field(default_factory=dict)

    def get(self, name: str) -> Document | None:
        return self.files.get(name)

    @property
    def has_metrics(self) -> bool:
        return self.get("metrics") is not None


@dataclass(frozen=True)
class Plot:
    title: str
    link: str  # relative to the report's directory


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
