"""Tensors as bytes, as the Open Inference Protocol's binary tensor data extension writes them
over REST (the bytes after the JSON header, ``Inference-Header-Content-Length``) and as its gRPC
``raw_input_contents`` / ``raw_output_contents`` hold them: little-endian, row-major, no padding;
a ``BYTES`` element is a 4-byte unsigned length and that many bytes.

Bytes have no null: a missing number is NaN (what a numpy array of a table with gaps holds), a
missing string is empty or one of pandas' missing markers (``None``, ``nan``, ``NA``, ...: what a
table's gaps become when its column is turned into bytes, and what the pipeline read as missing
when it trained). Either is handed to the checks as a missing value, so the signature decides
whether it may be missing. Strings are UTF-8. Every error names the input and, for a bad
element, its position.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from mlops.core.artifacts import LABEL_OUTPUT, PREDICTION_OUTPUT
from mlops.serve.batches import VECTOR_MIN_VALUES, KnownCategories, NumberArray
from mlops.serve.errors import InputError
from mlops.serve.jsonparts import NUMPY
from mlops.serve.model import Prediction
from mlops.serve.schema import MISSING_MARKERS

# The numeric datatypes a feature's tensor may have, as numpy reads their bytes.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
}
LENGTH = struct.Struct("<I")  # the prefix of each BYTES element
BYTES_DATATYPE = "BYTES"


class TensorBytes:
    """The bytes after a request's JSON header, handed out to the inputs in their order."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        self.offset = 0

    def take(self, name: str, size: int) -> memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise InputError(
                f"input '{name}' declares {size} byte(s) of binary data, but only "
                f"{len(self.data) - self.offset} are left after the JSON header"
            )
        part, self.offset = self.data[self.offset : end], end
        return part

    def check_all_used(self) -> None:
        left = len(self.data) - self.offset
        if left:
            raise InputError(
                f"{left} byte(s) of binary data after the JSON header belong to no input "
                "(the inputs' binary_data_size add up to less)"
            )


def decode_tensor(
    name: str,
    datatype: str,
    raw: bytes | memoryview,
    count: int,
    categories: frozenset[str] | None = None,
) -> list[Any] | NumberArray:
    """The ``count`` elements of one tensor's bytes as the checks take them: numbers as
    ``tensor_numbers`` gives them, strings as a list (None: missing). ``categories``:
    the feature's known values, which a column of nothing else is read in one pass."""
    if datatype == BYTES_DATATYPE:
        if categories:
            known = known_strings(bytes(raw), count, categories)
            if known is not None:
                return known
        return decode_strings(name, raw, count)
    dtype = NUMPY_DTYPES[datatype]  # the codec checked the datatype
    if len(raw) != count * dtype.itemsize:
        raise InputError(
            f"input '{name}': {len(raw)} byte(s) of {datatype} data, but its shape holds {count} "
            f"element(s) of {dtype.itemsize} byte(s) ({count * dtype.itemsize})"
        )
    return tensor_numbers(datatype, np.frombuffer(raw, dtype=dtype))


def tensor_numbers(datatype: str, values: npt.ArrayLike) -> list[float | None] | NumberArray:
    """A tensor's numbers as the checks, the model and the log take them. A column of many is an
    array of its own: FP32 as float32 (the model's type: the log writes each value as the
    client's float32), any other datatype as float64 (every FP16, INT32 and UINT32 value
    exactly). A short column (a single record, a handful) is a list, as a JSON request's numbers
    are, None where NaN marks a missing value, an FP32 value as its shortest decimal (55.32, not
    55.31999969482422): numpy would cost more than the values do."""
    array: NumberArray = (
        np.array(values, dtype=np.float32) if datatype == "FP32" else np.array(values, np.float64)
    )
    if array.size >= VECTOR_MIN_VALUES:
        return array
    if datatype == "FP32" and not np.isinf(array).any():  # orjson writes an infinity as null
        numbers: list[float | None] = orjson.loads(orjson.dumps(array, option=NUMPY))
        return numbers
    return [None if value != value else value for value in array.tolist()]  # NaN != NaN


