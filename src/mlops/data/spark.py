"""Ingest, validate and clean on Spark, for a source larger than one machine's memory.

``spark.enabled: true`` in params.yaml sends these three stages here (their commands in dvc.yaml
stay the same), and ``spark.master`` says where they run: ``local[N]`` on this machine, or a
cluster (``spark://host:7077``, ``yarn``, ``k8s://...``). They write what the pandas stages write,
with the pandas stages' own logic:

- ingest reads the files with Spark, types CSV columns as pandas would (integers, numbers,
  booleans, text; pandas' missing-value markers), keeps the source's row order and writes the
  table as a directory of Parquet files;
- validate runs the repository's pandera schema (the pandas one) on every batch of rows in
  ``mapInPandas`` and gathers, per column and check, the number of failing rows and the first
  failing values and rows into the same report; uniqueness is checked across the whole table;
  the profile's statistics are Spark aggregates;
- clean runs the steps that look at one row at a time (coercion, string normalisation) with the
  pandas functions in ``mapInPandas``, and the table-wide ones with Spark: duplicates, then
  outlier bounds and imputation values from the clean stage's rules applied to Spark statistics.

Quantiles, medians and distinct counts are exact with ``spark.relative_error: 0``, as pandas
computes them (memory grows with a column's distinct values), approximate above it (bounded
memory). A row's position, which the failure report names, is its 0-based position in the table:
files in name order, rows in file order, as the pandas stages read them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandas._libs.parsers import STR_NA_VALUES  # the markers pandas.read_csv reads as missing
from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from mlops.core.drift import distinct_edges, edge_levels
from mlops.data.clean import (
    clean_rows,
    clean_summary,
    imputation_strategies,
    imputation_value,
    iqr_bounds,
    new_changes,
    record_changes,
    zscore_bounds,
)
from mlops.data.ingest import check_drop_columns, format_of
from mlops.data.validate import EXAMPLES, columns_to_normalise, failure_cases, validation_report
from mlops.params import CleanParams, DataParams, SparkParams
from mlops.profile import (
    MAX_CATEGORIES,
    QUANTILES,
    NumericSummary,
    category_statistics,
    column_counts,
    column_kind,
    numeric_statistics,
)
from mlops.stage import StageError

POSITION = "__position"  # a row's 0-based position in the table
COUNTS = "__counts"  # a batch's change counts, in the one row per batch that carries them
SETTINGS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.executorEnv.PYTHONWARNINGS": "ignore::FutureWarning",
}
JAVA_OPTIONS = "spark.driver.extraJavaOptions"
ERROR_CLASS = re.compile(r"(\[[A-Z][A-Z_.]+\] [^\n]*?)(?: SQLSTATE: \w+)?$", re.MULTILINE)
LOGGING = Path(__file__).with_name("spark-log4j2.properties")
LOCAL_SETTINGS = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}
FILE_SCHEMES = ("file", "hdfs", "s3a", "gs", "abfs", "abfss", "wasb", "wasbs", "viewfs")
TRUE_TEXT = ("True", "TRUE", "true")  # what pandas.read_csv reads as booleans
FALSE_TEXT = ("False", "FALSE", "false")
INTEGER_DTYPES = {
    T.ByteType: "int8",
    T.ShortType: "int16",
    T.IntegerType: "int32",
    T.LongType: "int64",
}
CASES = "column string, check string, value string, row long, count long"
ROWS_SEEN = "__rows__"  # pseudo-checks carrying a batch's row count and normalised values
NORMALISED = "__normalised__"
UNIQUENESS = "field_uniqueness"
OUTLYING = "__outlying"
ORDER_NAMES = ("__file", "__block", "__read")  # a file, a block of it, the rows as read from it


# --- the session ---------------------------------------------------------------------------------


def spark_session(params: SparkParams) -> SparkSession:
    """A session on ``spark.master`` whose Python workers run this interpreter (the project's
    virtualenv); on a cluster the project must be installed there at the same path."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    local = params.master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    settings = {
        **SETTINGS,
        **(LOCAL_SETTINGS if local else {}),
        **{key: str(value) for key, value in params.config.items()},
    }
    java_options = settings.get(JAVA_OPTIONS, "")
    settings[JAVA_OPTIONS] = f"-Dlog4j2.configurationFile={LOGGING.as_uri()} {java_options}".strip()
    builder = SparkSession.builder.master(params.master).appName("mlops")
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def session(params: SparkParams) -> Iterator[SparkSession]:
    spark = spark_session(params)
    try:
        yield spark
    finally:
        spark.stop()


