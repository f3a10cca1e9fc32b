"""The schema file: loading it strictly, reading its categories, and inferring it from data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.data.ingest import read_source
from mlops.data.schema import allowed_categories, infer_schema, load_schema, main, widen_range
from mlops.data.validate import validate_frame
from mlops.params import DataParams, load_section
from mlops.stage import StageError

SCHEMA_YAML = """\
columns:
  colour:
    dtype: str
    nullable: true
    isin: [red, green]
  size:
    dtype: float64
    coerce: true
    in_range: {min_value: 0, max_value: 10}
strict: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(text)
    return path


def test_load_schema_reads_columns_checks_and_categories(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, SCHEMA_YAML))
    assert list(schema.columns) == ["colour", "size"]
    assert schema.strict is True
    assert allowed_categories(schema) == {"colour": ["red", "green"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "schema file not found"),
        ("columns: {a: [\n", "not valid YAML"),
        ("- a list\n", "expected a pandera schema with a `columns:` mapping"),
        ("columns: {a: {dtype: float64, in_rnge: {min_value: 1}}}\n", "unknown key(s) ['in_rnge']"),
        ("columns: {a: {dtype: flaot}}\n", "not a valid pandera schema"),
        ("colums: {}\ncolumns: {}\n", "unknown top-level key(s) ['colums']"),
    ],
)
def test_a_bad_schema_file_is_named_with_what_is_wrong(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "schema.yaml" if text is None else write(tmp_path, text)
    with pytest.raises(StageError) as raised:
        load_schema(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


# --- inference -------------------------------------------------------------------------------


def tiny() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [f"bird {i}" for i in range(8)],
            "island": ["Biscoe", "Dream"] * 4,
            "mass": [3000.0, 3500.0, 4000.0, 4500.0, 5000.0, 5500.0, 6000.0, 3000.0],
            "year": [2007, 2008, 2009, 2007, 2008, 2009, 2007, 2008],
            "species": ["Adelie", "Gentoo"] * 4,
        }
    )


def test_inference_widens_ranges_lists_categories_and_sets_nullability() -> None:
    schema = infer_schema(tiny(), target="species", exclude_columns=["year"])
    columns = schema.columns
    assert schema.strict is True
    assert allowed_categories(schema) == {
        "island": ["Biscoe", "Dream"],
        "species": ["Adelie", "Gentoo"],
    }  # 'name' has as many values as rows: free text, no isin
    mass_range = {c.name: c.statistics for c in columns["mass"].checks}["in_range"]
    assert mass_range["min_value"] < 3000 and mass_range["max_value"] > 6000
    assert mass_range["min_value"] >= 0  # never negative for a column that never was
    assert columns["mass"].nullable and columns["island"].nullable  # features may have gaps
    assert not columns["species"].nullable and not columns["year"].nullable
    assert str(columns["year"].dtype) == "int64" and str(columns["mass"].dtype) == "float64"
    assert all(column.coerce for column in columns.values())


def test_a_target_with_gaps_is_nullable_and_an_id_column_is_unique() -> None:
    frame = tiny().assign(bird_id=range(8))
    frame.loc[0, "species"] = None
    schema = infer_schema(frame, target="species", exclude_columns=["bird_id"])
    assert schema.columns["species"].nullable
    assert schema.columns["bird_id"].unique


@pytest.mark.parametrize(
    ("low", "high", "integral", "expected"),
    [
        (32.1, 59.6, False, (18.0, 74.0)),
        (2700.0, 6300.0, False, (900.0, 8100.0)),
        (2007.0, 2009.0, True, (2006, 2010)),
        (-1.0, 1.0, False, (-2.0, 2.0)),
        (5.0, 5.0, False, (2.5, 7.5)),
    ],
)
def test_widen_range(
    low: float, high: float, integral: bool, expected: tuple[float, float]
) -> None:
    assert widen_range(low, high, integral) == expected


