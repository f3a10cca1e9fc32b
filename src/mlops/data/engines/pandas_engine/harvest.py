"""Reading what the sidecar shipped (``mlops.monitor.ship``): its labels, and the predictions
that have one.

The store is any place fsspec opens, as ``data.source`` is: a local directory or
``s3://bucket/prefix`` (credentials and endpoint from the environment, ``AWS_*``). Labels are
read first; then each prediction file in turn, kept only in its labelled rows, so memory holds
the labelled predictions, never the whole traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import fsspec
import pandas as pd
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from mlops.data.rules.harvest import KEY
from mlops.stage import StageError

LABEL_COLUMNS = ["ts", *KEY, "label"]


@dataclass(frozen=True)
class Shipped:
    predictions: pd.DataFrame  # flattened: features.<name> per feature
    labels: pd.DataFrame
    files: dict[str, int]


def read_shipped(source: str) -> Shipped:
    """The labels under ``<source>/labels/`` and the labelled predictions under
    ``<source>/predictions/``; StageError naming the source when it cannot be read."""
    try:
        filesystem, root = url_to_fs(source, skip_instance_cache=True)
        if not filesystem.exists(root):
            raise StageError(f"harvest.source {source}: not found")
        label_files = _parquet_files(filesystem, root, "labels")
        prediction_files = _parquet_files(filesystem, root, "predictions")
        labels = _concat([_read(filesystem, path, LABEL_COLUMNS) for path in label_files])
        if labels.empty:
            labels = pd.DataFrame(columns=LABEL_COLUMNS)
        wanted = pd.MultiIndex.from_frame(labels[KEY])
        predictions = _concat(
            [_labelled(_read(filesystem, path, None), wanted) for path in prediction_files]
        )
    except StageError:
        raise
    except Exception as error:  # network, permissions, a damaged file: each filesystem differs
        raise StageError(
            f"harvest.source {source}: cannot be read ({type(error).__name__}: {error})"
        ) from None
    if predictions.empty:
        predictions = pd.DataFrame(columns=["ts", *KEY, "model_version"])
    files = {"predictions": len(prediction_files), "labels": len(label_files)}
    return Shipped(predictions, labels, files)


def _parquet_files(filesystem: fsspec.AbstractFileSystem, root: str, log: str) -> list[str]:
    return sorted(filesystem.glob(f"{root.rstrip('/')}/{log}/**/*.parquet"))


def _read(
    filesystem: fsspec.AbstractFileSystem, path: str, columns: list[str] | None
) -> pd.DataFrame:
    with filesystem.open(path, "rb") as file:
        table = pq.read_table(file, columns=columns)
    return table.flatten().to_pandas()


def _labelled(predictions: pd.DataFrame, wanted: pd.MultiIndex) -> pd.DataFrame:
    keys = pd.MultiIndex.from_frame(predictions[KEY])
    return predictions[keys.isin(wanted)]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
