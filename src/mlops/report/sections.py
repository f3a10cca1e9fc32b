"""The report's sections, each a pure function of the loaded inputs returning markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlops.report.compare import MISSING, Delta, deltas, is_neutral, params_diff, shift_level
from mlops.report.inputs import STAGE_FILES, Document, ReportInputs
from mlops.report.markdown import (
    BETTER,
    FAILED,
    PASSED,
    SAME,
    WARNING,
    WORSE,
    details,
    mark,
    number,
    section,
    signed,
    table,
)

WATERMARK_TITLE = "Model report"
# Metrics shown in the headline table; per-class numbers go in a collapsed table.
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc_ovr", "log_loss", "rows")
# A GitHub pull request body holds at most 65,536 characters.
MAX_TEXT = 60_000


def build_report(inputs: ReportInputs, images: bool = True) -> str:
    """The whole report; ``images=False`` lists the plots instead (job summary, PR body)."""
    parts = [
        header(inputs),
        trigger_section(inputs.trigger),
        metrics_section(inputs),
        params_section(inputs),
        acceptance_section(inputs),
        champion_section(inputs),
        plots_section(inputs, images),
        slices_section(inputs),
        training_section(inputs),
        data_section(inputs),
        serving_section(inputs),
    ]
    text = "\n\n".join(part for part in parts if part) + "\n"
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n\n{WARNING} Report cut at {MAX_TEXT} characters.\n"
    return text


def not_reproduced(inputs: ReportInputs) -> tuple[str, ...]:
    """The stages whose outputs are not this run's.

    A stage that fails writes its report first (validate its failures, accept its verdict), so
    when the first stage DVC reports as changed has a failing report, that report is this run's.
    """
    stale = inputs.stale
    if stale and FAILURE_REPORTS.get(stale[0]) in _failed_reports(inputs):
        return stale[1:]
    return stale


FAILURE_REPORTS = {"validate": "validation", "accept": "verdict"}


def _failed_reports(inputs: ReportInputs) -> set[str]:
    return {
        name
        for name in FAILURE_REPORTS.values()
        if (report := inputs.current.get(name)) is not None and report.get("passed") is False
    }


def verdict_line(inputs: ReportInputs) -> str:
    """Accepted, rejected, invalid data, or incomplete (a stage failed for another reason)."""
    verdict = inputs.current.get("verdict")
    failed = _failed_reports(inputs)
    stale = not_reproduced(inputs)
    if "validation" in failed and inputs.stale[:1] == ("validate",):
        return f"{FAILED} **The data failed validation**: see Data below."
    if stale and "verdict" not in failed:
        stages = ", ".join(f"`{stage}`" for stage in stale)
        return f"{FAILED} **The pipeline did not complete**: not reproduced: {stages}."
    if verdict is None:
        return f"{WARNING} No acceptance verdict: the `accept` stage has not run."
    if "verdict" in failed:
        names = [check["name"] for check in verdict["checks"] if not check["passed"]]
        return f"{FAILED} **Rejected**: failed {', '.join(f'`{name}`' for name in names)}."
    return f"{PASSED} **Accepted**: the model passed all {len(verdict['checks'])} checks."


def base_line(inputs: ReportInputs) -> str:
    if inputs.base_commit is None:
        return f"Base `{inputs.base_name}` not found: nothing to compare with."
    where = f"`{inputs.base_name}`"
    if not inputs.base_commit.startswith(inputs.base_name):
        where += f" ({inputs.base_commit[:12]})"
    if not inputs.base.has_metrics:
        return f"Compared with {where}, which has no metrics yet: this is the first run."
    return f"Compared with {where}."


def header(inputs: ReportInputs) -> str:
    return "\n\n".join(
        [f"## {WATERMARK_TITLE}: {inputs.model_name}", verdict_line(inputs), base_line(inputs)]
    )


def stale_note(inputs: ReportInputs, *files: str) -> str:
    stages = sorted({STAGE_FILES[name][0] for name in files} & set(not_reproduced(inputs)))
    if not stages:
        return ""
    names = ", ".join(f"`{stage}`" for stage in stages)
    return f"{WARNING} {names} did not complete in this run: these numbers may be an earlier run's."


def trigger_section(trigger: Document | None) -> str:
    if not trigger:
        return ""
    lines = [f"Reasons: {', '.join(trigger.get('reasons', [])) or 'scheduled or manual'}."]
    if trigger.get("model_version"):
        lines.append(f"Model in production: {trigger['model_version']}.")
    drifted = trigger.get("drifted_features") or {}
    if drifted:
        rows = [
            [name, info.get("psi"), ", ".join(info.get("reasons", []))]
            for name, info in drifted.items()
        ]
        lines.append(table(["feature", "PSI", "why"], rows, "lrl"))
    if trigger.get("window_size"):
        since = f", alerting since {trigger['alert_since']}" if trigger.get("alert_since") else ""
        lines.append(f"Window: {trigger['window_size']} predictions{since}.")
    return section("Why this retrain", *lines)


def trend_mark(delta: Delta) -> str:
    if delta.change is None or is_neutral(delta.name):
        return ""
    return {1: BETTER, -1: WORSE, 0: SAME}[delta.trend]


def delta_rows(rows: Sequence[Delta], with_base: bool) -> list[list[object]]:
    table_rows: list[list[object]] = []
    for row in rows:
        cells: list[object] = [f"`{row.name}`", row.current]
        if with_base:
            change = "" if row.change is None else f"{trend_mark(row)} {signed(row.change)}"
            cells += [row.base, change]
        table_rows.append(cells)
    return table_rows


def delta_table(rows: Sequence[Delta], with_base: bool, base_name: str) -> str:
    header = ["metric", "this run"] + ([base_name, "change"] if with_base else [])
    return table(header, delta_rows(rows, with_base), "lrrr")


def metrics_section(inputs: ReportInputs) -> str:
    metrics = inputs.current.get("metrics")
    if metrics is None:
        return section("Metrics", f"{WARNING} No metrics: the `evaluate` stage has not run.")
    with_base = inputs.base.has_metrics
    base_metrics = inputs.base.get("metrics")
    validation = sorted(
        (d for d in deltas(metrics, base_metrics) if d.name in HEADLINE),
        key=lambda d: HEADLINE.index(d.name),
    )
    per_class = [d for d in deltas(metrics, base_metrics) if d.name.startswith("per_class.")]
    test = deltas(_test_metrics(inputs.current), _test_metrics(inputs.base))
    blocks = [
        stale_note(inputs, "metrics", "verdict"),
        "Validation set (the evaluate stage):",
        delta_table(validation, with_base, inputs.base_name),
        "Test set (the acceptance stage):",
        delta_table(test, with_base, inputs.base_name) if test else "no verdict yet",
        details("Per class (validation set)", delta_table(per_class, with_base, inputs.base_name)),
    ]
    if with_base:
        blocks.append(f"{BETTER} better, {WORSE} worse, {SAME} unchanged, against the base.")
    return section("Metrics", *blocks)


def _test_metrics(outputs: Any) -> Document | None:
    verdict = outputs.get("verdict")
    if verdict is None:
        return None
    return {k: v for k, v in verdict.get("metrics", {}).items() if k != "slice_macro_f1"}


def params_section(inputs: ReportInputs) -> str:
    if inputs.base.params is None:
        return section("Params", "No params on the base to compare with.")
    changes = params_diff(inputs.current.params, inputs.base.params)
    if not changes:
        return section("Params", "No params changed.")
    rows = [[f"`{c.key}`", _value(c.base), _value(c.current)] for c in changes]
    return section("Params changed", table(["key", inputs.base_name, "this run"], rows))


def _value(value: Any) -> str:
    return value if value is MISSING else f"`{value}`"


def acceptance_section(inputs: ReportInputs) -> str:
    verdict = inputs.current.get("verdict")
    if verdict is None:
        return ""
    rows = []
    for check in verdict["checks"]:
        rows.append(
            [
                f"`{check['name']}`",
                check.get("value"),
                check.get("threshold"),
                mark(bool(check["passed"])),
                check.get("reason", ""),
            ]
        )
    return section(
        "Acceptance test (held-out test set)",
        stale_note(inputs, "verdict"),
        table(["check", "value", "threshold", "passed", "note"], rows, "lrrll"),
    )


def champion_section(inputs: ReportInputs) -> str:
    verdict = inputs.current.get("verdict") or {}
    champion = verdict.get("champion")
    fetched = (inputs.champion or {}).get("summary")
    lines = [f"Champion: {fetched}."] if fetched else []
    if not champion:
        lines.append("No champion was compared: acceptance used the thresholds only.")
        return section("Champion", *lines)
    test = verdict.get("metrics", {})
    rows = []
    for name in ("macro_f1", "accuracy"):
        if name in champion:
            delta = Delta(name, test.get(name), champion[name])
            rows.append([f"`{name}`", delta.current, delta.base, _change(delta)])
    version = (inputs.champion or {}).get("version") or champion.get("model_version", "?")
    lines.append(
        table(["metric (test set)", "candidate", f"champion {version}", "change"], rows, "lrrr")
    )
    check = next((c for c in verdict["checks"] if c["name"] == "champion_macro_f1"), None)
    if check is not None and check.get("reason"):
        lines.append(f"{FAILED} {check['reason']}")
    elif check is not None:
        lines.append(
            f"{mark(check['passed'])} The candidate may trail the champion's macro F1 by at most "
            f"{number(check.get('max_regression'))}."
        )
    return section("Champion", *lines)


def _change(delta: Delta) -> str:
    return "" if delta.change is None else f"{trend_mark(delta)} {signed(delta.change)}"


def plots_section(inputs: ReportInputs, images: bool) -> str:
    if not inputs.plots:
        return ""
    if not images:
        names = ", ".join(plot.title for plot in inputs.plots)
        return section("Plots", f"{names}: in the pull request comment and the run's artifacts.")
    blocks = [f"**{plot.title}**\n\n![{plot.title}]({plot.link})" for plot in inputs.plots]
    return section("Plots (validation set)", stale_note(inputs, "metrics"), *blocks)


def slices_section(inputs: ReportInputs) -> str:
    slices = inputs.current.get("slices")
    if not slices or not slices.get("slices"):
        return ""
    base = ((inputs.base.get("slices") or {}).get("slices")) or {}
    with_base = bool(base)
    rows = []
    for name, scores in slices["slices"].items():
        delta = Delta("macro_f1", scores.get("macro_f1"), (base.get(name) or {}).get("macro_f1"))
        row: list[object] = [name, scores.get("rows"), scores.get("accuracy"), delta.current]
        if with_base:
            row += [delta.base, _change(delta)]
        rows.append(row)
    header = ["slice", "rows", "accuracy", "macro F1"]
    header += [f"macro F1 {inputs.base_name}", "change"] if with_base else []
    title = f"Slices by `{slices.get('column')}` (validation set)"
    return section(title, stale_note(inputs, "slices"), table(header, rows, "lrrrrr"))


def training_section(inputs: ReportInputs) -> str:
    training = inputs.current.get("training")
    if not training:
        return ""
    base = inputs.base.get("training") or {}
    score = Delta("best_cv_score", training.get("best_cv_score"), base.get("best_cv_score"))
    line = (
        f"`{training.get('model')}`, {training.get('search')} search over "
        f"{training.get('n_candidates')} candidates x {training.get('cv_folds')} folds on "
        f"{training.get('tuning_rows')} rows: best CV {training.get('scoring')} "
        f"{number(score.current)}"
    )
    if score.base is not None:
        line += f" ({inputs.base_name}: {number(score.base)}, {_change(score)})"
    params = ", ".join(f"`{k}={v}`" for k, v in (training.get("best_params") or {}).items())
    return section(
        "Training", stale_note(inputs, "training"), line + ".", f"Best params: {params}."
    )


def data_section(inputs: ReportInputs) -> str:
    return section(
        "Data",
        validation_block(inputs.current.get("validation")),
        pipeline_rows_block(inputs),
        profile_block(inputs),
    )


def validation_block(validation: Document | None) -> str:
    if validation is None:
        return f"{WARNING} No validation report: the `validate` stage has not run."
    if validation.get("passed"):
        return f"{PASSED} Validation against the schema passed ({validation.get('rows')} rows)."
    rows = [
        [
            f"`{failure.get('column')}`",
            failure.get("check"),
            failure.get("count"),
            ", ".join(map(str, failure.get("failure_cases", []))),
            failure.get("hint"),
        ]
        for failure in validation.get("failures", [])
    ]
    return "\n\n".join(
        [
            f"{FAILED} Validation against the schema failed ({validation.get('rows')} rows):",
            table(["column", "check", "rows", "examples", "what it means"], rows, "llrll"),
        ]
    )


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
        classes = ", ".join(
            f"{name} {count}" for name, count in (label.get("classes") or {}).items()
        )
        lines.append(
            f"Labels ({label.get('method')}): {label.get('labelled')} labelled, "
            f"{label.get('unlabelled')} unlabelled; classes: {classes}."
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


def serving_section(inputs: ReportInputs) -> str:
    parity, resources = inputs.current.get("parity"), inputs.current.get("resources")
    if parity is None and resources is None:
        return ""
    blocks = [stale_note(inputs, "parity", "resources")]
    if parity is not None:
        difference, tolerance = parity.get("max_abs_diff"), parity.get("tolerance")
        blocks.append(
            f"{mark(bool(parity.get('passed')))} ONNX parity on {parity.get('rows')} test rows: "
            f"{parity.get('label_mismatches')} label mismatches, largest probability difference "
            f"{number(difference, 2)} (tolerance {number(tolerance, 2)})."
        )
    if resources is not None:
        blocks.append(resources_table(resources, inputs.base.get("resources"), inputs.base_name))
        kubernetes = resources.get("kubernetes") or {}
        requests, limits = kubernetes.get("requests", {}), kubernetes.get("limits", {})
        if requests:
            blocks.append(
                f"Suggested Kubernetes resources: requests {requests.get('cpu')} CPU / "
                f"{requests.get('memory')}, limits {limits.get('cpu')} / {limits.get('memory')}."
            )
    return section("Serving: ONNX parity and resources", *blocks)


def resources_table(resources: Document, base: Document | None, base_name: str) -> str:
    latency = resources.get("latency") or {}
    memory = resources.get("memory") or {}
    base_latency = (base or {}).get("latency") or {}
    base_memory = (base or {}).get("memory") or {}
    rows = [
        Delta(
            f"{batch} median_ms",
            latency[batch].get("median_ms"),
            base_latency.get(batch, {}).get("median_ms"),
        )
        for batch in latency
    ]
    rows += [
        Delta(
            f"{batch} p99_ms",
            latency[batch].get("p99_ms"),
            base_latency.get(batch, {}).get("p99_ms"),
        )
        for batch in latency
    ]
    rows.append(Delta("peak_rss_mib", memory.get("peak_rss_mib"), base_memory.get("peak_rss_mib")))
    rows.append(Delta("model_bytes", resources.get("model_bytes"), (base or {}).get("model_bytes")))
    return delta_table(rows, base is not None, base_name)
