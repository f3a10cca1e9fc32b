"""The Spark engine: ingest, validate and clean for a source larger than one machine's memory.

``spark.enabled: true`` in params.yaml sends these three stages here (their commands in dvc.yaml
stay the same), and ``spark.master`` says where they run: ``local[N]`` on this machine, or a
cluster (``spark://host:7077``, ``yarn``, ``k8s://...``). They write what the pandas engine
writes, by the same rules (``mlops.data.rules``):

- ingest (``sources``) reads the files with Spark, types CSV columns as pandas would (integers,
  numbers, booleans, text; pandas' missing-value markers), keeps the source's row order and
  writes the table as a directory of Parquet files (``tables``);
- validate (``validation``) runs the repository's pandera schema (the pandas one) on every batch
  of rows in ``mapInPandas`` and gathers, per column and check, the number of failing rows and
  the first failing values and rows into the same report; uniqueness is checked across the whole
  table; the profile's statistics are Spark aggregates (``profile``);
- clean (``cleaning``) runs the steps that look at one row at a time (coercion, string
  normalisation) with the row rules in ``mapInPandas``, and the table-wide ones with Spark:
  duplicates, then outlier bounds and imputation values by the clean rules from Spark's
  statistics.

Quantiles, medians and distinct counts are exact with ``spark.relative_error: 0``, as pandas
computes them (memory grows with a column's distinct values), approximate above it (bounded
memory). This package is the only part of the project that imports pyspark (a contract of
``make lint``), and only ``mlops.data.engines.open_engine`` imports it, when Spark is enabled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandera.pandas as pa
from pyspark.sql import SparkSession

from mlops.data.engines.base import CleanSettings, Validation
from mlops.data.engines.spark_engine import cleaning, sources, validation
from mlops.data.engines.spark_engine.session import session
from mlops.data.engines.spark_engine.tables import read_positioned
from mlops.data.rules.validation import json_safe
from mlops.params import CleanParams, DataParams, SparkParams
from mlops.summaries import CleanSummary
from mlops.tables import read_columns


class SparkEngine:
    """``mlops.data.engines.base.Engine`` on a Spark session."""

    def __init__(self, spark: SparkSession, relative_error: float) -> None:
        self.spark = spark
        self.relative_error = relative_error

    @classmethod
    @contextmanager
    def started(cls, params: SparkParams) -> Iterator[SparkEngine]:
        """The engine on a session on ``spark.master``, stopped on the way out."""
        with session(params) as spark:
            yield cls(spark, params.relative_error)

    def ingest(self, data: DataParams, out: Path, harvest: Path | None = None) -> tuple[int, int]:
        return sources.ingest(self.spark, data, out, harvest)

    def validate(
        self, path: Path, schema: pa.DataFrameSchema, data: DataParams, clean: CleanParams
    ) -> Validation:
        profile, report = validation.validate(
            self.spark, path, schema, data, clean, self.relative_error
        )
        return Validation(json_safe(profile), report, read_columns(path, [data.target]))

    def clean(
        self, path: Path, out: Path, params: CleanParams, settings: CleanSettings
    ) -> CleanSummary:
        raw = read_positioned(self.spark, path)
        return cleaning.clean(raw, out, params, settings, self.relative_error)
