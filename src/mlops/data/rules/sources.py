"""What a source may be, whichever engine reads it: its format, the columns it may drop, its
content."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from mlops.stage import StageError

FORMATS_BY_EXTENSION = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")


def format_of(path: str) -> str:
    """``csv``, ``parquet`` or ``jsonl`` from the file name (a compression suffix is skipped)."""
    name = PurePosixPath(urlsplit(path).path if is_url(path) else path).name.lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    extension = PurePosixPath(name).suffix
    if extension not in FORMATS_BY_EXTENSION:
        raise StageError(
            f"{path}: cannot tell the format from the extension {extension or '(none)'!r}; "
            f"use one of {sorted(FORMATS_BY_EXTENSION)} or set data.format"
        )
    return FORMATS_BY_EXTENSION[extension]


def is_url(source: str) -> bool:
    return "://" in source


def check_drop_columns(available: Sequence[str], columns: Sequence[str], source: str) -> None:
    """Naming a column the source lacks in ``data.drop_columns`` is an error, not a no-op."""
    unknown = [column for column in columns if column not in available]
    if unknown:
        raise StageError(
            f"data.drop_columns: {unknown} not in {source}; its columns are {list(available)}"
        )


def check_content(columns: Sequence[object], rows: int, source: str) -> None:
    """A source without columns or without rows is refused, naming what it has."""
    if len(columns) == 0:
        raise StageError(f"{source}: the table has no columns")
    if rows == 0:
        raise StageError(f"{source}: the table has no rows (columns: {list(columns)})")
