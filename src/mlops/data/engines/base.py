"""The interface every engine offers the data stages: ingest, validate and clean a table.

A stage (``mlops.data.ingest``, ``validate``, ``clean``) parses its arguments, reads its params
and the schema, asks ``mlops.data.engines.open_engine`` for the engine ``spark.enabled`` names,
calls it, and writes what it returns. Both engines read and write the same files and return the
same documents, built by the same rules (``mlops.data.rules``). Label and split stay with pandas:
they work on the cleaned table, which a fork reduces to what one machine holds
(docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pandera.pandas as pa

from mlops.params import CleanParams, DataParams
from mlops.summaries import CleanSummary, ValidationReport


@dataclass(frozen=True)
class CleanSettings:
    """What clean takes from ``data`` params and the schema, beside its own section."""

    target: str
    exclude_columns: Sequence[str] = ()
    categories: Mapping[str, Sequence[str]] = field(default_factory=dict)  # allowed spellings
    numeric_columns: Sequence[str] = ()  # declared numeric: coerced


@dataclass(frozen=True)
class Validation:
    """What validate learns of the raw table: its profile (JSON-safe), the validation report,
    and a table of its target column for the task preview (the whole table where it is in
    memory anyway, the target alone where it is not; no column when the table lacks it)."""

    profile: dict[str, Any]
    report: ValidationReport
    target: pd.DataFrame


class Engine(Protocol):
    def ingest(self, data: DataParams, out: Path, harvest: Path | None = None) -> tuple[int, int]:
        """Write ``data.source`` less ``data.drop_columns`` to ``out`` in the source's row order,
        then the harvested rows at ``harvest`` (``mlops.data.harvest``), in the source's columns
        and types; returns (rows, columns)."""
        ...

    def validate(
        self, path: Path, schema: pa.DataFrameSchema, data: DataParams, clean: CleanParams
    ) -> Validation:
        """Profile the table at ``path`` and check it against ``schema``, values that clean
        normalises (``clean.normalize_strings``) checked as it will leave them."""
        ...

    def clean(
        self, path: Path, out: Path, params: CleanParams, settings: CleanSettings
    ) -> CleanSummary:
        """Clean the table at ``path`` into ``out``; what changed."""
        ...
