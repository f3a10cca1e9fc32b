"""Stage ``harvest``: labelled inference data as rows of the source, for the training data.

With ``harvest.enabled``, reads what the monitoring sidecar shipped to ``harvest.source`` (its
``MONITOR_SHIP_URL``): the labels, and the predictions they label (``mlops.data.engines
.pandas_engine.harvest``); joins each prediction to its latest label, once per
``(request_id, index)`` (``mlops.data.rules.harvest``); and checks every row against the schema
as the validate stage checks the raw table: a row the schema refuses (a value outside its range,
a category it does not list) is left out and counted per column and check in the summary, so one
odd value from the field cannot stop a retraining. Writes the rows (the source's columns: the
features, the label in ``label.column`` or ``data.target``, null elsewhere) and
``reports/harvest/summary.json``; ingest appends the rows to the source's. Disabled, it reads
nothing and writes no rows.

The store grows while the model serves, and DVC does not watch it: the harvest reads it when its
code or params change and on ``make retrain``, which forces it (as it forces ingest to re-read a
source); dvc.lock then pins the rows it read, which DVC caches and pushes like any output.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from mlops.data.engines.pandas_engine.harvest import Shipped, read_shipped
from mlops.data.rules.harvest import labelled_predictions, not_carried, source_rows
from mlops.data.rules.schema import load_schema
from mlops.data.rules.validation import columns_to_normalise, failure_cases, validation_report
from mlops.params import (
    CleanParams,
    DataParams,
    HarvestParams,
    LabelParams,
    load_optional_section,
    load_section,
)
from mlops.stage import StageError, parser, run, write_json
from mlops.summaries import HarvestSummary
from mlops.tables import write_table


def harvest_rows(
    shipped: Shipped,
    schema: pa.DataFrameSchema,
    label_column: str,
    data: DataParams,
    clean: CleanParams,
) -> tuple[pd.DataFrame, HarvestSummary]:
    """The rows to add (the schema's columns) and what happened to the rest, from the shipped
    labels and predictions. The checks are validate's, text normalised as clean will."""
    found = labelled_predictions(shipped.predictions, shipped.labels)
    joined: pd.DataFrame = found["joined"]
    columns = [str(name) for name in schema.columns]
    rows = source_rows(joined, columns, label_column)
    normalise = columns_to_normalise(rows, data, clean)
    cases, normalised = failure_cases(rows, schema, normalise)
    refused_rows = sorted({int(index) for index in cases["index"].dropna()})
    report = validation_report(cases, schema, len(rows), normalised)
    kept = rows.drop(index=refused_rows).reset_index(drop=True)
    versions = Counter(joined.drop(index=refused_rows)["model_version"].astype(str))
    summary: HarvestSummary = {
        "enabled": True,
        "source": "",
        "files": shipped.files,
        "predictions": len(shipped.predictions),
        "shadow_predictions": found["shadow_predictions"],
        "labels": len(shipped.labels),
        "duplicate_predictions": found["duplicate_predictions"],
        "duplicate_labels": found["duplicate_labels"],
        "labels_without_prediction": found["labels_without_prediction"],
        "labelled": len(rows),
        "not_carried": not_carried(joined, columns, label_column),
        "refused": len(refused_rows),
        "failures": report["failures"],
        "rows": len(kept),
        "model_versions": dict(sorted(versions.items())),
    }
    return kept, summary


def nothing_harvested(
    schema: pa.DataFrameSchema, source: str
) -> tuple[pd.DataFrame, HarvestSummary]:
    rows = pd.DataFrame({str(name): pd.Series(dtype=object) for name in schema.columns})
    summary: HarvestSummary = {
        "enabled": False,
        "source": source,
        "files": {"predictions": 0, "labels": 0},
        "predictions": 0,
        "shadow_predictions": 0,
        "labels": 0,
        "duplicate_predictions": 0,
        "duplicate_labels": 0,
        "labels_without_prediction": 0,
        "labelled": 0,
        "not_carried": [],
        "refused": 0,
        "failures": [],
        "rows": 0,
        "model_versions": {},
    }
    return rows, summary


def label_column(label: LabelParams, data: DataParams) -> str:
    """Where the label stage reads the class from: the harvested label goes there."""
    if label.method != "column":
        raise StageError(
            f"harvest.enabled with label.method {label.method}: the harvested rows carry their "
            "label in a column; the harvest works with label.method column only"
        )
    return label.column or data.target


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--schema", type=Path, required=True, help="pandera YAML schema")
    arguments.add_argument("--out", type=Path, required=True, help="harvested rows (Parquet)")
    arguments.add_argument("--summary", type=Path, required=True, help="summary (JSON)")
    args = arguments.parse_args(argv)
    harvest = load_optional_section(args.params, "harvest", HarvestParams)
    schema = load_schema(args.schema)
    if not harvest.enabled:
        rows, summary = nothing_harvested(schema, harvest.source)
    else:
        data = load_section(args.params, "data", DataParams)
        column = label_column(load_section(args.params, "label", LabelParams), data)
        clean = load_section(args.params, "clean", CleanParams)
        shipped = read_shipped(harvest.source)
        rows, summary = harvest_rows(shipped, schema, column, data, clean)
        summary["source"] = harvest.source
    write_table(args.out, rows)
    write_json(args.summary, summary)
    print(harvest_line(summary))


def harvest_line(summary: HarvestSummary) -> str:
    if not summary["enabled"]:
        return "harvest: off (harvest.enabled: false)"
    return (
        f"harvest: {summary['rows']} labelled rows from {summary['source']} "
        f"({summary['labels']} labels, {summary['labels_without_prediction']} without a "
        f"shipped prediction, {summary['refused']} refused by the schema)"
    )


if __name__ == "__main__":
    sys.exit(run(main))
