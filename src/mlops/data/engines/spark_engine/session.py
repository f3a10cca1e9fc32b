"""A Spark session for the data stages, and what every module of the Spark engine shares."""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

from mlops.params import SparkParams

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


def named(name: str) -> Column:
    """A column by its name, whatever characters the name holds."""
    return F.col("`" + name.replace("`", "``") + "`")


def quantiles(value: Column, levels: list[float], relative_error: float) -> Column:
    """The quantiles at ``levels``: exact (as pandas) at ``relative_error`` 0, else approximate
    in bounded memory."""
    if relative_error > 0:
        return F.percentile_approx(value, levels, max(1, round(1 / relative_error)))
    return F.percentile(value, levels)
