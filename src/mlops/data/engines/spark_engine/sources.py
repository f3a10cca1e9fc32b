"""The Spark engine's ingest: ``data.source`` read by Spark, typed and ordered as pandas reads
it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pandas._libs.parsers import STR_NA_VALUES  # the markers pandas.read_csv reads as missing
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

from mlops.data.engines.spark_engine.session import named, spark_failure
from mlops.data.engines.spark_engine.tables import write_parquet
from mlops.data.rules.sources import check_content, check_drop_columns, format_of, is_url
from mlops.params import DataParams
from mlops.stage import StageError

FILE_SCHEMES = ("file", "hdfs", "s3a", "gs", "abfs", "abfss", "wasb", "wasbs", "viewfs")
TRUE_TEXT = ("True", "TRUE", "true")  # what pandas.read_csv reads as booleans
FALSE_TEXT = ("False", "FALSE", "false")
ORDER_NAMES = ("__file", "__block", "__read")  # a file, a block of it, the rows as read from it
HARVEST_FILE = "\uffff harvest"  # sorts after every file name: the harvested rows come last


def source_format(data: DataParams) -> str:
    """data.format, else the extension of the source (or of the first file of a directory)."""
    if data.format != "auto":
        return data.format
    directory = Path(data.source)
    if not is_url(data.source) and directory.is_dir():
        files = sorted(
            p for p in directory.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
        )
        if not files:
            raise StageError(f"{data.source}: the directory holds no files")
        return format_of(str(files[0]))
    return format_of(data.source)


def check_file_source(source: str) -> None:
    scheme = source.split("://")[0].lower() if is_url(source) else "file"
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
    values = {c: F.when(named(c).isin(markers), None).otherwise(named(c)) for c in columns}
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


def ingest(
    spark: SparkSession, data: DataParams, out: Path, harvest: Path | None = None
) -> tuple[int, int]:
    """Write ``data.source`` (less ``data.drop_columns``) to ``out`` in the source's row order,
    then the harvested rows at ``harvest``; returns (rows, columns)."""
    frame, rows = read_source(spark, data)
    columns = [name for name in frame.columns if name not in ORDER_NAMES]
    check_content(columns, rows, data.source)
    check_drop_columns(columns, data.drop_columns, data.source)
    kept = [name for name in columns if name not in data.drop_columns]
    ordered = frame.select(*[named(c) for c in kept], *ORDER_NAMES)
    if harvest is not None:
        harvested, added = harvested_rows(spark, harvest, ordered)
        if added:
            ordered, rows = ordered.unionByName(harvested), rows + added
    write_parquet(ordered.orderBy(*ORDER_NAMES).select(*[named(c) for c in kept]), out)
    return rows, len(kept)


def harvested_rows(spark: SparkSession, harvest: Path, source: DataFrame) -> tuple[DataFrame, int]:
    """The harvested rows in the source's columns and types, ordered after every source row
    (``ORDER_NAMES``: a file name that sorts last), and how many there are."""
    rows = read_positioned_parquet(spark, harvest)
    present = set(rows.columns)
    typed = [
        (named(field.name) if field.name in present else F.lit(None))
        .cast(field.dataType)
        .alias(field.name)
        for field in source.schema.fields
        if field.name not in ORDER_NAMES
    ]
    last = [
        F.lit(HARVEST_FILE).alias(ORDER_NAMES[0]),
        F.lit(0).cast("long").alias(ORDER_NAMES[1]),
        F.monotonically_increasing_id().alias(ORDER_NAMES[2]),
    ]
    selected = rows.select(*typed, *last)
    return selected, selected.count()


def read_positioned_parquet(spark: SparkSession, path: Path) -> DataFrame:
    try:
        return spark.read.parquet(str(path))
    except (PySparkException, Py4JJavaError) as error:
        raise StageError(f"{path}: cannot be read as Parquet ({spark_failure(error)})") from None
