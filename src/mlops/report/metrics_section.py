"""The report's Metrics section: each metric against the base's, with its change's interval.

Apart from the other model sections for its size: the validation set's headline, per-class and
other metrics, the test set's from the verdict, and the legend of how sure each marked change is
(the bootstrap intervals of ``intervals``, or why the changes are not marked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mlops.report.compare import Delta, deltas
from mlops.report.inputs import Document, NoIntervals, ReportInputs
from mlops.report.intervals import Intervals
from mlops.report.markdown import BETTER, SAME, WARNING, WORSE, details, number, section
from mlops.report.shared import compared, delta_table, stale_note
from mlops.report.tasks import HEADLINE, run_task


def with_intervals(rows: Sequence[Delta], intervals: Intervals | NoIntervals | None) -> list[Delta]:
    """The validation metrics' rows, each with the interval of its change where there is one."""
    if not isinstance(intervals, Intervals):
        return list(rows)
    return [replace(row, interval=intervals.bounds.get(row.name)) for row in rows]


def intervals_legend(inputs: ReportInputs) -> str:
    """How the changes are marked, and how sure they are."""
    intervals = inputs.intervals
    if isinstance(intervals, NoIntervals):
        return (
            f"Changes are not marked better or worse: {intervals.reason}. {SAME} marks no "
            "change at all."
        )
    if not isinstance(intervals, Intervals):
        return ""
    rows = f"the {intervals.total_rows:,} validation rows"
    if intervals.rows < intervals.total_rows:
        rows = (
            f"a seeded sample of {intervals.rows:,} of the {intervals.total_rows:,} validation "
            "rows, its spread scaled to all of them"
        )
    pairing = (
        "paired: both runs evaluated the same rows, so a resample draws the same rows for both"
        if intervals.paired
        else f"unpaired: `{inputs.base_name}` evaluated other rows, so each run is resampled "
        "on its own"
    )
    return (
        f"{BETTER} better, {WORSE} worse: the {intervals.level:.0%} interval of the change "
        f"lies on one side of zero; {SAME} no change: the interval holds zero, the change is "
        f"within what the rows' noise gives. Intervals: bootstrap of {rows} "
        f"({intervals.resamples} resamples, seed {intervals.seed}; {pairing}). Unmarked: a "
        "count or a setting, or no interval."
    )


def metrics_section(inputs: ReportInputs) -> str:
    metrics = inputs.current.get("metrics")
    if metrics is None:
        return section("Metrics", f"{WARNING} No metrics: the `evaluate` stage has not run.")
    with_base = compared(inputs)
    base_metrics = inputs.base.get("metrics") if with_base else None
    headline = HEADLINE[run_task(inputs.current).kind]
    rows = with_intervals(deltas(metrics, base_metrics), inputs.intervals)
    validation = _ordered([row for row in rows if row.name in headline], headline)
    per_class = [row for row in rows if row.name.startswith("per_class.")]
    others = [row for row in rows if row.name not in headline and row not in per_class]
    test = _ordered(
        deltas(_test_metrics(inputs.current), _test_metrics(inputs.base) if with_base else None),
        headline,
    )
    blocks = [
        stale_note(inputs, "metrics", "verdict"),
        _decision_line(metrics),
        "Validation set (the evaluate stage):",
        delta_table(validation, with_base, inputs.base_name),
        _undefined_line(metrics, headline),
        "Test set (the acceptance stage):",
        delta_table(test, with_base, inputs.base_name) if test else "no verdict yet",
        NO_TEST_INTERVALS if with_base and test else "",
    ]
    if per_class:
        table_text = delta_table(per_class, with_base, inputs.base_name)
        blocks.append(details("Per class (validation set)", table_text))
    if others:
        table_text = delta_table(others, with_base, inputs.base_name)
        blocks.append(details("Other metrics (validation set)", table_text))
    if with_base:
        blocks.append(intervals_legend(inputs))
    return section("Metrics", *blocks)


NO_TEST_INTERVALS = (
    "The test set's changes are not marked: the acceptance stage keeps no per-row predictions "
    "to bootstrap an interval from (the validation set's intervals above show how large a "
    "change the rows' noise allows)."
)


def _ordered(rows: Sequence[Delta], order: Sequence[str]) -> list[Delta]:
    """The rows named in ``order`` first, in that order, then the others as they came."""
    return sorted(rows, key=lambda row: order.index(row.name) if row.name in order else len(order))


def _decision_line(metrics: Document) -> str:
    """A binary classifier's positive class and the probability from which it is predicted."""
    positive = metrics.get("positive_class")
    if positive is None:
        return ""
    threshold = metrics.get("decision_threshold")
    how = {
        "max_f1": "chosen on the validation set for the best F1 of the positive class",
        "fixed": "set in params (`evaluate.decision_threshold`)",
    }.get(str(metrics.get("threshold_method")), "the default")
    return (
        f"Positive class: `{positive}`; predicted from a probability of "
        f"{number(threshold)} ({how})."
    )


def _undefined_line(metrics: Document, headline: Sequence[str]) -> str:
    """Headline metrics the evaluate stage could not compute (null), e.g. MAPE of zero targets."""
    missing = [name for name in headline if name in metrics and metrics[name] is None]
    notes = {"mape": "no validation row has a non-zero target"}
    return "\n".join(
        f"{WARNING} `{name}` is not defined: {notes.get(name, 'not computable on this data')}."
        for name in missing
    )


def _test_metrics(outputs: Any) -> Document | None:
    """The candidate's test-set metrics from the verdict (the per-slice minimum is a check)."""
    verdict = outputs.get("verdict")
    if verdict is None:
        return None
    return {k: v for k, v in verdict.get("metrics", {}).items() if not k.startswith("slice_")}
