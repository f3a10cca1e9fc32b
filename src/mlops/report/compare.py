"""Comparisons of this run with the base: metric deltas, params diff, distribution shift."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mlops.core.drift import OTHER_CATEGORY, bin_shares, category_psi, psi
from mlops.report.inputs import NoIntervals, Outputs
from mlops.report.intervals import Intervals, change_intervals

# A metric whose name contains one of these is better when lower.
LOWER_IS_BETTER = ("loss", "error", "_ms", "mib", "bytes", "seconds")
# Errors of a regression and of probabilities: better when lower (also as ``baseline_rmse``).
LOWER_IS_BETTER_ENDINGS = ("mae", "rmse", "mape", "brier")
# Counts, descriptions of the data and settings, not qualities: their changes are shown, neither
# better nor worse.
NEUTRAL = ("rows", "support", "mape_rows", "target_mean", "target_std", "decision_threshold")
# Differences smaller than this are noise of floating point, not a change.
TOLERANCE = 1e-9
# PSI bands, as the monitoring sidecar reads them: below 0.1 stable, from 0.2 drifted.
PSI_CHANGED = 0.1
PSI_DRIFTED = 0.2


@dataclass(frozen=True)
class Delta:
    name: str
    current: float | None
    base: float | None
    interval: tuple[float, float] | None = None  # 95% interval of the change, if known

    @property
    def change(self) -> float | None:
        if self.current is None or self.base is None:
            return None
        return self.current - self.base

    @property
    def trend(self) -> int | None:
        """+1 better, -1 worse, 0 no change (none at all, or its interval holds zero); None when
        it cannot be judged: no interval says whether a change is more than noise, or the
        metric is a count or a setting."""
        change = self.change
        if change is None or is_neutral(self.name):
            return None
        if abs(change) <= TOLERANCE:
            return 0
        if self.interval is None:
            return None
        low, high = self.interval
        if low <= 0 <= high:
            return 0
        better = change < 0 if lower_is_better(self.name) else change > 0
        return 1 if better else -1


def is_neutral(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in NEUTRAL


def lower_is_better(name: str) -> bool:
    lowered = name.lower()
    last = lowered.rsplit(".", 1)[-1]
    return last.endswith(LOWER_IS_BETTER_ENDINGS) or any(
        part in lowered for part in LOWER_IS_BETTER
    )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}``; lists and scalars are leaves."""
    if not isinstance(value, Mapping):
        return {prefix: value} if prefix else {}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def numeric_leaves(document: Mapping[str, Any] | None) -> dict[str, float]:
    if document is None:
        return {}
    return {
        key: float(value)
        for key, value in flatten(document).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def deltas(current: Mapping[str, Any] | None, base: Mapping[str, Any] | None) -> list[Delta]:
    """One row per numeric leaf of either document, in the current document's order."""
    now, before = numeric_leaves(current), numeric_leaves(base)
    names = list(now) + [name for name in before if name not in now]
    return [Delta(name, now.get(name), before.get(name)) for name in names]


def metric_intervals(current: Outputs, base: Outputs, base_name: str) -> Intervals | NoIntervals:
    """The 95% interval of the change of each validation metric both runs' per-row predictions
    recompute (``intervals``), or why there is none."""
    where = "reports/evaluate/predictions.csv"
    if current.predictions is None:
        return NoIntervals(f"this run has no per-row predictions ({where}): run `dvc repro`")
    if base.predictions is None:
        return NoIntervals(
            f"`{base_name}` has no per-row predictions ({where}): its results are older than "
            "the file; pull requests get intervals once main's results include it"
        )
    changes = {
        row.name: row.change
        for row in deltas(current.get("metrics"), base.get("metrics"))
        if row.change is not None and not is_neutral(row.name)
    }
    return change_intervals(current.predictions, base.predictions, changes)


class ParamChange(NamedTuple):
    key: str
    base: Any  # MISSING when the key is new
    current: Any  # MISSING when the key was removed


MISSING = "(absent)"


def params_diff(
    current: Mapping[str, Any] | None, base: Mapping[str, Any] | None
) -> list[ParamChange]:
    """Every params key whose value differs between the base and this run."""
    now, before = flatten(current or {}), flatten(base or {})
    names = list(now) + [name for name in before if name not in now]
    return [
        ParamChange(name, before.get(name, MISSING), now.get(name, MISSING))
        for name in names
        if name not in now or name not in before or now[name] != before[name]
    ]


def distribution_shift(frame: pd.DataFrame, base_profile: Mapping[str, Any]) -> dict[str, float]:
    """PSI of each column of ``frame`` against the base profile of the same column.

    Numeric columns are binned with the base profile's own edges, so the comparison is exact;
    categorical columns compare category shares. Columns absent from either side are left out.
    """
    shifts: dict[str, float] = {}
    for name, reference in base_profile.get("columns", {}).items():
        if name not in frame.columns:
            continue
        column = frame[name]
        if reference.get("kind") == "numeric" and reference.get("bins"):
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            bins = reference["bins"]
            shifts[name] = psi(bins["shares"], bin_shares(values, bins["edges"]))
        elif reference.get("kind") == "categorical" and "shares" in reference:
            shares = column.dropna().astype(str).value_counts(normalize=True)
            current = {str(k): float(v) for k, v in shares.items()}
            shifts[name] = category_psi(reference["shares"], _pool(current, reference["shares"]))
    return shifts


def _pool(current: dict[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """Categories the reference pooled under its "other" bucket are pooled the same way."""
    if OTHER_CATEGORY not in reference:
        return current
    pooled = {key: share for key, share in current.items() if key in reference}
    pooled[OTHER_CATEGORY] = pooled.get(OTHER_CATEGORY, 0.0) + sum(
        share for key, share in current.items() if key not in reference
    )
    return pooled


def shift_level(value: float) -> int:
    """0 stable, 1 changed, 2 drifted (the sidecar's alert level)."""
    return 2 if value >= PSI_DRIFTED else 1 if value >= PSI_CHANGED else 0
