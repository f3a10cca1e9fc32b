"""Stage ``validate``: profile the raw data, then check it against the schema kept in the repo.

Writes ``profile.json`` (a DVC metrics file), ``profile.md`` and ``validation.json`` into the
reports directory, always. When a check fails the stage exits non-zero, naming every failing
column and check at once (pandera's lazy validation), grouped per (column, check) with counts,
example values and row numbers (0-based positions in the input table).

When ``clean.normalize_strings`` is on, a feature value that differs from an allowed category only
in case or whitespace (`` male``, ``MALE``) is accepted and counted under ``normalised``: the clean
stage rewrites it to the schema's spelling, with the same function. Anything else outside ``isin``
is an unknown category and fails.

With ``--harvest`` (the harvest stage's summary), the report says how many of the rows were
harvested from labelled inference data (the last ones of the table) and their share.

The rules are ``mlops.data.rules.validation``; the engine ``spark.enabled`` picks applies them
(``mlops.data.engines``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from mlops.data.engines import open_engine
from mlops.data.rules.schema import load_schema
from mlops.data.rules.validation import failure_message
from mlops.params import CleanParams, DataParams, SparkParams, load_optional_section, load_section
from mlops.profile import profile_markdown
from mlops.stage import StageError, parser, read_json, run, write_json, write_text
from mlops.summaries import Harvested, HarvestSummary, TaskPreview
from mlops.task import task_preview


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--input", type=Path, required=True, help="raw table (Parquet)")
    arguments.add_argument("--schema", type=Path, required=True, help="pandera YAML schema")
    arguments.add_argument("--reports", type=Path, required=True, help="reports directory")
    arguments.add_argument("--harvest", type=Path, help="the harvest stage's summary (JSON)")
    args = arguments.parse_args(argv)
    data = load_section(args.params, "data", DataParams)
    clean = load_section(args.params, "clean", CleanParams)
    spark = load_optional_section(args.params, "spark", SparkParams)
    schema = load_schema(args.schema)
    with open_engine(spark) as engine:
        validation = engine.validate(args.input, schema, data, clean)
    profile, report = validation.profile, validation.report
    report["task"] = cast(TaskPreview, task_preview(validation.target, data.target, data.task))
    lines = [task_line(report["task"])]
    summary: HarvestSummary | None = read_json(args.harvest) if args.harvest else None
    if summary is not None and summary["enabled"]:
        report["harvested"] = harvested(summary, report["rows"])
        lines.append(harvested_line(report["harvested"]))
    write_json(args.reports / "profile.json", profile)
    markdown = profile_markdown(profile, f"Profile of {args.input}")
    write_text(args.reports / "profile.md", markdown + "\n" + "\n\n".join(lines) + "\n")
    report_path = args.reports / "validation.json"
    write_json(report_path, report)
    if not report["passed"]:
        raise StageError(failure_message(report, args.input, args.schema, report_path))
    print(f"validate: {report['rows']} rows of {args.input} match {args.schema}")
    print("\n".join(lines))


def harvested(summary: HarvestSummary, rows: int) -> Harvested:
    """The harvested rows of a raw table of ``rows`` rows, and their share of it."""
    added = int(summary["rows"])
    return {"rows": added, "share": added / rows if rows else 0.0}


def harvested_line(harvest: Harvested) -> str:
    return (
        f"harvested: {harvest['rows']} rows of labelled inference data "
        f"({100 * harvest['share']:.1f}% of the table)"
    )


def task_line(task: TaskPreview) -> str:
    """The task decision (``mlops.task.task_preview``) as one line of the reports."""
    return f"task: {task['task'] or 'not decided yet'} ({task['reason']})"


if __name__ == "__main__":
    sys.exit(run(main))
