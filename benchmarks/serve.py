"""Scoring service benchmark: wrk against the scorer, the HTTP floor and the model floor, one run.

    python benchmarks/serve.py --output reports/bench/serve.json [--model-dir models/package]
    python benchmarks/serve.py --quick --output /tmp/serve.json     # a few seconds, for smoke tests
    python benchmarks/serve.py --baseline-rev main --output /tmp/serve.json   # also against main

Three things are measured on the same machine in the same run:

- the scorer (``python -m mlops.serve``, default settings: validation, prediction log and metrics
  all on) with wrk: single-record ``/predict`` at concurrency 1 and 16, and 1,000-record batches;
  the Open Inference Protocol V2 the same way over REST JSON, REST binary tensors (the binary
  tensor data extension, binary outputs) and gRPC (h2load, Debian package ``nghttp2-client``:
  raw tensors as tritonclient sends them); then single records at 16 and the batches again with
  ``SCORER_WORKERS=2`` (one worker process per core here);
- the HTTP floor: a constant endpoint on the same server stack (Starlette on the scorer's uvicorn
  configuration, with as many worker processes; and a ``grpc.aio`` server on its event loop
  answering ``ModelInfer`` with a constant response) that reads the same request bodies and
  answers without any work;
- the model floor: onnxruntime in-process on the same inputs, with the scorer's session options.

With ``--baseline-rev REV``, the scorer of another commit (its ``src/`` from ``git archive``, run
with this environment) is measured too, in the same run and the same configurations: single
records at concurrency 16 and the batches, alternating the two scorers for ``--baseline-rounds``
rounds each, so that both see the same machine load; the ratio of their medians is a target.

Prints a table and writes every number, the ratios and the targets as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TARGET_FLOOR_RATIO = 0.5  # scorer requests/s over the HTTP floor's at concurrency 16
TARGET_P99_MS = 10.0  # scorer p99 latency at concurrency 16
TARGET_BATCH_RECORDS_PER_SECOND = 250_000
TARGET_BASELINE_RATIO = 0.9  # throughput against the baseline commit's scorer, same run
# Batches as tensors (binary data, gRPC) against V2 JSON, records/s: the medians of the
# alternating rounds. Above 1: the tensor forms exist to save JSON's parse and checks.
TARGET_TENSORS_VS_JSON = 1.0
BASELINE_ROUNDS = 3
# The V2 forms of a batch (JSON, binary tensors, gRPC) measured again on the same scorer,
# alternating: as many rounds, each run half as long as the table's, so that the machine's drift
# during the run falls on every form alike and the ratios between them say how much one beats
# another (one run each, back to back, has put binary from 0.76 to 1.04 of JSON).
PROTOCOL_ROUNDS = 6
V2_FORMS = ("v2", "v2 binary", "grpc")  # the prefixes of their runs' names
BATCH_RECORDS = 1000
BATCH_CONCURRENCY = 4
WORKERS = 2  # the second configuration measured: a worker process per core of this machine
STARTUP_SECONDS = 60
LUA_POST = """
wrk.method = "POST"
{headers}
local file = io.open("{body}", "rb")
wrk.body = file:read("*a")
file:close()
"""
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


@dataclass
class WrkResult:
    name: str
    target: str
    connections: int
    records_per_request: int
    requests_per_second: float
    records_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu_us_per_request: float  # CPU the server process spent per request (0 off Linux)


@dataclass(frozen=True)
class Run:
    name: str
    path: str
    body: Path
    connections: int
    records: int
    workers: int = 1
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    grpc: bool = False  # h2load on the gRPC port instead of wrk


# --- the HTTP floor ------------------------------------------------------------------------------


def serve_floor(port: int, workers: int, grpc_port: int) -> None:
    """The floor app on the scorer's uvicorn configuration, in one process or ``workers``; with
    one process, also the gRPC floor on ``grpc_port``."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from mlops.serve.server import PortHolder, uvicorn_config

    # Worker processes import the app's factory by name: this file, as the module ``serve``.
    app = floor_app(grpc_port) if workers == 1 else f"{Path(__file__).stem}:floor_app"
    config = uvicorn_config(app, "127.0.0.1", port, 5, log_level="warning", workers=workers)
    if workers == 1:
        uvicorn.Server(config).run()
    else:
        Multiprocess(config, sockets=[PortHolder.on("127.0.0.1", port)]).run()


