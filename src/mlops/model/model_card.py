"""The model card (``model_card.md`` in the package): what the model is for, in the user's terms.

Pure formatting of what the package stage already holds (signature, manifest, reference profile,
verdict, evaluation metrics, parity report, resource profile), per task: a classifier's classes
and probabilities, or a regressor's target and errors in the target's units. Column and class
names are the user's, escaped for Markdown tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from mlops.core import artifacts
from mlops.model.summaries import Metrics, PackageManifest, ParityReport, ResourceProfile, Verdict


class CardReports(TypedDict):
    """What the stages before the card reported about the model."""

    verdict: Verdict
    evaluation: Metrics  # evaluate's, on the validation split
    parity: ParityReport
    resources: ResourceProfile


def model_card(
    signature: artifacts.Signature,
    manifest: PackageManifest,
    profile: Mapping[str, Any],
    reports: CardReports,
    target: Mapping[str, float | None],
) -> str:
    """``reports`` holds the ``verdict``, the ``evaluation`` metrics, the ``parity`` report and
    the ``resources`` profile; ``target`` the training target's summary (``target_summary``)."""
    sections = [
        _header(signature, manifest),
        _training_data(signature, profile, target),
        _features(signature),
        _metrics(reports["evaluation"], reports["verdict"]),
        _acceptance(reports["verdict"]),
        _serving(reports["parity"], reports["resources"]),
        _limitations(signature, profile, target),
        _lineage(manifest),
    ]
    return "\n\n".join(sections) + "\n"


def _header(signature: artifacts.Signature, manifest: PackageManifest) -> str:
    target = _code(signature["target"])
    features = f"the {len(signature['features'])} features below"
    if signature["task"] == "regression":
        what = (
            f"Predicts `{target}`, a number, from {features}, one record at a time or in "
            "batches, through the scoring service. It returns one value per record (a point "
            "estimate, without an interval)."
        )
    else:
        classes = ", ".join(signature["classes"])
        what = (
            f"Predicts `{target}` (one of: {classes}) from {features}, one record at a time or "
            "in batches, through the scoring service. It returns "
            f"{_decision(signature)} and the probability of every class."
        )
    return "\n".join(
        [
            f"# Model card: {signature['model_name']} {manifest['model_version']}",
            "",
            "## Intended use",
            "",
            f"{what} It is meant for data like the training data described here; it is not meant "
            "for records from another population or for decisions the metrics below do not "
            "support.",
        ]
    )


def _decision(signature: artifacts.Signature) -> str:
    threshold, positive = signature["threshold"], signature["positive_class"]
    if threshold is None:
        return "the most likely class"
    return (
        f"`{positive}` when its probability is at least {threshold:.4g} (the decision threshold "
        "chosen in evaluation), else the other class,"
    )


def _training_data(
    signature: artifacts.Signature, profile: Mapping[str, Any], target: Mapping[str, float | None]
) -> str:
    lines = ["## Training data", ""]
    if signature["task"] == "regression":
        lines += [
            f"{profile['rows']} labelled rows. Target `{_code(signature['target'])}`:",
            "",
            "| mean | standard deviation | min | median | max |",
            "|---:|---:|---:|---:|---:|",
            f"| {_number(target.get('mean'))} | {_number(target.get('std'))} | "
            f"{_number(target.get('min'))} | {_number(target.get('median'))} | "
            f"{_number(target.get('max'))} |",
        ]
        return "\n".join(lines)
    positive = signature["positive_class"]
    lines += [f"{profile['rows']} labelled rows. Class shares:", ""]
    lines += ["| class | share |", "|---|---:|"]
    lines += [
        f"| {_cell(label)}{' (positive class)' if label == positive else ''} | {share:.1%} |"
        for label, share in profile["classes"].items()
    ]
    return "\n".join(lines)


def _features(signature: artifacts.Signature) -> str:
    lines = ["## Features", "", "| feature | type | seen in training |", "|---|---|---|"]
    for feature in signature["features"]:
        if feature["type"] == "number":
            seen = f"{_number(feature['min'])} to {_number(feature['max'])}"
        else:
            seen = ", ".join(_cell(category) for category in feature["categories"] or [])
        lines.append(f"| {_cell(feature['name'])} | {feature['type']} | {seen} |")
    lines += [
        "",
        "Every feature may be missing: numbers are imputed, a missing category is its own.",
    ]
    return "\n".join(lines)


