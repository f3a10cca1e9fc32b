"""The Spark engine's validate: the pandas schema on every batch of rows, gathered across the
table.

``mapInPandas`` runs ``rules.validation.failure_cases`` on each batch; each batch keeps, per
column and check, its number of failing rows and its first failing values and rows; Spark
gathers these into the report ``rules.validation.validation_report`` writes, rows named by their
position in the whole table. Uniqueness is checked across the table with Spark.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

from mlops.data.engines.spark_engine.profile import profile_table
from mlops.data.engines.spark_engine.session import named
from mlops.data.engines.spark_engine.tables import (
    POSITION,
    empty_pandas,
    for_arrow,
    read_positioned,
)
from mlops.data.rules.validation import (
    EXAMPLES,
    columns_to_normalise,
    failure_cases,
    validation_report,
)
from mlops.params import CleanParams, DataParams
from mlops.stage import StageError
from mlops.summaries import ValidationReport

CASES = "column string, check string, value string, row long, count long"
ROWS_SEEN = "__rows__"  # pseudo-checks carrying a batch's row count and normalised values
NORMALISED = "__normalised__"
UNIQUENESS = "field_uniqueness"


def validate(
    spark: SparkSession,
    path: Path,
    schema: pa.DataFrameSchema,
    data: DataParams,
    clean: CleanParams,
    relative_error: float,
) -> tuple[dict[str, Any], ValidationReport]:
    """(profile, validation report) of the table at ``path``, read once and kept (in memory,
    spilling to local disk) while both are computed."""
    frame = read_positioned(spark, path).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        profile = profile_table(frame.drop(POSITION), relative_error)
        missing = {name: column["missing"] for name, column in profile["columns"].items()}
        normalise = columns_to_normalise(empty_pandas(frame, missing), data, clean)
        report = validation(frame, schema, normalise)
    finally:
        frame.unpersist()
    return profile, report


def validation(
    frame: DataFrame, schema: pa.DataFrameSchema, normalise: Sequence[str]
) -> ValidationReport:
    """``rules.validation.validate_frame``'s report of the positioned ``frame``."""
    if schema.unique:
        raise StageError(
            f"the schema declares unique: {schema.unique} for the table; on Spark declare "
            "`unique: true` on single columns instead"
        )
    unique = [
        str(name)
        for name, column in schema.columns.items()
        if column.unique and name in frame.columns
    ]
    per_batch = (
        schema.update_columns({name: {"unique": False} for name in unique}) if unique else schema
    )
    cases = frame.mapInPandas(partial(batch_failures, per_batch, list(normalise)), CASES)
    for name in unique:
        cases = cases.unionByName(_duplicates(frame, name))
    cases = cases.persist()
    try:
        gathered = _first_cases(cases).collect()
    finally:
        cases.unpersist()
    return _report(gathered, schema)