def spark_failure(error: Exception) -> str:
    """The root cause of a Spark error, in one line: the last ``[ERROR_CLASS] message`` of the
    layers Spark wraps it in, without its SQL state."""
    causes = ERROR_CLASS.findall(str(error))
    return causes[-1].strip() if causes else str(error).strip().splitlines()[0]


def _column(name: str) -> Column:
    """A column by its name, whatever characters the name holds."""
    return F.col("`" + name.replace("`", "``") + "`")


def _data_columns(frame: DataFrame) -> list[str]:
    return [name for name in frame.columns if name not in (POSITION, COUNTS)]


# --- tables --------------------------------------------------------------------------------------


def read_positioned(spark: SparkSession, path: Path) -> DataFrame:
    """The Parquet table at ``path`` (a file, or a directory of part files) with each row's
    position: the rows of the files before it in name order, plus its index in its file."""
    file_name, row_index = "__file", "__row_index"
    try:
        located = spark.read.parquet(str(path)).select(
            "*",
            F.col("_metadata.file_name").alias(file_name),
            F.col("_metadata.row_index").alias(row_index),
        )
    except PySparkException as error:
        raise StageError(f"{path}: cannot be read as Parquet ({spark_failure(error)})") from None
    sizes = sorted(
        (row[file_name], row["count"]) for row in located.groupBy(file_name).count().collect()
    )
    starts = accumulate([0, *(size for _, size in sizes[:-1])])
    offsets = F.create_map(
        *[
            F.lit(value)
            for (name, _), start in zip(sizes, starts, strict=True)
            for value in (name, start)
        ]
    )
    position = offsets[F.col(file_name)] + F.col(row_index)
    return located.withColumn(POSITION, position.cast("long")).drop(file_name, row_index)


