"""The validation schema as the stages read it: strictly loaded, and what it says about columns.

The schema is pandera's YAML format, kept in the repository (``data.schema``), reviewed by a
person and written by ``make schema`` (``mlops.data.schema``). ``load_schema`` is strict about
that file: a typo such as ``in_rnge`` would otherwise be ignored by pandera and the check silently
dropped. Validate checks the table against it; clean takes from it the numeric columns to coerce
(``numeric_schema_columns``) and the spelling of each allowed category (``allowed_categories``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandera.errors
import pandera.pandas as pa
import yaml
from pandera import dtypes
from pandera.io.pandas_io import deserialize_schema

from mlops.stage import StageError

SCHEMA_KEYS = frozenset(
    {
        "schema_type", "api", "version", "dataframe_library", "columns", "checks", "index",
        "multiindex", "dtype", "coerce", "strict", "name", "ordered", "unique",
        "report_duplicates", "unique_column_names", "add_missing_columns", "title",
        "description", "metadata", "drop_invalid_rows",
    }
)  # fmt: skip
COLUMN_KEYS = frozenset(
    {
        "title", "description", "dtype", "nullable", "checks", "name", "unique", "coerce",
        "required", "regex", "default", "report_duplicates", "drop_invalid_rows", "metadata",
    }
)  # fmt: skip


def load_schema(path: Path) -> pa.DataFrameSchema:
    """Read a pandera YAML schema, refusing unknown keys and checks instead of ignoring them."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StageError(
            f"{path}: schema file not found (run `make schema` to infer one from data.source)"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise StageError(f"{path}: not valid YAML ({error})") from None
    _check_schema_keys(raw, path)
    try:
        return deserialize_schema(raw)
    except (pandera.errors.SchemaDefinitionError, TypeError, ValueError, AttributeError) as error:
        raise StageError(f"{path}: not a valid pandera schema ({error})") from None


def _check_schema_keys(raw: object, path: Path) -> None:
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict):
        raise StageError(f"{path}: expected a pandera schema with a `columns:` mapping")
    unknown = sorted(set(raw) - SCHEMA_KEYS)
    if unknown:
        raise StageError(f"{path}: unknown top-level key(s) {unknown}")
    for column, spec in raw["columns"].items():
        if spec is None:
            continue
        if not isinstance(spec, dict):
            raise StageError(f"{path}: column '{column}': expected a mapping, got {spec!r}")
        unknown = sorted(key for key in spec if key not in COLUMN_KEYS and not _is_check(key))
        if unknown:
            raise StageError(
                f"{path}: column '{column}': unknown key(s) {unknown} (neither a column option"
                " nor a pandera check such as in_range, isin, greater_than_or_equal_to)"
            )


def _is_check(name: str) -> bool:
    return not name.startswith("_") and callable(getattr(pa.Check, name, None))


def allowed_categories(schema: pa.DataFrameSchema) -> dict[str, list[str]]:
    """The values each column's ``isin`` check allows, for the columns that have one."""
    categories: dict[str, list[str]] = {}
    for name, column in schema.columns.items():
        for check in column.checks:
            if check.name == "isin":
                values: Any = (check.statistics or {}).get("allowed_values", [])
                categories[str(name)] = [str(value) for value in values]
    return categories


def numeric_schema_columns(schema: pa.DataFrameSchema) -> list[str]:
    """Columns the schema declares with a numeric (not boolean) dtype: clean coerces them."""
    return [
        str(name)
        for name, column in schema.columns.items()
        if column.dtype is not None
        and dtypes.is_numeric(column.dtype)
        and not dtypes.is_bool(column.dtype)
    ]
