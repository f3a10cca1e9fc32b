"""ingest, validate and clean on Spark (local mode) write what the pandas stages write.

One small table goes through the three stage commands twice, with ``spark.enabled`` off and on.
Spark is set up to split everything it can (input blocks, output files, Arrow batches), so row
positions, uniqueness and the failure examples are gathered across partitions and batches.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from conftest import PROJECT_ROOT
from mlops.data import clean, ingest, validate
from mlops.stage import run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java"),
]
SPLIT_EVERYTHING = {
    "spark.sql.files.maxPartitionBytes": "4096",  # the CSV is read in several blocks
    "spark.sql.shuffle.partitions": "3",  # ... written as several part files
    "spark.sql.adaptive.coalescePartitions.enabled": "false",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "40",  # ... and handed to pandas in batches
}
# One core (one Python worker to start) and a JVM that compiles less: small data starts faster.
QUICK_START = {"spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"}
# The clean rules the defaults leave out: duplicates kept, z-score outliers dropping their rows,
# rows dropped for a missing value, means and a constant filling the gaps.
OTHER_RULES = {
    "drop_duplicates": False,
    "outliers": {"method": "zscore", "threshold": 2.0, "action": "drop"},
    "impute": {
        "numeric": "mean",
        "categorical": "constant",
        "fill_value": "unknown",
        "columns": {"bill_depth_mm": "drop"},
    },
}


def source_table() -> pd.DataFrame:
    """The penguins with an id, bad values, case and space variants, duplicates, an outlier."""
    frame = pd.read_csv(PROJECT_ROOT / "data" / "penguins.csv", dtype=str, keep_default_na=False)
    frame.insert(0, "tag", [f"p{number}" for number in range(len(frame))])
    frame.loc[3, "island"] = "Atlantis"  # unknown category
    frame.loc[5, "body_mass_g"] = "99999"  # out of range
    frame.loc[7, "bill_length_mm"] = "abc"  # not a number
    frame.loc[[9, 150], "island"] = [" dream", "BISCOE"]  # variants clean normalises
    frame.loc[10, "sex"] = "MALE "
    frame.loc[300, "tag"] = "p12"  # a duplicate key, far from its twin
    frame.loc[200, "flipper_length_mm"] = "330"  # an outlier (outside the schema's range too)
    return pd.concat([frame, frame.iloc[[20, 21, 330]]], ignore_index=True)  # duplicate rows


def write_project(root: Path, spark: bool) -> Path:
    root.mkdir(parents=True)
    source_table().to_csv(root / "source.csv", index=False)
    schema = yaml.safe_load((PROJECT_ROOT / "data" / "schema.yaml").read_text())
    tag = {"dtype": "str", "unique": True, "coerce": True}
    schema["columns"] = {"tag": tag, **schema["columns"]}
    (root / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["data"].update(source=str(root / "source.csv"), exclude_columns=["year", "tag"])
    params["spark"].update(
        enabled=spark, master="local[1]", config={**SPLIT_EVERYTHING, **QUICK_START}
    )
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    harvested(schema).to_parquet(root / "harvest.parquet", index=False)
    return root


def harvested(schema: dict[str, Any]) -> pd.DataFrame:
    """A row the harvest stage would write: the features and the label, null elsewhere (the
    source's id), numbers as the shipped Parquet holds them."""
    row = {name: None for name in schema["columns"]}
    row |= {"island": "Dream", "bill_length_mm": 45.5, "bill_depth_mm": 17.0}
    row |= {"flipper_length_mm": 190.0, "body_mass_g": 3600.0, "sex": "female", "year": 2009.0}
    return pd.DataFrame([row | {"species": "Chinstrap"}])


def run_stages(root: Path) -> dict[str, int]:
    """The three stage commands in this process (one JVM for all); their exit codes."""
    common = ["--params", str(root / "params.yaml"), "--schema", str(root / "schema.yaml")]
    raw = str(root / "raw.parquet")
    reports = ["--reports", str(root / "reports")]
    outputs = ["--out", str(root / "clean.parquet"), "--summary", str(root / "summary.json")]
    return {
        "ingest": run(
            ingest.main, [*common[:2], "--out", raw, "--harvest", str(root / "harvest.parquet")]
        ),
        "validate": run(validate.main, [*common, "--input", raw, *reports]),
        "clean": run(clean.main, [*common, "--input", raw, *outputs]),
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("engines")
    pandas_root = write_project(base / "pandas", spark=False)
    spark_root = write_project(base / "spark", spark=True)
    expected = {"ingest": 0, "validate": 1, "clean": 0}  # the bad values fail validation
    assert run_stages(pandas_root) == expected
    assert run_stages(spark_root) == expected
    return pandas_root, spark_root


def clean_with_other_rules(root: Path) -> int:
    """The clean command on the raw table again, under ``OTHER_RULES``; its exit code."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["clean"] = {**params["clean"], **OTHER_RULES}
    (root / "params-other.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return run(
        clean.main,
        ["--params", str(root / "params-other.yaml"), "--schema", str(root / "schema.yaml"),
         "--input", str(root / "raw.parquet"), "--out", str(root / "clean-other.parquet"),
         "--summary", str(root / "summary-other.json")],
    )  # fmt: skip


def read(root: Path, name: str) -> Any:
    path = root / name
    return json.loads(path.read_text()) if path.suffix == ".json" else pd.read_parquet(path)


def test_ingest_writes_the_same_rows_in_the_same_order(both: tuple[Path, Path]) -> None:
    pandas_root, spark_root = both
    assert (spark_root / "raw.parquet").is_dir()
    assert len(list((spark_root / "raw.parquet").glob("part-*.parquet"))) > 1
    pd.testing.assert_frame_equal(read(spark_root, "raw.parquet"), read(pandas_root, "raw.parquet"))
    last = read(spark_root, "raw.parquet").iloc[-1]  # the harvested row, after the source's
    assert (last["species"], last["bill_length_mm"]) == ("Chinstrap", "45.5")
    assert pd.isna(last["tag"])


def test_validate_reports_the_same_failures_with_the_same_rows(both: tuple[Path, Path]) -> None:
    pandas_root, spark_root = both
    expected = read(pandas_root, "reports/validation.json")
    assert read(spark_root, "reports/validation.json") == expected
    failing = {
        (f["column"], f["check"].split("(")[0]): (f["count"], f["rows"])
        for f in expected["failures"]
    }
    assert failing == {  # the three duplicated rows repeat their tags too
        ("tag", "field_uniqueness"): (8, [12, 20, 21, 300, 330]),
        ("island", "isin"): (1, [3]),
        ("bill_length_mm", "dtype"): (1, [7]),
        ("flipper_length_mm", "in_range"): (1, [200]),
        ("body_mass_g", "in_range"): (1, [5]),
        ("tag", "not_nullable"): (1, [347]),  # the harvested row: predictions carry no tag
    }
    assert expected["normalised"] == {"island": 2, "sex": 1}


def test_the_profile_has_the_same_statistics(both: tuple[Path, Path]) -> None:
    pandas_root, spark_root = both
    expected = read(pandas_root, "reports/profile.json")
    assert_close(read(spark_root, "reports/profile.json"), expected)
    markdown = {root: (root / "reports/profile.md").read_text() for root in both}
    assert markdown[spark_root].replace(str(spark_root), "") == markdown[pandas_root].replace(
        str(pandas_root), ""
    )


def test_clean_writes_the_same_table_and_summary(both: tuple[Path, Path]) -> None:
    pandas_root, spark_root = both
    summary = read(pandas_root, "summary.json")
    assert read(spark_root, "summary.json") == summary
    assert summary["duplicates_dropped"] == 3
    assert summary["columns"]["flipper_length_mm"]["clipped"] == 1
    assert summary["columns"]["bill_length_mm"]["coerced"] == 1
    pd.testing.assert_frame_equal(
        read(spark_root, "clean.parquet"), read(pandas_root, "clean.parquet"), rtol=1e-12
    )


def test_clean_by_the_other_rules_writes_the_same_table_and_summary(
    both: tuple[Path, Path],
) -> None:
    pandas_root, spark_root = both
    assert clean_with_other_rules(pandas_root) == 0
    assert clean_with_other_rules(spark_root) == 0
    summary = read(pandas_root, "summary-other.json")
    assert read(spark_root, "summary-other.json") == summary
    columns = summary["columns"]
    assert summary["duplicates_dropped"] == 0
    assert summary["rows_dropped_outliers"] > 0 and columns["body_mass_g"]["dropped"] > 0
    assert summary["rows_dropped_missing"] == 2  # the two birds never measured (outliers: more)
    assert columns["bill_depth_mm"]["dropped"] > summary["rows_dropped_missing"]
    assert columns["bill_length_mm"]["imputed"] > 0 and columns["sex"]["imputed"] > 0
    pd.testing.assert_frame_equal(
        read(spark_root, "clean-other.parquet"),
        read(pandas_root, "clean-other.parquet"),
        rtol=1e-12,
    )


def assert_close(actual: Any, expected: Any, where: str = "profile") -> None:
    """Equal, floats to 12 significant digits (sums in another order differ in the last bits)."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for number, (got, wanted) in enumerate(zip(actual, expected, strict=True)):
            assert_close(got, wanted, f"{where}[{number}]")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-12), where
    else:
        assert actual == expected, where
