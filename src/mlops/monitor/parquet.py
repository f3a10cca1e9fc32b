"""A small Parquet writer for the shipper, on the standard library alone.

The sidecar's image carries no pyarrow (about 170 MB installed, more than half the image) for the
few tables it writes: one row group, one data page per column (format v1, PLAIN values, the
definition levels of nullable columns run-length encoded, the page GZIP-compressed with zlib),
and the footer in Thrift's compact protocol (parquet-format's ``parquet.thrift``). Columns hold
64-bit integers, doubles, booleans, UTF-8 strings or UTC timestamps in milliseconds, required or
nullable, at the top level or inside a struct (a required group of nullable columns). pyarrow,
pandas, DuckDB and Spark read the files (a test reads them back with pyarrow). The same table
gives the same bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int64", "double", "boolean", "string", "timestamp_ms"]
MAGIC = b"PAR1"
CREATED_BY = "mlops sidecar (mlops.monitor.parquet)"

# Thrift compact protocol: the type codes of a field
BOOL, I32, I64, BINARY, LIST, STRUCT = 1, 5, 6, 8, 9, 12
# parquet.thrift enums
# BOOLEAN, INT64, DOUBLE, BYTE_ARRAY
PHYSICAL = {"boolean": 0, "int64": 2, "timestamp_ms": 2, "double": 5, "string": 6}
REQUIRED, OPTIONAL = 0, 1
CONVERTED = {"string": 0, "timestamp_ms": 9}  # UTF8, TIMESTAMP_MILLIS
PLAIN, RLE = 0, 3
GZIP = 2
DATA_PAGE = 0


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    values: Sequence[Any]  # one per row; None is null (only in a nullable column)
    nullable: bool = True


@dataclass(frozen=True)
class Group:
    """A struct column: always present, its columns nullable."""

    name: str
    columns: Sequence[Column]


def write_table(fields: Sequence[Column | Group], rows: int) -> bytes:
    """The Parquet file of ``rows`` rows holding ``fields`` (in order)."""
    leaves = [
        (path, column)
        for field in fields
        for path, column in (
            [((field.name, c.name), c) for c in field.columns]
            if isinstance(field, Group)
            else [((field.name,), field)]
        )
    ]
    body = bytearray(MAGIC)
    chunks = []
    for path, column in leaves:
        if len(column.values) != rows:
            raise ValueError(f"column {'.'.join(path)}: {len(column.values)} values, {rows} rows")
        offset = len(body)
        data, metadata = _column_chunk(path, column, rows, offset)
        body += data
        chunks.append(_struct((2, I64, offset), (3, STRUCT, metadata)))
    row_group = _struct(
        (1, LIST, (STRUCT, chunks)), (2, I64, len(body) - len(MAGIC)), (3, I64, rows)
    )
    footer = _struct(
        (1, I32, 1),
        (2, LIST, (STRUCT, _schema(fields))),
        (3, I64, rows),
        (4, LIST, (STRUCT, [row_group])),
        (6, BINARY, CREATED_BY),
    )
    return bytes(body + footer + struct.pack("<i", len(footer)) + MAGIC)


def _schema(fields: Sequence[Column | Group]) -> list[bytes]:
    elements = [_struct((4, BINARY, "schema"), (5, I32, len(fields)))]
    for field in fields:
        if isinstance(field, Group):
            group = ((3, I32, REQUIRED), (4, BINARY, field.name), (5, I32, len(field.columns)))
            elements.append(_struct(*group))
            elements += [_leaf(column) for column in field.columns]
        else:
            elements.append(_leaf(field))
    return elements


def _leaf(column: Column) -> bytes:
    logical = None
    if column.kind == "string":
        logical = _struct((1, STRUCT, _struct()))  # STRING
    elif column.kind == "timestamp_ms":
        milliseconds = _struct((1, STRUCT, _struct()))
        logical = _struct((8, STRUCT, _struct((1, BOOL, True), (2, STRUCT, milliseconds))))
    return _struct(
        (1, I32, PHYSICAL[column.kind]),
        (3, I32, OPTIONAL if column.nullable else REQUIRED),
        (4, BINARY, column.name),
        (6, I32, CONVERTED.get(column.kind)),
        (10, STRUCT, logical),
    )


def _column_chunk(
    path: tuple[str, ...], column: Column, rows: int, offset: int
) -> tuple[bytes, bytes]:
    """The column's one data page (header and compressed page) and its ColumnMetaData."""
    present = [value for value in column.values if value is not None]
    if not column.nullable and len(present) != rows:
        raise ValueError(f"column {'.'.join(path)}: null in a column that is not nullable")
    page = _plain(column.kind, present)
    if column.nullable:
        levels = _levels([value is not None for value in column.values])
        page = struct.pack("<i", len(levels)) + levels + page
    compressed = _gzip(page)
    data_page = _struct((1, I32, rows), (2, I32, PLAIN), (3, I32, RLE), (4, I32, RLE))
    header = _struct(
        (1, I32, DATA_PAGE),
        (2, I32, len(page)),
        (3, I32, len(compressed)),
        (5, STRUCT, data_page),
    )
    metadata = _struct(
        (1, I32, PHYSICAL[column.kind]),
        (2, LIST, (I32, [PLAIN, RLE])),
        (3, LIST, (BINARY, list(path))),
        (4, I32, GZIP),
        (5, I64, rows),
        (6, I64, len(header) + len(page)),
        (7, I64, len(header) + len(compressed)),
        (9, I64, offset),
    )
    return header + compressed, metadata


