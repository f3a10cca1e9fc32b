"""The engines that run the data stages: pandas (``pandas_engine``) or Spark (``spark_engine``).

``open_engine`` is the one place that picks one, from ``spark.enabled``. Both offer the
interface of ``base.Engine`` and apply the rules of ``mlops.data.rules``; only the Spark engine
imports pyspark, and only when Spark is enabled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlops.data.engines.base import CleanSettings, Engine, Validation
from mlops.data.engines.pandas_engine import PandasEngine
from mlops.params import SparkParams

__all__ = ["CleanSettings", "Engine", "Validation", "open_engine"]


@contextmanager
def open_engine(params: SparkParams) -> Iterator[Engine]:
    """The engine ``params`` name, ready to run: pandas, or Spark on a session of
    ``spark.master`` that is stopped on the way out."""
    if not params.enabled:
        yield PandasEngine()
        return
    from mlops.data.engines.spark_engine import SparkEngine  # pyspark only when it is used

    with SparkEngine.started(params) as engine:
        yield engine