def batch_failures(
    schema: pa.DataFrameSchema, normalise: list[str], batches: Iterable[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """Per batch: the failing rows' count and first values and rows of every (column, check)."""
    for batch in batches:
        frame = batch.set_index(POSITION)
        frame.index.name = None
        cases, normalised = failure_cases(frame, schema, normalise)
        yield for_arrow(condensed_cases(cases, normalised, len(frame)))


def condensed_cases(cases: pd.DataFrame, normalised: Mapping[str, int], rows: int) -> pd.DataFrame:
    """``cases`` reduced to what the report can show: per (column, check) the first EXAMPLES
    rows, the first row of each of the first EXAMPLES values, and the count (a row without a
    position); plus the rows seen and the values normalised, as pseudo-checks."""
    records: list[tuple[Any, ...]] = [("", ROWS_SEEN, None, None, rows)]
    records += [(column, NORMALISED, None, None, n) for column, n in normalised.items() if n]
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        located = group[group["index"].notna()].sort_values("index", kind="stable")
        if located.empty:  # a check on the whole column: each distinct case once
            values = dict.fromkeys(group["failure_case"].map(encode_value))
            records += [(column, check, value, None, 0) for value in values]
            continue
        first_rows = located.head(EXAMPLES)
        first_values = located.drop_duplicates("failure_case").head(EXAMPLES)
        examples = pd.concat([first_rows, first_values]).drop_duplicates("index")
        records += [
            (column, check, encode_value(value), int(index), 0)
            for value, index in zip(examples["failure_case"], examples["index"], strict=True)
        ]
        records.append((column, check, None, None, len(located)))
    condensed = pd.DataFrame.from_records(
        records, columns=["column", "check", "value", "row", "count"]
    )
    return condensed.astype({"row": "Int64", "count": "int64"})


def encode_value(value: Any) -> str | None:
    """A failing value as JSON that decodes to what the report would show (missing is NaN)."""
    if value is None:
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        value = math.nan
    if not isinstance(value, str | int | float | bool):
        value = str(value)
    return json.dumps([value])


def _duplicates(frame: DataFrame, name: str) -> DataFrame:
    """The rows whose value in column ``name`` another row shares, as failing cases."""
    present = frame.where(named(name).isNotNull())
    repeated = present.groupBy(named(name).alias("__value")).count().where(F.col("count") > 1)
    rows = present.join(repeated, named(name).eqNullSafe(F.col("__value")), "left_semi")
    label = [F.lit(name).alias("column"), F.lit(UNIQUENESS).alias("check")]
    examples = rows.select(
        *label,
        F.to_json(F.array(named(name))).alias("value"),
        F.col(POSITION).alias("row"),
        F.lit(0).cast("long").alias("count"),
    )
    total = rows.agg(F.count(F.lit(1)).alias("count")).select(
        *label,
        F.lit(None).cast("string").alias("value"),
        F.lit(None).cast("long").alias("row"),
        "count",
    )
    return examples.unionByName(total)


def _first_cases(cases: DataFrame) -> DataFrame:
    """All batches' cases reduced again, across the table: the counts summed, the first rows
    and the first rows of the first values of every (column, check), each rowless case once."""
    check = Window.partitionBy("column", "check")
    located = cases.where(F.col("row").isNotNull())
    first_rows = located.withColumn("n", F.row_number().over(check.orderBy("row")))
    first_seen = located.groupBy("column", "check", "value").agg(F.min("row").alias("row"))
    first_values = first_seen.withColumn("n", F.row_number().over(check.orderBy("row")))
    totals = (
        cases.where(F.col("row").isNull() & (F.col("count") > 0))
        .groupBy("column", "check")
        .agg(F.sum("count").cast("long").alias("count"))
    )
    rowless = cases.where(F.col("row").isNull() & (F.col("count") == 0))
    return (
        _cases(first_rows.where(F.col("n") <= EXAMPLES))
        .unionByName(_cases(first_values.where(F.col("n") <= EXAMPLES)))
        .unionByName(_cases(totals, value=None, row=None))
        .unionByName(_cases(rowless.select("column", "check", "value").distinct(), row=None))
    )


def _cases(frame: DataFrame, **constants: None) -> DataFrame:
    """``frame`` in the shape of ``CASES``: ``constants`` (null) for the fields it lacks, and a
    count of 0 (an example, not a total) unless it has one."""
    columns = [F.col("column"), F.col("check")]
    for name, kind in (("value", "string"), ("row", "long")):
        columns.append(F.lit(None).cast(kind).alias(name) if name in constants else F.col(name))
    has_count = "count" in frame.columns
    columns.append(F.col("count") if has_count else F.lit(0).cast("long").alias("count"))
    return frame.select(*columns)


def _report(gathered: list[Row], schema: pa.DataFrameSchema) -> ValidationReport:
    totals = {(r["column"], r["check"]): int(r["count"]) for r in gathered if r["count"] > 0}
    rows = totals.pop(("", ROWS_SEEN), 0)
    normalised = {column: count for (column, check), count in totals.items() if check == NORMALISED}
    counts = {key: count for key, count in totals.items() if key[1] != NORMALISED}
    examples = [
        (
            r["column"],
            r["check"],
            json.loads(r["value"])[0] if r["value"] is not None else None,
            r["row"],
        )
        for r in gathered
        if r["count"] == 0
    ]
    cases = pd.DataFrame(
        examples, columns=["column", "check", "failure_case", "index"], dtype=object
    )
    located = cases[cases["index"].notna()].drop_duplicates(["column", "check", "index"])
    cases = pd.concat([located.sort_values("index", kind="stable"), cases[cases["index"].isna()]])
    return validation_report(cases, schema, rows, normalised, counts)
