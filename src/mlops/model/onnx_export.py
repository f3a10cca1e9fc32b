"""ONNX conversion of the fitted pipeline, and scoring the ONNX model the way the scorer does.

The ONNX model takes one ``[n, 1]`` tensor per feature column (float32 with NaN for a missing
number, string with ``MISSING_CATEGORY`` for a missing category), named by the signature's
``input_name`` (``artifacts.input_names`` of the column names), and answers ``label`` and
``probabilities`` (a classifier) or ``prediction`` (a regressor). ``onnx_feed`` builds exactly that
feed from a table with ``features.model_input``, and ``score_classifier`` / ``score_regressor``
read it, so the parity gate, the champion comparison and the resource profile all score the model
as production does.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops.core import artifacts
from mlops.core.artifacts import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT, Signature
from mlops.core.decision import apply_threshold
from mlops.model.features import FeatureSpec, TrainedModel, model_input
from mlops.stage import StageError

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    from sklearn.pipeline import Pipeline

Feed = dict[str, np.ndarray]
WORST_ROWS = 5
GRAPH_NAME = "pipeline"  # skl2onnx would name the graph with a random UUID: not reproducible
# The scoring probe runs in a fresh interpreter with only what the scorer imports (numpy and
# onnxruntime), loads the model, scores the rows once and prints its own peak resident set size
# in bytes. On Linux that is VmHWM: getrusage's ru_maxrss survives exec, so a child would report
# the high-water mark of the (much larger) packaging process it was forked from.
_SCORING_PROBE = """
import json, resource, sys
import numpy as np
import onnxruntime as ort

def peak_rss():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024

model_path, rows_path = sys.argv[1], sys.argv[2]
runtime_rss = peak_rss()
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
with open(rows_path) as file:
    columns = json.load(file)
feed = {}
for spec in session.get_inputs():
    values = columns[spec.name]
    if spec.type == "tensor(float)":
        array = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
    else:
        array = np.array(values, dtype=object)
    feed[spec.name] = array.reshape(-1, 1)
outputs = session.run(None, feed)
print(json.dumps({"rows": len(outputs[0]), "runtime_rss": runtime_rss, "peak_rss": peak_rss()}))
"""


def spec_of(signature: Signature) -> FeatureSpec:
    """The feature spec a packaged model's signature describes (to score a champion package)."""
    features = tuple(feature["name"] for feature in signature["features"])
    numeric = tuple(f["name"] for f in signature["features"] if f["type"] == "number")
    categorical = tuple(f["name"] for f in signature["features"] if f["type"] == "string")
    return FeatureSpec(numeric=numeric, categorical=categorical, features=features)


def input_names_of(signature: Signature) -> dict[str, str]:
    """Column name -> ONNX input name as the package recorded it (old packages: the column)."""
    return {feature["name"]: feature["input_name"] for feature in signature["features"]}


def convert(model: TrainedModel, target_opset: int) -> onnx.ModelProto:
    """The pipeline in ONNX: a ``[None, 1]`` input per feature named by ``artifacts.input_names``,
    and the task's outputs (``label`` and ``probabilities``, or ``prediction``).

    skl2onnx finds a column transformer's columns by the names it is given, so it converts with
    the user's column names (and placeholder output names, as a feature may be called ``label``);
    its own renaming of those names may differ from ours, so the graph's inputs and outputs are
    renamed afterwards (``rename_values``).
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    spec = model.spec
    try:
        input_names = artifacts.input_names(spec.features)
    except artifacts.ArtifactError as error:
        raise StageError(f"the model's features cannot be ONNX inputs: {error}") from None
    inputs = [
        (name, FloatTensorType([None, 1]) if name in spec.numeric else StringTensorType([None, 1]))
        for name in spec.features
    ]
    outputs = _output_types(model, _placeholder(spec.features))
    options = {} if model.task == "regression" else {"zipmap": False}
    try:
        converted = convert_sklearn(
            with_float32_thresholds(model.pipeline),
            name=GRAPH_NAME,
            initial_types=inputs,
            final_types=outputs,
            target_opset=target_opset,
            options=options,
        )
    except Exception as error:  # skl2onnx raises many types for an unsupported model or opset
        raise StageError(
            f"skl2onnx cannot convert this pipeline at opset {target_opset} "
            f"({type(error).__name__}: {error})"
        ) from None
    graph = converted.graph
    renames = dict(
        zip(
            [value.name for value in graph.input],
            input_names.values(),
            strict=True,
        )
    )
    renames.update(
        zip([value.name for value in graph.output], artifacts.output_names(model.task), strict=True)
    )
    rename_values(graph, renames)
    _sort_opsets(converted)
    return converted


def _sort_opsets(model: onnx.ModelProto) -> None:
    """skl2onnx lists the operator sets it used in set order, which follows Python's per-process
    string hashing: sorted by domain, the same model always serialises to the same bytes."""
    opsets = sorted(model.opset_import, key=lambda opset: opset.domain)
    copies = [type(opset)(domain=opset.domain, version=opset.version) for opset in opsets]
    del model.opset_import[:]
    model.opset_import.extend(copies)


def _placeholder(features: Sequence[str]) -> str:
    """A prefix for the conversion's output names that no feature name starts with."""
    prefix = "mlops_output_"
    while any(name.startswith(prefix) for name in features):
        prefix = f"_{prefix}"
    return prefix