def floor_app(grpc_port: int = 0) -> Any:
    """A constant-JSON endpoint on the scorer's server stack: reads the body, does nothing else;
    with ``grpc_port``, a gRPC ``ModelInfer`` that parses the request and answers a constant."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    answer = b'{"request_id":"0","model_version":"floor","predictions":[]}'

    async def constant(request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        server = await grpc_floor(grpc_port) if grpc_port else None
        yield
        if server is not None:
            await server.stop(1)

    return Starlette(
        routes=[
            Route("/predict", constant, methods=["POST"]),
            Route("/v2/models/{name}/infer", constant, methods=["POST"]),
            Route("/health/ready", ready),
        ],
        lifespan=lifespan,
    )


async def grpc_floor(port: int) -> Any:
    """``ModelInfer`` on grpc.aio: the request parsed, a constant (empty) response."""
    import grpc

    from mlops.serve.grpc import open_inference_pb2 as pb

    answer = pb.ModelInferResponse(model_name="floor")

    async def infer(request: Any, context: Any) -> Any:
        return answer

    handler = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelInferResponse.SerializeToString,
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService", {"ModelInfer": handler}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"error: {url} exited with {process.returncode} before it was ready")
        with (
            suppress(OSError),
            urllib.request.urlopen(f"{url}/health/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"error: {url} not ready after {STARTUP_SECONDS}s")


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    grpc_url: str = ""  # http://127.0.0.1:<gRPC port> (h2load's form)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants (live ones: the worker processes)
    so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(map(cpu_seconds, children))


@contextmanager
def server(
    command: list[str], env: dict[str, str], port: int, output: Path, grpc_port: int = 0
) -> Iterator[Server]:
    url = f"http://127.0.0.1:{port}"
    with output.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, process)
        yield Server(url, process.pid, f"http://127.0.0.1:{grpc_port}" if grpc_port else "")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


# --- request bodies ------------------------------------------------------------------------------


def synthetic_records(signature: dict[str, Any], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Varied, valid records: numbers spread over the training range, every category in turn."""
    generator = random.Random(seed)
    records = []
    for number in range(count):
        record: dict[str, Any] = {}
        for feature in signature["features"]:
            if feature["type"] == "number":
                low = feature["min"] if feature["min"] is not None else 0.0
                high = feature["max"] if feature["max"] is not None else 1.0
                record[feature["name"]] = round(generator.uniform(low, high), 2)
            else:
                categories = feature["categories"] or ["example"]
                record[feature["name"]] = categories[number % len(categories)]
        records.append(record)
    return records


