"""JSON of many records at once, column by column: the prediction log's lines of a column-wise
request (``mlops.serve.predlog.lines_by_column``).

A record's JSON is a sequence of parts, each either the same bytes in every record (keys,
braces, what the request shares) or one value of a column (its index, a feature, the prediction,
a class's probability). A column's values are written by one orjson call and cut at its commas;
the records are then one join of every part, record after record, laid out by slice assignment
(``records_json``). For a thousand records of a dozen columns this takes half the time of a
dict and an orjson call per record, and a quarter less than joining each record's parts on its
own (0.7 ms against 1.3 and 0.9 on this machine).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

NUMPY = orjson.OPT_SERIALIZE_NUMPY  # numpy arrays and numbers as JSON numbers
# A part of every record: the same bytes in each, or one value's JSON per record.
Part = bytes | list[bytes]


def value_json(values: Sequence[Any] | npt.NDArray[Any]) -> list[bytes]:
    """The JSON of each value: the column's JSON from one orjson call, cut at its commas. A
    column whose values' JSON holds commas of its own (text with a comma) is written one distinct
    value at a time instead (a column of text holds few distinct values: categories)."""
    if len(values) == 0:
        return []
    if isinstance(values, np.ndarray):
        values = np.ascontiguousarray(values)  # what orjson writes as an array of numbers
    parts = orjson.dumps(values, option=NUMPY)[1:-1].split(b",")
    if len(parts) == len(values):  # every comma was between two values
        return parts
    return list(map(_Distinct().__getitem__, values))


class _Distinct(dict[Any, bytes]):
    """The JSON of each distinct value, made on first use."""

    def __missing__(self, value: Any) -> bytes:
        part = self[value] = orjson.dumps(value, option=NUMPY)
        return part


def object_parts(columns: Iterable[tuple[str, Sequence[Any] | npt.NDArray[Any]]]) -> list[Part]:
    """The parts of a ``{name: value, ...}`` object per record, from its columns in order (at
    least one)."""
    parts: list[Part] = []
    for number, (name, values) in enumerate(columns):
        parts += [(b"," if number else b"{") + orjson.dumps(name) + b":", value_json(values)]
    return [*parts, b"}"]


def records_json(parts: Iterable[Part], size: int) -> bytes:
    """``size`` records, each the join of its parts in order, one after another."""
    merged: list[Part] = []
    for part in parts:  # neighbouring constants are one
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += part
        else:
            merged.append(part)
    width = len(merged)
    laid: list[bytes] = [b""] * (width * size)
    for position, part in enumerate(merged):
        if isinstance(part, bytes):
            laid[position::width] = [part] * size
        elif len(part) == size:
            laid[position::width] = part
        else:
            raise ValueError(f"a column of {len(part)} value(s) in records of {size}")
    return b"".join(laid)
