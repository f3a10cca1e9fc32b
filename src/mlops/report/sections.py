"""The report's sections, each a pure function of the loaded inputs returning markdown."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from mlops.report.compare import (
    MISSING,
    Delta,
    deltas,
    lower_is_better,
    params_diff,
    shift_level,
)
from mlops.report.inputs import STAGE_FILES, Document, NoIntervals, Plot, ReportInputs
from mlops.report.intervals import Intervals
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
from mlops.report.tasks import (
    HEADLINE,
    METRIC_NAMES,
    POSITIVE_CLASS_PLOTS,
    SLICE_COMPARED,
    SLICE_METRICS,
    TASK_PLOTS,
    RunTask,
    comparable,
    incomparable,
    run_task,
)

WATERMARK_TITLE = "Model report"
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
    lines = [f"## {WATERMARK_TITLE}: {inputs.model_name}", verdict_line(inputs), base_line(inputs)]
    lines += [task_line(inputs), _incomparable_line(inputs)]
    return "\n\n".join(line for line in lines if line)


def task_line(inputs: ReportInputs) -> str:
    """The task this run trained for and why; validate's preview too when it differs."""
    current = run_task(inputs.current)
    target = f" of `{current.target}`" if current.target else ""
    line = f"Task: **{current.task}**{target}"
    line += f" ({current.kind})" if current.task == "classification" else ""
    line += f": {current.reason}." if current.reason else "."
    preview = (inputs.current.get("validation") or {}).get("task") or {}
    if preview.get("task") and preview["task"] != current.task:
        line += (
            f" {WARNING} The validate stage's preview on the raw data said {preview['task']} "
            f"({preview.get('reason')}); the labels decided."
        )
    return line


def _incomparable_line(inputs: ReportInputs) -> str:
    reason = _incomparable(inputs)
    return f"{WARNING} {reason}" if reason else ""


def _incomparable(inputs: ReportInputs) -> str | None:
    """Why the base's metrics do not compare with this run's (None: they do, or there are none)."""
    if not inputs.base.has_metrics:
        return None
    return incomparable(run_task(inputs.current), run_task(inputs.base), inputs.base_name)


def compared(inputs: ReportInputs) -> bool:
    """Whether metrics are shown against the base's: it has some, and they measure the same."""
    return comparable(inputs.current, inputs.base)


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
    prediction = trigger.get("prediction") or {}
    if prediction.get("drifted"):
        lines.append(f"The predictions drifted: PSI {number(prediction.get('psi'))}.")
    lines.append(_live_performance(trigger.get("performance") or {}))
    return section("Why this retrain", *lines)


def _live_performance(performance: Document) -> str:
    """The sidecar's rolling metrics on labelled traffic against the validation ones."""
    measured = [
        f"{METRIC_NAMES.get(name, name)} {number(value)} "
        f"(validation {number(performance.get(f'reference_{name}'))})"
        for name, value in performance.items()
        if name not in ("labelled", "degraded") and not name.startswith("reference_")
        if isinstance(value, int | float)
    ]
    if not measured:
        return ""
    state = f"{FAILED} degraded" if performance.get("degraded") else "within tolerance"
    return (
        f"Performance on {performance.get('labelled')} labelled predictions: "
        f"{', '.join(measured)}: {state}."
    )


def trend_mark(delta: Delta) -> str:
    trend = delta.trend
    return "" if trend is None else {1: BETTER, -1: WORSE, 0: SAME}[trend]


def delta_rows(rows: Sequence[Delta], with_base: bool) -> list[list[object]]:
    with_intervals = any(row.interval is not None for row in rows)
    table_rows: list[list[object]] = []
    for row in rows:
        cells: list[object] = [f"`{row.name}`", row.current]
        if with_base:
            cells += [row.base, _change(row)]
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


