"""Client input → the model's typed input arrays, checked against the packaged signature.

Pure functions shared by the HTTP routes and batch scoring. The request path goes straight from
parsed JSON to one numpy column per feature (no data frame): a fast path checks a whole column's
types at once, and only a column that fails it is walked value by value to name each problem.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any, Literal, NamedTuple, TypedDict

import numpy as np
import numpy.typing as npt

from mlops.core.artifacts import MISSING_CATEGORY, Signature

MAX_REPORTED_ISSUES = 100
VECTOR_MIN_VALUES = 32  # shorter number columns are checked in plain Python: numpy costs more
MAX_LISTED_CATEGORIES = 20
MAX_SHOWN_NAME = 100
NUMBER_TYPES = frozenset({int, float})
STRING_TYPE = frozenset({str})
FLOAT32_MAX = float(np.finfo(np.float32).max)
NOT_NULLABLE = "is null, but the model was trained without missing values here"
NUMERIC_V2_DATATYPES = frozenset(
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
)
STRING_V2_DATATYPE = "BYTES"
NUMBER_V2_DATATYPE = "FP32"

UnknownCategoryPolicy = Literal["score", "reject"]
OutOfRangePolicy = Literal["flag", "reject", "ignore"]
ColumnValues = list[Any] | npt.NDArray[np.float64]  # a long, valid number column is an array


class Issue(TypedDict):
    """One problem with the input: the record (or tensor element) index and the field."""

    index: int | None
    field: str | None
    message: str


class FieldWarning(TypedDict):
    field: str
    message: str


class InputError(Exception):
    """The client sent something the model cannot score; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, issues: Sequence[Issue] = (), status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.issues = list(issues)
        self.status = status

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.issues:
            body["details"] = self.issues[:MAX_REPORTED_ISSUES]
            body["issue_count"] = len(self.issues)
        return body

    def one_line(self) -> str:
        """The message and the first few issues, for protocols whose error is a single string."""
        shown = "; ".join(describe_issue(issue) for issue in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        return f"{self.message}: {shown}{more}" if shown else self.message


def describe_issue(issue: Issue) -> str:
    where = [] if issue["index"] is None else [f"[{issue['index']}]"]
    if issue["field"] is not None:
        where.append(issue["field"])
    return f"{' '.join(where)}: {issue['message']}" if where else issue["message"]


@dataclass(frozen=True)
class FieldSpec:
    name: str  # the column's name: what clients send
    input_name: str  # the ONNX graph's input for it
    is_number: bool
    nullable: bool
    categories: frozenset[str] | None
    minimum: float | None
    maximum: float | None

    def expected(self) -> str:
        if self.is_number:
            return "a number" + (" or null" if self.nullable else "")
        if self.categories:
            listed = sorted(self.categories)
            shown = ", ".join(repr(value) for value in listed[:MAX_LISTED_CATEGORIES])
            more = ", ..." if len(listed) > MAX_LISTED_CATEGORIES else ""
            return f"one of [{shown}{more}]" + (" or null" if self.nullable else "")
        return "a string" + (" or null" if self.nullable else "")


@dataclass(frozen=True)
class InputSchema:
    fields: tuple[FieldSpec, ...]
    names: frozenset[str]
    unknown_category: UnknownCategoryPolicy = "score"
    out_of_range: OutOfRangePolicy = "flag"

    @cached_property
    def order(self) -> list[str]:
        return [spec.name for spec in self.fields]

    @cached_property
    def getters(self) -> list[tuple[str, itemgetter[Any]]]:
        """``(name, itemgetter(name))`` per feature, in order: made once, used per request."""
        return [(spec.name, itemgetter(spec.name)) for spec in self.fields]

    @cached_property
    def plain_checks(self) -> tuple[PlainCheck, ...]:
        """Per feature, what a value must be to need neither a conversion nor a warning: a number
        within the range that is not flagged (float32's, or the training range), or a string the
        model knows; ``None`` where missing values are allowed. Made once, used per request."""
        checks = []
        for spec in self.fields:
            low, high = -FLOAT32_MAX, FLOAT32_MAX
            if self.out_of_range != "ignore":
                low = max(low, -math.inf if spec.minimum is None else spec.minimum)
                high = min(high, math.inf if spec.maximum is None else spec.maximum)
            missing = (math.nan if spec.is_number else MISSING_CATEGORY) if spec.nullable else None
            checks.append(
                PlainCheck(spec.name, spec.is_number, low, high, spec.categories, missing)
            )
        return tuple(checks)


class PlainCheck(NamedTuple):
    name: str
    is_number: bool
    low: float
    high: float
    categories: frozenset[str] | None
    missing: float | str | None  # what a null becomes; None if the feature may not be null


def input_schema(
    signature: Signature,
    unknown_category: UnknownCategoryPolicy = "score",
    out_of_range: OutOfRangePolicy = "flag",
) -> InputSchema:
    fields = tuple(
        FieldSpec(
            name=feature["name"],
            input_name=feature["input_name"],
            is_number=feature["type"] == "number",
            nullable=bool(feature["nullable"]),
            categories=None if feature["categories"] is None else frozenset(feature["categories"]),
            minimum=feature["min"],
            maximum=feature["max"],
        )
        for feature in signature["features"]
    )
    names = frozenset(spec.name for spec in fields)
    return InputSchema(fields, names, unknown_category, out_of_range)


@dataclass
class ModelInput:
    """The validated batch: the model-ready values of each feature, plus per-record warnings.

    Values are kept as Python lists (a missing number is NaN, a missing category
    ``MISSING_CATEGORY``) so that small requests can be merged before any array is built; a long
    number column that passed the vectorised checks is already a float64 array.
    """

    columns: dict[str, ColumnValues]
    size: int
    schema: InputSchema
    warnings: dict[int, list[FieldWarning]] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)  # feature -> flagged values
    unknown_categories: dict[str, int] = field(default_factory=dict)

    @cached_property
    def feed(self) -> dict[str, npt.NDArray[Any]]:
        return model_feed(self.schema, [self.columns])


