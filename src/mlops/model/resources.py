"""The resource profile of a packaged model: what it costs to serve, measured as the scorer runs it.

- latency (onnxruntime with one intra-op thread, as the scorer opens a session): one row and
  1,000 rows, median and p99 over at most ``LATENCY_RUNS`` runs of ``LATENCY_SECONDS`` each,
  after a warm-up run;
- memory: a fresh Python process that imports only numpy and onnxruntime, loads the model and
  scores ``MEMORY_PROBE_ROWS`` rows; its peak RSS, and its RSS before loading the model;
- the Kubernetes requests and limits for the scorer container that follow from both
  (``kubernetes_resources``), which ``deploy/`` takes from ``resources.json``.

The numbers vary from run to run, so they live in ``resources.json`` and the model card only,
never in what the model version hashes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlops.model import onnx_export
from mlops.model.onnx_export import Feed
from mlops.model.summaries import KubernetesResources, Latency, ResourceProfile, cell
from mlops.stage import StageError

if TYPE_CHECKING:
    import onnxruntime

# Bounds of the latency measurement: runs per batch size, and seconds per batch size at most.
LATENCY_RUNS = {1: 500, 1000: 50}
LATENCY_SECONDS = 10.0
MEMORY_PROBE_ROWS = 1000
# How requests and limits follow from the measurements (see docs/model-accept-package.md).
SERVER_OVERHEAD_MIB = 64  # the web server, prediction log and metrics around the model
MEMORY_HEADROOM = 1.25
TARGET_REQUESTS_PER_SECOND = 50
MIN_CPU_MILLICORES = 100
CPU_LIMIT_MILLICORES = 1000
MIB = 1 << 20
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


def take_rows(feed: Feed, rows: np.ndarray) -> Feed:
    return {name: values[rows] for name, values in feed.items()}


def measure_latency(
    session: onnxruntime.InferenceSession,
    feed: Feed,
    batch_rows: int,
    runs: int,
    max_seconds: float,
) -> Latency:
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
    columns = {name: [cell(v) for v in values[:, 0]] for name, values in batch.items()}
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


def profile_resources(onnx_model: bytes, feed: Feed) -> ResourceProfile:
    """Latency with one intra-op thread, peak memory of a scoring process, Kubernetes sizing."""
    import onnxruntime

    session = onnx_export.open_session(onnx_model)
    latency = {
        f"rows_{rows}": measure_latency(session, feed, rows, runs, LATENCY_SECONDS)
        for rows, runs in LATENCY_RUNS.items()
    }
    memory = measure_scoring_memory(onnx_model, feed, MEMORY_PROBE_ROWS)
    return {
        "onnxruntime": onnxruntime.__version__,
        "intra_op_num_threads": 1,
        "model_bytes": len(onnx_model),
        "latency": latency,
        "memory": {
            "rows": memory["rows"],
            "runtime_rss_mib": memory["runtime_rss_bytes"] / MIB,
            "peak_rss_mib": memory["peak_rss_bytes"] / MIB,
            "model_rss_mib": (memory["peak_rss_bytes"] - memory["runtime_rss_bytes"]) / MIB,
        },
        "kubernetes": kubernetes_resources(
            latency["rows_1"]["median_ms"], memory["peak_rss_bytes"]
        ),
    }


def kubernetes_resources(single_row_median_ms: float, peak_rss_bytes: int) -> KubernetesResources:
    """Requests and limits for the scorer container, derived from the measurements.

    Memory: peak RSS of the scoring process plus the server's overhead, with headroom, rounded up
    to 16 MiB; the limit is twice the request. CPU: enough to serve
    ``TARGET_REQUESTS_PER_SECOND`` single-row requests at the measured median latency, twice over,
    between ``MIN_CPU_MILLICORES`` and the limit, one core (the model uses one intra-op thread):
    past one core, add replicas instead.
    """
    memory_mib = (peak_rss_bytes / MIB + SERVER_OVERHEAD_MIB) * MEMORY_HEADROOM
    memory_request = int(-(-memory_mib // 16) * 16)
    cpu_millicores = single_row_median_ms * TARGET_REQUESTS_PER_SECOND * 2
    cpu_request = min(
        CPU_LIMIT_MILLICORES, max(MIN_CPU_MILLICORES, int(-(-cpu_millicores // 50) * 50))
    )
    return {
        "requests": {"cpu": f"{cpu_request}m", "memory": f"{memory_request}Mi"},
        "limits": {"cpu": f"{CPU_LIMIT_MILLICORES}m", "memory": f"{2 * memory_request}Mi"},
    }