def params_section(inputs: ReportInputs) -> str:
    if inputs.base.params is None:
        return section("Params", "No params on the base to compare with.")
    changes = params_diff(inputs.current.params, inputs.base.params)
    if not changes:
        return section("Params", "No params changed.")
    rows = [[f"`{c.key}`", _value(c.base), _value(c.current)] for c in changes]
    return section("Params changed", table(["key", inputs.base_name, "this run"], rows))


def _value(value: Any) -> str:
    """A params value as YAML writes it (``null``, ``true``), or the absent marker."""
    if value is MISSING:
        return str(value)
    return f"`{json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value}`"


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
    check = next((c for c in verdict["checks"] if c["name"].startswith("champion")), None)
    compared_on = check["name"].removeprefix("champion_") if check is not None else None
    headline = HEADLINE[run_task(inputs.current).kind]
    candidates = (compared_on, *headline) if compared_on is not None else headline
    names = [name for name in candidates if name in champion and name in test]
    rows = []
    for name in dict.fromkeys(names):  # the compared metric first, each once
        delta = Delta(name, test.get(name), champion[name])
        rows.append([f"`{name}`", delta.current, delta.base, _change(delta)])
    version = (inputs.champion or {}).get("version") or champion.get("model_version", "?")
    if rows:
        header = ["metric (test set)", "candidate", f"champion {version}", "change"]
        lines.append(table(header, rows, "lrrr"))
    if check is not None and check.get("reason"):
        lines.append(f"{FAILED} {check['reason']}")
    elif check is not None and compared_on is not None:
        lines.append(f"{mark(check['passed'])} {_champion_rule(compared_on, check)}")
    return section("Champion", *lines)


def _champion_rule(metric: str, check: Document) -> str:
    allowed = check.get("max_regression")
    if lower_is_better(metric):
        share = "" if allowed is None else f"{100 * float(allowed):.3g}%"
        return f"The candidate's {metric} may exceed the champion's by at most {share}."
    return f"The candidate may trail the champion's {metric} by at most {number(allowed)}."


def _change(delta: Delta) -> str:
    return "" if delta.change is None else f"{trend_mark(delta)} {signed(delta.change)}".strip()


def plots_section(inputs: ReportInputs, images: bool) -> str:
    plots = task_plots(inputs.plots, run_task(inputs.current), inputs.current.get("metrics") or {})
    if not plots:
        return ""
    over_base = any(plot.over_base for plot in plots)
    key = (
        f"Over `{inputs.base_name}`: its curves dashed, its points and bars orange; this run's "
        "solid or blue. The change of the confusion matrix: this run's rows minus the base's, "
        f"{BETTER} green where better."
        if over_base
        else ""
    )
    if not images:
        names = ", ".join(plot.title for plot in plots)
        return section("Plots", f"{names}: {images_location(inputs)}", key)
    blocks = [f"**{plot.title}**\n\n![{plot.title}]({plot.link})" for plot in plots]
    return section("Plots (validation set)", stale_note(inputs, "metrics"), key, *blocks)


def images_location(inputs: ReportInputs) -> str:
    """Where the images are, for the text that carries none (the pull request comment by
    default, the job summary, the retrain pull request): the CI run's ``report`` artifact,
    private to those who can read the repository; locally, reports/pr/plots/."""
    if inputs.images_url is None:
        return "the images are in `reports/pr/plots/` (and `reports/pr/report.md` shows them)."
    return (
        f"the images are in the `report` artifact of [the CI run]({inputs.images_url}) "
        "(its summary page, Artifacts), with `report.md` showing them; they are not published."
    )


def task_plots(plots: Sequence[Plot], task: RunTask, metrics: Document) -> list[Plot]:
    """The plots of this run's task (a stale one of the other task left out); a binary
    classifier's curves titled with its positive class."""
    foreign = set().union(*(names for name, names in TASK_PLOTS.items() if name != task.task))
    shown = []
    for plot in plots:
        name = PurePosixPath(plot.link).name
        if name in foreign:
            continue
        if task.kind == "binary" and name in POSITIVE_CLASS_PLOTS:
            plot = replace(
                plot, title=f"{plot.title}: positive class `{metrics.get('positive_class')}`"
            )
        shown.append(plot)
    return shown


