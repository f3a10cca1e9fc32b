"""Columns that are never features, whatever params say: identifiers and date-times.

An identifier (a customer number, an order id, a free-text name) has a different value in every
row, so a model can only memorise it; a date-time names a moment that never comes again in
serving. Both stay in the data (an id joins annotations, a date orders a split) but never reach
the model. One rule, used by ``make schema`` (which annotates such columns in the schema) and by
the feature builder (which leaves them out and reports why).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# A column needs this many present values before "every value distinct" says identifier: in a
# tiny table any category column can be all distinct by chance.
MIN_IDENTIFIER_VALUES = 20
# Text is a date-time when every value looks like a calendar date (year first or last), with an
# optional time of day and zone, and parses as one.
DATE_TEXT = re.compile(
    r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2}|[A-Za-z]{1,5})?)?"
)
# The last word of a whole-number column's name that makes "every value distinct" an identifier
# (``Customer ID``, ``order_no``, ``accountNumber``); a measurement in whole units (income in
# dollars) can be all distinct in a small table too, and stays a feature.
IDENTIFIER_WORDS = frozenset(
    {"id", "ids", "key", "uuid", "guid", "identifier", "no", "nr", "num", "number", "code"}
)
SAMPLE = 1000  # date-like text is checked on this many values first, then on all of them


def excluded_columns(frame: pd.DataFrame, target: str) -> dict[str, str]:
    """Column -> why it is never a feature (``"identifier: every value distinct"``,
    ``"date-time"``), in the frame's column order; the target is never excluded."""
    excluded: dict[str, str] = {}
    for name in frame.columns:
        if name == target:
            continue
        reason = exclusion_reason(frame[name])
        if reason is not None:
            excluded[str(name)] = reason
    return excluded


def exclusion_reason(values: pd.Series) -> str | None:
    """Why ``values`` can never be a feature, or None when it can."""
    if is_date_time(values):
        return "date-time"
    if is_identifier(values):
        return "identifier: every value distinct"
    return None


def is_date_time(values: pd.Series) -> bool:
    """Date-time values: a datetime dtype, date/datetime objects, or text that is all dates."""
    if pd.api.types.is_datetime64_any_dtype(values) or isinstance(values.dtype, pd.PeriodDtype):
        return True
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    present = values.dropna()
    if present.empty:
        return False
    kind = pd.api.types.infer_dtype(present, skipna=True)
    if kind in ("date", "datetime", "datetime64"):
        return True
    if kind != "string":
        return False
    return _all_dates(present.head(SAMPLE)) and _all_dates(pd.Series(present.unique()))


def _all_dates(text: pd.Series) -> bool:
    if not text.str.strip().str.fullmatch(DATE_TEXT).all():
        return False
    parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    return bool(parsed.notna().all())


def is_identifier(values: pd.Series) -> bool:
    """Text or whole numbers, every present value distinct, in enough rows to tell; whole numbers
    also need a name that says identifier or values that count up (1, 2, 3, ... with gaps)."""
    present = values.dropna()
    if len(present) < MIN_IDENTIFIER_VALUES or pd.api.types.is_bool_dtype(present):
        return False
    if pd.api.types.is_numeric_dtype(present):
        numbers = present.to_numpy(dtype=np.float64)
        if not np.all(np.mod(numbers, 1) == 0) or not present.is_unique:
            return False
        return _named_identifier(str(values.name)) or _counts_up(numbers)
    if pd.api.types.infer_dtype(present, skipna=True) not in ("string", "mixed", "mixed-integer"):
        return False
    return bool(present.astype(str).is_unique)


def _named_identifier(name: str) -> bool:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # customerId -> customer Id
    words = re.findall(r"[^\W_]+", spaced.lower())
    return bool(words) and words[-1] in IDENTIFIER_WORDS


def _counts_up(numbers: np.ndarray) -> bool:
    """Distinct whole numbers filling most of their span: a row number or a running id."""
    span = float(numbers.max() - numbers.min()) + 1
    return span <= 2 * len(numbers)
