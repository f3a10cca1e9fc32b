"""The validate stage's profile (``mlops.profile.profile_table``) from Spark aggregates.

Three passes over the table: counts, extremes, moments and quantiles of every column; the share
of each numeric column's values in each of its bins; the most frequent values of the categorical
columns. The statistics go through ``mlops.profile``'s own functions, so the profile has the
shape and the rounding of the pandas one.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from mlops.core.drift import distinct_edges, edge_levels
from mlops.data.engines.spark_engine.session import named, quantiles
from mlops.data.engines.spark_engine.tables import pandas_dtype
from mlops.profile import (
    MAX_CATEGORIES,
    QUANTILES,
    NumericSummary,
    category_statistics,
    column_counts,
    column_kind,
    numeric_statistics,
)


def profile_table(frame: DataFrame, relative_error: float) -> dict[str, Any]:
    """``mlops.profile.profile_table`` of ``frame``, from three passes of Spark aggregates."""
    fields = {field.name: field.dataType for field in frame.schema.fields}
    tally = _column_tally(frame, fields, relative_error)
    rows = int(tally["rows"])
    present = {name: int(tally[f"present{number}"]) for number, name in enumerate(fields)}
    dtypes = {name: pandas_dtype(kind, present[name] < rows) for name, kind in fields.items()}
    kinds = {name: _kind(dtype) for name, dtype in dtypes.items()}
    edges = {
        name: distinct_edges(tally[f"quantiles{number}"][len(QUANTILES) :])
        for number, name in enumerate(fields)
        if kinds[name] == "numeric" and present[name]
    }
    shares = _bin_shares(frame, edges)
    categorical = {name: fields[name] for name, kind in kinds.items() if kind == "categorical"}
    top = _top_categories(frame, categorical)
    columns = {}
    for number, name in enumerate(fields):
        missing, distinct = rows - present[name], int(tally[f"distinct{number}"])
        stats = column_counts(kinds[name], dtypes[name], rows, missing, distinct)
        if kinds[name] == "numeric":
            summary = _summary(tally, number, edges.get(name), shares.get(name))
            stats.update(numeric_statistics(summary))
        elif kinds[name] == "categorical":
            stats.update(category_statistics(top[name], present[name]))
        columns[name] = stats
    return {"rows": rows, "columns": columns}


def _column_tally(frame: DataFrame, fields: Mapping[str, T.DataType], relative_error: float) -> Row:
    """Rows; per column values present and distinct; per number min, max, mean, standard
    deviation and quantiles (the profile's, then the bin edges')."""
    levels = [*QUANTILES, *edge_levels()]
    aggregates = [F.count(F.lit(1)).alias("rows")]
    for number, (name, data_type) in enumerate(fields.items()):
        value = named(name)
        aggregates += [
            F.count(value).alias(f"present{number}"),
            _distinct(value, relative_error).alias(f"distinct{number}"),
        ]
        if isinstance(data_type, T.NumericType):
            aggregates += [
                F.min(value).alias(f"min{number}"),
                F.max(value).alias(f"max{number}"),
                F.avg(value).alias(f"mean{number}"),
                F.stddev_samp(value).alias(f"std{number}"),
                quantiles(value, levels, relative_error).alias(f"quantiles{number}"),
            ]
    tally = frame.agg(*aggregates).first()
    assert tally is not None
    return tally


def _kind(dtype: str) -> str:
    return column_kind(pd.Series(dtype=dtype))


def _distinct(value: Column, relative_error: float) -> Column:
    if relative_error > 0:
        return F.approx_count_distinct(value, rsd=max(relative_error, 0.01))
    return F.count_distinct(value)


def _summary(
    tally: Row, number: int, edges: list[float] | None, shares: list[float] | None
) -> NumericSummary | None:
    if not tally[f"present{number}"] or edges is None or shares is None:
        return None
    quantiles = tally[f"quantiles{number}"]
    return NumericSummary(
        minimum=float(tally[f"min{number}"]),
        maximum=float(tally[f"max{number}"]),
        mean=float(tally[f"mean{number}"]),
        std=float(tally[f"std{number}"]) if tally[f"present{number}"] > 1 else 0.0,
        quantiles=[float(q) for q in quantiles[: len(QUANTILES)]],
        edges=edges,
        shares=shares,
    )


def _bin_shares(frame: DataFrame, edges: Mapping[str, list[float]]) -> dict[str, list[float]]:
    """The share of each column's present values in each bin (right-closed, as ``bin_shares``)."""
    if not edges:
        return {}
    tallies = [F.count(named(name)).alias(f"{number}") for number, name in enumerate(edges)]
    for number, (name, cuts) in enumerate(edges.items()):
        tallies += [
            F.count(F.when(named(name) <= cut, 1)).alias(f"{number}_{i}")
            for i, cut in enumerate(cuts)
        ]
    tally = frame.agg(*tallies).first()
    assert tally is not None
    shares = {}
    for number, (name, cuts) in enumerate(edges.items()):
        total = int(tally[f"{number}"])
        below = [0, *(int(tally[f"{number}_{i}"]) for i in range(len(cuts))), total]
        counts = [high - low for low, high in pairwise(below)]
        shares[name] = [count / total if total else 0.0 for count in counts]
    return shares


def _top_categories(frame: DataFrame, fields: Mapping[str, T.DataType]) -> dict[str, pd.Series]:
    """Per column, the counts of its most frequent values as text, most frequent first (equally
    frequent ones in name order, as ``category_counts``): one pass for all the columns."""
    if not fields:
        return {}
    pairs = [
        F.struct(F.lit(name).alias("column"), _as_text(name, data_type).alias("value"))
        for name, data_type in fields.items()
    ]
    counted = (
        frame.select(F.explode(F.array(*pairs)).alias("pair"))
        .select("pair.column", "pair.value")
        .where(F.col("value").isNotNull())
        .groupBy("column", "value")
        .count()
    )
    ranking = Window.partitionBy("column").orderBy(F.desc("count"), "value")
    ranked = counted.withColumn("rank", F.row_number().over(ranking))
    top = ranked.where(F.col("rank") <= MAX_CATEGORIES).orderBy("column", "rank").collect()
    return {
        name: pd.Series(
            [row["count"] for row in top if row["column"] == name],
            index=[row["value"] for row in top if row["column"] == name],
            dtype="int64",
        )
        for name in fields
    }


def _as_text(name: str, data_type: T.DataType) -> Column:
    """A column's values as pandas' ``astype(str)`` writes them (booleans as True and False)."""
    value = named(name)
    if isinstance(data_type, T.BooleanType):
        return F.when(value, "True").when(~value, "False")
    return value.cast("string")