def slices_section(inputs: ReportInputs) -> str:
    slices = inputs.current.get("slices")
    if not slices or not slices.get("slices"):
        return ""
    kind = run_task(inputs.current).kind
    shown, key = SLICE_METRICS[kind], SLICE_COMPARED[kind]
    base_slices = inputs.base.get("slices") if compared(inputs) else None
    base = (base_slices or {}).get("slices") or {}
    with_base = bool(base)
    rows = []
    for name, scores in slices["slices"].items():
        delta = Delta(key, scores.get(key), (base.get(name) or {}).get(key))
        row: list[object] = [name, scores.get("rows"), *(scores.get(metric) for metric in shown)]
        if with_base:
            row += [delta.base, _change(delta)]
        rows.append(row)
    header = ["slice", "rows", *(METRIC_NAMES[metric] for metric in shown)]
    header += [f"{METRIC_NAMES[key]} {inputs.base_name}", "change"] if with_base else []
    title = f"Slices by `{slices.get('column')}` (validation set)"
    note = (
        "Changes per slice are not marked: a slice's few rows give no interval."
        if with_base
        else ""
    )
    return section(title, stale_note(inputs, "slices"), table(header, rows, "lrrrrrr"), note)


def training_section(inputs: ReportInputs) -> str:
    training = inputs.current.get("training")
    if not training:
        return ""
    base = inputs.base.get("training") or {}
    same_scoring = compared(inputs) and base.get("scoring") == training.get("scoring")
    score = Delta(
        "best_cv_score",
        training.get("best_cv_score"),
        base.get("best_cv_score") if same_scoring else None,
    )
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
        "Training",
        stale_note(inputs, "training"),
        line + ".",
        f"Best params: {params}.",
        excluded_block(training),
    )


def excluded_block(training: Document) -> str:
    """The columns kept out of the features, and why (identifiers, date-times, params); nothing
    from a train stage that did not record them."""
    if "excluded" not in training:
        return ""
    excluded = training["excluded"] or {}
    if not excluded:
        return "Every column but the target is a feature."
    rows = [[f"`{column}`", reason] for column, reason in excluded.items()]
    return details(f"Not features: {len(rows)} column(s)", table(["column", "why"], rows))


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


def serving_section(inputs: ReportInputs) -> str:
    parity, resources = inputs.current.get("parity"), inputs.current.get("resources")
    if parity is None and resources is None:
        return ""
    blocks = [stale_note(inputs, "parity", "resources")]
    if parity is not None:
        blocks.append(parity_line(parity))
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


def parity_line(parity: Document) -> str:
    """scikit-learn against onnxruntime on the test rows: labels and probabilities of a
    classifier, predictions relative to the target's standard deviation for a regressor."""
    difference, tolerance = parity.get("max_abs_diff"), parity.get("tolerance")
    start = f"{mark(bool(parity.get('passed')))} ONNX parity on {parity.get('rows')} test rows: "
    if parity.get("task") == "regression":
        return start + (
            f"largest prediction difference {number(difference, 2)}, "
            f"{number(parity.get('max_relative_diff'), 2)} of the target's standard deviation "
            f"{number(parity.get('scale'))} (tolerance {number(tolerance, 2)})."
        )
    return start + (
        f"{parity.get('label_mismatches')} label mismatches, largest probability difference "
        f"{number(difference, 2)} (tolerance {number(tolerance, 2)})."
    )


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
    if base is None:
        return delta_table(rows, False, base_name)
    return "\n\n".join([delta_table(rows, True, base_name), UNMARKED_RESOURCES])


UNMARKED_RESOURCES = (
    "Resource changes are not marked: each is one measurement on whichever machine ran the "
    "pipeline, without a spread to tell a change from noise."
)