def v2_body(signature: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    inputs = [
        {
            "name": feature["name"],
            "shape": [len(records), 1],
            "datatype": "FP32" if feature["type"] == "number" else "BYTES",
            "data": [record[feature["name"]] for record in records],
        }
        for feature in signature["features"]
    ]
    return {"inputs": inputs}


def binary_body(signature: dict[str, Any], records: list[dict[str, Any]]) -> tuple[bytes, int]:
    """A V2 request under the binary tensor data extension, as tritonclient.http sends one by
    default (every input as bytes after the JSON, every output asked as binary data), and the
    length of its JSON header."""
    import numpy as np

    tensors, blobs = [], []
    for feature in signature["features"]:
        values = [record[feature["name"]] for record in records]
        if feature["type"] == "number":
            blob, datatype = np.asarray(values, "<f4").tobytes(), "FP32"
        else:
            texts = [str(value).encode() for value in values]
            blob = b"".join(len(text).to_bytes(4, "little") + text for text in texts)
            datatype = "BYTES"
        size = {"binary_data_size": len(blob)}
        tensors.append(
            {
                "name": feature["name"],
                "shape": [len(values), 1],
                "datatype": datatype,
                "parameters": size,
            }
        )
        blobs.append(blob)
    header = json.dumps({"inputs": tensors, "parameters": {"binary_data_output": True}}).encode()
    return header + b"".join(blobs), len(header)


def grpc_body(signature: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    """A gRPC ``ModelInfer`` request as tritonclient.grpc sends one (raw_input_contents), framed
    for the wire: a 0 byte (not compressed), the message's length (4 bytes, big-endian), the
    message."""
    import numpy as np

    from mlops.serve.grpc import open_inference_pb2 as pb

    request = pb.ModelInferRequest(model_name=signature["model_name"])
    for feature in signature["features"]:
        values = [record[feature["name"]] for record in records]
        if feature["type"] == "number":
            raw, datatype = np.asarray(values, "<f4").tobytes(), "FP32"
        else:
            texts = [str(value).encode() for value in values]
            raw = b"".join(len(text).to_bytes(4, "little") + text for text in texts)
            datatype = "BYTES"
        request.inputs.add(name=feature["name"], datatype=datatype, shape=[len(values), 1])
        request.raw_input_contents.append(raw)
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


# --- measurements --------------------------------------------------------------------------------


def run_wrk(target: Server, run: Run, seconds: int, scratch: Path) -> WrkResult:
    if run.grpc:
        return run_h2load(target, run, seconds, scratch)
    name, url, body = run.name, target.url + run.path, run.body
    connections, records = run.connections, run.records
    script = scratch / f"{body.stem}.lua"
    headers = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in run.headers)
    script.write_text(LUA_POST.format(body=body, headers=headers))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    command.append(url)
    cpu_before = cpu_seconds(target.pid)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    cpu_spent = cpu_seconds(target.pid) - cpu_before
    if finished.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: {finished.stderr or finished.stdout}")
    output = finished.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(failed.group(1)) if failed else 0
    if socket_errors:
        errors += sum(int(count) for count in socket_errors.groups())
    return WrkResult(
        name=name,
        target=url,
        connections=connections,
        records_per_request=records,
        requests_per_second=rate,
        records_per_second=rate * records,
        p50_ms=percentile_ms(output, "50%"),
        p90_ms=percentile_ms(output, "90%"),
        p99_ms=percentile_ms(output, "99%"),
        requests=total,
        errors=errors,
        server_cpu_us_per_request=cpu_spent / max(total, 1) * 1e6,
    )


def run_h2load(target: Server, run: Run, seconds: int, scratch: Path) -> WrkResult:
    """gRPC calls at ``run.connections`` concurrent HTTP/2 connections (one call in flight on
    each), for ``seconds``; latencies from h2load's per-request log. h2load sees HTTP statuses
    only: the caller checks the gRPC status of the calls in the scorer's metrics."""
    log = scratch / f"{run.body.stem}-h2load.log"
    log.unlink(missing_ok=True)  # h2load appends to its log: one run's latencies only
    command = ["h2load", "-D", str(seconds), "-c", str(run.connections), "-m", "1", "-t", "1"]
    command += [f"--data={run.body}", f"--log-file={log}"]
    command += [option for header in GRPC_HEADERS for option in ("-H", header)]
    command.append(target.grpc_url + run.path)
    cpu_before = cpu_seconds(target.pid)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    cpu_spent = cpu_seconds(target.pid) - cpu_before
    if finished.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: {finished.stderr or finished.stdout}")
    output = finished.stdout
    rate = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", output).group(1))  # type: ignore[union-attr]
    counts = re.search(
        r"requests: (\d+) total.*?(\d+) succeeded, (\d+) failed, (\d+) errored", output
    )
    if counts is None:
        raise SystemExit(f"error: no request counts in h2load's output:\n{output}")
    done, succeeded = int(counts.group(1)), int(counts.group(2))
    durations = sorted(
        int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line.strip()
    )
    return WrkResult(
        name=run.name,
        target=target.grpc_url + run.path,
        connections=run.connections,
        records_per_request=run.records,
        requests_per_second=rate,
        records_per_second=rate * run.records,
        p50_ms=quantile(durations, 0.50),
        p90_ms=quantile(durations, 0.90),
        p99_ms=quantile(durations, 0.99),
        requests=succeeded,
        errors=done - succeeded,
        server_cpu_us_per_request=cpu_spent / max(succeeded, 1) * 1e6,
    )


def quantile(ordered: list[float], share: float) -> float:
    if not ordered:
        raise SystemExit("error: h2load logged no request")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def grpc_calls_not_ok(url: str) -> int:
    """gRPC infer calls the scorer answered with another code than OK, from its metrics; not
    the calls h2load cancels when its time is up (CANCELLED, counted as 499)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = (
        rf'scorer_requests_total{{method="GRPC",route="{GRPC_PATH}",status="(\d+)"}} ([\d.e+]+)'
    )
    answered = re.findall(pattern, text)
    return sum(int(float(count)) for status, count in answered if status not in ("200", "499"))


def percentile_ms(wrk_output: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", wrk_output, re.MULTILINE)
    if match is None:
        raise SystemExit(f"error: no {label} latency in wrk's output:\n{wrk_output}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def time_per_call(call: Callable[[], object], seconds: float) -> list[float]:
    call()
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def model_floor(
    model_dir: Path, records: list[dict[str, Any]], threads: int, seconds: float
) -> dict[str, Any]:
    """onnxruntime alone, in-process, with the scorer's session options and input arrays."""
    from mlops.serve.batches import Records
    from mlops.serve.checks import check
    from mlops.serve.model import load_scorer
    from mlops.serve.schema import input_schema

    scorer = load_scorer(model_dir, threads)
    schema = input_schema(scorer.signature)

    def feed(batch: list[dict[str, Any]]) -> dict[str, Any]:
        return check(Records(batch), schema).feed

    single, many = feed(records[:1]), feed(records)
    single_samples = time_per_call(lambda: scorer.session.run(None, single), seconds)
    batch_samples = time_per_call(lambda: scorer.session.run(None, many), seconds)
    batch_median = statistics.median(batch_samples)
    return {
        "intra_op_threads": threads,
        "single_record_median_ms": statistics.median(single_samples) * 1000,
        "single_record_calls_per_second": 1 / statistics.median(single_samples),
        "batch_records": len(records),
        "batch_median_ms": batch_median * 1000,
        "batch_records_per_second": len(records) / batch_median,
    }


# --- the run -------------------------------------------------------------------------------------


def plan_runs(signature: dict[str, Any], batch_records: int, scratch: Path) -> list[Run]:
    records = synthetic_records(signature, batch_records)
    bodies = {
        "single": {"records": records[:1]},
        "batch": {"records": records},
        "v2_single": v2_body(signature, records[:1]),
        "v2_batch": v2_body(signature, records),
    }
    paths = {name: scratch / f"{name}.json" for name in bodies}
    for name, body in bodies.items():
        paths[name].write_text(json.dumps(body))
    binary = {}
    for name, part in (("binary_single", records[:1]), ("binary_batch", records)):
        content, header_length = binary_body(signature, part)
        paths[name] = scratch / f"{name}.bin"
        paths[name].write_bytes(content)
        binary[name] = (
            ("Content-Type", "application/octet-stream"),
            ("Inference-Header-Content-Length", str(header_length)),
        )
    for name, part in (("grpc_single", records[:1]), ("grpc_batch", records)):
        paths[name] = scratch / f"{name}.grpc"
        paths[name].write_bytes(grpc_body(signature, part))
    infer = f"/v2/models/{signature['model_name']}/infer"
    batch = batch_name(batch_records)
    many = BATCH_CONCURRENCY
    return [
        Run("single c1", "/predict", paths["single"], 1, 1),
        Run("single c16", "/predict", paths["single"], 16, 1),
        Run("v2 single c16", infer, paths["v2_single"], 16, 1),
        Run(
            "v2 binary single c16",
            infer,
            paths["binary_single"],
            16,
            1,
            headers=binary["binary_single"],
        ),
        Run("grpc single c16", GRPC_PATH, paths["grpc_single"], 16, 1, grpc=True),
        Run(batch, "/predict", paths["batch"], many, batch_records),
        Run(f"v2 {batch}", infer, paths["v2_batch"], many, batch_records),
        Run(
            f"v2 binary {batch}",
            infer,
            paths["binary_batch"],
            many,
            batch_records,
            headers=binary["binary_batch"],
        ),
        Run(f"grpc {batch}", GRPC_PATH, paths["grpc_batch"], many, batch_records, grpc=True),
        Run(with_workers("single c16"), "/predict", paths["single"], 16, 1, WORKERS),
        Run(with_workers(batch), "/predict", paths["batch"], many, batch_records, WORKERS),
    ]


def batch_name(batch_records: int) -> str:
    return f"batch {batch_records} c{BATCH_CONCURRENCY}"


def with_workers(name: str) -> str:
    return f"{name}, {WORKERS} workers"


@dataclass(frozen=True)
class Comparison:
    """One run measured against the baseline commit's scorer, alternating, ``rounds`` times."""

    name: str
    rates: list[float]  # requests/s of this scorer, per round
    baseline_rates: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.rates) / statistics.median(self.baseline_rates)


