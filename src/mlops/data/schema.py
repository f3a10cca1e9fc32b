"""The validation schema: loading it for the stages, and inferring it from data (``make schema``).

The schema is pandera's YAML format, kept in the repository (``data.schema``) and reviewed by a
person. ``load_schema`` is strict about that file: a typo such as ``in_rnge`` would otherwise be
ignored by pandera and the check silently dropped.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.errors
import pandera.pandas as pa
import yaml
from pandera.io.pandas_io import deserialize_schema, serialize_schema

from mlops.params import DataParams, load_section
from mlops.stage import StageError, parser, run, write_text

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


# --- inference (`make schema`) -----------------------------------------------------------------

# A string column gets an `isin` check when it has at most this many distinct values and each
# value is seen at least twice on average (so names, ids and free text do not).
MAX_CATEGORIES = 50
# Observed numeric ranges are widened by this share of the observed span on each side.
RANGE_MARGIN = 0.5
ID_NAME = re.compile(r"(^|[_\W])id$", re.IGNORECASE)

HEADER = """\
# Validation schema of the raw data (pandera YAML), checked by the `validate` stage.
# Inferred by `make schema` from {source} ({rows} rows).
# REVIEW IT before committing: it describes the data that was seen, widened a little.
#  - numeric ranges (in_range) are the observed min/max widened by {margin:.0%} of the span on each
#    side (never below 0 for a column that was never negative): set the real physical limits;
#  - isin lists the categories seen: add any valid one that is missing from the sample;
#  - feature columns are nullable (clean imputes gaps); the target is nullable only if it had gaps;
#  - strict: true makes an unexpected extra column an error; declare `unique: true` on a key column.
"""


def infer_schema(
    frame: pd.DataFrame, target: str, exclude_columns: Sequence[str] = ()
) -> pa.DataFrameSchema:
    """pandera's inferred schema of ``frame``, widened to accept new data that is still plausible.

    Feature columns (all but the target and ``exclude_columns``) are nullable: live data has
    gaps and the clean stage imputes them. Other columns are nullable only where gaps were seen.
    """
    inferred = pa.infer_schema(frame)
    columns = {}
    for name, column in inferred.columns.items():
        role = "target" if name == target else "excluded" if name in exclude_columns else "feature"
        columns[name] = _widen(frame[name], column, role)
    return pa.DataFrameSchema(
        columns,
        strict=True,
        title="raw data",
        description=f"target: {target}; excluded from features: {list(exclude_columns)}",
    )


def _widen(values: pd.Series, inferred: pa.Column, role: str) -> pa.Column:
    missing = int(values.isna().sum())
    present = values.dropna()
    nullable = role == "feature" or missing > 0
    seen = f"{role}; seen: {len(present)} values, {missing} missing, {present.nunique()} distinct"
    if pd.api.types.is_bool_dtype(values):
        return pa.Column(bool, nullable=nullable, coerce=True, description=seen)
    if pd.api.types.is_numeric_dtype(values):
        return _numeric_column(present, inferred, role, nullable, seen)
    if pd.api.types.is_datetime64_any_dtype(values):
        return pa.Column(inferred.dtype, nullable=nullable, coerce=True, description=seen)
    return _string_column(present, role, nullable, seen)


def _numeric_column(
    present: pd.Series, inferred: pa.Column, role: str, nullable: bool, seen: str
) -> pa.Column:
    integral = pd.api.types.is_integer_dtype(present) and role != "feature"
    dtype = "int64" if integral and not nullable else "float64"
    bounds = {check.name: check.statistics for check in inferred.checks}
    low = bounds.get("greater_than_or_equal_to", {}).get("min_value")
    high = bounds.get("less_than_or_equal_to", {}).get("max_value")
    checks = []
    if role == "target" and present.nunique() <= MAX_CATEGORIES:
        checks.append(pa.Check.isin(sorted(present.unique().tolist())))
    elif low is not None and high is not None:
        lower, upper = widen_range(float(low), float(high), integral=dtype == "int64")
        checks.append(pa.Check.in_range(lower, upper))
        seen += f"; observed range {low:g} to {high:g}, widened to {lower:g} to {upper:g}"
    unique = bool(ID_NAME.search(str(present.name))) and present.is_unique and not nullable
    return pa.Column(dtype, checks, nullable=nullable, unique=unique, coerce=True, description=seen)


def widen_range(low: float, high: float, integral: bool = False) -> tuple[float, float]:
    """``[low, high]`` widened by RANGE_MARGIN of its span each side, rounded outward."""
    margin = RANGE_MARGIN * ((high - low) or abs(high) or 1.0)
    step = 10.0 ** (math.floor(math.log10(margin)) - 1)
    if integral:
        step = max(step, 1.0)
    lower = math.floor((low - margin) / step) * step
    upper = math.ceil((high + margin) / step) * step
    if low >= 0:
        lower = max(lower, 0.0)
    if integral:
        return int(lower), int(upper)
    return round(lower, 10), round(upper, 10)


def _string_column(present: pd.Series, role: str, nullable: bool, seen: str) -> pa.Column:
    text = present.astype(str)
    distinct = text.nunique()
    categorical = distinct <= MAX_CATEGORIES and 2 * distinct <= len(text)
    checks = []
    if categorical or role == "target":
        checks.append(pa.Check.isin(sorted(text.unique().tolist())))
    unique = bool(ID_NAME.search(str(present.name))) and text.is_unique and not nullable
    return pa.Column("str", checks, nullable=nullable, unique=unique, coerce=True, description=seen)


def schema_yaml(schema: pa.DataFrameSchema, source: str, rows: int) -> str:
    """The schema as pandera YAML under a header asking for review; no index, portable dtypes."""
    serialized = serialize_schema(schema)
    serialized.pop("index", None)
    serialized["columns"] = {
        name: _tidy_column(spec, str(schema.columns[name].dtype))
        for name, spec in serialized["columns"].items()
    }
    header = HEADER.format(source=source, rows=rows, margin=RANGE_MARGIN)
    return header + yaml.safe_dump(serialized, sort_keys=False, allow_unicode=True, width=120)


def _tidy_column(spec: dict[str, Any], dtype: str) -> dict[str, Any]:
    """dtype first, description last, defaults left out, a portable name for strings."""
    if "string" in dtype:
        spec["dtype"] = "str"  # pandas' own alias; pandera writes string[pyarrow] under pandas 3
    in_range = spec.get("in_range")
    if isinstance(in_range, dict) and in_range.get("include_min") and in_range.get("include_max"):
        spec["in_range"] = {"min_value": in_range["min_value"], "max_value": in_range["max_value"]}
    first = {key: spec.pop(key) for key in ("dtype", "nullable", "unique", "coerce") if key in spec}
    description = spec.pop("description", None)
    tidy: dict[str, Any] = {key: value for key, value in first.items() if value is not False}
    tidy.update(spec)
    if description:
        tidy["description"] = description
    return tidy


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser("Infer the validation schema from data.source and write it for review.")
    arguments.add_argument("--out", type=Path, help="where to write it (default: data.schema)")
    args = arguments.parse_args(argv)
    params = load_section(args.params, "data", DataParams)
    from mlops.data.ingest import drop_columns, read_source  # not needed by load_schema's users

    frame = drop_columns(read_source(params), params.drop_columns, params.source)
    if params.target not in frame.columns:
        print(
            f"note: data.target '{params.target}' is not a column of {params.source}; "
            "the label stage must create it",
            file=sys.stderr,
        )
    schema = infer_schema(frame, params.target, params.exclude_columns)
    out = args.out or Path(params.schema)
    write_text(out, schema_yaml(schema, params.source, len(frame)))
    load_schema(out)  # what was written must load back
    print(f"schema: {len(schema.columns)} columns inferred from {params.source} -> {out}")
    print("review it (ranges, categories, nullable, unique) before committing")


if __name__ == "__main__":
    sys.exit(run(main))
