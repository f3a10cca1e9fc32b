"""The clean stage's rules, written once for both engines.

``clean_table_with`` runs the five steps of the clean stage (``mlops.data.clean``) in their
order and keeps their accounts; outlier bounds (``outlier_bounds``) and the value that fills a
gap (``imputation_value``) follow from column statistics. What the steps ask of a table (its
unique rows, statistics of its columns, clipping, filtering, filling) is the ``TableOps`` of an
engine: pandas works on a DataFrame, Spark on a Spark DataFrame with Spark's aggregates, so the
rules never see which one holds the rows, and a table too large for memory is cleaned by exactly
the rules of a small one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mlops.params import CleanParams, ImputeParams, OutlierParams
from mlops.stage import StageError
from mlops.summaries import Change, CleanSummary, ColumnChanges

NUMERIC_STRATEGIES = ("mean", "median", "constant", "drop", "none")
CATEGORICAL_STRATEGIES = ("most_frequent", "constant", "drop", "none")
VALUE_CHANGES: tuple[Change, ...] = ("normalised", "coerced", "imputed", "clipped")

Counts = dict[str, int]
Bounds = dict[str, tuple[float, float]]
TableT = TypeVar("TableT")


@dataclass(frozen=True)
class OutlierStatistics:
    """What the outlier bounds of a column are computed from, however computed: its number of
    present values, and its quartiles (``iqr``) or mean and sample standard deviation
    (``zscore``)."""

    present: int
    quartiles: tuple[float, float] | None = None
    mean: float | None = None
    deviation: float | None = None


@dataclass(frozen=True)
class FillStatistics:
    """A column's present and missing values, and the statistic of its present values its
    strategy names: ``mean``, ``median`` or ``most_frequent`` (the smallest of equally frequent
    values); None for another strategy, or when nothing is missing or present."""

    present: int
    missing: int
    statistic: Any = None


class TableOps(Protocol[TableT]):
    """What the clean rules ask of an engine's table; each engine does it its own way."""

    def clean_rows(self, table: TableT) -> tuple[TableT, dict[Change, Counts], int]:
        """Steps 1 and 2 on every row (``rules.rows.clean_rows``): the rows, the values each
        step changed, and the number of rows."""
        ...

    def deduplicate(self, table: TableT, drop: bool) -> tuple[TableT, int]:
        """The rows less exact duplicates (the first of each kept) when ``drop``; their count."""
        ...

    def kinds(self, table: TableT) -> dict[str, str]:
        """``rules.rows.kind`` of every column, in table order."""
        ...

    def outlier_statistics(
        self, table: TableT, columns: Sequence[str], method: str
    ) -> dict[str, OutlierStatistics]:
        """Of each column, what ``method`` (``iqr``, ``zscore``) computes its bounds from."""
        ...

    def count_outside(self, table: TableT, bounds: Bounds) -> tuple[Counts, int]:
        """Per column its values outside its bounds; the rows with any value outside."""
        ...

    def keep_inside(self, table: TableT, bounds: Bounds) -> TableT:
        """The rows with no value outside its column's bounds (a missing value is inside)."""
        ...

    def clip(self, table: TableT, bounds: Bounds) -> TableT:
        """Each column's values clipped to its bounds (given only for columns with values
        outside, so a column clipping leaves unchanged keeps its type)."""
        ...

    def drop_missing(self, table: TableT, columns: Sequence[str]) -> tuple[TableT, Counts]:
        """Drop the rows missing a value of each column in turn; the rows each one dropped."""
        ...

    def fill_statistics(
        self, table: TableT, strategies: Mapping[str, str]
    ) -> dict[str, FillStatistics]:
        """Of each column, its ``FillStatistics`` under its strategy."""
        ...

    def fill(self, table: TableT, values: Mapping[str, Any]) -> TableT:
        """Each column's missing values replaced by its value."""
        ...