def _output_types(model: TrainedModel, prefix: str) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if model.task == "regression":
        return [(prefix + PREDICTION_OUTPUT, FloatTensorType([None, 1]))]
    return [
        (prefix + LABEL_OUTPUT, StringTensorType([None])),
        (prefix + PROBABILITIES_OUTPUT, FloatTensorType([None, len(model.classes)])),
    ]


def rename_values(graph: onnx.GraphProto, renames: Mapping[str, str]) -> None:
    """Rename values of ``graph`` (inputs, outputs, initializers, every node's inputs and outputs,
    subgraphs included); a value already called by a new name is first given another name."""
    taken = set(_value_names(graph))
    wanted = set(renames.values())
    plan = dict(renames)
    for clashing in sorted((taken & wanted) - set(renames)):
        plan[clashing] = _fresh_name(clashing, taken | wanted | set(plan.values()))
    _apply_renames(graph, plan)


def _value_names(graph: onnx.GraphProto) -> Iterator[str]:
    yield from (value.name for value in (*graph.input, *graph.output, *graph.value_info))
    yield from (tensor.name for tensor in graph.initializer)
    for node in graph.node:
        yield from (*node.input, *node.output)
        for subgraph in _subgraphs(node):
            yield from _value_names(subgraph)


def _fresh_name(name: str, taken: set[str]) -> str:
    number = 1
    while f"{name}_{number}" in taken:
        number += 1
    return f"{name}_{number}"


def _apply_renames(graph: onnx.GraphProto, plan: Mapping[str, str]) -> None:
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = plan.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [plan.get(name, name) for name in node.input]
        node.output[:] = [plan.get(name, name) for name in node.output]
        for subgraph in _subgraphs(node):
            _apply_renames(subgraph, plan)


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def with_float32_thresholds(pipeline: Pipeline) -> Pipeline:
    """A copy whose tree split thresholds are the largest float32 not above the original ones.

    scikit-learn compares a float32 feature value, widened to double, with a double threshold;
    an ONNX tree ensemble holds float32 thresholds, and a threshold rounded up past a value flips
    the comparison (a test value of 45.9 between the training values 45.8 and 46.0 goes right in
    scikit-learn and left in ONNX). For float32 inputs, all the model ever sees, a threshold
    rounded down makes exactly the same decisions in both.
    """
    snapped = copy.deepcopy(pipeline)
    for thresholds in _tree_thresholds(snapped[-1]):
        rounded = thresholds.astype(np.float32)
        too_high = rounded.astype(np.float64) > thresholds
        rounded[too_high] = np.nextafter(rounded[too_high], np.float32(-np.inf))
        thresholds[:] = rounded
    return snapped


def _tree_thresholds(estimator: Any) -> Iterator[np.ndarray]:
    """Writable views of the split thresholds of every tree of a tree ensemble."""
    for tree in np.ravel(getattr(estimator, "estimators_", [])):  # forests, gradient boosting
        if hasattr(tree, "tree_"):
            yield tree.tree_.threshold
    for predictors in getattr(estimator, "_predictors", []):  # histogram gradient boosting
        for predictor in predictors:
            yield predictor.nodes["num_threshold"]


def set_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    """Store ``metadata`` in the model's ``metadata_props`` (visible to any ONNX runtime), in
    key order, replacing what was there."""
    import onnx

    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {key: metadata[key] for key in sorted(metadata)})


