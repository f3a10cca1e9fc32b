"""Reading and writing the Parquet tables that pass between stages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlops.stage import StageError, atomic_write_bytes


def read_table(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, columns=columns)
    except FileNotFoundError:
        raise StageError(f"{path}: file not found (run the stage that writes it first)") from None
    except Exception as error:  # pyarrow raises several types for an unreadable file
        raise StageError(f"{path}: not a readable Parquet table ({error})") from None


def read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Of ``columns``, those the table at ``path`` (a file, or Spark's directory of part files)
    has, read alone: the rest of a table too large for memory is never loaded."""
    import pyarrow.dataset

    present = pyarrow.dataset.dataset(path, format="parquet").schema.names
    return read_table(path, columns=[column for column in columns if column in present])


def write_table(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as Parquet, atomically, without the pandas index."""
    atomic_write_bytes(path, frame.to_parquet(index=False))


def require_columns(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise StageError(
            f"{where}: missing column(s) {missing}; the table has {list(frame.columns)}"
        )
