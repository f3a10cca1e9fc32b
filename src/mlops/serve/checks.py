"""The checks of a request's values against the packaged signature, written once for every
protocol (the data plane calls ``check``) and for batch scoring.

The request path goes straight from the decoded values to one list per feature (no data frame):
a whole column's types are checked at once, and only a column that fails is walked value by
value to name each problem. One record whose values need no conversion and no warning (the
commonest request) is checked in one pass instead (``plain_record``; a property test holds it
to the general path).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops.core.artifacts import MISSING_CATEGORY
from mlops.serve.batches import (
    VECTOR_MIN_VALUES,
    Columns,
    ColumnValues,
    Inputs,
    KnownCategories,
    ModelInput,
    NumberArray,
)
from mlops.serve.errors import MAX_SHOWN_NAME, InputError, Issue, json_type, shown
from mlops.serve.schema import FLOAT32_MAX, NUMBER_TYPES, STRING_TYPE, FieldSpec, InputSchema

NOT_NULLABLE = "is null, but the model was trained without missing values here"
NOT_A_FEATURE = "not a feature of the model (SCORER_EXTRA_FIELDS=ignore would score the record)"


def check(inputs: Inputs, schema: InputSchema) -> ModelInput:
    """The one check of every request, whatever protocol it came in: the model's input, with
    the warnings. InputError names every offending record (or tensor element) and field."""
    if isinstance(inputs, Columns):
        return validate_columns(inputs.values, inputs.size, schema)
    records = inputs.rows
    if len(records) == 1:
        plain = plain_record(records[0], schema)
        if plain is not None:
            return plain
    return validate_columns(records_to_columns(records, schema), len(records), schema)


def check_batch_size(size: int, maximum: int, what: str) -> None:
    if size < 1:
        raise InputError(f"{what} is empty; send at least one record")
    if size > maximum:
        raise InputError(
            f"{what} holds {size} records; the limit is {maximum} (SCORER_MAX_RECORDS)", status=413
        )


def plain_record(record: object, schema: InputSchema) -> ModelInput | None:
    """The commonest request's record, when all its values pass ``schema.plain_checks``, checked
    in one pass (several times faster than the general path); None for anything else, which the
    general path then checks, converts, flags or rejects with its reasons."""
    checks = schema.plain_checks
    if type(record) is not dict or len(record) != len(checks):
        return None
    columns: dict[str, ColumnValues] = {}
    longest = schema.max_string_length
    for name, is_number, low, high, categories, missing in checks:
        value = record.get(name, record)  # a missing key gives the record: no check accepts it
        if value is None:
            if missing is None:
                return None
            columns[name] = [missing]
        elif is_number:
            if type(value) not in NUMBER_TYPES or not low <= value <= high:  # NaN fails too
                return None
            columns[name] = [value]
        elif type(value) is not str or (
            value not in categories if categories is not None else len(value) > longest
        ):
            return None
        else:
            columns[name] = [value]
    return ModelInput(columns, 1, schema)


def records_to_columns(records: list[Any], schema: InputSchema) -> dict[str, list[Any]]:
    """The records as one list of values per feature; InputError names each record that is not
    an object of exactly the features (and the value problems of the fields it has)."""
    names = schema.names
    # C-speed path: every record is an object with as many keys as there are features, and each
    # feature is there (a missing one raises KeyError), so the keys are exactly the features.
    if set(map(type, records)) == {dict} and set(map(len, records)) == {len(names)}:
        with contextlib.suppress(KeyError):
            return {name: list(map(getter, records)) for name, getter in schema.getters}
    issues: list[Issue] = []
    for index, record in enumerate(records):
        if type(record) is not dict:
            issues.append(
                {
                    "index": index,
                    "field": None,
                    "message": f"expected an object, got {json_type(record)}",
                }
            )
        elif record.keys() != names:
            issues.extend(_key_issues(index, record, schema))
    if issues:
        issues.extend(_value_issues_of_present_fields(records, schema, issues))
        issues.sort(key=lambda issue: issue["index"] or 0)
        raise _invalid(issues)
    return {name: [record[name] for record in records] for name in schema.order}


def _value_issues_of_present_fields(
    records: list[Any], schema: InputSchema, reported: list[Issue]
) -> list[Issue]:
    """The value problems of the fields that are there, so one answer lists everything wrong."""
    already = {(issue["index"], issue["field"]) for issue in reported}
    rows = [record if type(record) is dict else {} for record in records]
    columns = {name: [row.get(name) for row in rows] for name in schema.order}
    try:
        validate_columns(columns, len(rows), schema)
    except InputError as error:
        return [
            issue
            for issue in error.issues
            if (issue["index"], issue["field"]) not in already
            and type(records[issue["index"] or 0]) is dict
        ]
    return []


def _key_issues(index: int, record: dict[str, Any], schema: InputSchema) -> list[Issue]:
    issues: list[Issue] = []
    for spec in schema.fields:
        if spec.name not in record:
            issues.append(
                {
                    "index": index,
                    "field": spec.name,
                    "message": f"missing; expected {spec.expected()}",
                }
            )
    for name in record:
        if name not in schema.names:
            field = name if len(name) <= MAX_SHOWN_NAME else shown(name, MAX_SHOWN_NAME)
            issues.append({"index": index, "field": field, "message": NOT_A_FEATURE})
    return issues


def _invalid(issues: list[Issue]) -> InputError:
    records = len({issue["index"] for issue in issues})
    return InputError(f"{len(issues)} invalid value(s) in {records} record(s)", issues)


@dataclass(slots=True)
class _Column:
    values: ColumnValues
    issues: list[Issue] = field(default_factory=list)
    out_of_range: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)


def validate_columns(
    columns: Mapping[str, Sequence[Any] | NumberArray], size: int, schema: InputSchema
) -> ModelInput:
    """Check every value against its feature; the model-ready values, with warnings."""
    checked = {
        spec.name: (_number_column if spec.is_number else _string_column)(
            spec, columns[spec.name], schema
        )
        for spec in schema.fields
    }
    issues = [issue for column in checked.values() for issue in column.issues]
    if issues:
        issues.sort(key=lambda issue: issue["index"] or 0)
        raise _invalid(issues)
    batch = ModelInput({name: column.values for name, column in checked.items()}, size, schema)
    for spec in schema.fields:
        column = checked[spec.name]
        if column.out_of_range or column.unknown:
            _collect_warnings(batch, spec, column, columns[spec.name], schema)
    return batch


def _collect_warnings(
    batch: ModelInput,
    spec: FieldSpec,
    column: _Column,
    values: Sequence[Any] | NumberArray,
    schema: InputSchema,
) -> None:
    if column.out_of_range:
        batch.out_of_range[spec.name] = len(column.out_of_range)
        if schema.out_of_range == "flag":
            for index in column.out_of_range:
                message = f"{shown(_plain(values[index]))} is {_outside(spec)}"
                batch.warnings.setdefault(index, []).append(
                    {"field": spec.name, "message": message}
                )
    if column.unknown:
        batch.unknown_categories[spec.name] = len(column.unknown)
        for index in column.unknown:
            message = (
                f"{shown(values[index])} was not seen in training; scored as an unknown category"
            )
            batch.warnings.setdefault(index, []).append({"field": spec.name, "message": message})


def _number_column(
    spec: FieldSpec, values: Sequence[Any] | NumberArray, schema: InputSchema
) -> _Column:
    if isinstance(values, np.ndarray):  # a tensor's bytes (binary data, gRPC): NaN is missing
        column = _array_column(spec, values, schema)
        if column is not None:
            return column
        values = [None if value != value else value for value in values.tolist()]  # NaN
    checked = _float32_column(values)
    if checked is not None:
        column = _Column(checked[0])
        bounds: tuple[float, float] | None = checked[1]
    else:
        column = _numbers_one_by_one(spec, values)
        present = [value for value in values if value is not None]
        bounds = (min(present), max(present)) if present and not column.issues else None
    if bounds is not None and schema.out_of_range != "ignore":
        _check_range(spec, values, bounds, column, schema)
    return column


def _float32_column(
    values: Sequence[Any],
) -> tuple[ColumnValues, tuple[float, float]] | None:
    """The model-ready values and their smallest and largest, when every value is a JSON number
    float32 can hold; None otherwise. A long column is checked as one float64 array."""
    if len(values) < VECTOR_MIN_VALUES:
        bounds = _float32_bounds(values)
        return None if bounds is None else (list(values), bounds)
    if not set(map(type, values)) <= NUMBER_TYPES:  # no null, boolean or string
        return None
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        return None
    lowest, highest = float(array.min()), float(array.max())  # a NaN makes both NaN
    if lowest >= -FLOAT32_MAX and highest <= FLOAT32_MAX:  # False for NaN and infinities
        return array, (lowest, highest)
    return None


def _float32_bounds(values: Sequence[Any]) -> tuple[float, float] | None:
    """The smallest and largest value when every value is a JSON number float32 can hold (no
    null, NaN, infinity, boolean or string); None otherwise. C-speed checks of the whole column."""
    if len(values) == 1:  # the commonest request; NaN and infinities fail the comparison
        value = values[0]
        if type(value) in NUMBER_TYPES and -FLOAT32_MAX <= value <= FLOAT32_MAX:
            return value, value
        return None
    if not set(map(type, values)) <= NUMBER_TYPES:
        return None
    try:
        if not math.isfinite(math.fsum(values)):
            return None
    except OverflowError:
        return None
    lowest, highest = min(values), max(values)
    return (lowest, highest) if lowest >= -FLOAT32_MAX and highest <= FLOAT32_MAX else None


def _numbers_one_by_one(spec: FieldSpec, values: Sequence[Any]) -> _Column:
    numbers: list[float] = []
    issues: list[Issue] = []
    for index, value in enumerate(values):
        if type(value) in NUMBER_TYPES and -FLOAT32_MAX <= value <= FLOAT32_MAX:
            numbers.append(float(value))
            continue
        numbers.append(math.nan)
        if value is None and spec.nullable:
            continue
        if type(value) in NUMBER_TYPES:
            message = _not_finite(value, spec)
        elif value is None:
            message = f"{NOT_NULLABLE}; expected a number"
        else:
            message = f"expected {spec.expected()}, got {json_type(value)}"
        issues.append({"index": index, "field": spec.name, "message": message})
    return _Column(numbers, issues)


def _array_column(spec: FieldSpec, values: NumberArray, schema: InputSchema) -> _Column | None:
    """A number column decoded from a tensor's bytes, checked whole (NaN, its missing values,
    are what the model takes for missing; float32 is compared as float32, so the training
    minimum sent as FP32 is in range); None when a value is missing where the signature allows
    none, infinite or beyond float32, for the general path to name each."""
    missing = np.isnan(values)
    gaps = bool(missing.any())
    if gaps and not spec.nullable:
        return None
    present = values[~missing] if gaps else values
    if present.size and not float(np.abs(present).max()) <= FLOAT32_MAX:  # False for infinity
        return None
    column = _Column(values)
    if present.size and schema.out_of_range != "ignore":
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        outside = np.flatnonzero((values < low) | (values > high)).tolist()  # NaN: neither
        _apply_range_policy(spec, values, outside, column, schema)
    return column


def _not_finite(value: float, spec: FieldSpec) -> str:
    if isinstance(value, float) and math.isnan(value):
        return (
            "is NaN; send null for a missing value"
            if spec.nullable
            else "is NaN; expected a number"
        )
    if isinstance(value, float) and math.isinf(value):
        return "is infinite; expected a finite number"
    return f"{shown(value)} is outside the float32 range"


def _outside(spec: FieldSpec) -> str:
    return f"outside the training range [{spec.minimum}, {spec.maximum}]"


def _check_range(
    spec: FieldSpec,
    values: Sequence[Any],
    bounds: tuple[float, float],
    column: _Column,
    schema: InputSchema,
) -> None:
    """Flag (or reject) values outside the training range, compared at full precision."""
    low = -math.inf if spec.minimum is None else spec.minimum
    high = math.inf if spec.maximum is None else spec.maximum
    if low <= bounds[0] and bounds[1] <= high:
        return
    outside = [
        index
        for index, value in enumerate(values)
        if value is not None and not low <= value <= high
    ]
    _apply_range_policy(spec, values, outside, column, schema)


def _apply_range_policy(
    spec: FieldSpec,
    values: Sequence[Any] | NumberArray,
    outside: list[int],
    column: _Column,
    schema: InputSchema,
) -> None:
    """The values at ``outside`` flagged, or rejected, as ``SCORER_OUT_OF_RANGE`` says."""
    if schema.out_of_range == "flag":
        column.out_of_range = outside
        return
    for index in outside:
        message = f"{shown(_plain(values[index]))} is {_outside(spec)} (SCORER_OUT_OF_RANGE=reject)"
        column.issues.append({"index": index, "field": spec.name, "message": message})


def _plain(value: Any) -> Any:
    """A numpy number as the Python number it holds (for messages), a float32 as its shortest
    decimal (55.32, as the client wrote it, not 55.31999969482422)."""
    if isinstance(value, np.float32):
        return float(str(value))
    return value.item() if isinstance(value, np.generic) else value


def _string_column(
    spec: FieldSpec, values: Sequence[Any] | NumberArray, schema: InputSchema
) -> _Column:
    if type(values) is KnownCategories and spec.name in schema.short_categories:
        return _Column(values)  # every value a known category, none too long to be logged
    # (an array holds numbers where text belongs: the walk below names each)
    given: Sequence[Any] = values.tolist() if isinstance(values, np.ndarray) else values
    column = _Column([])
    strings: Sequence[Any] = given
    if not set(map(type, given)) <= STRING_TYPE:
        strings = _strings_one_by_one(spec, given, column)
    if max(map(len, strings), default=0) > schema.max_string_length:
        _refuse_long_strings(spec, strings, schema.max_string_length, column)
        return column
    if spec.categories is not None and not set(strings) <= spec.categories:
        allowed = spec.categories | {MISSING_CATEGORY}
        unknown = [index for index, value in enumerate(strings) if value not in allowed]
        if schema.unknown_category == "reject":
            for index in unknown:
                message = (
                    f"{shown(strings[index])} is not a known category; expected {spec.expected()}"
                )
                column.issues.append({"index": index, "field": spec.name, "message": message})
        else:
            column.unknown = unknown
    column.values = list(strings)
    return column


def _refuse_long_strings(
    spec: FieldSpec, strings: Sequence[str], longest: int, column: _Column
) -> None:
    """A value is logged as sent: one longer than ``longest`` is refused, never scored."""
    for index, value in enumerate(strings):
        if len(value) > longest:
            message = (
                f"a string of {len(value)} characters; at most {longest} are accepted "
                "(SCORER_MAX_STRING_LENGTH)"
            )
            column.issues.append({"index": index, "field": spec.name, "message": message})


def _strings_one_by_one(spec: FieldSpec, values: Sequence[Any], column: _Column) -> list[Any]:
    strings: list[Any] = []
    for index, value in enumerate(values):
        if type(value) is str:
            strings.append(value)
            continue
        strings.append(MISSING_CATEGORY)
        if value is None and spec.nullable:
            continue
        if value is None:
            message = f"{NOT_NULLABLE}; expected {spec.expected()}"
        else:
            message = f"expected {spec.expected()}, got {json_type(value)}"
        column.issues.append({"index": index, "field": spec.name, "message": message})
    return strings
