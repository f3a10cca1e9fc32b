"""The thin shell every pipeline stage shares: arguments, atomic writes, readable failures.

The failures and the atomic writes live in ``mlops.core.errors`` and ``mlops.core.atomic``
(standard library only, so the scorer and the sidecar use them without this training-side
module); they are re-exported here so a stage imports its shell from one place.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlops.core.atomic import atomic_write_bytes, write_json, write_text
from mlops.core.errors import ParamsError, StageError, run

__all__ = [
    "ParamsError",
    "StageError",
    "atomic_write_bytes",
    "parser",
    "read_json",
    "run",
    "write_json",
    "write_text",
]


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--params`` option every stage takes."""
    arguments = argparse.ArgumentParser(description=description)
    arguments.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    return arguments


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise StageError(f"{path}: not valid JSON ({error})") from None
