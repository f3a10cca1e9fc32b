"""The clean rules (``mlops.data.rules.cleaning``) on a Spark DataFrame.

Steps 1 and 2 (coercion, string normalisation) look at one row at a time: ``mapInPandas`` runs
``rules.rows.clean_rows`` on every batch of rows, and each batch adds one row carrying its
counts. The table-wide steps are Spark's: duplicates by grouping on every column (the first
position kept), outlier bounds and fill values from Spark's aggregates given to the rules, then
the table is written in the source's order with the column types pandas would give it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from mlops.data.engines.base import CleanSettings
from mlops.data.engines.spark_engine.session import named, quantiles
from mlops.data.engines.spark_engine.tables import (
    COUNTS,
    POSITION,
    data_columns,
    empty_pandas,
    for_arrow,
    write_parquet,
)
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

OUTLYING = "__outlying"


def clean(
    raw: DataFrame,
    out: Path,
    params: CleanParams,
    settings: CleanSettings,
    relative_error: float,
) -> CleanSummary:
    """``clean_table`` of the positioned table ``raw``, written to ``out``; returns its summary."""
    ops = SparkTable(params, settings, relative_error)
    protected = {settings.target, *settings.exclude_columns}
    try:
        cleaned, summary = clean_table_with(ops, raw, params, protected)
        clipped = {name: changes["clipped"] for name, changes in summary["columns"].items()}
        final = ops.as_pandas_would_type(cleaned, clipped)
        write_parquet(final.orderBy(POSITION).drop(POSITION), out)
    finally:
        ops.release()
    return summary


class SparkTable:
    """``rules.cleaning.TableOps`` of a positioned Spark DataFrame. It remembers what pandas would
    have seen when reading the table (the types, the missing values as read, the columns coerced
    from text), and keeps (in memory, spilling to local disk) the tables read more than once,
    until ``release``."""

    def __init__(self, params: CleanParams, settings: CleanSettings, relative_error: float):
        self.params = params
        self.settings = settings
        self.relative_error = relative_error
        self.types: dict[str, T.DataType] = {}
        self.missing: dict[str, int] = {}
        self.coerced: list[str] = []
        self.kept: list[DataFrame] = []

    def clean_rows(self, table: DataFrame) -> tuple[DataFrame, dict[Change, Counts], int]:
        self.types = {field.name: field.dataType for field in table.schema.fields}
        target = self.settings.target
        columns = data_columns(table)
        self.coerced = [
            name
            for name in self.settings.numeric_columns
            if name in columns and name != target
            and not isinstance(self.types[name], T.NumericType)
        ]  # fmt: skip
        staged_schema = T.StructType(
            [
                T.StructField(f.name, T.DoubleType() if f.name in self.coerced else f.dataType)
                for f in table.schema.fields
            ]
            + [T.StructField(COUNTS, T.StringType())]
        )
        clean_batch = partial(
            batch_clean_rows,
            self.params,
            target,
            sorted({target, *self.settings.exclude_columns}),
            dict(self.settings.categories),
            list(self.settings.numeric_columns),
            staged_schema.names,
        )
        staged = self._keep(table.mapInPandas(clean_batch, staged_schema))
        totals = _batch_totals(staged.where(F.col(COUNTS).isNotNull()).select(COUNTS).collect())
        self.missing = totals.get("missing", {})
        changes: dict[Change, Counts] = {
            "coerced": totals.get("coerced", {}),
            "normalised": totals.get("normalised", {}),
        }
        return staged.where(F.col(COUNTS).isNull()).drop(COUNTS), changes, totals["rows"]

    def deduplicate(self, table: DataFrame, drop: bool) -> tuple[DataFrame, int]:
        if drop:
            columns = [named(name) for name in data_columns(table)]
            table = table.groupBy(*columns).agg(F.min(POSITION).alias(POSITION))
        unique = self._keep(table)
        return unique, unique.count()

    def kinds(self, table: DataFrame) -> dict[str, str]:
        return rows.kinds(empty_pandas(table, self.missing))

    def outlier_statistics(
        self, table: DataFrame, columns: Sequence[str], method: str
    ) -> dict[str, OutlierStatistics]:
        """One pass of Spark aggregates for all the columns."""
        aggregates = []
        for number, name in enumerate(columns):
            value = named(name).cast("double")
            aggregates.append(F.count(value).alias(f"present{number}"))
            if method == "iqr":
                levels = quantiles(value, [0.25, 0.75], self.relative_error)
                aggregates.append(levels.alias(f"q{number}"))
            else:
                aggregates.append(F.avg(value).alias(f"mean{number}"))
                aggregates.append(F.stddev_samp(value).alias(f"std{number}"))
        tally = table.agg(*aggregates).first()
        assert tally is not None
        return {
            name: _outlier_statistics(tally, number, method) for number, name in enumerate(columns)
        }

    def count_outside(self, table: DataFrame, bounds: Bounds) -> tuple[Counts, int]:
        outside = _outside(bounds)
        counted = table.agg(
            *[F.count(F.when(test, 1)).alias(name) for name, test in outside.items()],
            F.count(F.when(~_inside(outside), 1)).alias(OUTLYING),
        ).first()
        assert counted is not None
        return {name: int(counted[name]) for name in outside}, int(counted[OUTLYING])

    def keep_inside(self, table: DataFrame, bounds: Bounds) -> DataFrame:
        return table.where(_inside(_outside(bounds)))

    def clip(self, table: DataFrame, bounds: Bounds) -> DataFrame:
        return table.select(*[_clipped(name, bounds.get(name)) for name in table.columns])

    def drop_missing(self, table: DataFrame, columns: Sequence[str]) -> tuple[DataFrame, Counts]:
        """The rows each column drops, counted in one pass."""
        kept_so_far = F.lit(True)
        tallies = []
        for name in columns:
            tallies.append(F.count(F.when(kept_so_far & named(name).isNull(), 1)).alias(name))
            kept_so_far = kept_so_far & named(name).isNotNull()
        counted = table.agg(*tallies).first()
        assert counted is not None
        return table.where(kept_so_far), {name: int(counted[name]) for name in columns}

    def fill_statistics(
        self, table: DataFrame, strategies: Mapping[str, str]
    ) -> dict[str, FillStatistics]:
        """Counts, means and medians in one pass; the most frequent value one query each."""
        aggregates = [F.count(F.lit(1)).alias("rows")]
        for number, (name, strategy) in enumerate(strategies.items()):
            aggregates.append(F.count(named(name)).alias(f"present{number}"))
            if strategy == "mean":
                aggregates.append(F.avg(named(name)).alias(f"statistic{number}"))
            elif strategy == "median":
                median = quantiles(named(name).cast("double"), [0.5], self.relative_error)
                aggregates.append(median.alias(f"statistic{number}"))
        tally = table.agg(*aggregates).first()
        assert tally is not None
        found = {}
        for number, (name, strategy) in enumerate(strategies.items()):
            present = int(tally[f"present{number}"])
            missing = int(tally["rows"]) - present
            statistic = None
            if missing and present:
                statistic = _statistic(table, name, strategy, tally, number)
            found[name] = FillStatistics(present, missing, statistic)
        return found

    def fill(self, table: DataFrame, values: Mapping[str, Any]) -> DataFrame:
        filled = [
            F.coalesce(named(c), F.lit(values[c])).alias(c) if c in values else named(c)
            for c in table.columns
        ]
        return table.select(*filled)

    def as_pandas_would_type(self, table: DataFrame, clipped: Mapping[str, int]) -> DataFrame:
        """Integer columns as pandas leaves them: numbers with a fraction (float64) once they
        had gaps when read, were clipped, or were coerced from text; integers otherwise."""
        typed = []
        for name in table.columns:
            original = self.types.get(name)
            if not isinstance(original, T.IntegralType):
                typed.append(named(name))
            elif self.missing.get(name, 0) > 0 or clipped.get(name, 0) > 0 or name in self.coerced:
                typed.append(named(name).cast("double").alias(name))
            else:
                typed.append(named(name).cast(original).alias(name))
        return table.select(*typed)

    def release(self) -> None:
        for table in self.kept:
            table.unpersist()

    def _keep(self, table: DataFrame) -> DataFrame:
        kept = table.persist(StorageLevel.MEMORY_AND_DISK)
        self.kept.append(kept)
        return kept


def batch_clean_rows(
    params: CleanParams,
    target: str,
    protected: list[str],
    categories: dict[str, Sequence[str]],
    numeric_columns: list[str],
    names: list[str],
    batches: Iterable[pd.DataFrame],
) -> Iterator[pd.DataFrame]:
    """``clean_rows`` on every batch; after each, one row of counts (the rows, the values each
    step changed, the missing values as read) in the ``COUNTS`` column."""
    for batch in batches:
        frame = batch.set_index(POSITION)
        frame.index.name = None
        missing = {str(c): int(n) for c, n in frame.isna().sum().items()}
        cleaned, changes = rows.clean_rows(
            frame, params, target=target, protected=set(protected), categories=categories,
            numeric_columns=numeric_columns,
        )  # fmt: skip
        table = cleaned.reset_index(names=POSITION)
        table[COUNTS] = pd.Series(None, index=table.index, dtype=object)
        yield for_arrow(table[names])
        counts = {"rows": len(frame), "missing": missing, **cast(dict[str, Counts], changes)}
        carrier = pd.DataFrame({name: pd.Series([None], dtype=object) for name in names})
        yield for_arrow(carrier.assign(**{COUNTS: json.dumps(counts)}))


def _batch_totals(rows: list[Row]) -> dict[str, Any]:
    """The batches' counts summed: ``rows``, and per change ``{column: count}``."""
    totals: dict[str, Any] = {"rows": 0}
    for row in rows:
        counts = json.loads(row[COUNTS])
        totals["rows"] += counts.pop("rows")
        for change, per_column in counts.items():
            summed = totals.setdefault(change, {})
            for column, count in per_column.items():
                summed[column] = summed.get(column, 0) + count
    return totals


