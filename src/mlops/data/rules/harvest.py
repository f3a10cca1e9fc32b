"""The harvest's rules: shipped predictions joined with their labels, as rows of the source.

The sidecar ships predictions (``ts``, ``request_id``, ``index``, ``model_version``, ``role``,
``shadow``, a struct ``features``; read flattened, a feature is the column ``features.<name>``)
and labels (``ts`` of arrival, ``request_id``, ``index``, ``label``), each possibly more than
once: a label posted twice or to two pods, a log segment shipped again by a restarted sidecar.
Only answered predictions become rows: a challenger's shadow copy (``shadow`` true) repeats the
features of a request the champion answered, and would add its row twice. A prediction is one
``(request_id, index)``; the first copy is kept, and of its labels the latest. The rows have the
source's columns (the schema's): the features as the model received them, the label in the
column the label stage reads it from, and null in every other column (identifiers, excluded
columns: the predictions do not carry them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

FEATURE_PREFIX = "features."
KEY = ["request_id", "index"]


def answered(predictions: pd.DataFrame) -> pd.DataFrame:
    """The predictions a client got: not the shadow copies (shipped Parquet from before the
    rollout has no ``shadow`` column: all answered)."""
    if "shadow" not in predictions:
        return predictions
    return predictions[~predictions["shadow"].fillna(False).astype(bool)]


def unique_predictions(predictions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The first copy of every prediction, and how many copies were dropped."""
    kept = predictions.drop_duplicates(subset=KEY, keep="first")
    return kept, len(predictions) - len(kept)


def latest_labels(labels: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The latest label of every prediction (by arrival; ties by position), and how many
    earlier ones were dropped."""
    ordered = labels.reset_index(drop=True).sort_values("ts", kind="stable")
    kept = ordered.drop_duplicates(subset=KEY, keep="last")
    return kept, len(labels) - len(kept)


def labelled_predictions(predictions: pd.DataFrame, labels: pd.DataFrame) -> dict[str, Any]:
    """The answered predictions joined with their labels, oldest first (``joined``), and the
    counts."""
    answered_predictions = answered(predictions)
    shadow_predictions = len(predictions) - len(answered_predictions)
    predictions, duplicate_predictions = unique_predictions(answered_predictions)
    labels, duplicate_labels = latest_labels(labels)
    joined = predictions.merge(
        labels[[*KEY, "label"]], on=KEY, how="inner", validate="one_to_one"
    ).sort_values(["ts", *KEY], kind="stable")
    return {
        "joined": joined.reset_index(drop=True),
        "duplicate_predictions": duplicate_predictions,
        "shadow_predictions": shadow_predictions,
        "duplicate_labels": duplicate_labels,
        "labels_without_prediction": len(labels) - len(joined),
    }


def source_rows(joined: pd.DataFrame, columns: Sequence[str], label_column: str) -> pd.DataFrame:
    """The joined predictions as rows of the source's ``columns``: each feature from the
    prediction, the label in ``label_column``, null elsewhere."""
    rows = {}
    for column in columns:
        if column == label_column:
            rows[column] = joined["label"]
        elif FEATURE_PREFIX + column in joined:
            rows[column] = joined[FEATURE_PREFIX + column]
        else:
            rows[column] = pd.Series([None] * len(joined), dtype=object)
    return pd.DataFrame(rows, index=joined.index)


def not_carried(joined: pd.DataFrame, columns: Sequence[str], label_column: str) -> list[str]:
    """The source's columns a harvested row has no value for (neither a feature nor the label):
    the schema must let them be null, in a type that holds null (float or text, not int64)."""
    return [
        column
        for column in columns
        if column != label_column and FEATURE_PREFIX + column not in joined
    ]


def append_harvest(frame: pd.DataFrame, harvest: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the harvested rows after its own, in its columns and, where the values
    allow it, its dtypes (nothing changes when nothing was harvested)."""
    if harvest.empty:
        return frame
    aligned = pd.DataFrame(index=harvest.index)
    for column, dtype in frame.dtypes.items():
        values = harvest[column] if column in harvest else pd.Series(None, index=harvest.index)
        if pd.api.types.is_object_dtype(dtype):  # text in the source: numbers as text too
            values = values.map(_text, na_action="ignore").astype(object)
        try:
            aligned[column] = values.astype(dtype)
        except (TypeError, ValueError):  # e.g. missing values in an integer column
            aligned[column] = values
    return pd.concat([frame, aligned], ignore_index=True)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)
