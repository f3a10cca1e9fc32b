"""The pandas engine: each data stage holds its table in memory as one DataFrame.

The default, and the faster one whenever the table fits one machine (docs/scale.md). It never
imports Spark; the row-at-a-time rules it applies to the whole table are the ones the Spark
engine applies to each batch of rows.
"""

from __future__ import annotations

from pathlib import Path

import pandera.pandas as pa

from mlops.data.engines.base import CleanSettings, Validation
from mlops.data.engines.pandas_engine.cleaning import clean_table
from mlops.data.engines.pandas_engine.sources import drop_columns, read_source
from mlops.data.rules.harvest import append_harvest
from mlops.data.rules.validation import columns_to_normalise, json_safe, validate_frame
from mlops.params import CleanParams, DataParams
from mlops.profile import profile_table
from mlops.progress import step
from mlops.summaries import CleanSummary
from mlops.tables import read_table, write_table


class PandasEngine:
    """``mlops.data.engines.base.Engine`` on pandas."""

    def ingest(self, data: DataParams, out: Path, harvest: Path | None = None) -> tuple[int, int]:
        frame = drop_columns(read_source(data), data.drop_columns, data.source)
        if harvest is not None:
            frame = append_harvest(frame, read_table(harvest))
        with step("ingest: write", len(frame)):
            write_table(out, frame)
        return frame.shape

    def validate(
        self, path: Path, schema: pa.DataFrameSchema, data: DataParams, clean: CleanParams
    ) -> Validation:
        frame = read_table(path)
        with step("validate: profile", len(frame)):
            profile = json_safe(profile_table(frame))
        with step("validate: schema checks", len(frame)):
            report = validate_frame(frame, schema, columns_to_normalise(frame, data, clean))
        return Validation(profile, report, frame)

    def clean(
        self, path: Path, out: Path, params: CleanParams, settings: CleanSettings
    ) -> CleanSummary:
        raw = read_table(path)
        with step("clean", len(raw)):
            cleaned, summary = clean_table(
                raw, params, target=settings.target, exclude_columns=settings.exclude_columns,
                categories=settings.categories, numeric_columns=settings.numeric_columns,
            )  # fmt: skip
        write_table(out, cleaned)
        return summary