def clean_table_with(
    ops: TableOps[TableT], table: TableT, params: CleanParams, protected: Set[str]
) -> tuple[TableT, CleanSummary]:
    """The cleaned table and what changed: steps 1 and 2 (``ops.clean_rows``), then duplicates,
    outliers and gaps, each on the result of the one before. ``protected`` (the target and the
    excluded columns) is never de-outliered nor imputed."""
    table, row_changes, rows_in = ops.clean_rows(table)
    kinds = ops.kinds(table)
    changes = new_changes(kinds)
    for change, counts in row_changes.items():
        record_changes(changes, change, counts)
    table, rows_unique = ops.deduplicate(table, params.drop_duplicates)
    features = [column for column in kinds if column not in protected]
    numeric = [column for column in features if kinds[column] == "numeric"]
    table, clipped, outlier_drops, outlying = treat_outliers(ops, table, numeric, params.outliers)
    record_changes(changes, "clipped", clipped)
    record_changes(changes, "dropped", outlier_drops)
    rows_inlying = rows_unique - outlying
    strategies = imputation_strategies(kinds, features, params.impute)
    table, imputed, missing_drops = impute(ops, table, strategies, kinds, params.impute)
    record_changes(changes, "imputed", imputed)
    record_changes(changes, "dropped", missing_drops)
    rows_out = rows_inlying - sum(missing_drops.values())
    return table, clean_summary(changes, rows_in, rows_unique, rows_inlying, rows_out)


# --- outliers ------------------------------------------------------------------------------------


def treat_outliers(
    ops: TableOps[TableT], table: TableT, columns: Sequence[str], params: OutlierParams
) -> tuple[TableT, Counts, Counts, int]:
    """Clip outliers to their bounds, or drop their rows; returns (table, clipped per column,
    dropped per column, rows dropped)."""
    if params.method == "none" or not columns:
        return table, {}, {}, 0
    statistics = ops.outlier_statistics(table, columns, params.method)
    bounds = {}
    for column in columns:
        found = outlier_bounds(statistics[column], params.method, params.threshold)
        if found is not None:
            bounds[column] = found
    if not bounds:
        return table, {}, {}, 0
    counts, outlying = ops.count_outside(table, bounds)
    if params.action == "drop":
        return ops.keep_inside(table, bounds), {}, counts, outlying
    clipping = {column: bounds[column] for column, count in counts.items() if count}
    return ops.clip(table, clipping), counts, {}, 0


def outlier_bounds(
    statistics: OutlierStatistics, method: str, threshold: float
) -> tuple[float, float] | None:
    """(lower, upper) beyond which a value is an outlier; None if the column has too few values
    or (z-score) no spread."""
    if statistics.present < 2:
        return None
    if method == "iqr":
        assert statistics.quartiles is not None
        first, third = statistics.quartiles
        return iqr_bounds(first, third, threshold)
    assert statistics.mean is not None and statistics.deviation is not None
    return zscore_bounds(statistics.mean, statistics.deviation, threshold)


def iqr_bounds(first: float, third: float, threshold: float) -> tuple[float, float]:
    """``threshold`` interquartile ranges below the first quartile and above the third."""
    spread = third - first
    return first - threshold * spread, third + threshold * spread


def zscore_bounds(mean: float, deviation: float, threshold: float) -> tuple[float, float] | None:
    """``threshold`` standard deviations either side of the mean; None without any spread."""
    if not deviation > 0:
        return None
    return mean - threshold * deviation, mean + threshold * deviation


# --- missing values ------------------------------------------------------------------------------


def impute(
    ops: TableOps[TableT],
    table: TableT,
    strategies: Mapping[str, str],
    kinds: Mapping[str, str],
    params: ImputeParams,
) -> tuple[TableT, Counts, Counts]:
    """Fill or drop missing values per column; returns (table, imputed, dropped).

    Rows are dropped first (every ``drop`` column), so fill statistics describe the rows kept.
    """
    dropping = [column for column, strategy in strategies.items() if strategy == "drop"]
    dropped: Counts = {}
    if dropping:
        table, dropped = ops.drop_missing(table, dropping)
    filling = {
        c: strategy for c, strategy in strategies.items() if strategy not in ("drop", "none")
    }
    if not filling:
        return table, {}, dropped
    statistics = ops.fill_statistics(table, filling)
    values, imputed = {}, {}
    for column, strategy in filling.items():
        found = statistics[column]
        if found.missing == 0:
            continue
        numeric = kinds[column] == "numeric"
        values[column] = imputation_value(
            strategy, found.statistic, found.present, params.fill_value, column, numeric
        )
        imputed[column] = found.missing
    return ops.fill(table, values), imputed, dropped