def open_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """An onnxruntime session as the scorer opens it: CPU, one intra-op and one inter-op thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_feed(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    where: str = "table",
    input_names: Mapping[str, str] | None = None,
) -> Feed:
    """One ``[n, 1]`` array per feature column, typed as the scorer types a request and keyed by
    the ONNX input name (``input_names``: column -> input name; by default
    ``artifacts.input_names``, what the package stage names the inputs)."""
    typed = model_input(frame, spec, where)
    names = artifacts.input_names(spec.features) if input_names is None else input_names
    return {
        names[name]: typed[name]
        .to_numpy(dtype=np.float32 if name in spec.numeric else object)
        .reshape(-1, 1)
        for name in spec.features
    }


def signature_feed(frame: pd.DataFrame, signature: Signature, where: str = "table") -> Feed:
    """``onnx_feed`` for a packaged model (a champion): its features, its input names."""
    return onnx_feed(frame, spec_of(signature), where, input_names_of(signature))


def score_classifier(
    session: onnxruntime.InferenceSession,
    feed: Feed,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, probabilities)`` of a classifier: string labels ``[n]`` and float64
    probabilities ``[n, len(classes)]``. With a ``threshold`` (binary models; pass the
    signature's ``classes``, ``positive_class`` and ``threshold``), the labels follow
    ``decision.apply_threshold`` as the scorer's do; without one, the model's own labels."""
    labels, probabilities = session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], feed)
    if threshold is not None:
        if positive_class is None:
            raise StageError("a decision threshold needs the positive class")
        labels = apply_threshold(probabilities, classes, positive_class, threshold)
    return np.asarray(labels).astype(str), np.asarray(probabilities, dtype=np.float64)


def score_regressor(session: onnxruntime.InferenceSession, feed: Feed) -> np.ndarray:
    """A regressor's predictions, float64 ``[n]`` (the model computes them in float32)."""
    (predictions,) = session.run([PREDICTION_OUTPUT], feed)
    return np.asarray(predictions, dtype=np.float64).reshape(-1)


