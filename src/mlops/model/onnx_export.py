"""ONNX conversion of the fitted pipeline, and scoring the ONNX model the way the scorer does.

The scorer feeds one ``[n, 1]`` tensor per feature column (float32 with NaN for a missing number,
string with ``MISSING_CATEGORY`` for a missing category) and reads ``label`` and ``probabilities``.
``onnx_feed`` builds exactly that feed from a table with ``features.model_input``, so the parity
gate, the champion comparison and the resource profile all score the model as production does.
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

from mlops.artifacts import LABEL_OUTPUT, PROBABILITIES_OUTPUT, Signature
from mlops.model.features import FeatureSpec, model_input
from mlops.stage import StageError

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    from sklearn.pipeline import Pipeline

Feed = dict[str, np.ndarray]
WORST_ROWS = 5
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
labels, probabilities = session.run(None, feed)
print(json.dumps({"rows": len(labels), "runtime_rss": runtime_rss, "peak_rss": peak_rss()}))
"""


def spec_of(signature: Signature) -> FeatureSpec:
    """The feature spec a packaged model's signature describes (to score a champion package)."""
    features = tuple(feature["name"] for feature in signature["features"])
    numeric = tuple(f["name"] for f in signature["features"] if f["type"] == "number")
    categorical = tuple(f["name"] for f in signature["features"] if f["type"] == "string")
    return FeatureSpec(numeric=numeric, categorical=categorical, features=features)


def convert(
    pipeline: Pipeline, spec: FeatureSpec, classes: Sequence[str], target_opset: int
) -> onnx.ModelProto:
    """The pipeline in ONNX: a ``[None, 1]`` input per feature, ``label`` and ``probabilities``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [
        (name, FloatTensorType([None, 1]) if name in spec.numeric else StringTensorType([None, 1]))
        for name in spec.features
    ]
    outputs = [
        (LABEL_OUTPUT, StringTensorType([None])),
        (PROBABILITIES_OUTPUT, FloatTensorType([None, len(classes)])),
    ]
    try:
        return convert_sklearn(
            with_float32_thresholds(pipeline),
            initial_types=inputs,
            final_types=outputs,
            target_opset=target_opset,
            options={"zipmap": False},
        )
    except Exception as error:  # skl2onnx raises many types for an unsupported model or opset
        raise StageError(
            f"skl2onnx cannot convert this pipeline at opset {target_opset} "
            f"({type(error).__name__}: {error})"
        ) from None


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
    """Store ``metadata`` in the model's ``metadata_props`` (visible to any ONNX runtime)."""
    import onnx

    onnx.helper.set_model_props(model, dict(metadata))


def open_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """An onnxruntime session as the scorer opens it: CPU, one intra-op and one inter-op thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_feed(frame: pd.DataFrame, spec: FeatureSpec, where: str = "table") -> Feed:
    """One ``[n, 1]`` array per feature column, typed as the scorer types a request."""
    typed = model_input(frame, spec, where)
    return {
        name: typed[name]
        .to_numpy(dtype=np.float32 if name in spec.numeric else object)
        .reshape(-1, 1)
        for name in spec.features
    }


def score(session: onnxruntime.InferenceSession, feed: Feed) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, probabilities)`` from the ONNX model's named outputs."""
    labels, probabilities = session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], feed)
    return np.asarray(labels).astype(str), np.asarray(probabilities, dtype=np.float64)


def parity_report(
    features: pd.DataFrame,
    classes: Sequence[str],
    expected: tuple[np.ndarray, np.ndarray],
    actual: tuple[np.ndarray, np.ndarray],
    tolerance: float,
) -> dict[str, Any]:
    """Compare scikit-learn's ``(labels, probabilities)`` with ONNX's, row by row.

    Passes when every label is identical and no probability differs by more than ``tolerance``;
    ``worst_rows`` lists the rows with the largest difference (label mismatches first).
    """
    expected_labels, expected_probabilities = expected
    actual_labels, actual_probabilities = actual
    differences = np.abs(expected_probabilities - actual_probabilities).max(axis=1)
    mismatched = expected_labels.astype(str) != actual_labels.astype(str)
    max_abs_diff = float(differences.max()) if len(differences) else 0.0
    order = np.lexsort((-differences, ~mismatched))[:WORST_ROWS]
    return {
        "rows": len(features),
        "max_abs_diff": max_abs_diff,
        "label_mismatches": int(mismatched.sum()),
        "tolerance": tolerance,
        "passed": bool(not mismatched.any() and max_abs_diff <= tolerance),
        "worst_rows": [
            {
                "row": _json_value(features.index[i]),
                "features": {str(k): _json_value(v) for k, v in features.iloc[i].items()},
                "max_abs_diff": float(differences[i]),
                "sklearn": _prediction(expected_labels[i], expected_probabilities[i], classes),
                "onnx": _prediction(actual_labels[i], actual_probabilities[i], classes),
            }
            for i in order
        ],
    }


def parity_failure(report: Mapping[str, Any]) -> str:
    """A readable account of a failed parity gate, naming the worst rows."""
    lines = [
        f"ONNX parity failed on {report['rows']} test rows: {report['label_mismatches']} label "
        f"mismatch(es), max |sklearn - onnx| probability {report['max_abs_diff']:.3g} "
        f"(tolerance {report['tolerance']:.3g}). Worst rows:"
    ]
    for row in report["worst_rows"]:
        sklearn, onnx = row["sklearn"], row["onnx"]
        lines.append(
            f"  row {row['row']}: sklearn {sklearn['label']} {sklearn['probabilities']}"
            f" vs onnx {onnx['label']} {onnx['probabilities']}; features {row['features']}"
        )
    return "\n".join(lines)


def _prediction(label: object, probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    return {
        "label": str(label),
        "probabilities": {c: float(p) for c, p in zip(classes, probabilities, strict=True)},
    }


def _json_value(value: object) -> Any:
    """A table cell as plain JSON: numpy scalars unwrapped, NaN as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
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
