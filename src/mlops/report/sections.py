"""The pull request report: ``build_report`` puts the sections in order under one header.

The header (the verdict, the base compared with, the task) and "Why this retrain" are here, with
the frame: the order of the sections and the cut that keeps the text within a pull request body.
The sections themselves live by concern, each a pure function of the loaded inputs returning
markdown: ``metrics_section`` (the metrics, their changes and intervals), ``model_sections``
(params, acceptance, champion, plots, slices, training), ``data_section`` (validation, rows
through the data stages, profile), ``serving_section`` (ONNX parity and resources); ``shared``
holds what several of them use, so no section module imports another.
"""

from __future__ import annotations

from mlops.report.data_section import data_section
from mlops.report.inputs import Document, ReportInputs
from mlops.report.markdown import FAILED, PASSED, WARNING, number, section, table
from mlops.report.metrics_section import metrics_section
from mlops.report.model_sections import (
    acceptance_section,
    champion_section,
    params_section,
    plots_section,
    slices_section,
    training_section,
)
from mlops.report.serving_section import serving_section
from mlops.report.shared import failed_reports, not_reproduced
from mlops.report.tasks import METRIC_NAMES, incomparable, run_task

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


def verdict_line(inputs: ReportInputs) -> str:
    """Accepted, rejected, invalid data, or incomplete (a stage failed for another reason)."""
    verdict = inputs.current.get("verdict")
    failed = failed_reports(inputs)
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