def write_parquet(frame: DataFrame, out: Path) -> None:
    """``frame`` as a directory of Parquet files at ``out``, its rows in part-file name order;
    what was at ``out`` (a file of the pandas stage, an earlier directory) is replaced only once
    the new directory is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.spark-{os.getpid()}")
    try:
        frame.write.mode("overwrite").parquet(str(staging))
    except (PySparkException, Py4JJavaError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise StageError(f"{out}: writing failed ({spark_failure(error)})") from None
    for extra in [*staging.glob("_*"), *staging.glob(".*")]:  # _SUCCESS and checksum files
        extra.unlink()
    if out.is_dir():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired)
    else:
        out.unlink(missing_ok=True)
        staging.rename(out)


def pandas_dtype(data_type: T.DataType, missing: bool = False) -> str:
    """The dtype pandas gives a Parquet column of this type (with missing values or not)."""
    if isinstance(data_type, T.BooleanType):
        return "object" if missing else "bool"
    for spark_type, dtype in INTEGER_DTYPES.items():
        if isinstance(data_type, spark_type):
            return "float64" if missing else dtype
    if isinstance(data_type, T.FloatType):
        return "float32"
    if isinstance(data_type, T.DoubleType):
        return "float64"
    if isinstance(data_type, T.StringType):
        return "str"
    if isinstance(data_type, T.TimestampNTZType):
        return "datetime64[us]"
    if isinstance(data_type, T.TimestampType):
        return "datetime64[us, UTC]"
    return "object"


def empty_pandas(frame: DataFrame, missing: Mapping[str, int]) -> pd.DataFrame:
    """A table without rows with the columns and dtypes pandas would read ``frame`` with."""
    return pd.DataFrame(
        {
            field.name: pd.Series(
                dtype=pandas_dtype(field.dataType, missing.get(field.name, 0) > 0)
            )
            for field in frame.schema.fields
            if field.name not in (POSITION, COUNTS)
        }
    )


# --- ingest --------------------------------------------------------------------------------------


def source_format(data: DataParams) -> str:
    """data.format, else the extension of the source (or of the first file of a directory)."""
    if data.format != "auto":
        return data.format
    directory = Path(data.source)
    if "://" not in data.source and directory.is_dir():
        files = sorted(
            p for p in directory.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
        )
        if not files:
            raise StageError(f"{data.source}: the directory holds no files")
        return format_of(str(files[0]))
    return format_of(data.source)


def check_file_source(source: str) -> None:
    scheme = source.split("://")[0].lower() if "://" in source else "file"
    if scheme not in FILE_SCHEMES:
        hint = " (Spark names S3 s3a://)" if scheme == "s3" else ""
        raise StageError(
            f"data.source {source}: Spark reads files: a path or a {', '.join(FILE_SCHEMES[1:])} "
            f"URL{hint}; read this source with the pandas ingest (spark.enabled: false)"
        )


def read_source(spark: SparkSession, data: DataParams) -> tuple[DataFrame, int]:
    """``data.source`` typed as the pandas ingest types it, with the columns that order its rows
    as they come (``ORDER``), and its number of rows."""
    check_file_source(data.source)
    kind = source_format(data)
    reader = spark.read.option("mode", "FAILFAST")
    try:
        if kind == "csv":
            frame = reader.option("header", True).option("inferSchema", False).csv(data.source)
        elif kind == "parquet":
            frame = reader.parquet(data.source)
        else:
            frame = reader.json(data.source)
        located = frame.select("*", *_reading_order())
        if kind == "csv":
            return typed_like_pandas(located, frame.columns)
        return located, frame.count()
    except (PySparkException, Py4JJavaError) as error:
        raise StageError(
            f"{data.source}: cannot be read as {kind} ({spark_failure(error)})"
        ) from None


def _reading_order() -> list[Column]:
    """Columns that sort rows as they are in the source: by file, block of the file, and the
    (increasing) id Spark gives rows as it reads a block."""
    return [
        F.col("_metadata.file_path").alias(ORDER_NAMES[0]),
        F.col("_metadata.file_block_start").alias(ORDER_NAMES[1]),
        F.monotonically_increasing_id().alias(ORDER_NAMES[2]),
    ]


def typed_like_pandas(text: DataFrame, columns: Sequence[str]) -> tuple[DataFrame, int]:
    """CSV text columns with pandas' missing markers as nulls, each column then typed as
    ``pandas.read_csv`` types it (one pass over the data to decide), and the number of rows."""
    markers = sorted(STR_NA_VALUES)
    values = {c: F.when(_column(c).isin(markers), None).otherwise(_column(c)) for c in columns}
    tallies = []
    for number, value in enumerate(values.values()):
        tallies += [
            F.count(value).alias(f"present{number}"),
            F.count(value.try_cast("long")).alias(f"integers{number}"),
            F.count(value.try_cast("double")).alias(f"numbers{number}"),
            F.count(F.when(value.isin(*TRUE_TEXT, *FALSE_TEXT), 1)).alias(f"booleans{number}"),
        ]
    tally = text.agg(F.count(F.lit(1)).alias("rows"), *tallies).first()
    assert tally is not None
    typed = [
        _typed(value, _pandas_type(tally, number)).alias(name)
        for number, (name, value) in enumerate(values.items())
    ]
    return text.select(*typed, *ORDER_NAMES), int(tally["rows"])


def _pandas_type(tally: Row, number: int) -> str:
    present = tally[f"present{number}"]
    if present == 0:
        return "double"  # pandas reads a column of nothing but gaps as float64
    for kind in ("integers", "numbers", "booleans"):
        if tally[f"{kind}{number}"] == present:
            return {"integers": "long", "numbers": "double", "booleans": "boolean"}[kind]
    return "string"


def _typed(value: Column, kind: str) -> Column:
    if kind == "boolean":
        return F.when(value.isin(*TRUE_TEXT), True).when(value.isin(*FALSE_TEXT), False)
    return value if kind == "string" else value.try_cast(kind)


def ingest(spark: SparkSession, data: DataParams, out: Path) -> tuple[int, int]:
    """Write ``data.source`` (less ``data.drop_columns``) to ``out`` in the source's row order;
    returns (rows, columns)."""
    frame, rows = read_source(spark, data)
    columns = [name for name in frame.columns if name not in ORDER_NAMES]
    if not columns:
        raise StageError(f"{data.source}: the table has no columns")
    if rows == 0:
        raise StageError(f"{data.source}: the table has no rows (columns: {columns})")
    check_drop_columns(columns, data.drop_columns, data.source)
    kept = [name for name in columns if name not in data.drop_columns]
    write_parquet(frame.orderBy(*ORDER_NAMES).select(*[_column(c) for c in kept]), out)
    return rows, len(kept)


# --- validate ------------------------------------------------------------------------------------


def validate(
    spark: SparkSession,
    path: Path,
    schema: pa.DataFrameSchema,
    data: DataParams,
    clean: CleanParams,
    relative_error: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
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
) -> dict[str, Any]:
    """``validate_frame``'s report of the positioned ``frame``."""
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