def test_the_written_schema_has_a_review_header_and_loads_back(tmp_path: Path) -> None:
    tiny().to_csv(tmp_path / "birds.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        f"data:\n  source: {tmp_path / 'birds.csv'}\n  target: species\n  drop_columns: [name]\n"
        f"  schema: {tmp_path / 'schema.yaml'}\n"
    )
    main(["--params", str(tmp_path / "params.yaml")])
    text = (tmp_path / "schema.yaml").read_text()
    assert text.startswith("# Validation schema")
    assert "REVIEW IT" in text
    assert "dtype: str" in text and "index" not in text
    assert list(load_schema(tmp_path / "schema.yaml").columns) == [
        "island",
        "mass",
        "year",
        "species",
    ]


def test_schema_of_a_missing_source_names_it(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("data:\n  source: nowhere.csv\n  target: y\n")
    with pytest.raises(StageError, match=r"nowhere\.csv: file not found"):
        main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "s.yaml")])


# --- forking to a differently shaped table ---------------------------------------------------


def fruit(rows: int = 60) -> pd.DataFrame:
    """Another data set: other column names, other classes, a string target, real gaps."""
    random = np.random.default_rng(7)
    kinds = np.array(["apple", "banana", "cherry"])[np.arange(rows) % 3]
    frame = pd.DataFrame(
        {
            "harvest_id": [f"h{i:04d}" for i in range(rows)],
            "weight_g": np.round(random.uniform(5, 250, rows), 1),
            "colour": random.choice(["red", "green", "yellow"], rows),
            "origin": random.choice(["ES", "IT", "PT", "MA"], rows),
            "sweetness": random.integers(1, 11, rows),
            "kind": kinds,
        }
    )
    frame.loc[[3, 17], "weight_g"] = np.nan
    frame.loc[[5], "colour"] = None
    return frame


def test_a_fork_infers_a_schema_its_data_passes_and_a_corrupted_copy_fails(tmp_path: Path) -> None:
    fruit().to_csv(tmp_path / "fruit.csv", index=False)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(
        f"data:\n  source: {tmp_path / 'fruit.csv'}\n  target: kind\n"
        f"  exclude_columns: [harvest_id]\n  schema: {tmp_path / 'schema.yaml'}\n"
    )
    main(["--params", str(params_path)])
    schema = load_schema(tmp_path / "schema.yaml")
    assert allowed_categories(schema)["kind"] == ["apple", "banana", "cherry"]
    assert schema.columns["harvest_id"].unique
    params = load_section(params_path, "data", DataParams)
    assert validate_frame(read_source(params), schema)["passed"]

    corrupted = fruit().astype({"weight_g": object})
    corrupted.loc[4, "weight_g"] = "heavy"  # wrong type in a numeric column
    corrupted.loc[8, "weight_g"] = -40.0  # out of range
    corrupted.loc[9, "colour"] = "purple"  # unknown category
    corrupted.loc[10, "kind"] = "durian"  # unknown class
    corrupted.loc[11, "harvest_id"] = "h0000"  # duplicate key
    corrupted = corrupted.drop(columns=["origin"]).assign(notes="x")  # missing + extra column
    corrupted.to_csv(tmp_path / "fruit.csv", index=False)
    report = validate_frame(read_source(params), schema)

    assert not report["passed"]
    failed = {(f["column"], f["check"].split("(")[0]) for f in report["failures"]}
    assert failed == {
        ("origin", "column_in_dataframe"),
        ("notes", "column_in_schema"),
        ("weight_g", "dtype"),
        ("weight_g", "in_range"),
        ("colour", "isin"),
        ("kind", "isin"),
        ("harvest_id", "field_uniqueness"),
    }
    rows = {(f["column"], f["check"].split("(")[0]): f["rows"] for f in report["failures"]}
    assert rows["weight_g", "dtype"] == [4]
    assert rows["weight_g", "in_range"] == [8]
    assert rows["harvest_id", "field_uniqueness"] == [0, 11]
