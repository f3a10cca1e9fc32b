"""The report's serving section: ONNX parity and the resource profile of the packaged model.

What the package stage measured: whether onnxruntime predicts as scikit-learn did, and latency,
memory and size against the base's (unmarked: one measurement each, no spread).
"""

from __future__ import annotations

from mlops.report.compare import Delta
from mlops.report.inputs import Document, ReportInputs
from mlops.report.markdown import mark, number, section
from mlops.report.shared import delta_table, stale_note


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