def model_feed(
    schema: InputSchema, parts: Sequence[Mapping[str, ColumnValues]]
) -> dict[str, npt.NDArray[Any]]:
    """The model's inputs, one ``[n, 1]`` array per feature keyed by its ONNX input name, from one
    or more validated batches (whose columns are keyed by the feature's name)."""
    feed = {}
    for spec in schema.fields:
        columns = [part[spec.name] for part in parts]
        values = columns[0] if len(columns) == 1 else list(chain.from_iterable(columns))
        dtype = np.float32 if spec.is_number else object
        feed[spec.input_name] = np.asarray(values, dtype=dtype).reshape(-1, 1)
    return feed


@dataclass(slots=True)
class _Column:
    values: ColumnValues
    issues: list[Issue] = field(default_factory=list)
    out_of_range: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)


def shown(value: object, limit: int = 60) -> str:
    """``repr`` of a client's value, cut short: error messages must stay small."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_batch_size(size: int, maximum: int, what: str) -> None:
    if size < 1:
        raise InputError(f"{what} is empty; send at least one record")
    if size > maximum:
        raise InputError(
            f"{what} holds {size} records; the limit is {maximum} (SCORER_MAX_RECORDS)", status=413
        )


def validate_records(
    body: object, schema: InputSchema, max_records: int
) -> tuple[ModelInput, list[dict[str, Any]]]:
    """The ``{"records": [...]}`` body, checked: the model's input and the records as received.
    InputError names every offending record and field."""
    plain = plain_record(body, schema)
    if plain is not None:
        return plain
    columns, records = records_to_columns(body, schema, max_records)
    return validate_columns(columns, len(records), schema), records


def plain_record(
    body: object, schema: InputSchema
) -> tuple[ModelInput, list[dict[str, Any]]] | None:
    """The commonest request, one record whose values all pass ``schema.plain_checks``, checked
    in one pass (several times faster than the general path); None for anything else, which the
    general path then checks, converts, flags or rejects with its reasons."""
    if type(body) is not dict or len(body) != 1:
        return None
    records = body.get("records")
    if type(records) is not list or len(records) != 1:
        return None
    record = records[0]
    checks = schema.plain_checks
    if type(record) is not dict or len(record) != len(checks):
        return None
    columns: dict[str, ColumnValues] = {}
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
        elif type(value) is not str or (categories is not None and value not in categories):
            return None
        else:
            columns[name] = [value]
    return ModelInput(columns, 1, schema), records


def records_to_columns(
    body: object, schema: InputSchema, max_records: int
) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """The ``{"records": [...]}`` body as one list of values per feature (and the records)."""
    if not isinstance(body, dict):
        raise InputError(f'expected a JSON object {{"records": [...]}}, got {json_type(body)}')
    if len(body) != 1 or "records" not in body:
        unknown_keys = sorted(set(body) - {"records"})
        if unknown_keys:
            raise InputError(f"unknown key(s) {unknown_keys}; the body holds only 'records'")
        raise InputError("'records' is missing; expected a list of records")
    records = body["records"]
    if not isinstance(records, list):
        raise InputError(f"'records' must be a list of objects, got {json_type(records)}")
    check_batch_size(len(records), max_records, "'records'")
    names = schema.names
    # C-speed path: every record is an object with as many keys as there are features, and each
    # feature is there (a missing one raises KeyError), so the keys are exactly the features.
    if set(map(type, records)) == {dict} and set(map(len, records)) == {len(names)}:
        with contextlib.suppress(KeyError):
            return {name: list(map(getter, records)) for name, getter in schema.getters}, records
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
    return {name: [record[name] for record in records] for name in schema.order}, records


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
            issues.append({"index": index, "field": field, "message": "not a feature of the model"})
    return issues


def _invalid(issues: list[Issue]) -> InputError:
    records = len({issue["index"] for issue in issues})
    return InputError(f"{len(issues)} invalid value(s) in {records} record(s)", issues)


def validate_columns(
    columns: Mapping[str, Sequence[Any]], size: int, schema: InputSchema
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
    batch: ModelInput, spec: FieldSpec, column: _Column, values: Sequence[Any], schema: InputSchema
) -> None:
    if column.out_of_range:
        batch.out_of_range[spec.name] = len(column.out_of_range)
        if schema.out_of_range == "flag":
            for index in column.out_of_range:
                message = f"{shown(values[index])} is {_outside(spec)}"
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


def _number_column(spec: FieldSpec, values: Sequence[Any], schema: InputSchema) -> _Column:
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
    if schema.out_of_range == "flag":
        column.out_of_range = outside
        return
    for index in outside:
        message = f"{shown(values[index])} is {_outside(spec)} (SCORER_OUT_OF_RANGE=reject)"
        column.issues.append({"index": index, "field": spec.name, "message": message})


def _string_column(spec: FieldSpec, values: Sequence[Any], schema: InputSchema) -> _Column:
    column = _Column([])
    strings: Sequence[Any] = values
    if not set(map(type, values)) <= STRING_TYPE:
        strings = _strings_one_by_one(spec, values, column)
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


def check_inference_request(body: object, outputs: Sequence[str]) -> tuple[str | None, list[str]]:
    """The V2 inference request object around its inputs: its id and which of the model's
    ``outputs`` it asks for (all of them when it names none)."""
    if not isinstance(body, dict):
        raise InputError("expected an inference request object with 'inputs'")
    unknown = sorted(set(body) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in the inference request")
    if "inputs" not in body:
        raise InputError("'inputs' is missing")
    client_id = body.get("id")
    if client_id is not None and not isinstance(client_id, str):
        raise InputError("'id' must be a string")
    if "parameters" in body and not isinstance(body["parameters"], dict):
        raise InputError("'parameters' must be an object")
    requested = body.get("outputs")
    if requested is None:
        return client_id, list(outputs)
    if not isinstance(requested, list) or not all(
        isinstance(output, dict) and output.get("name") in outputs for output in requested
    ):
        raise InputError(f"'outputs' must be a list of {{'name': ...}} naming {list(outputs)}")
    return client_id, [output["name"] for output in requested]


def tensors_to_columns(
    inputs: object, schema: InputSchema, max_records: int
) -> tuple[dict[str, list[Any]], int]:
    """Open Inference Protocol V2 ``inputs`` (one ``[n, 1]`` or ``[n]`` tensor per feature)."""
    if not isinstance(inputs, list) or not inputs:
        raise InputError("'inputs' must be a non-empty list of tensors, one per feature")
    columns: dict[str, list[Any]] = {}
    for position, tensor in enumerate(inputs):
        name, values = _tensor_values(position, tensor, schema)
        if name in columns:
            raise InputError(f"input '{name}' is given twice")
        columns[name] = values
    missing = [name for name in schema.order if name not in columns]
    if missing:
        raise InputError(
            f"missing input(s) {missing}; the model takes one input per feature: {schema.order}"
        )
    sizes = {name: len(values) for name, values in columns.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(f"inputs hold different numbers of elements: {sizes}")
    size = next(iter(sizes.values()))
    check_batch_size(size, max_records, "the batch")
    return columns, size


def _tensor_values(position: int, tensor: object, schema: InputSchema) -> tuple[str, list[Any]]:
    if not isinstance(tensor, dict):
        raise InputError(f"inputs[{position}] must be an object, got {json_type(tensor)}")
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InputError(f"inputs[{position}].name must be a string")
    spec = next((spec for spec in schema.fields if spec.name == name), None)
    if spec is None:
        raise InputError(
            f"input {shown(name, MAX_SHOWN_NAME)} is not a feature of the model; "
            f"expected {schema.order}"
        )
    missing = [key for key in ("shape", "datatype", "data") if key not in tensor]
    if missing:
        raise InputError(f"input '{name}' is missing {missing}")
    _check_datatype(spec, tensor["datatype"])
    shape = _check_shape(name, tensor["shape"])
    values = _flatten(name, tensor["data"], len(shape))
    if len(values) != shape[0]:
        raise InputError(f"input '{name}' has shape {shape} but {len(values)} element(s) of data")
    return name, values


def _check_datatype(spec: FieldSpec, datatype: object) -> None:
    if not isinstance(datatype, str):
        raise InputError(
            f"input '{spec.name}': datatype must be a string, got {json_type(datatype)}"
        )
    if spec.is_number and datatype not in NUMERIC_V2_DATATYPES:
        raise InputError(
            f"input '{spec.name}' is numeric: datatype must be {NUMBER_V2_DATATYPE}, "
            f"got {shown(datatype)}"
        )
    if not spec.is_number and datatype != STRING_V2_DATATYPE:
        raise InputError(
            f"input '{spec.name}' is categorical: datatype must be {STRING_V2_DATATYPE}, "
            f"got {shown(datatype)}"
        )


def _check_shape(name: str, shape: object) -> list[int]:
    valid = (
        isinstance(shape, list)
        and len(shape) in (1, 2)
        and all(type(dimension) is int and dimension >= 0 for dimension in shape)
        and (len(shape) == 1 or shape[1] == 1)
    )
    if not valid:
        raise InputError(f"input '{name}' must have shape [n, 1] or [n], got {shown(shape)}")
    return shape  # type: ignore[return-value]


def _flatten(name: str, data: object, rank: int) -> list[Any]:
    """Tensor data may be flat or nested as the shape (row-major); a nested row is ``[value]``."""
    if not isinstance(data, list):
        raise InputError(f"input '{name}'.data must be an array, got {json_type(data)}")
    if rank == 2 and data and type(data[0]) is list:
        if not all(type(row) is list and len(row) == 1 for row in data):
            raise InputError(f"input '{name}'.data must be flat or a list of one-element rows")
        return [row[0] for row in data]
    return data


UNSEEN_CATEGORY = "__unseen_in_training__"


def example_record(schema: InputSchema) -> dict[str, Any]:
    """A valid record: mid-range numbers, the first known category."""
    record: dict[str, Any] = {}
    for spec in schema.fields:
        if spec.is_number:
            low, high = spec.minimum, spec.maximum
            record[spec.name] = (low + high) / 2 if low is not None and high is not None else 0.0
        else:
            record[spec.name] = min(spec.categories) if spec.categories else "example"
    return record


def warm_up_records(schema: InputSchema) -> list[dict[str, Any]]:
    """Records exercising every path the model will see: typical, missing, unseen categories."""
    typical = example_record(schema)
    missing = {spec.name: None if spec.nullable else typical[spec.name] for spec in schema.fields}
    records = [typical, missing]
    if schema.unknown_category == "score":
        records.append(
            {
                spec.name: typical[spec.name] if spec.is_number else UNSEEN_CATEGORY
                for spec in schema.fields
            }
        )
    return records