def baseline_source(revision: str, scratch: Path) -> Path:
    """``src/`` of ``revision`` (``git archive``), for the baseline scorer's PYTHONPATH."""
    target = scratch / "baseline"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"error: --baseline-rev {revision}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


def scorer_environment(
    env: dict[str, str], model_dir: Path, log: Path, port: int, workers: int
) -> dict[str, str]:
    return {
        **env,
        "MODEL_DIR": str(model_dir.resolve()),
        "PREDICTION_LOG": str(log),
        "SCORER_PORT": str(port),
        "SCORER_LOG_MAX_BYTES": str(64 << 20),
        "SCORER_LOG_BACKUPS": "1",
        "SCORER_WORKERS": str(workers),
    }


def compare(
    scored: Server, baseline: Server, run: Run, seconds: int, rounds: int, scratch: Path
) -> Comparison:
    """Alternate the two scorers (new, old; then old, new; ...) on ``run``."""
    rates: dict[str, list[float]] = {"new": [], "old": []}
    for number in range(rounds):
        order = (("new", scored), ("old", baseline))
        for which, target in order if number % 2 == 0 else order[::-1]:
            rates[which].append(run_wrk(target, run, seconds, scratch).requests_per_second)
    return Comparison(run.name, rates["new"], rates["old"])