def for_arrow(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with text columns as Python objects: PySpark cannot convert pandas' Arrow-backed
    ``str`` columns (pandas 3's default) back to Arrow."""
    text = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    return frame.astype(dict.fromkeys(text, object)) if text else frame


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
    present = frame.where(_column(name).isNotNull())
    repeated = present.groupBy(_column(name).alias("__value")).count().where(F.col("count") > 1)
    rows = present.join(repeated, _column(name).eqNullSafe(F.col("__value")), "left_semi")
    label = [F.lit(name).alias("column"), F.lit(UNIQUENESS).alias("check")]
    examples = rows.select(
        *label,
        F.to_json(F.array(_column(name))).alias("value"),
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


def _report(gathered: list[Row], schema: pa.DataFrameSchema) -> dict[str, Any]:
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


# --- profile -------------------------------------------------------------------------------------


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
        value = _column(name)
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
                _quantiles(value, levels, relative_error).alias(f"quantiles{number}"),
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


def _quantiles(value: Column, levels: list[float], relative_error: float) -> Column:
    if relative_error > 0:
        return F.percentile_approx(value, levels, max(1, round(1 / relative_error)))
    return F.percentile(value, levels)


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
    tallies = [F.count(_column(name)).alias(f"{number}") for number, name in enumerate(edges)]
    for number, (name, cuts) in enumerate(edges.items()):
        tallies += [
            F.count(F.when(_column(name) <= cut, 1)).alias(f"{number}_{i}")
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
    value = _column(name)
    if isinstance(data_type, T.BooleanType):
        return F.when(value, "True").when(~value, "False")
    return value.cast("string")


# --- clean ---------------------------------------------------------------------------------------


def clean(
    spark: SparkSession,
    path: Path,
    out: Path,
    params: CleanParams,
    *,
    target: str,
    exclude_columns: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    numeric_columns: Sequence[str],
    relative_error: float,
) -> dict[str, Any]:
    """``clean_table`` of the table at ``path``, written to ``out``; returns its summary."""
    raw = read_positioned(spark, path)
    columns = _data_columns(raw)
    types = {field.name: field.dataType for field in raw.schema.fields}
    protected = {target, *exclude_columns}
    coerced = [
        c
        for c in numeric_columns
        if c in columns and c != target and not isinstance(types[c], T.NumericType)
    ]
    staged_schema = T.StructType(
        [
            T.StructField(f.name, T.DoubleType() if f.name in coerced else f.dataType)
            for f in raw.schema.fields
        ]
        + [T.StructField(COUNTS, T.StringType())]
    )
    clean_batch = partial(
        batch_clean_rows,
        params,
        target,
        sorted(protected),
        dict(categories),
        list(numeric_columns),
        staged_schema.names,
    )
    staged = raw.mapInPandas(clean_batch, staged_schema).persist(StorageLevel.MEMORY_AND_DISK)
    unique = None
    try:
        totals = _batch_totals(staged.where(F.col(COUNTS).isNotNull()).select(COUNTS).collect())
        changes = new_changes(columns)
        for change in ("coerced", "normalised"):
            record_changes(changes, change, totals.get(change, {}))
        rows = staged.where(F.col(COUNTS).isNull()).drop(COUNTS)
        if params.drop_duplicates:
            rows = rows.groupBy(*[_column(c) for c in columns]).agg(F.min(POSITION).alias(POSITION))
        unique = rows.persist(StorageLevel.MEMORY_AND_DISK)
        rows_unique = unique.count()
        numeric = [
            c
            for c in columns
            if c not in protected and isinstance(unique.schema[c].dataType, T.NumericType)
        ]
        inlying, clipped, outlier_drops, outlying_rows = treat_outliers(
            unique, numeric, params, relative_error
        )
        record_changes(changes, "clipped", clipped)
        record_changes(changes, "dropped", outlier_drops)
        rows_inlying = rows_unique - outlying_rows
        missing = totals.get("missing", {})
        features = [c for c in columns if c not in protected]
        strategies = imputation_strategies(empty_pandas(unique, missing), features, params.impute)
        cleaned, imputed, missing_drops = impute(inlying, strategies, params, relative_error)
        record_changes(changes, "imputed", imputed)
        record_changes(changes, "dropped", missing_drops)
        rows_out = rows_inlying - sum(missing_drops.values())
        final = _as_pandas_would_type(cleaned, types, missing, clipped, coerced)
        write_parquet(final.orderBy(POSITION).drop(POSITION), out)
    finally:
        staged.unpersist()
        if unique is not None:
            unique.unpersist()
    return clean_summary(changes, totals.get("rows", 0), rows_unique, rows_inlying, rows_out)


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
        cleaned, changes = clean_rows(
            frame, params, target=target, protected=set(protected), categories=categories,
            numeric_columns=numeric_columns,
        )  # fmt: skip
        rows = cleaned.reset_index(names=POSITION)
        rows[COUNTS] = pd.Series(None, index=rows.index, dtype=object)
        yield for_arrow(rows[names])
        counts = {"rows": len(frame), "missing": missing, **changes}
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


def treat_outliers(
    frame: DataFrame, columns: Sequence[str], params: CleanParams, relative_error: float
) -> tuple[DataFrame, dict[str, int], dict[str, int], int]:
    """``clean.treat_outliers``: bounds by its rules from Spark's quartiles (or mean and standard
    deviation); returns (frame, clipped, dropped per column, rows dropped)."""
    method, threshold = params.outliers.method, params.outliers.threshold
    if method == "none" or not columns:
        return frame, {}, {}, 0
    bounds = outlier_bounds(frame, columns, method, threshold, relative_error)
    if not bounds:
        return frame, {}, {}, 0
    outside = {
        name: F.coalesce((_column(name) < low) | (_column(name) > high), F.lit(False))
        for name, (low, high) in bounds.items()
    }
    inside = F.lit(True)
    for test in outside.values():
        inside = inside & ~test
    counted = frame.agg(
        *[F.count(F.when(test, 1)).alias(name) for name, test in outside.items()],
        F.count(F.when(~inside, 1)).alias(OUTLYING),
    ).first()
    assert counted is not None
    counts = {name: int(counted[name]) for name in outside}
    if params.outliers.action == "drop":
        return frame.where(inside), {}, counts, int(counted[OUTLYING])
    clipping = {name: bounds[name] for name, count in counts.items() if count}
    return frame.select(*[_clipped(c, clipping.get(c)) for c in frame.columns]), counts, {}, 0


def outlier_bounds(
    frame: DataFrame, columns: Sequence[str], method: str, threshold: float, relative_error: float
) -> dict[str, tuple[float, float]]:
    """``clean.outlier_bounds`` of each column that has them, from one pass of Spark aggregates."""
    aggregates = []
    for number, name in enumerate(columns):
        value = _column(name).cast("double")
        aggregates.append(F.count(value).alias(f"present{number}"))
        if method == "iqr":
            aggregates.append(_quantiles(value, [0.25, 0.75], relative_error).alias(f"q{number}"))
        else:
            aggregates.append(F.avg(value).alias(f"mean{number}"))
            aggregates.append(F.stddev_samp(value).alias(f"std{number}"))
    tally = frame.agg(*aggregates).first()
    assert tally is not None
    bounds = {}
    for number, name in enumerate(columns):
        if tally[f"present{number}"] < 2:
            continue
        if method == "iqr":
            first, third = tally[f"q{number}"]
            found: tuple[float, float] | None = iqr_bounds(first, third, threshold)
        else:
            found = zscore_bounds(tally[f"mean{number}"], tally[f"std{number}"], threshold)
        if found is not None:
            bounds[name] = found
    return bounds


def _clipped(name: str, bounds: tuple[float, float] | None) -> Column:
    if bounds is None:
        return _column(name)
    low, high = bounds
    value = _column(name)
    return (
        F.when(value.isNull(), None)
        .otherwise(F.least(F.greatest(value, F.lit(low)), F.lit(high)))
        .alias(name)
    )


def impute(
    frame: DataFrame, strategies: Mapping[str, str], params: CleanParams, relative_error: float
) -> tuple[DataFrame, dict[str, int], dict[str, int]]:
    """``clean.impute``: rows dropped for the ``drop`` columns first, then each column's gaps
    filled with the value its strategy gives on the rows kept; returns (frame, imputed, dropped)."""
    dropping = [c for c, strategy in strategies.items() if strategy == "drop"]
    dropped: dict[str, int] = {}
    if dropping:
        kept_so_far = F.lit(True)
        tallies = []
        for name in dropping:
            tallies.append(F.count(F.when(kept_so_far & _column(name).isNull(), 1)).alias(name))
            kept_so_far = kept_so_far & _column(name).isNotNull()
        counted = frame.agg(*tallies).first()
        assert counted is not None
        dropped = {name: int(counted[name]) for name in dropping}
        frame = frame.where(kept_so_far)
    filling = {c: s for c, s in strategies.items() if s not in ("drop", "none")}
    if not filling:
        return frame, {}, dropped
    aggregates = [F.count(F.lit(1)).alias("rows")]
    for number, (name, strategy) in enumerate(filling.items()):
        aggregates.append(F.count(_column(name)).alias(f"present{number}"))
        if strategy == "mean":
            aggregates.append(F.avg(_column(name)).alias(f"statistic{number}"))
        elif strategy == "median":
            aggregates.append(
                _quantiles(_column(name).cast("double"), [0.5], relative_error).alias(
                    f"statistic{number}"
                )
            )
    tally = frame.agg(*aggregates).first()
    assert tally is not None
    values, imputed = {}, {}
    for number, (name, strategy) in enumerate(filling.items()):
        present = int(tally[f"present{number}"])
        missing = int(tally["rows"]) - present
        if missing == 0:
            continue
        statistic = _statistic(frame, name, strategy, tally, number) if present else None
        numeric = isinstance(frame.schema[name].dataType, T.NumericType)
        values[name] = imputation_value(
            strategy, statistic, present, params.impute.fill_value, name, numeric
        )
        imputed[name] = missing
    filled = [
        F.coalesce(_column(c), F.lit(values[c])).alias(c) if c in values else _column(c)
        for c in frame.columns
    ]
    return frame.select(*filled), imputed, dropped


def _statistic(frame: DataFrame, name: str, strategy: str, tally: Row, number: int) -> Any:
    if strategy == "mean":
        return float(tally[f"statistic{number}"])
    if strategy == "median":
        return float(tally[f"statistic{number}"][0])
    if strategy == "most_frequent":  # the most frequent value; the smallest of equally frequent
        top = frame.where(_column(name).isNotNull()).groupBy(_column(name).alias("value")).count()
        first = top.orderBy(F.desc("count"), "value").first()
        return first["value"] if first is not None else None
    return None


def _as_pandas_would_type(
    frame: DataFrame,
    types: Mapping[str, T.DataType],
    missing: Mapping[str, int],
    clipped: Mapping[str, int],
    coerced: Sequence[str],
) -> DataFrame:
    """Integer columns as pandas leaves them: numbers with a fraction (float64) once they had
    gaps when read, were clipped, or were coerced from text; integers otherwise."""
    typed = []
    for name in frame.columns:
        original = types.get(name)
        if not isinstance(original, T.IntegralType):
            typed.append(_column(name))
        elif missing.get(name, 0) > 0 or clipped.get(name, 0) > 0 or name in coerced:
            typed.append(_column(name).cast("double").alias(name))
        else:
            typed.append(_column(name).cast(original).alias(name))
    return frame.select(*typed)
