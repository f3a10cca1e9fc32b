"""The validate stage's rules: which values fail the schema, and how the failures are reported.

``failure_cases`` runs the repository's pandera schema (the pandas one) on a table: the whole
table on the pandas engine, every batch of rows on the Spark engine, which then gathers the
batches' cases. ``validation_report`` turns the cases into ``validation.json`` (one failure per
column and check, never per row), ``failure_message`` into what the user reads.

When ``clean.normalize_strings`` is on, a feature value that differs from an allowed category only
in case or whitespace is checked as the clean stage will leave it (``normalise_strings`` of
``mlops.data.rules.rows``) and counted under ``normalised``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlops.data.rules.rows import normalise_strings, text_features
from mlops.data.rules.schema import allowed_categories
from mlops.params import CleanParams, DataParams
from mlops.summaries import Failure, ValidationReport

EXAMPLES = 5  # failing values and row numbers kept per (column, check)
MAX_CHECK_NAME = 80

TABLE_CHECKS = ("column_in_dataframe", "column_in_schema")
COLUMN_CHECK_ORDER = ("dtype", "coerce_dtype", "not_nullable", "field_uniqueness")
HINTS = {
    "column_in_dataframe": "required column is missing",
    "column_in_schema": "column is not in the schema (strict): add it to the schema, or drop it "
    "at ingest with data.drop_columns",
    "not_nullable": "missing values where the schema has no `nullable: true`",
    "field_uniqueness": "duplicate values where the schema declares `unique: true`",
    "dtype": "values that are not of the declared type",
    "coerce_dtype": "values that cannot be converted to the schema's type",
    "isin": "unknown categories",
    "in_range": "values outside the allowed range",
    "greater_than": "values below the allowed minimum",
    "greater_than_or_equal_to": "values below the allowed minimum",
    "less_than": "values above the allowed maximum",
    "less_than_or_equal_to": "values above the allowed maximum",
}


def validate_frame(
    frame: pd.DataFrame, schema: pa.DataFrameSchema, normalise: Sequence[str] = ()
) -> ValidationReport:
    """``{"passed", "rows", "failures": [...], "normalised": {column: n}}``, one failure per
    (column, check), never per row.

    Numbers that arrive as text (a CSV column with one ``abc`` in it) are parsed first, so the
    unparseable values are reported as a type failure and the range checks still run on the rest.
    The ``normalise`` columns are checked as the clean stage will leave them (case, whitespace).
    """
    cases, normalised = failure_cases(frame, schema, normalise)
    return validation_report(cases, schema, len(frame), normalised)


def failure_cases(
    frame: pd.DataFrame, schema: pa.DataFrameSchema, normalise: Sequence[str] = ()
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every failing value as a row (column, check, failure_case, index: the row's label in
    ``frame``, None for a check on the whole column), and the values normalised per column."""
    normalised: dict[str, int] = {}
    if normalise:
        frame, normalised = normalise_strings(frame, normalise, allowed_categories(schema))
    parsed, type_failures = _parse_numeric_columns(frame, schema)
    try:
        schema.validate(parsed, lazy=True)
        cases = pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    except SchemaErrors as errors:
        cases = _normalise(errors.failure_cases)
    return pd.concat(
        [type_failures, _without_rows_already_reported(cases, type_failures)]
    ), normalised


def validation_report(
    cases: pd.DataFrame,
    schema: pa.DataFrameSchema,
    rows: int,
    normalised: dict[str, int],
    counts: dict[tuple[str, str], int] | None = None,
) -> ValidationReport:
    """The report of ``failure_cases``; ``counts`` overrides the count of failing rows of a
    (column, check) whose cases were reduced to the examples (the Spark path does that)."""
    failures = [
        _summarise(column, check, group, (counts or {}).get((column, check)))
        for (column, check), group in _groups(cases)
    ]
    order = {str(name): position for position, name in enumerate(schema.columns)}
    failures.sort(
        key=lambda failure: (
            failure["check"] not in TABLE_CHECKS,
            order.get(failure["column"], -1),
            _check_rank(schema, failure["column"], failure["check"]),
        )
    )
    return {
        "passed": not failures,
        "rows": rows,
        "failures": failures,
        "normalised": {column: count for column, count in normalised.items() if count},
    }


def _check_rank(schema: pa.DataFrameSchema, column: str, check: str) -> int:
    """A column's checks in the order pandera runs them: type, nulls, uniqueness, declared."""
    kind = check.split("(")[0]
    if kind in COLUMN_CHECK_ORDER:
        return COLUMN_CHECK_ORDER.index(kind)
    declared = [str(c) for c in schema.columns[column].checks] if column in schema.columns else []
    return len(COLUMN_CHECK_ORDER) + (declared.index(check) if check in declared else len(declared))


