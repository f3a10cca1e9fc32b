"""The clean steps that look at one row at a time: coercion and string normalisation.

They take a pandas table, the whole one (pandas engine) or a batch of rows (the Spark engine's
``mapInPandas``), and give the same values either way. ``normalise_strings`` is also what
validate applies before its checks, so a value clean will fix is not reported as a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mlops.params import CleanParams
from mlops.profile import column_kind
from mlops.summaries import Change

_WHITESPACE = re.compile(r"\s+")

Counts = dict[str, int]


def clean_rows(
    frame: pd.DataFrame,
    params: CleanParams,
    *,
    target: str,
    protected: set[str],
    categories: Mapping[str, Sequence[str]] | None = None,
    numeric_columns: Sequence[str] = (),
) -> tuple[pd.DataFrame, dict[Change, Counts]]:
    """Clean steps 1 and 2: coerce, then normalise strings; the values each changed."""
    cleaned, coerced = coerce_numeric(
        frame, [c for c in numeric_columns if c in frame.columns and c != target]
    )
    if not params.normalize_strings:
        return cleaned, {"coerced": coerced}
    text_columns = text_features(cleaned, protected)
    cleaned, normalised = normalise_strings(cleaned, text_columns, categories or {})
    return cleaned, {"coerced": coerced, "normalised": normalised}


def coerce_numeric(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, Counts]:
    """Make ``columns`` numeric; count the present values that could not be read as numbers."""
    result = frame.copy()
    coerced: Counts = {}
    for column in columns:
        values = frame[column]
        if kind(values) == "numeric":
            continue
        numbers = pd.to_numeric(map_text(values, _strip), errors="coerce")
        coerced[column] = int((values.notna() & numbers.isna()).sum())
        result[column] = numbers
    return result, coerced


def normalise_strings(
    frame: pd.DataFrame, columns: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> tuple[pd.DataFrame, Counts]:
    """Trim and collapse whitespace, blank to missing, and case variants to the allowed spelling."""
    result = frame.copy()
    normalised: Counts = {}
    for column in columns:
        canonical = {str(value).casefold(): str(value) for value in categories.get(column, [])}
        values = frame[column]
        cleaned = map_text(values, partial(_normalise, canonical=canonical))
        normalised[column] = int((values.notna() & (cleaned != values)).sum())
        result[column] = cleaned
    return result, normalised


def map_text(values: pd.Series, function: Callable[[Any], Any]) -> pd.Series:
    """``function`` applied to the present values; once per distinct value when they are all
    text (a category column repeats a few values millions of times)."""
    if pd.api.types.infer_dtype(values, skipna=True) != "string":
        return values.map(function, na_action="ignore")
    distinct = values.dropna().unique()
    return values.map(dict(zip(distinct, map(function, distinct), strict=True)))


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _normalise(value: object, canonical: Mapping[str, str]) -> object:
    if not isinstance(value, str):
        return value
    text = _WHITESPACE.sub(" ", value).strip()
    if not text:
        return np.nan
    return canonical.get(text.casefold(), text)


def kind(values: pd.Series) -> str:
    """What clean makes of a column: numeric, text (normalised; imputed as categories), boolean,
    or other (e.g. dates), from its pandas dtype (the Spark engine asks with a table without
    rows typed as pandas would read its table)."""
    found = column_kind(values)
    return {"categorical": "text", "datetime": "other"}.get(found, found)


def kinds(frame: pd.DataFrame) -> dict[str, str]:
    """``kind`` of every column of ``frame``, in its order."""
    return {str(column): kind(frame[column]) for column in frame.columns}


def features(frame: pd.DataFrame, protected: set[str]) -> list[str]:
    """The columns clean may change: all but the target and the excluded ones."""
    return [str(column) for column in frame.columns if column not in protected]


def text_features(frame: pd.DataFrame, protected: set[str]) -> list[str]:
    """The columns whose strings clean normalises (and validate checks as normalised)."""
    return [column for column in features(frame, protected) if kind(frame[column]) == "text"]