def parity_report(
    features: pd.DataFrame,
    classes: Sequence[str],
    expected: tuple[np.ndarray, np.ndarray],
    actual: tuple[np.ndarray, np.ndarray],
    tolerance: float,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Compare a classifier's scikit-learn ``(labels, probabilities)`` with ONNX's, row by row
    (labels after the decision ``threshold``, if any, on both sides).

    Passes when every label is identical and no probability differs by more than ``tolerance``;
    ``worst_rows`` lists the rows with the largest difference (label mismatches first).
    """
    expected_labels, expected_probabilities = expected
    actual_labels, actual_probabilities = actual
    differences = _finite(np.abs(expected_probabilities - actual_probabilities).max(axis=1))
    mismatched = expected_labels.astype(str) != actual_labels.astype(str)
    max_abs_diff = float(differences.max()) if len(differences) else 0.0
    order = np.lexsort((-differences, ~mismatched))[:WORST_ROWS]
    return {
        "task": "classification",
        "rows": len(features),
        "max_abs_diff": _json_value(max_abs_diff),
        "label_mismatches": int(mismatched.sum()),
        "threshold": threshold,
        "tolerance": tolerance,
        "passed": bool(not mismatched.any() and max_abs_diff <= tolerance),
        "worst_rows": [
            {
                "row": _json_value(features.index[i]),
                "features": _row_features(features, i),
                "max_abs_diff": _json_value(float(differences[i])),
                "sklearn": _prediction(expected_labels[i], expected_probabilities[i], classes),
                "onnx": _prediction(actual_labels[i], actual_probabilities[i], classes),
            }
            for i in order
        ],
    }


def regression_parity_report(
    features: pd.DataFrame,
    expected: np.ndarray,
    actual: np.ndarray,
    scale: float,
    tolerance: float,
) -> dict[str, Any]:
    """Compare a regressor's scikit-learn predictions with ONNX's, row by row, relative to
    ``scale`` (the training target's standard deviation, ``target_scale``).

    Passes when no |sklearn - onnx| exceeds ``tolerance`` x ``scale``; ``worst_rows`` lists the
    rows with the largest difference.
    """
    differences = _finite(np.abs(expected - actual))
    max_abs_diff = float(differences.max()) if len(differences) else 0.0
    order = np.argsort(-differences, kind="stable")[:WORST_ROWS]
    return {
        "task": "regression",
        "rows": len(features),
        "max_abs_diff": _json_value(max_abs_diff),
        "scale": scale,
        "max_relative_diff": _json_value(max_abs_diff / scale),
        "tolerance": tolerance,
        "passed": bool(max_abs_diff <= tolerance * scale),
        "worst_rows": [
            {
                "row": _json_value(features.index[i]),
                "features": _row_features(features, i),
                "abs_diff": _json_value(float(differences[i])),
                "sklearn": {"prediction": _json_value(float(expected[i]))},
                "onnx": {"prediction": _json_value(float(actual[i]))},
            }
            for i in order
        ],
    }


def target_scale(target: pd.Series) -> float:
    """The scale a regressor's parity is judged on: the standard deviation of its training target,
    or, for a constant target, its magnitude (at least 1)."""
    values = target.to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    spread = float(values.std()) if len(values) > 1 else 0.0
    if spread > 0:
        return spread
    return max(abs(float(values.mean())) if len(values) else 0.0, 1.0)


def parity_failure(report: Mapping[str, Any]) -> str:
    """A readable account of a failed parity gate, naming the worst rows."""
    if report.get("task") == "regression":
        lines = [
            f"ONNX parity failed on {report['rows']} test rows: max |sklearn - onnx| prediction "
            f"{_shown(report['max_abs_diff'])}, {_shown(report['max_relative_diff'])} of the "
            f"training target's standard deviation {report['scale']:.4g} (tolerance "
            f"{report['tolerance']:.3g}). Worst rows:"
        ]
        lines += [
            f"  row {row['row']}: sklearn {row['sklearn']['prediction']} vs onnx "
            f"{row['onnx']['prediction']}; features {row['features']}"
            for row in report["worst_rows"]
        ]
        return "\n".join(lines)
    lines = [
        f"ONNX parity failed on {report['rows']} test rows: {report['label_mismatches']} label "
        f"mismatch(es), max |sklearn - onnx| probability {_shown(report['max_abs_diff'])} "
        f"(tolerance {report['tolerance']:.3g}). Worst rows:"
    ]
    for row in report["worst_rows"]:
        sklearn, onnx = row["sklearn"], row["onnx"]
        lines.append(
            f"  row {row['row']}: sklearn {sklearn['label']} {sklearn['probabilities']}"
            f" vs onnx {onnx['label']} {onnx['probabilities']}; features {row['features']}"
        )
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "not a number" if value is None else f"{value:.3g}"


def _finite(differences: np.ndarray) -> np.ndarray:
    """Differences with NaN (a model answering NaN) as infinity: the worst, and failing."""
    return np.where(np.isnan(differences), np.inf, differences)


def _row_features(features: pd.DataFrame, position: int) -> dict[str, Any]:
    return {str(k): _json_value(v) for k, v in features.iloc[position].items()}


def _prediction(label: object, probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    return {
        "label": str(label),
        "probabilities": {
            c: _json_value(float(p)) for c, p in zip(classes, probabilities, strict=True)
        },
    }


def _json_value(value: object) -> Any:
    """A table cell or a number as plain JSON: numpy scalars unwrapped, NaN and infinities as
    null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def take_rows(feed: Feed, rows: np.ndarray) -> Feed:
    return {name: values[rows] for name, values in feed.items()}


def measure_latency(
    session: onnxruntime.InferenceSession,
    feed: Feed,
    batch_rows: int,
    runs: int,
    max_seconds: float,
) -> dict[str, float]:
    """Median and p99 wall time of scoring ``batch_rows`` rows (cycling through ``feed``).

    At most ``runs`` timed runs after one warm-up, and fewer if ``max_seconds`` run out.
    """
    available = len(next(iter(feed.values())))
    batches = [
        take_rows(feed, (np.arange(batch_rows) + start) % available)
        for start in range(min(runs, available))
    ]
    session.run(None, batches[0])
    timings: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for run in range(runs):
        start = time.perf_counter()
        session.run(None, batches[run % len(batches)])
        timings.append(time.perf_counter() - start)
        if time.perf_counter() > deadline:
            break
    milliseconds = np.array(timings) * 1000
    return {
        "rows": batch_rows,
        "runs": len(timings),
        "median_ms": float(np.median(milliseconds)),
        "p99_ms": float(np.quantile(milliseconds, 0.99)),
    }


def measure_scoring_memory(model: bytes, feed: Feed, rows: int) -> dict[str, int]:
    """Peak RSS of a fresh process that loads the model and scores ``rows`` rows once.

    ``runtime_rss_bytes`` is the same process before it loads the model (Python, numpy and
    onnxruntime alone), so the difference is what the model itself costs.
    """
    available = len(next(iter(feed.values())))
    batch = take_rows(feed, np.arange(rows) % available)
    columns = {name: [_json_value(v) for v in values[:, 0]] for name, values in batch.items()}
    with tempfile.TemporaryDirectory() as scratch:
        model_path, rows_path = Path(scratch) / "model.onnx", Path(scratch) / "rows.json"
        model_path.write_bytes(model)
        rows_path.write_text(json.dumps(columns))
        probe = subprocess.run(
            [sys.executable, "-c", _SCORING_PROBE, str(model_path), str(rows_path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if probe.returncode != 0:
        raise StageError(f"the scoring probe could not score the model: {probe.stderr.strip()}")
    report = json.loads(probe.stdout)
    return {
        "rows": int(report["rows"]),
        "runtime_rss_bytes": int(report["runtime_rss"]),
        "peak_rss_bytes": int(report["peak_rss"]),
    }
