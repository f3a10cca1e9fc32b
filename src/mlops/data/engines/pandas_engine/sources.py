"""The pandas engine's sources: every way ``data.source`` can be read into one DataFrame.

A source is a local file, a directory (its files, in name order), a glob, an ``http(s)://`` URL
or an ``s3://`` URI (anything fsspec opens), or a SQLAlchemy database URL read with
``data.query``. Credentials and endpoints come from the environment (``AWS_*`` for S3, the URL
for a database); nothing secret belongs in params.yaml.

Every way a source can be unusable ends in a ``StageError`` naming the source and the problem.
``make schema`` and ``make data-synth`` read their tables here too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import fsspec
import pandas as pd
from fsspec.core import url_to_fs

from mlops.data.rules.sources import check_content, check_drop_columns, format_of, is_url
from mlops.params import DataParams
from mlops.stage import StageError

if TYPE_CHECKING:  # SQLAlchemy is imported only for a database source: it is slow to import
    from sqlalchemy.engine import URL

GLOB_CHARACTERS = "*?["


def read_source(params: DataParams) -> pd.DataFrame:
    """The whole source as one table; raises ``StageError`` if it is missing, malformed or empty."""
    database = _database_url(params.source)
    if params.query is not None:
        if database is None:
            raise StageError(
                f"{params.source}: data.query is set, so data.source must be a SQLAlchemy "
                "database URL (e.g. sqlite:///data/warehouse.db or postgresql://host/db)"
            )
        frame = read_database(database, params.query)
    elif database is not None:
        raise StageError(
            f"{_safe(database)}: a database source needs data.query (the SELECT that returns "
            "the table)"
        )
    else:
        frame = read_files(params.source, params.format)
    check_content(list(frame.columns), len(frame), _safe(database) if database else params.source)
    return frame


def drop_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> pd.DataFrame:
    """``frame`` without ``columns``; naming a column the source lacks is an error, not a no-op."""
    check_drop_columns(list(frame.columns), columns, source)
    return frame.drop(columns=list(columns))


# --- files, directories, globs, URLs ---------------------------------------------------------


def read_files(source: str, data_format: str) -> pd.DataFrame:
    """Read every file ``source`` names and stack them; they must share their columns."""
    filesystem, files = _expand(source)
    frames = [(label, _read_file(filesystem, path, label, data_format)) for path, label in files]
    first_label, first = frames[0]
    for label, frame in frames[1:]:
        if set(frame.columns) != set(first.columns):
            raise StageError(
                f"{source}: the files have different columns: {first_label} has "
                f"{list(first.columns)}, {label} has {list(frame.columns)}"
            )
    if len(frames) == 1:
        return first
    return pd.concat([frame for _, frame in frames], ignore_index=True)


def _expand(source: str) -> tuple[fsspec.AbstractFileSystem, list[tuple[str, str]]]:
    """The filesystem and the sorted (path, label for messages) of the files ``source`` means."""
    try:
        filesystem, path = url_to_fs(source, skip_instance_cache=True)
    except (ValueError, ImportError) as error:
        raise StageError(f"{source}: cannot open this kind of source ({error})") from None
    try:
        if _is_pattern(filesystem, path):
            paths = sorted(p for p in filesystem.glob(path) if not filesystem.isdir(p))
            if not paths:
                raise StageError(f"{source}: the glob matches no files")
        elif not filesystem.exists(path):
            raise StageError(f"{source}: file not found")
        elif filesystem.isdir(path):
            paths = sorted(
                p
                for p in filesystem.ls(path, detail=False)
                if not PurePosixPath(p).name.startswith(".") and not filesystem.isdir(p)
            )
            if not paths:
                raise StageError(f"{source}: the directory holds no files")
        else:
            return filesystem, [(path, source)]
    except StageError:
        raise
    except Exception as error:  # network and permission errors differ per filesystem
        raise StageError(f"{source}: cannot be reached ({type(error).__name__}: {error})") from None
    return filesystem, [(p, _label(filesystem, p)) for p in paths]


def _is_pattern(filesystem: fsspec.AbstractFileSystem, path: str) -> bool:
    """A glob, except in a URL, where ``?`` starts the query string."""
    http = any(protocol.startswith("http") for protocol in _protocols(filesystem))
    return not http and any(character in path for character in GLOB_CHARACTERS)


def _protocols(filesystem: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = filesystem.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _label(filesystem: fsspec.AbstractFileSystem, path: str) -> str:
    """How a matched file is named in messages: relative to the project, or as a URL."""
    if "file" in _protocols(filesystem):
        try:
            return str(Path(path).relative_to(Path.cwd()))
        except ValueError:
            return path
    return str(filesystem.unstrip_protocol(path))


def _read_file(
    filesystem: fsspec.AbstractFileSystem, path: str, label: str, data_format: str
) -> pd.DataFrame:
    kind = data_format if data_format != "auto" else format_of(label)
    try:
        with filesystem.open(path, "rb", compression="infer") as file:
            content = file.read()
    except FileNotFoundError:
        raise StageError(f"{label}: file not found") from None
    except Exception as error:
        raise StageError(f"{label}: cannot be read ({type(error).__name__}: {error})") from None
    if not content.strip():
        raise StageError(f"{label}: the file is empty")
    if kind == "parquet":
        return _parse_parquet(content, label)
    text = _decode(content, label)
    return _parse_csv(text, label) if kind == "csv" else _parse_json_lines(text, label)


def _decode(content: bytes, path: str) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise StageError(
            f"{path}: not UTF-8 text (byte {error.start}); is data.format right?"
        ) from None


def _parse_csv(text: str, path: str) -> pd.DataFrame:
    _check_csv_shape(text, path)
    try:
        return pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as error:
        raise StageError(f"{path}: malformed CSV ({error})") from None


def _check_csv_shape(text: str, path: str) -> None:
    """Every record has as many fields as the header (pandas pads short rows silently)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated:
            raise StageError(f"{path}: malformed CSV: duplicate column name(s) {duplicated}")
        for record in reader:
            if record and len(record) != len(header):
                raise StageError(
                    f"{path}: malformed CSV: line {reader.line_num} has {len(record)} fields, "
                    f"the header has {len(header)}"
                )
    except csv.Error as error:
        raise StageError(f"{path}: malformed CSV (line {reader.line_num}: {error})") from None