def columns_to_normalise(frame: pd.DataFrame, data: DataParams, clean: CleanParams) -> list[str]:
    """The text feature columns the clean stage normalises (none when it is switched off)."""
    if not clean.normalize_strings:
        return []
    return text_features(frame, {data.target, *data.exclude_columns})


def _parse_numeric_columns(
    frame: pd.DataFrame, schema: pa.DataFrameSchema
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frame`` with text in numeric columns parsed, and the values that would not parse."""
    parsed = frame.copy()
    failures = []
    for name, column in schema.columns.items():
        declared = str(column.dtype)
        if name not in frame.columns or not _is_numeric_dtype(declared):
            continue
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & numbers.isna()
        parsed[name] = numbers
        failures.append(
            pd.DataFrame(
                {
                    "column": name,
                    "check": f"dtype('{declared}')",
                    "failure_case": values[bad].to_numpy(dtype=object),
                    "index": values.index[bad].to_numpy(dtype=object),
                }
            )
        )
    columns = ["column", "check", "failure_case", "index"]
    return parsed, pd.concat(failures) if failures else pd.DataFrame(columns=columns)


def _is_numeric_dtype(declared: str) -> bool:
    return declared.lower().startswith(("int", "uint", "float"))


def _normalise(cases: pd.DataFrame) -> pd.DataFrame:
    """pandera's failure cases with table-level checks filed under the column they concern."""
    cases = cases[["column", "check", "failure_case", "index"]].astype(object).copy()
    table_level = cases["check"].isin(TABLE_CHECKS)
    cases.loc[table_level, "column"] = cases.loc[table_level, "failure_case"]
    cases.loc[table_level, "failure_case"] = None
    return cases


def _without_rows_already_reported(
    cases: pd.DataFrame, type_failures: pd.DataFrame
) -> pd.DataFrame:
    """Drop the follow-on failures (e.g. not_nullable) of values already reported as bad types."""
    if type_failures.empty or cases.empty:
        return cases
    reported = set(zip(type_failures["column"], type_failures["index"], strict=True))
    keep = [
        (column, index) not in reported
        for column, index in zip(cases["column"], cases["index"], strict=True)
    ]
    return cases[keep]


def _groups(cases: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    if cases.empty:
        return []
    keys = cases["column"].astype(str) + "\0" + cases["check"].astype(str)
    return [
        ((str(group["column"].iloc[0]), str(group["check"].iloc[0])), group)
        for _, group in cases.groupby(keys, sort=False)
    ]


def _summarise(column: str, check: str, group: pd.DataFrame, count: int | None = None) -> Failure:
    rows = [int(index) for index in group["index"] if _is_row(index)]
    values = [_plain(value) for value in group["failure_case"] if value is not None]
    examples: list[Any] = []
    for value in values:
        if value not in examples:
            examples.append(value)
    return {
        "column": column,
        "check": check,
        "count": count if count is not None else len(rows) if rows else max(len(group), 1),
        "failure_cases": examples[:EXAMPLES],
        "rows": rows[:EXAMPLES],
        "hint": HINTS.get(check.split("(")[0], "values failing this check"),
    }


def _is_row(index: object) -> bool:
    return index is not None and not (isinstance(index, float) and math.isnan(index))


def _plain(value: Any) -> Any:
    """A JSON-friendly stand-in for a failing value: None for missing, Python scalars."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None if math.isnan(value) else str(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def failure_message(report: ValidationReport, source: Path, schema: Path, report_path: Path) -> str:
    """What the user reads when validation fails: one line per column and check, then what to do."""
    failures = report["failures"]
    lines = [
        f"{source} does not match {schema}: {len(failures)} check(s) failed on "
        f"{report['rows']} rows (details: {report_path})"
    ]
    for failure in failures:
        lines.append(f"  {failure['column']}: {_short(failure['check'])}: {_describe(failure)}")
    lines.append(
        "Fix the source data (rows are 0-based positions in the table), or, if these values "
        f"are valid, widen {schema} (or run `make schema` and review the diff)."
    )
    return "\n".join(lines)


def _describe(failure: Failure) -> str:
    check = failure["check"]
    if check in TABLE_CHECKS:
        return failure["hint"]
    count = failure["count"]
    text = f"{failure['hint']}: {count} row{'s' if count != 1 else ''}"
    if any(value is not None for value in failure["failure_cases"]):
        text += ", e.g. " + ", ".join(repr(value) for value in failure["failure_cases"])
    if failure["rows"]:
        more = ", ..." if count > len(failure["rows"]) else ""
        label = "row" if count == 1 else "rows"
        text += f" ({label} {', '.join(str(row) for row in failure['rows'])}{more})"
    return text


def _short(check: str) -> str:
    return check if len(check) <= MAX_CHECK_NAME else check[: MAX_CHECK_NAME - 4] + " ...)"


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so DVC and browsers can read it."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