@dataclass(frozen=True)
class FormRounds:
    """The V2 forms of a batch measured alternately on one scorer (``compare_forms``)."""

    seconds_per_round: int  # each form's run in each round
    reference: str  # the run the others are compared with: V2 JSON
    rates: dict[str, list[float]]  # records/s of each form's run, per round


def compare_forms(
    scored: Server, runs: list[Run], seconds: int, rounds: int, scratch: Path
) -> FormRounds:
    """Records/s of each run per round, on one scorer; each round starts with the next run. The
    first run is the reference."""
    rates: dict[str, list[float]] = {run.name: [] for run in runs}
    for number in range(rounds):
        shift = number % len(runs)
        for run in runs[shift:] + runs[:shift]:
            rates[run.name].append(run_wrk(scored, run, seconds, scratch).records_per_second)
    return FormRounds(seconds, runs[0].name, rates)


def benchmark(
    model_dir: Path,
    seconds: int,
    batch_records: int,
    scratch: Path,
    baseline: Path | None = None,
    rounds: int = BASELINE_ROUNDS,
) -> dict[str, Any]:
    signature = json.loads((model_dir / "signature.json").read_text())
    runs = plan_runs(signature, batch_records, scratch)
    compared = {"single c16", batch_name(batch_records)}
    env = {key: value for key, value in os.environ.items() if not key.startswith("SCORER_")}
    floor_results, scorer_results, comparisons = [], [], []
    forms = [
        run
        for form in V2_FORMS
        for run in runs
        if run.name == f"{form} {batch_name(batch_records)}"
    ]
    form_rounds = None
    failed_grpc_calls = 0
    for workers in sorted({run.workers for run in runs}):
        floor_port, scorer_port, baseline_port = free_port(), free_port(), free_port()
        floor_grpc, scorer_grpc = free_port(), free_port()
        floor = [sys.executable, str(Path(__file__).resolve()), "floor", "--port", str(floor_port)]
        floor += [f"--workers={workers}", f"--grpc-port={floor_grpc if workers == 1 else 0}"]
        scorer = [sys.executable, "-m", "mlops.serve"]
        scorer_env = scorer_environment(
            env, model_dir, scratch / "predictions.jsonl", scorer_port, workers
        )
        scorer_env["SCORER_GRPC_PORT"] = str(scorer_grpc)
        baseline_env = scorer_environment(
            env, model_dir, scratch / "baseline-predictions.jsonl", baseline_port, workers
        )
        baseline_env["PYTHONPATH"] = str(baseline)
        with contextlib.ExitStack() as stack:
            floor_server = stack.enter_context(
                server(floor, env, floor_port, scratch / f"floor-{workers}.out", floor_grpc)
            )
            scored = stack.enter_context(
                server(
                    scorer, scorer_env, scorer_port, scratch / f"scorer-{workers}.out", scorer_grpc
                )
            )
            old = None
            if baseline is not None:
                output = scratch / f"baseline-{workers}.out"
                old = stack.enter_context(server(scorer, baseline_env, baseline_port, output))
            for run in runs:  # back to back, so both see the same machine load
                if run.workers == workers:
                    floor_results.append(run_wrk(floor_server, run, seconds, scratch))
                    scorer_results.append(run_wrk(scored, run, seconds, scratch))
                    if old is not None and run.name.split(",")[0] in compared:
                        comparisons.append(compare(scored, old, run, seconds, rounds, scratch))
            if workers == 1 and len(forms) == len(V2_FORMS):
                half = max(seconds // 2, 1)
                form_rounds = compare_forms(scored, forms, half, PROTOCOL_ROUNDS, scratch)
            failed_grpc_calls += grpc_calls_not_ok(scored.url)
    records = synthetic_records(signature, batch_records)
    ort = model_floor(model_dir, records, threads=1, seconds=min(seconds, 5))
    report = summarize(scorer_results, floor_results, ort, batch_records, form_rounds)
    report["errors"] += failed_grpc_calls  # h2load sees HTTP statuses, not gRPC codes
    if comparisons:
        report["baseline"] = [
            {**asdict(comparison), "ratio": comparison.ratio} for comparison in comparisons
        ]
        for comparison in comparisons:
            key = comparison.name.replace(" ", "_").replace(",", "") + "_vs_baseline"
            report["targets"][key] = target(comparison.ratio, TARGET_BASELINE_RATIO, True)
    return report


def summarize(
    scorer_results: list[WrkResult],
    floor_results: list[WrkResult],
    ort: dict[str, Any],
    batch_records: int,
    forms: FormRounds | None = None,
) -> dict[str, Any]:
    """The report: the runs, the floors, the ratios and the targets. ``forms``: the V2 batch
    forms' records/s in alternating rounds (``compare_forms``), whose medians then give the
    ratios between the forms."""
    floor = {result.name: result for result in floor_results}
    scorer = {result.name: result for result in scorer_results}
    batch = batch_name(batch_records)
    ratio_c16 = scorer["single c16"].requests_per_second / floor["single c16"].requests_per_second
    batch_rate = scorer[batch].records_per_second
    targets = {}
    for suffix, c16, batches in (
        ("", "single c16", batch),
        (f"_{WORKERS}_workers", with_workers("single c16"), with_workers(batch)),
    ):
        if c16 in scorer:
            rate = scorer[c16].requests_per_second
            targets |= {
                f"single_c16_vs_http_floor{suffix}": target(
                    rate / floor[c16].requests_per_second, TARGET_FLOOR_RATIO, at_least=True
                ),
                f"single_c16_p99_ms{suffix}": target(
                    scorer[c16].p99_ms, TARGET_P99_MS, at_least=False
                ),
                f"batch_records_per_second{suffix}": target(
                    scorer[batches].records_per_second, TARGET_BATCH_RECORDS_PER_SECOND, True
                ),
            }
    ratios = protocol_ratios(scorer, batch, forms.rates if forms else {})
    if forms:
        for protocol in ("binary", "grpc"):
            name = f"{protocol}_batch_vs_v2_json_batch"
            targets[name] = target(ratios[name], TARGET_TENSORS_VS_JSON, at_least=True)
    return {
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "scorer": [asdict(result) for result in scorer_results],
        "http_floor": [asdict(result) for result in floor_results],
        "model_floor": ort,
        "ratios": {
            "single_c16_vs_http_floor": ratio_c16,
            "single_c1_vs_http_floor": scorer["single c1"].requests_per_second
            / floor["single c1"].requests_per_second,
            "batch_vs_http_floor": batch_rate / floor[batch].records_per_second,
            "single_c1_p50_vs_model_floor": scorer["single c1"].p50_ms
            / ort["single_record_median_ms"],
            "batch_vs_model_floor": batch_rate / ort["batch_records_per_second"],
            **ratios,
        },
        "v2_forms": asdict(forms) if forms else {},
        "targets": targets,
        "errors": sum(result.errors for result in [*scorer_results, *floor_results]),
    }


def protocol_ratios(
    scorer: dict[str, WrkResult], batch: str, form_rates: dict[str, list[float]]
) -> dict[str, float]:
    """Records/s in batches of V2 binary tensors and of gRPC over V2 JSON (and /predict), when
    the run measured them: the medians of the alternating rounds when there are some, else the
    table's runs."""

    def rate(name: str) -> float | None:
        if name in form_rates:
            return statistics.median(form_rates[name])
        return scorer[name].records_per_second if name in scorer else None

    json_rate, ratios = rate(f"v2 {batch}"), {}
    for protocol, form in (("binary", "v2 binary"), ("grpc", "grpc")):
        measured = rate(f"{form} {batch}")
        if json_rate is not None and measured is not None:
            ratios[f"{protocol}_batch_vs_v2_json_batch"] = measured / json_rate
            ratios[f"{protocol}_batch_vs_predict_batch"] = (
                measured / scorer[batch].records_per_second
            )
    return ratios


def target(value: float, goal: float, at_least: bool) -> dict[str, Any]:
    return {"value": value, "target": goal, "met": value >= goal if at_least else value <= goal}


def table(report: dict[str, Any]) -> str:
    floor = {result["name"]: result for result in report["http_floor"]}
    floor_cpu = {name: result["server_cpu_us_per_request"] for name, result in floor.items()}
    header = (
        "run",
        "scorer req/s",
        "records/s",
        "p50 ms",
        "p99 ms",
        "floor req/s",
        "ratio",
        "cpu µs scorer/floor",
    )
    lines = ["{:<34} {:>13} {:>11} {:>7} {:>7} {:>12} {:>6}  {}".format(*header)]
    for result in report["scorer"]:
        base = floor[result["name"]]["requests_per_second"]
        rate = result["requests_per_second"]
        lines.append(
            f"{result['name']:<34} {rate:>13,.0f} {result['records_per_second']:>11,.0f} "
            f"{result['p50_ms']:>7.2f} {result['p99_ms']:>7.2f} {base:>12,.0f} {rate / base:>6.2f} "
            f"{result['server_cpu_us_per_request']:>6,.0f}/{floor_cpu[result['name']]:<6,.0f}"
        )
    ort = report["model_floor"]
    lines.append(
        f"model floor (onnxruntime alone): {ort['single_record_median_ms']:.3f} ms per record, "
        f"{ort['batch_records_per_second']:,.0f} records/s in {ort['batch_records']}-record batches"
    )
    for comparison in report.get("baseline", []):
        rates = ", ".join(f"{rate:,.0f}" for rate in comparison["rates"])
        old = ", ".join(f"{rate:,.0f}" for rate in comparison["baseline_rates"])
        lines.append(
            f"{comparison['name']}: {rates} req/s against the baseline's {old} "
            f"(medians' ratio {comparison['ratio']:.3f})"
        )
    for name, goal in report["targets"].items():
        verdict = "met" if goal["met"] else "MISSED"
        lines.append(f"target {name}: {goal['value']:,.2f} vs {goal['target']:,} -> {verdict}")
    return "\n".join(lines)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # ``floor`` is how the benchmark starts its own HTTP floor server; not for people.
    parser.add_argument(
        "mode", nargs="?", choices=["run", "floor"], default="run", help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--grpc-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help="where to write the JSON report")
    parser.add_argument("--model-dir", type=Path, default=Path("models/package"))
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="1 s runs, 100-record batches")
    parser.add_argument(
        "--baseline-rev", help="also measure the scorer of this git revision, in the same run"
    )
    parser.add_argument("--baseline-rounds", type=int, default=BASELINE_ROUNDS)
    arguments = parser.parse_args(argv)
    if arguments.mode == "run" and arguments.output is None:
        parser.error("--output is required")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.mode == "floor":
        serve_floor(arguments.port, arguments.workers, arguments.grpc_port)
        return 0
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            print(
                f"error: {tool} is not installed (Debian: apt-get install {package})",
                file=sys.stderr,
            )
            return 1
    if not (arguments.model_dir / "signature.json").is_file():
        print(f"error: {arguments.model_dir}: no packaged model (`make repro`)", file=sys.stderr)
        return 1
    seconds, batch = (1, 100) if arguments.quick else (arguments.duration, BATCH_RECORDS)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        baseline = None
        if arguments.baseline_rev:
            baseline = baseline_source(arguments.baseline_rev, Path(scratch))
        report = benchmark(
            arguments.model_dir, seconds, batch, Path(scratch), baseline, arguments.baseline_rounds
        )
    report["settings"] = {
        "seconds_per_run": seconds,
        "batch_records": batch,
        "baseline_rev": arguments.baseline_rev,
    }
    print(table(report))
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(report, indent=2) + "\n")
    if report["errors"]:
        print(f"error: {report['errors']} failed request(s) during the runs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
