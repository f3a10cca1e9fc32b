"""The schema file: loading it strictly, reading its categories, and inferring it from data."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.data.schema import allowed_categories, load_schema
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