def _parse_parquet(content: bytes, path: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(content))
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise StageError(f"{path}: not a readable Parquet file ({error})") from None


def _parse_json_lines(text: str, path: str) -> pd.DataFrame:
    """JSON lines (one object per line), or one JSON array of objects."""
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise StageError(f"{path}: not valid JSON lines ({error})") from None
    if not all(isinstance(record, dict) for record in records):
        raise StageError(f"{path}: expected one JSON object per record")
    return pd.DataFrame.from_records(records)


# --- databases -------------------------------------------------------------------------------


def read_database(url: URL, query: str) -> pd.DataFrame:
    import sqlalchemy

    database_file = url.database if url.get_backend_name() == "sqlite" else None
    if database_file not in (None, "", ":memory:") and not Path(str(database_file)).exists():
        raise StageError(f"{_safe(url)}: database file not found")
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(query), connection)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as error:
        cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
        reason = str(getattr(cause, "orig", None) or cause).splitlines()[0]
        raise StageError(f"{_safe(url)}: the query failed: {reason}") from None
    except ModuleNotFoundError as error:
        raise StageError(f"{_safe(url)}: the database driver is not installed ({error})") from None


def _database_url(source: str) -> URL | None:
    """The SQLAlchemy URL ``source`` is, or None when it is a path or a file URL."""
    if not is_url(source):
        return None
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        url = make_url(source)
        url.get_dialect()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError):
        return None
    return url


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)
