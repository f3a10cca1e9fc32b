"""What a label is as text, and how the label and split summaries count classes."""

from __future__ import annotations

import pandas as pd


def class_text(value: object) -> str:
    """A label as text: whole floats lose their '.0', so 1 and 1.0 name the same class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def class_counts(classes: pd.Series) -> dict[str, int]:
    """Rows per class, classes in sorted order."""
    return {str(name): int(count) for name, count in classes.value_counts().sort_index().items()}
