"""The Parquet tables the Spark engine reads and writes, with the rows and types pandas gives them.

A row's position (``POSITION``) is its 0-based position in the table: files in name order, rows
in file order, as the pandas engine reads them; the failure report names rows by it, and the
cleaned table is written in its order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from itertools import accumulate
from pathlib import Path

import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from mlops.data.engines.spark_engine.session import spark_failure
from mlops.stage import StageError

POSITION = "__position"  # a row's 0-based position in the table
COUNTS = "__counts"  # a batch's change counts, in the one row per batch that carries them
INTEGER_DTYPES = {
    T.ByteType: "int8",
    T.ShortType: "int16",
    T.IntegerType: "int32",
    T.LongType: "int64",
}


def data_columns(frame: DataFrame) -> list[str]:
    return [name for name in frame.columns if name not in (POSITION, COUNTS)]


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


def for_arrow(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with text columns as Python objects: PySpark cannot convert pandas' Arrow-backed
    ``str`` columns (pandas 3's default) back to Arrow."""
    text = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    return frame.astype(dict.fromkeys(text, object)) if text else frame