def imputation_strategies(
    kinds: Mapping[str, str], columns: Sequence[str], params: ImputeParams
) -> dict[str, str]:
    """The strategy of every imputable column of ``columns`` (``kinds``: every column of the
    table, in order), checking each per-column override."""
    for column in params.columns:
        if column not in kinds:
            raise StageError(
                f"clean.impute.columns.{column}: no such column; the table has {list(kinds)}"
            )
        if column not in columns:
            raise StageError(
                f"clean.impute.columns.{column}: '{column}' is the target or an excluded column "
                "(data.target, data.exclude_columns), which are never imputed"
            )
    strategies = {}
    for column in columns:
        if kinds[column] == "other":
            continue
        numeric = kinds[column] == "numeric"
        allowed = NUMERIC_STRATEGIES if numeric else CATEGORICAL_STRATEGIES
        strategy = params.columns.get(column, params.numeric if numeric else params.categorical)
        if strategy not in allowed:
            raise StageError(
                f"clean.impute.columns.{column}: '{strategy}' does not apply to the "
                f"{'numeric' if numeric else 'categorical'} column '{column}'; "
                f"expected one of {list(allowed)}"
            )
        strategies[column] = strategy
    return strategies


def imputation_value(
    strategy: str,
    statistic: Any,
    present: int,
    fill_value: str | float,
    column: str,
    numeric: bool,
) -> Any:
    """What fills ``column``'s gaps: the ``statistic`` its strategy names (mean, median or most
    frequent value of its ``present`` values), or the constant ``fill_value``."""
    if strategy == "constant":
        return _constant_for(numeric, fill_value, column)
    if present == 0:
        raise StageError(
            f"column '{column}' has no values to compute its {strategy} from; set "
            f"clean.impute.columns.{column} to none, drop or constant, or drop the column at "
            "ingest (data.drop_columns)"
        )
    return statistic


def _constant_for(numeric: bool, fill_value: str | float, column: str) -> str | float:
    if not numeric:
        return str(fill_value)
    if isinstance(fill_value, str):
        raise StageError(
            f"clean.impute.fill_value: {fill_value!r} is not a number, but the numeric column "
            f"'{column}' is imputed with constant; set a number or another strategy for it"
        )
    return fill_value


# --- the summary ---------------------------------------------------------------------------------


def new_changes(columns: Iterable[object]) -> dict[str, ColumnChanges]:
    """No change yet in any of ``columns`` (``dropped``: rows dropped because of the column)."""
    return {
        str(column): ColumnChanges(normalised=0, coerced=0, imputed=0, clipped=0, dropped=0)
        for column in columns
    }


def record_changes(changes: dict[str, ColumnChanges], change: Change, counts: Counts) -> None:
    for column, count in counts.items():
        changes[column][change] += count


def clean_summary(
    changes: dict[str, ColumnChanges],
    rows_in: int,
    rows_unique: int,
    rows_inlying: int,
    rows_out: int,
) -> CleanSummary:
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "duplicates_dropped": rows_in - rows_unique,
        "rows_dropped_outliers": rows_unique - rows_inlying,
        "rows_dropped_missing": rows_inlying - rows_out,
        "columns": changes,
    }


def describe(summary: CleanSummary) -> str:
    """One line for the log: rows in and out, and how many values each step changed."""
    columns = summary["columns"].values()
    values = ", ".join(f"{sum(c[change] for c in columns)} {change}" for change in VALUE_CHANGES)
    return (
        f"clean: {summary['rows_in']} -> {summary['rows_out']} rows "
        f"({summary['duplicates_dropped']} duplicate, {summary['rows_dropped_outliers']} outlier "
        f"and {summary['rows_dropped_missing']} incomplete rows dropped); values {values}"
    )
