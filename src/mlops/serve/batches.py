"""The typed batches of a request's life in the data plane, whatever its protocol:

decoded (``Records`` or ``Columns``: what a codec makes of the wire request, unchecked) →
checked (``ModelInput``: the model-ready values and the warnings, ``mlops.serve.checks``) →
scored (``Result``: what a codec encodes into the wire response).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain, repeat
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from mlops.serve.model import Prediction
from mlops.serve.schema import InputSchema

# A tensor's numbers: float32 as the client sent them (FP32: the model's type, and the log writes
# each value as its float32, 55.32 rather than 55.31999969482422), any other type as float64.
NumberArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
# Shorter number columns are lists, checked in plain Python: numpy costs more than their values.
VECTOR_MIN_VALUES = 32
ColumnValues = list[Any] | NumberArray  # a long, valid number column is an array
# What a client sends beside its features is bounded too, so that no log line outgrows the bound
# the scorer states (``mlops.serve.predlog.line_bound``):
MAX_CLIENT_ID_LENGTH = 256  # characters of a V2 request's ``id``
MAX_EXTRA_BYTES = 4096  # JSON bytes of one record's extra fields (``SCORER_EXTRA_FIELDS=ignore``)


class KnownCategories(list[str]):
    """A text column a codec found to hold only the feature's known categories (the binary
    tensor decoder, ``mlops.serve.codecs.v2_binary.known_strings``): the checks take it as it is,
    as they take a number column decoded into an array."""


class FieldWarning(TypedDict):
    field: str
    message: str


class Records:
    """A row-wise request (REST ``records``): the records as received, not yet checked. The
    prediction log keeps them as sent (their own key order and values); ``extras`` holds, per
    record, the fields beside the features that ``SCORER_EXTRA_FIELDS=ignore`` took out of it
    (None: none had any), which the log keeps apart."""

    __slots__ = ("client_id", "extras", "rows", "size")  # a plain class: read per request

    def __init__(self, rows: list[Any], extras: list[dict[str, Any] | None] | None = None) -> None:
        self.rows = rows
        self.size = len(rows)
        self.extras = extras
        self.client_id: str | None = None  # /predict has no request id of the client's

    def __repr__(self) -> str:
        return f"Records({self.rows!r})"

    def records(self) -> list[dict[str, Any]]:
        """The records for the prediction log (once they passed the checks)."""
        return self.rows


@dataclass(slots=True)
class Columns:
    """A column-wise request (V2 tensors): one list of values per feature, in the schema's
    order, as received and not yet checked."""

    values: dict[str, ColumnValues]  # a tensor's numbers are an array (NaN: missing)
    size: int
    client_id: str | None = None  # the id the client gave its request (V2 ``id``), for the log
    extras: None = None  # a tensor request has nothing beside its features

    def records(self) -> list[dict[str, Any]]:
        """One record per row, the features in the schema's order, for the prediction log (a
        float32 stays a numpy number, which orjson writes as its float32)."""
        names = list(self.values)
        columns = [column_list(values) for values in self.values.values()]
        return list(map(dict, map(zip, repeat(names), zip(*columns, strict=True))))


def column_list(values: ColumnValues) -> list[Any]:
    """A column as a list: a float64 array's Python numbers, a float32 array's numpy ones."""
    if isinstance(values, np.ndarray):
        return list(values) if values.dtype == np.float32 else values.tolist()
    return values


Inputs = Records | Columns  # what every codec decodes a request into


@dataclass
class ModelInput:
    """The checked batch: the model-ready values of each feature, plus per-record warnings.

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
    or more checked batches (whose columns are keyed by the feature's name)."""
    feed = {}
    for spec in schema.fields:
        columns = [part[spec.name] for part in parts]
        values = columns[0] if len(columns) == 1 else list(chain.from_iterable(columns))
        dtype = np.float32 if spec.is_number else object
        feed[spec.input_name] = np.asarray(values, dtype=dtype).reshape(-1, 1)
    return feed


@dataclass(slots=True)
class Result:
    """What the data plane scored for one request, for its codec to encode: the model's answer,
    a classifier's classes (None for a regressor) and the warnings the checks gave each
    record."""

    request_id: str
    model_name: str
    model_version: str
    prediction: Prediction
    classes: list[str] | None
    warnings: dict[int, list[FieldWarning]]