def _metrics(evaluation: Metrics, verdict: Verdict) -> str:
    test = verdict["metrics"]
    validation = {k: v for k, v in evaluation.items() if _is_number(v)}
    names = sorted(set(validation) | {k for k, v in test.items() if _is_number(v)})
    lines = ["## Metrics", "", "| metric | validation set | test set |", "|---|---:|---:|"]
    lines += [
        f"| {name} | {_number(validation.get(name))} | {_number(test.get(name))} |"
        for name in names
    ]
    for name, slices in test.items():
        if name.startswith("slice_") and isinstance(slices, Mapping) and slices:
            metric = name.removeprefix("slice_")
            lines += [
                "",
                f"{metric} per slice (test set):",
                "",
                f"| slice | {metric} |",
                "|---|---:|",
            ]
            lines += [f"| {_cell(value)} | {_number(score)} |" for value, score in slices.items()]
    return "\n".join(lines)


def _acceptance(verdict: Verdict) -> str:
    lines = [
        "## Acceptance test",
        "",
        f"Verdict: {'passed' if verdict['passed'] else 'failed'}.",
        "",
        "| check | value | threshold | passed |",
        "|---|---:|---:|---|",
    ]
    for check in verdict["checks"]:
        lines.append(
            f"| {_cell(check['name'])} | {_number(check['value'])} | "
            f"{_number(check['threshold'])} | {'yes' if check['passed'] else 'no'} |"
        )
    champion = verdict.get("champion")
    lines += [
        "",
        f"Champion: {champion.get('model_version', 'invalid')} at {champion['path']}."
        if champion
        else "Champion: none (first accepted model).",
    ]
    return "\n".join(lines)


def _serving(parity: ParityReport, resources: ResourceProfile) -> str:
    latency = resources["latency"]
    requests = resources["kubernetes"]["requests"]
    limits = resources["kubernetes"]["limits"]
    return "\n".join(
        [
            "## Serving",
            "",
            _parity(parity),
            "",
            f"Latency with one thread: one row {latency['rows_1']['median_ms']:.3f} ms median, "
            f"{latency['rows_1']['p99_ms']:.3f} ms p99; 1,000 rows "
            f"{latency['rows_1000']['median_ms']:.2f} ms median, "
            f"{latency['rows_1000']['p99_ms']:.2f} ms p99. Peak memory of a scoring process: "
            f"{resources['memory']['peak_rss_mib']:.0f} MiB. Suggested Kubernetes requests "
            f"{requests['cpu']} CPU / {requests['memory']}, limits {limits['cpu']} / "
            f"{limits['memory']}.",
        ]
    )


def _parity(parity: ParityReport) -> str:
    if parity["task"] == "regression":
        return (
            f"ONNX parity on {parity['rows']} test rows: max prediction difference "
            f"{_number(parity['max_abs_diff'])}, {_number(parity['max_relative_diff'])} of the "
            f"training target's standard deviation (tolerance {parity['tolerance']:.2g})."
        )
    return (
        f"ONNX parity on {parity['rows']} test rows: {parity['label_mismatches']} label "
        f"mismatches, max probability difference {_number(parity['max_abs_diff'])} "
        f"(tolerance {parity['tolerance']:.2g})."
    )


def _limitations(
    signature: artifacts.Signature, profile: Mapping[str, Any], target: Mapping[str, float | None]
) -> str:
    lines = [
        "## Limitations",
        "",
        f"- Trained on {profile['rows']} rows; metrics on small slices are noisy.",
        "- A category not seen in training is accepted but carries no information "
        "(its one-hot columns are all zero); the monitoring sidecar reports it as drift.",
        "- Numbers outside the training range are accepted; the model extrapolates "
        "(tree models flatten out at the range's edge).",
    ]
    if signature["task"] == "regression":
        lines += [
            "- Predictions are point estimates; the test RMSE above is the typical size of an "
            "error, in the target's units.",
            f"- Tree models never predict outside the training target's range "
            f"({_number(target.get('min'))} to {_number(target.get('max'))}).",
        ]
    else:
        lines += [
            "- Probabilities are not calibrated beyond what the model family provides; read "
            "the calibration plot of the evaluate stage before using them as risks.",
            f"- It knows only the classes {', '.join(signature['classes'])}.",
        ]
    return "\n".join(lines)


def _lineage(manifest: PackageManifest) -> str:
    lineage = manifest["lineage"]
    return "\n".join(
        [
            "## Lineage",
            "",
            f"- model version: {manifest['model_version']}",
            f"- created: {lineage['created']}",
            f"- git commit: {lineage['git_commit']}",
            f"- training data md5 (DVC): {lineage['data_hash']}",
            f"- params sha256: {lineage['params_hash']}",
            "- every packaged file's sha256: manifest.json",
        ]
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: object) -> str:
    return f"{value:.4g}" if _is_number(value) else ""


def _cell(text: object) -> str:
    """A name inside a Markdown table cell: a ``|`` would end the cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """A name inside inline code: a backtick would end it."""
    return text.replace("`", "'")
