"""The report's other model sections: params, acceptance, champion, plots, slices, training.

Each compares what the model stages (train, evaluate, accept) wrote with the base's; the metrics
and their intervals are ``metrics_section``'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from mlops.report.compare import MISSING, Delta, lower_is_better, params_diff
from mlops.report.inputs import Document, Plot, ReportInputs
from mlops.report.markdown import BETTER, FAILED, details, mark, number, section, table
from mlops.report.shared import change_text, compared, stale_note
from mlops.report.tasks import (
    HEADLINE,
    METRIC_NAMES,
    POSITIVE_CLASS_PLOTS,
    SLICE_COMPARED,
    SLICE_METRICS,
    TASK_PLOTS,
    RunTask,
    run_task,
)


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
        rows.append([f"`{name}`", delta.current, delta.base, change_text(delta)])
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
            row += [delta.base, change_text(delta)]
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
        line += f" ({inputs.base_name}: {number(score.base)}, {change_text(score)})"
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