def known_strings(data: bytes, count: int, categories: frozenset[str]) -> KnownCategories | None:
    """The elements when every one is a known category, found by one regular-expression scan
    (C speed) instead of an element-by-element walk; None when any is not, for the walk to read
    (and name what is wrong). Each element carries its own length, so matches that cover the
    bytes end to end from the first are exactly the elements."""
    pattern, values = category_pattern(categories)
    found = pattern.findall(data)
    if len(found) != count or b"".join(found) != data:
        return None
    return KnownCategories(map(values.__getitem__, found))


@functools.lru_cache(maxsize=256)
def category_pattern(categories: frozenset[str]) -> tuple[re.Pattern[bytes], dict[bytes, str]]:
    """A pattern matching any known category's element (its length, then its UTF-8), and the
    category of each element; made once per feature."""
    values = {
        LENGTH.pack(len(text.encode())) + text.encode(): text
        for text in categories
        if text.strip() not in MISSING_MARKERS  # read as missing, by the element-wise walk
    }
    longest_first = sorted(values, key=len, reverse=True)
    return re.compile(b"|".join(map(re.escape, longest_first))), values


def decode_strings(name: str, raw: bytes | memoryview, count: int) -> list[Any]:
    """``count`` length-prefixed UTF-8 strings, exactly filling ``raw``. A column holds few
    distinct values (categories): each is decoded once."""
    data = bytes(raw)
    strings: list[Any] = []
    known: dict[bytes, str | None] = {}
    offset, end = 0, len(data)
    unpack = LENGTH.unpack_from
    for index in range(count):
        if offset + 4 > end:
            raise InputError(f"input '{name}': BYTES data ends after {index} of {count} element(s)")
        (length,) = unpack(data, offset)
        offset += 4
        if offset + length > end:
            raise InputError(
                f"input '{name}': element {index} declares {length} byte(s), but only "
                f"{end - offset} are left"
            )
        element = data[offset : offset + length]
        offset += length
        if element in known:
            strings.append(known[element])
        else:
            strings.append(known.setdefault(element, text_value(name, index, element)))
    if offset != end:
        raise InputError(
            f"input '{name}': {end - offset} byte(s) left after its {count} BYTES element(s)"
        )
    return strings


def text_value(name: str, index: int, element: bytes) -> str | None:
    """A BYTES element as the checks take it: its UTF-8 text, or None for a missing marker."""
    try:
        text = element.decode()
    except UnicodeDecodeError:
        raise InputError(f"input '{name}': element {index} is not UTF-8 text") from None
    return None if text.strip() in MISSING_MARKERS else text


class EncodedStrings(dict[str, bytes]):
    """Each string's BYTES element (its length, then its UTF-8), made on first use: a
    classifier's labels are a handful of classes, so a column of them is one C-speed join."""

    def __missing__(self, text: str) -> bytes:
        raw = text.encode()
        element = self[text] = LENGTH.pack(len(raw)) + raw
        return element


def encode_strings(values: Sequence[str], cache: EncodedStrings) -> bytes:
    """Length-prefixed UTF-8 strings (``cache`` keeps each distinct one's encoding)."""
    return b"".join(map(cache.__getitem__, values))


def encode_float32(
    values: Sequence[float] | Sequence[Sequence[float]] | npt.NDArray[np.float64],
) -> bytes:
    """Numbers (flat, or rows of a matrix, row-major) as little-endian float32."""
    return np.asarray(values, dtype="<f4").tobytes()


def output_bytes(name: str, prediction: Prediction, labels: EncodedStrings) -> bytes:
    """An output tensor's data as bytes: the labels (``labels`` caches each class's element),
    the probabilities or the regressor's values as float32."""
    if name == LABEL_OUTPUT:
        return encode_strings(prediction.labels, labels)
    if name == PREDICTION_OUTPUT:
        return encode_float32(prediction.values)
    array = prediction.probability_array
    return encode_float32(prediction.probabilities if array is None else array)
