"""The thin shell every pipeline stage shares: arguments, atomic writes, readable failures."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlops.params import ParamsError


class StageError(Exception):
    """A user-fixable failure; the message names the file, column or key, and what was expected."""


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--params`` option every stage takes."""
    arguments = argparse.ArgumentParser(description=description)
    arguments.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    return arguments


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's ``main``; a known failure prints one line instead of a traceback."""
    try:
        main(argv)
    except (StageError, ParamsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: a reader never sees half a file, a crash leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        Path(temporary).chmod(0o666 & ~_umask())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise StageError(f"{path}: not valid JSON ({error})") from None


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays, and paths, as plain JSON."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
