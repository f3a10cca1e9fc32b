"""Column statistics of a table: the validate stage's profile and the packaged reference profile.

One implementation for both, so the sidecar compares live traffic with exactly the statistics the
pipeline reported. The JSON shape (see ``profile_table``) is a contract with the sidecar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops.drift import OTHER_CATEGORY, bin_shares, quantile_edges

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


def profile_column(column: pd.Series) -> dict[str, Any]:
    """Type, counts, and either numeric statistics with PSI bins or category shares."""
    missing = int(column.isna().sum())
    present = column.dropna()
    stats: dict[str, Any] = {
        "kind": column_kind(column),
        "dtype": str(column.dtype),
        "count": len(present),
        "missing": missing,
        "missing_rate": missing / len(column) if len(column) else 0.0,
        "distinct": int(present.nunique()),
    }
    if stats["kind"] == "numeric":
        stats.update(_numeric_statistics(present.to_numpy(dtype=np.float64)))
    elif stats["kind"] == "categorical":
        stats.update(_category_statistics(present.astype(str)))
    return stats


def column_kind(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_numeric_dtype(column):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(column):
        return "datetime"
    return "categorical"


def _numeric_statistics(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "quantiles": {}, "bins": None}
    edges = quantile_edges(values)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "quantiles": {
            str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        },
        "bins": {"edges": edges, "shares": bin_shares(values, edges)},
    }


def _category_statistics(values: pd.Series) -> dict[str, Any]:
    counts = values.value_counts()
    shares = counts / counts.sum() if len(counts) else counts.astype(float)
    kept = {str(k): float(v) for k, v in shares.iloc[:MAX_CATEGORIES].items()}
    if len(shares) > MAX_CATEGORIES:
        kept[OTHER_CATEGORY] = float(shares.iloc[MAX_CATEGORIES:].sum())
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
