"""The clean rules (``mlops.data.rules.cleaning``) on a pandas DataFrame held in memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlops.data.rules import rows
from mlops.data.rules.cleaning import (
    Bounds,
    Counts,
    FillStatistics,
    OutlierStatistics,
    clean_table_with,
)
from mlops.params import CleanParams
from mlops.summaries import Change, CleanSummary


def clean_table(
    frame: pd.DataFrame,
    params: CleanParams,
    *,
    target: str,
    exclude_columns: Sequence[str] = (),
    categories: Mapping[str, Sequence[str]] | None = None,
    numeric_columns: Sequence[str] = (),
) -> tuple[pd.DataFrame, CleanSummary]:
    """The cleaned table and a summary of what changed (row counts and per-column counts)."""
    protected = {target, *exclude_columns}
    ops = PandasTable(params, target, protected, categories or {}, numeric_columns)
    cleaned, summary = clean_table_with(ops, frame, params, protected)
    return cleaned.reset_index(drop=True), summary


@dataclass(frozen=True)
class PandasTable:
    """``rules.cleaning.TableOps`` of a DataFrame."""

    params: CleanParams
    target: str
    protected: set[str]
    categories: Mapping[str, Sequence[str]]
    numeric_columns: Sequence[str]

    def clean_rows(self, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[Change, Counts], int]:
        cleaned, changes = rows.clean_rows(
            table, self.params, target=self.target, protected=self.protected,
            categories=self.categories, numeric_columns=self.numeric_columns,
        )  # fmt: skip
        return cleaned, changes, len(cleaned)

    def deduplicate(self, table: pd.DataFrame, drop: bool) -> tuple[pd.DataFrame, int]:
        unique = table.drop_duplicates() if drop else table
        return unique, len(unique)

    def kinds(self, table: pd.DataFrame) -> dict[str, str]:
        return rows.kinds(table)

    def outlier_statistics(
        self, table: pd.DataFrame, columns: Sequence[str], method: str
    ) -> dict[str, OutlierStatistics]:
        return {column: outlier_statistics(table[column], method) for column in columns}

    def count_outside(self, table: pd.DataFrame, bounds: Bounds) -> tuple[Counts, int]:
        outside = _outside(table, bounds)
        counts = {column: int(mask.sum()) for column, mask in outside.items()}
        return counts, int(pd.concat(outside.values(), axis=1).any(axis=1).sum())

    def keep_inside(self, table: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
        outside = _outside(table, bounds)
        return table[~pd.concat(outside.values(), axis=1).any(axis=1)]

    def clip(self, table: pd.DataFrame, bounds: Bounds) -> pd.DataFrame:
        result = table.copy()
        for column, (lower, upper) in bounds.items():
            result[column] = table[column].clip(lower=lower, upper=upper)
        return result

    def drop_missing(
        self, table: pd.DataFrame, columns: Sequence[str]
    ) -> tuple[pd.DataFrame, Counts]:
        dropped: Counts = {}
        for column in columns:
            missing_rows = table[column].isna()
            dropped[column] = int(missing_rows.sum())
            table = table[~missing_rows]
        return table, dropped

    def fill_statistics(
        self, table: pd.DataFrame, strategies: Mapping[str, str]
    ) -> dict[str, FillStatistics]:
        found = {}
        for column, strategy in strategies.items():
            present = table[column].dropna()
            missing = len(table) - len(present)
            statistic = _statistic(present, strategy) if missing and len(present) else None
            found[column] = FillStatistics(len(present), missing, statistic)
        return found

    def fill(self, table: pd.DataFrame, values: Mapping[str, Any]) -> pd.DataFrame:
        result = table.copy()
        for column, value in values.items():
            filled = result[column]
            if pd.api.types.is_integer_dtype(filled) and not float(value).is_integer():
                filled = filled.astype("float64")  # a nullable integer column given a mean
            result[column] = filled.fillna(value)
        return result


def outlier_statistics(values: pd.Series, method: str) -> OutlierStatistics:
    """What ``rules.cleaning.outlier_bounds`` needs of a column, by ``method``."""
    present = values.dropna().astype(float)
    if method == "iqr":
        first, third = present.quantile([0.25, 0.75])
        return OutlierStatistics(len(present), quartiles=(float(first), float(third)))
    return OutlierStatistics(len(present), mean=present.mean(), deviation=present.std())


def _outside(table: pd.DataFrame, bounds: Bounds) -> dict[str, pd.Series]:
    return {
        column: (table[column] < lower) | (table[column] > upper)
        for column, (lower, upper) in bounds.items()
    }


def _statistic(present: pd.Series, strategy: str) -> Any:
    if strategy == "mean":
        return float(present.astype(float).mean())
    if strategy == "median":
        return float(present.astype(float).median())
    if strategy == "most_frequent":  # mode() sorts: the smallest of equally frequent values
        return present.mode().iloc[0]
    return None
