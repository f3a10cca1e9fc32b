"""The engines of the data stages: the pandas path never loads Spark, and the rules they share.

That both engines write the same tables and reports is tests/integration/test_spark.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import run
from mlops.data.engines import open_engine
from mlops.data.engines.pandas_engine import PandasEngine
from mlops.data.rules.cleaning import OutlierStatistics, outlier_bounds
from mlops.params import SparkParams

# The three data stages on pandas in a fresh interpreter, then the Spark modules it loaded.
STAGES_ON_PANDAS = """
import json, sys
from mlops.data import clean, ingest, validate
from mlops.stage import run

params, schema = ["--params", "params.yaml"], ["--schema", "schema.yaml"]
codes = [
    run(ingest.main, [*params, "--out", "raw.parquet"]),
    run(validate.main, [*params, *schema, "--input", "raw.parquet", "--reports", "reports"]),
    run(clean.main, [*params, *schema, "--input", "raw.parquet", "--out", "clean.parquet",
                     "--summary", "summary.json"]),
]
loaded = sorted(
    name for name, module in sys.modules.items()
    if module is not None and name.split(".")[0] in ("pyspark", "py4j")
)
spark_engine = [name for name in sys.modules if name.startswith("mlops.data.engines.spark")]
print(json.dumps({"codes": codes, "loaded": loaded, "spark_engine": spark_engine}))
"""


def test_the_pandas_path_never_loads_spark(tmp_path: Path) -> None:
    pd.DataFrame(
        {"Größe (cm)": [170.0, None, 181.5], "plan/type": [" basic", "PRO", None], "y": list("abc")}
    ).to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        "data: {source: table.csv, target: y}\nclean: {}\nspark: {enabled: false}\n"
    )
    (tmp_path / "schema.yaml").write_text(
        "columns:\n"
        "  Größe (cm): {dtype: float64, nullable: true, coerce: true}\n"
        "  plan/type: {dtype: str, nullable: true, isin: [basic, pro]}\n"
        "  y: {dtype: str, isin: [a, b, c]}\n"
    )
    result = run([sys.executable, "-c", STAGES_ON_PANDAS], tmp_path)
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["codes"] == [0, 0, 0], result.stderr
    assert outcome["loaded"] == []
    assert outcome["spark_engine"] == []
    cleaned = pd.read_parquet(tmp_path / "clean.parquet")
    assert cleaned["plan/type"].tolist() == ["basic", "pro", "basic"]  # normalised, imputed


def test_open_engine_gives_the_pandas_engine_unless_spark_is_enabled() -> None:
    with open_engine(SparkParams(enabled=False, master="spark://nowhere:7077")) as engine:
        assert isinstance(engine, PandasEngine)


@pytest.mark.parametrize(
    ("statistics", "method", "expected"),
    [
        (OutlierStatistics(4, quartiles=(2.0, 4.0)), "iqr", (-1.0, 7.0)),
        (OutlierStatistics(4, mean=10.0, deviation=2.0), "zscore", (4.0, 16.0)),
        (OutlierStatistics(1, quartiles=(2.0, 2.0)), "iqr", None),  # too few values
        (OutlierStatistics(0, mean=None, deviation=None), "zscore", None),  # no values at all
        (OutlierStatistics(5, mean=3.0, deviation=0.0), "zscore", None),  # no spread
    ],
)
def test_outlier_bounds_follow_from_statistics_however_computed(
    statistics: OutlierStatistics, method: str, expected: tuple[float, float] | None
) -> None:
    assert outlier_bounds(statistics, method, 1.5 if method == "iqr" else 3.0) == expected