def _plain(kind: Kind, values: list[Any]) -> bytes:
    if kind in ("int64", "timestamp_ms"):
        return struct.pack(f"<{len(values)}q", *values)
    if kind == "double":
        return struct.pack(f"<{len(values)}d", *values)
    if kind == "boolean":  # bit-packed, the first value in the lowest bit
        packed = bytearray((len(values) + 7) // 8)
        for position, value in enumerate(values):
            if value:
                packed[position // 8] |= 1 << (position % 8)
        return bytes(packed)
    encoded = [value.encode("utf-8", "replace") for value in values]
    return b"".join(struct.pack("<I", len(item)) + item for item in encoded)


def _levels(present: list[bool]) -> bytes:
    """Definition levels (0 null, 1 present) as runs of the RLE/bit-packing hybrid, bit width 1."""
    out = bytearray()
    start = 0
    while start < len(present):
        end = start
        while end < len(present) and present[end] == present[start]:
            end += 1
        out += _varint((end - start) << 1) + bytes([present[start]])
        start = end
    return bytes(out)


def _gzip(data: bytes) -> bytes:
    """GZIP as Parquet means it: a gzip member (zlib with a gzip wrapper; its header carries no
    time, so the same page gives the same bytes)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


# Thrift compact protocol ---------------------------------------------------------------------


def _struct(*fields: tuple[int, int, Any]) -> bytes:
    """A struct of ``(field id, type, value)``, in increasing field id; None values left out. A
    struct value is already encoded (``_struct``); a list value is ``(element type, items)``."""
    out, last = bytearray(), 0
    for field_id, kind, value in fields:
        if value is None:
            continue
        code = (1 if value else 2) if kind == BOOL else kind
        delta = field_id - last
        if 0 < delta <= 15:
            out.append(delta << 4 | code)
        else:
            out.append(code)
            out += _varint(_zigzag(field_id))
        last = field_id
        out += _value(kind, value)
    out.append(0)
    return bytes(out)


def _value(kind: int, value: Any) -> bytes:
    if kind == BOOL:
        return b""
    if kind in (I32, I64):
        return _varint(_zigzag(value))
    if kind == BINARY:
        data = value.encode() if isinstance(value, str) else value
        return _varint(len(data)) + data
    if kind == STRUCT:
        return bytes(value)
    element, items = value
    size = len(items)
    header = bytes([size << 4 | element]) if size < 15 else bytes([0xF0 | element]) + _varint(size)
    return header + b"".join(_value(element, item) for item in items)


def _zigzag(number: int) -> int:
    return (number << 1) ^ (number >> 63)


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
