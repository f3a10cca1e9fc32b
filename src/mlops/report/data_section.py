"""The report's Data section: validation, the rows through the data stages, and the profile.

What the data stages (validate, clean, label, split) and the raw data's profile say, with the
missing values and the distribution shift (PSI) of each column against the base's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlops.report.compare import shift_level
from mlops.report.inputs import Document, ReportInputs
from mlops.report.markdown import (
    FAILED,
    PASSED,
    SAME,
    WARNING,
    WORSE,
    details,
    number,
    section,
    table,
)


def data_section(inputs: ReportInputs) -> str:
    return section(
        "Data",
        validation_block(inputs.current.get("validation")),
        harvest_block(inputs.current.get("harvest"), inputs.current.get("validation")),
        pipeline_rows_block(inputs),
        profile_block(inputs),
    )


def harvest_block(harvest: Document | None, validation: Document | None) -> str:
    """The rows harvested from labelled inference data, their share of the raw table, and what
    the harvest left out and why; nothing while the harvest is off."""
    if not harvest or not harvest.get("enabled"):
        return ""
    share = ((validation or {}).get("harvested") or {}).get("share")
    of_table = f" ({100 * share:.1f}% of the raw table)" if share is not None else ""
    versions = ", ".join(f"`{v}` {n}" for v, n in (harvest.get("model_versions") or {}).items())
    lines = [
        f"Harvested: **{harvest.get('rows', 0)} rows** of labelled inference data{of_table} "
        f"from `{harvest.get('source')}`, scored by model version(s) {versions or 'none'}: "
        f"{harvest.get('labels', 0)} labels read, {harvest.get('labels_without_prediction', 0)} "
        f"without a shipped prediction, {harvest.get('duplicate_labels', 0)} superseded by a "
        f"later label, {harvest.get('refused', 0)} refused by the schema."
    ]
    failures = harvest.get("failures") or []
    if failures:
        lines.append(details("Harvested rows the schema refused", failures_table(failures)))
    return "\n\n".join(lines)


def validation_block(validation: Document | None) -> str:
    if validation is None:
        return f"{WARNING} No validation report: the `validate` stage has not run."
    if validation.get("passed"):
        return f"{PASSED} Validation against the schema passed ({validation.get('rows')} rows)."
    return "\n\n".join(
        [
            f"{FAILED} Validation against the schema failed ({validation.get('rows')} rows):",
            failures_table(validation.get("failures", [])),
        ]
    )


def failures_table(failures: Sequence[Document]) -> str:
    """Schema failures, one row per (column, check)."""
    rows = [
        [
            f"`{failure.get('column')}`",
            failure.get("check"),
            failure.get("count"),
            ", ".join(map(str, failure.get("failure_cases", []))),
            failure.get("hint"),
        ]
        for failure in failures
    ]
    return table(["column", "check", "rows", "examples", "what it means"], rows, "llrll")


def pipeline_rows_block(inputs: ReportInputs) -> str:
    """Rows through clean, label and split, and what cleaning changed per column."""
    clean, label, split = (inputs.current.get(name) for name in ("clean", "label", "split"))
    lines = []
    if clean:
        lines.append(
            f"Cleaning: {clean.get('rows_in')} rows in, {clean.get('rows_out')} out "
            f"({clean.get('duplicates_dropped', 0)} duplicates, "
            f"{clean.get('rows_dropped_outliers', 0)} outliers and "
            f"{clean.get('rows_dropped_missing', 0)} incomplete rows dropped)."
        )
        changed = [
            [f"`{name}`", *(counts.get(key, 0) for key in CLEAN_COUNTS)]
            for name, counts in (clean.get("columns") or {}).items()
            if any(counts.get(key, 0) for key in CLEAN_COUNTS)
        ]
        if changed:
            lines.append(
                details(
                    "Values changed by cleaning",
                    table(["column", *CLEAN_COUNTS], changed, "lrrrrr"),
                )
            )
    if label:
        lines.append(
            f"Labels ({label.get('method')}): {label.get('labelled')} labelled, "
            f"{label.get('unlabelled')} unlabelled; {_targets(label)}."
        )
    if split:
        parts = [
            f"{name} {split[name]['rows']}"
            for name in ("train", "validation", "test")
            if name in split
        ]
        lines.append(f"Split ({split.get('strategy')}): {', '.join(parts)} rows.")
    return "\n\n".join(lines)


CLEAN_COUNTS = ("normalised", "coerced", "imputed", "clipped", "dropped")


def _targets(label: Document) -> str:
    """The class counts, or a regression target's statistics, of the labelled rows."""
    statistics = label.get("target_statistics")
    if statistics is not None:
        if not statistics.get("count"):
            return "no target values"
        return (
            f"target mean {number(statistics.get('mean'))}, standard deviation "
            f"{number(statistics.get('std'))}, from {number(statistics.get('min'))} to "
            f"{number(statistics.get('max'))}"
        )
    classes = label.get("classes") or {}
    return "classes: " + ", ".join(f"{name} {count}" for name, count in classes.items())


def profile_block(inputs: ReportInputs) -> str:
    profile = inputs.current.get("profile")
    if profile is None:
        return ""
    base = inputs.base.get("profile")
    base_columns = (base or {}).get("columns", {})
    rows_line = f"Raw data: {profile['rows']} rows, {len(profile['columns'])} columns"
    if base is not None:
        rows_line += f" ({inputs.base_name}: {base['rows']} rows, {len(base_columns)} columns)"
    added = sorted(set(profile["columns"]) - set(base_columns)) if base else []
    removed = sorted(set(base_columns) - set(profile["columns"])) if base else []
    lines = [rows_line + "."]
    if added or removed:
        lines.append(f"{WARNING} Columns added: {added or 'none'}; removed: {removed or 'none'}.")
    rows = []
    for name, column in profile["columns"].items():
        before = base_columns.get(name, {})
        shift = inputs.shift.get(name)
        row: list[object] = [f"`{name}`", column.get("kind"), _missing(column)]
        if base is not None:
            row += [_missing(before) if before else "", _shift(shift)]
        rows.append(row)
    header = ["column", "kind", "missing"]
    header += [f"missing {inputs.base_name}", f"PSI vs {inputs.base_name}"] if base else []
    lines.append(table(header, rows, "llrrr"))
    if base is not None:
        lines.append(
            f"PSI of this run's raw data against the base profile: {SAME} below 0.1, "
            f"{WARNING} changed from 0.1, {WORSE} drifted from 0.2."
        )
    return "\n\n".join(lines)


def _missing(column: Mapping[str, Any]) -> str:
    if not column:
        return ""
    return f"{column.get('missing', 0)} ({100 * column.get('missing_rate', 0.0):.1f}%)"


def _shift(value: float | None) -> str:
    if value is None:
        return ""
    return f"{(SAME, WARNING, WORSE)[shift_level(value)]} {value:.3f}"