def _outlier_statistics(tally: Row, number: int, method: str) -> OutlierStatistics:
    present = int(tally[f"present{number}"])
    if method == "iqr":
        quartiles = tally[f"q{number}"]  # None without values
        return OutlierStatistics(present, (quartiles[0], quartiles[1]) if quartiles else None)
    return OutlierStatistics(present, mean=tally[f"mean{number}"], deviation=tally[f"std{number}"])


def _outside(bounds: Bounds) -> dict[str, Column]:
    return {
        name: F.coalesce((named(name) < low) | (named(name) > high), F.lit(False))
        for name, (low, high) in bounds.items()
    }


def _inside(outside: Mapping[str, Column]) -> Column:
    inside = F.lit(True)
    for test in outside.values():
        inside = inside & ~test
    return inside


def _clipped(name: str, bounds: tuple[float, float] | None) -> Column:
    if bounds is None:
        return named(name)
    low, high = bounds
    value = named(name)
    return (
        F.when(value.isNull(), None)
        .otherwise(F.least(F.greatest(value, F.lit(low)), F.lit(high)))
        .alias(name)
    )


def _statistic(table: DataFrame, name: str, strategy: str, tally: Row, number: int) -> Any:
    if strategy == "mean":
        return float(tally[f"statistic{number}"])
    if strategy == "median":
        return float(tally[f"statistic{number}"][0])
    if strategy == "most_frequent":  # the most frequent value; the smallest of equally frequent
        top = table.where(named(name).isNotNull()).groupBy(named(name).alias("value")).count()
        first = top.orderBy(F.desc("count"), "value").first()
        return first["value"] if first is not None else None
    return None
