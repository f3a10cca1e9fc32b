"""What several of the report's sections use: delta tables, whether the base compares, stale notes.

A module of its own so that a section module imports this one and the layers below it
(``compare``, ``markdown``, ``tasks``), never another section module: no import cycle, and each
section reads alone. Which stages did not reproduce (``not_reproduced``) is here because both the
header's verdict and the sections' stale notes read it.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlops.report.compare import Delta
from mlops.report.inputs import STAGE_FILES, ReportInputs
from mlops.report.markdown import BETTER, SAME, WARNING, WORSE, signed, table
from mlops.report.tasks import comparable


def not_reproduced(inputs: ReportInputs) -> tuple[str, ...]:
    """The stages whose outputs are not this run's.

    A stage that fails writes its report first (validate its failures, accept its verdict), so
    when the first stage DVC reports as changed has a failing report, that report is this run's.
    """
    stale = inputs.stale
    if stale and FAILURE_REPORTS.get(stale[0]) in failed_reports(inputs):
        return stale[1:]
    return stale


FAILURE_REPORTS = {"validate": "validation", "accept": "verdict"}


def failed_reports(inputs: ReportInputs) -> set[str]:
    """The reports of this run that say their stage failed (validation, verdict)."""
    return {
        name
        for name in FAILURE_REPORTS.values()
        if (report := inputs.current.get(name)) is not None and report.get("passed") is False
    }


def compared(inputs: ReportInputs) -> bool:
    """Whether metrics are shown against the base's: it has some, and they measure the same."""
    return comparable(inputs.current, inputs.base)


def stale_note(inputs: ReportInputs, *files: str) -> str:
    stages = sorted({STAGE_FILES[name][0] for name in files} & set(not_reproduced(inputs)))
    if not stages:
        return ""
    names = ", ".join(f"`{stage}`" for stage in stages)
    return f"{WARNING} {names} did not complete in this run: these numbers may be an earlier run's."


def trend_mark(delta: Delta) -> str:
    trend = delta.trend
    return "" if trend is None else {1: BETTER, -1: WORSE, 0: SAME}[trend]


def delta_rows(rows: Sequence[Delta], with_base: bool) -> list[list[object]]:
    with_intervals = any(row.interval is not None for row in rows)
    table_rows: list[list[object]] = []
    for row in rows:
        cells: list[object] = [f"`{row.name}`", row.current]
        if with_base:
            cells += [row.base, change_text(row)]
            cells += [_interval(row.interval)] if with_intervals else []
        table_rows.append(cells)
    return table_rows


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"{signed(interval[0])} to {signed(interval[1])}"


def delta_table(rows: Sequence[Delta], with_base: bool, base_name: str) -> str:
    header = ["metric", "this run"] + ([base_name, "change"] if with_base else [])
    if with_base and any(row.interval is not None for row in rows):
        header.append("95% interval of the change")
    return table(header, delta_rows(rows, with_base), "lrrrr")


def change_text(delta: Delta) -> str:
    """A change as a table cell: its mark (better, worse, no change) and its signed size."""
    return "" if delta.change is None else f"{trend_mark(delta)} {signed(delta.change)}".strip()
