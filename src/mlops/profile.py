"""Column statistics of a table: the validate stage's profile and the packaged reference profile.

One implementation for both, so the sidecar compares live traffic with exactly the statistics the
pipeline reported. The JSON shape (see ``profile_table``) is a contract with the sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.drift import OTHER_CATEGORY, bin_shares, quantile_edges

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 10
# Categorical shares are kept for this many categories; the rest are summed under OTHER_CATEGORY.
MAX_CATEGORIES = 100


def profile_table(frame: pd.DataFrame) -> dict[str, Any]:
    """``{"rows": n, "columns": {name: column_profile}}`` for every column of ``frame``."""
    return {
        "rows": len(frame),
        "columns": {str(name): profile_column(frame[name]) for name in frame.columns},
    }


def raw_statistics(raw_profile: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The raw table's statistics of ``columns`` (the validate stage's profile: before cleaning),
    for the reference profile. Live traffic is raw too: its missing values are not imputed, nor
    its outliers clipped, so the sidecar compares them with the raw data's, not with the cleaned
    training set's (missing rates of 0 %, an imputed value's spike, a clipped range)."""
    found = raw_profile.get("columns", {})
    return {
        "rows": raw_profile.get("rows", 0),
        "columns": {name: found[name] for name in columns if name in found},
    }


def profile_column(column: pd.Series) -> dict[str, Any]:
    """Type, counts, and either numeric statistics with PSI bins or category shares."""
    missing = int(column.isna().sum())
    present = column.dropna()
    kind = column_kind(column)
    stats = column_counts(kind, str(column.dtype), len(column), missing, int(present.nunique()))
    if kind == "numeric":
        stats.update(_numeric_statistics(present.to_numpy(dtype=np.float64)))
    elif kind == "categorical":
        stats.update(category_statistics(category_counts(present.astype(str))))
    return stats


def column_kind(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_numeric_dtype(column):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(column):
        return "datetime"
    return "categorical"


def column_counts(kind: str, dtype: str, rows: int, missing: int, distinct: int) -> dict[str, Any]:
    """The statistics every column has, whatever its kind."""
    return {
        "kind": kind,
        "dtype": dtype,
        "count": rows - missing,
        "missing": missing,
        "missing_rate": missing / rows if rows else 0.0,
        "distinct": distinct,
    }


def _numeric_statistics(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return numeric_statistics(None)
    edges = quantile_edges(values)
    return numeric_statistics(
        NumericSummary(
            minimum=float(values.min()),
            maximum=float(values.max()),
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
            quantiles=[float(v) for v in np.quantile(values, QUANTILES)],
            edges=edges,
            shares=bin_shares(values, edges),
        )
    )


@dataclass(frozen=True)
class NumericSummary:
    """A numeric column's statistics, however computed (numpy here, Spark on the Spark path)."""

    minimum: float
    maximum: float
    mean: float
    std: float
    quantiles: list[float]  # at QUANTILES
    edges: list[float]  # interior bin edges (mlops.core.drift.quantile_edges)
    shares: list[float]  # of the present values in each bin


def numeric_statistics(summary: NumericSummary | None) -> dict[str, Any]:
    """The profile's numeric fields; all empty for a column without values."""
    if summary is None:
        return {"min": None, "max": None, "mean": None, "std": None, "quantiles": {}, "bins": None}
    return {
        "min": summary.minimum,
        "max": summary.maximum,
        "mean": summary.mean,
        "std": summary.std,
        "quantiles": {str(q): v for q, v in zip(QUANTILES, summary.quantiles, strict=True)},
        "bins": {"edges": summary.edges, "shares": summary.shares},
    }


def category_counts(values: pd.Series) -> pd.Series:
    """How often each value occurs, most frequent first, equally frequent ones in name order."""
    counts = values.value_counts().sort_index()
    return counts.sort_values(ascending=False, kind="stable")


def category_statistics(counts: pd.Series, present: int | None = None) -> dict[str, Any]:
    """Top counts and shares from the counts of the categories, most frequent first: all of them,
    or the most frequent ones when ``present`` (the number of present values) is given."""
    total = int(counts.sum()) if present is None else present
    shares = counts / total if total else counts.astype(float)
    kept = {str(k): float(v) for k, v in shares.iloc[:MAX_CATEGORIES].items()}
    rest = total - int(counts.iloc[:MAX_CATEGORIES].sum())
    if rest > 0:
        kept[OTHER_CATEGORY] = rest / total
    return {
        "top": {str(k): int(v) for k, v in counts.iloc[:TOP_CATEGORIES].items()},
        "shares": kept,
    }


def profile_markdown(profile: dict[str, Any], title: str = "Data profile") -> str:
    """A human summary of a profile: one table for numeric columns, one for the others."""
    columns = profile["columns"]
    lines = [f"# {title}", "", f"{profile['rows']} rows, {len(columns)} columns.", ""]
    numeric = {n: c for n, c in columns.items() if c["kind"] == "numeric"}
    other = {n: c for n, c in columns.items() if c["kind"] != "numeric"}
    if numeric:
        lines += [
            "| column | type | missing | distinct | min | mean | std | max |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, c in numeric.items():
            lines.append(
                f"| {name} | {c['dtype']} | {c['missing']} | {c['distinct']} | {_number(c['min'])}"
                f" | {_number(c['mean'])} | {_number(c['std'])} | {_number(c['max'])} |"
            )
        lines.append("")
    if other:
        lines += ["| column | type | missing | distinct | top values |", "|---|---|---:|---:|---|"]
        for name, c in other.items():
            top = ", ".join(f"{k} ({v})" for k, v in c.get("top", {}).items())
            lines.append(f"| {name} | {c['dtype']} | {c['missing']} | {c['distinct']} | {top} |")
        lines.append("")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
