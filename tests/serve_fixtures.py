"""The real scorer process on a free 127.0.0.1 port, and records to send it (serving tests)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import onnxruntime

from conftest import PROJECT_ROOT
from mlops.core.artifacts import MISSING_CATEGORY

TRITON_CLIENT = PROJECT_ROOT / "tests" / "triton_client.py"
STARTUP_SECONDS = 90  # generous: the test machine is shared
JSON_HEADERS = {"content-type": "application/json"}
# What a client sees of a scorer that has shut down (or is shutting down) between two requests.
SHUTDOWN_ERRORS = {"ConnectError", "RemoteProtocolError", "ReadError"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Scorer:
    process: subprocess.Popen[bytes]
    url: str
    prediction_log: Path
    output_path: Path
    grpc_target: str = ""  # host:port of its gRPC server ("" when SCORER_GRPC_PORT=0)

    @property
    def http_target(self) -> str:
        """host:port, as tritonclient takes the address (no scheme)."""
        return self.url.removeprefix("http://")

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (graceful), then the exit code; kills it only if it hangs past ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"scorer ignored SIGTERM for {timeout}s:\n{self.output()}"
            ) from None

    def log_lines(self) -> list[str]:
        if not self.prediction_log.exists():
            return []
        return self.prediction_log.read_text().splitlines()


def launch(model_dir: Path, workdir: Path, **settings: str) -> Scorer:
    """Start ``python -m mlops.serve`` without waiting for it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    prediction_log = workdir / "logs" / "predictions.jsonl"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SCORER_") and key not in ("MODEL_DIR", "PREDICTION_LOG")
    }
    env.update(
        {
            "MODEL_DIR": str(model_dir),
            "PREDICTION_LOG": str(prediction_log),
            "SCORER_PORT": str(port),
            "SCORER_HOST": "127.0.0.1",
            "SCORER_GRPC_PORT": str(grpc_port),
            **settings,
        }
    )
    output_path = workdir / "scorer.out"
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops.serve"],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    grpc_target = f"127.0.0.1:{env['SCORER_GRPC_PORT']}" if env["SCORER_GRPC_PORT"] != "0" else ""
    return Scorer(process, f"http://127.0.0.1:{port}", prediction_log, output_path, grpc_target)


def launch_to_refusal(model_dir: Path, workdir: Path, **settings: str) -> tuple[Scorer, int]:
    """Start the scorer where it must refuse to serve: wait for it to exit by itself (killed if it
    does not within ``STARTUP_SECONDS``); the scorer and its exit status."""
    scorer = launch(model_dir, workdir, **settings)
    try:
        return scorer, scorer.process.wait(STARTUP_SECONDS)
    finally:
        if scorer.process.poll() is None:
            scorer.process.kill()


def wait_ready(scorer: Scorer, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scorer.process.poll() is not None:
            raise AssertionError(
                f"scorer exited with {scorer.process.returncode}:\n{scorer.output()}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{scorer.url}/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    scorer.process.kill()
    raise AssertionError(f"scorer not ready after {timeout}s:\n{scorer.output()}")


@contextlib.contextmanager
def running_scorer(model_dir: Path, workdir: Path, **settings: str) -> Iterator[Scorer]:
    scorer = launch(model_dir, workdir, **settings)
    try:
        wait_ready(scorer)
        yield scorer
    finally:
        if scorer.process.poll() is None:
            scorer.stop()


def copy_package(package: Path, target: Path) -> Path:
    shutil.copytree(package, target)
    return target


def signature_of(package: Path) -> dict[str, Any]:
    return json.loads((package / "signature.json").read_text())  # type: ignore[no-any-return]


def bundled_records(signature: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of the bundled data as the scorer takes them: the signature's features, NA as null."""
    with (PROJECT_ROOT / "data" / "penguins.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    records = []
    for row in rows[:limit]:
        record: dict[str, Any] = {}
        for feature in signature["features"]:
            value = row[feature["name"]]
            if value in ("", "NA"):
                record[feature["name"]] = None
            elif feature["type"] == "number":
                record[feature["name"]] = float(value)
            else:
                record[feature["name"]] = value
        records.append(record)
    return records


def table_records(package: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of the test table a ``package_fixtures`` package was checked on (beside it), as the
    scorer takes them: the signature's features under the user's names, missing as null."""
    import pandas as pd

    signature = signature_of(package)
    frame = pd.read_parquet(package.parent / "test.parquet").head(limit)
    names = [feature["name"] for feature in signature["features"]]
    rows = frame[names].astype(object).where(frame[names].notna(), None)
    return [
        {name: value.item() if hasattr(value, "item") else value for name, value in row.items()}
        for row in rows.to_dict(orient="records")
    ]


def onnx_outputs(
    package: Path, signature: dict[str, Any], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Score ``records`` with onnxruntime directly, typed and named as the artifacts contract
    says (inputs by ``input_name``); every output of the model by name."""
    session = onnxruntime.InferenceSession(str(package / "model.onnx"))
    feed = {}
    for feature in signature["features"]:
        values = [record[feature["name"]] for record in records]
        if feature["type"] == "number":
            column = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        else:
            column = np.array([MISSING_CATEGORY if v is None else v for v in values], dtype=object)
        feed[feature["input_name"]] = column.reshape(-1, 1)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def onnx_reference(package: Path, signature: dict[str, Any], records: list[dict[str, Any]]) -> Any:
    """A classifier's ``(labels, probabilities)`` from onnxruntime (the model's own labels)."""
    outputs = onnx_outputs(package, signature, records)
    return outputs["label"].tolist(), outputs["probabilities"]


def conforms(openapi: dict[str, Any], schema_name: str, body: Any) -> None:
    """The body matches the schema the service documents for it."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": openapi["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


def grpc_infer_request(
    signature: dict[str, Any], records: list[dict[str, Any]], client_id: str = ""
) -> Any:
    """A ``ModelInferRequest`` as tritonclient sends one: every input's data in
    ``raw_input_contents`` (FP32 little-endian with NaN for a gap; BYTES as 4-byte lengths and
    UTF-8), one ``[n, 1]`` input per feature under the data's column name."""
    from mlops.serve.grpc import open_inference_pb2 as pb

    request = pb.ModelInferRequest(model_name=signature["model_name"], id=client_id)
    for feature in signature["features"]:
        values = [record[feature["name"]] for record in records]
        if feature["type"] == "number":
            numbers = [np.nan if value is None else value for value in values]
            raw, datatype = np.asarray(numbers, "<f4").tobytes(), "FP32"
        else:
            texts = [("" if value is None else value).encode() for value in values]
            raw = b"".join(len(text).to_bytes(4, "little") + text for text in texts)
            datatype = "BYTES"
        request.inputs.add(name=feature["name"], datatype=datatype, shape=[len(values), 1])
        request.raw_input_contents.append(raw)
    return request


def post_json(client: httpx.Client, path: str, body: Any, **headers: str) -> httpx.Response:
    return client.post(path, content=json.dumps(body), headers={**JSON_HEADERS, **headers})


def v2_request(
    signature: dict[str, Any],
    records: list[dict[str, Any]],
    nested: bool = False,
    outputs: tuple[str, ...] = ("label", "probabilities"),
) -> dict[str, Any]:
    """An inference request as the Open Inference Protocol REST specification writes one, one
    tensor per feature named as the data's column (``parameters`` as KServe's Python client
    sends them for strings)."""
    inputs = []
    for feature in signature["features"]:
        values = [record[feature["name"]] for record in records]
        tensor = {
            "name": feature["name"],
            "shape": [len(values), 1],
            "datatype": "FP32" if feature["type"] == "number" else "BYTES",
            "data": [[value] for value in values] if nested else values,
        }
        if feature["type"] == "string":
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    return {
        "id": "42",
        "parameters": {},
        "inputs": inputs,
        "outputs": [{"name": name} for name in outputs],
    }


@dataclass
class Answered:
    request_id: str
    records: int
    at: float  # time.monotonic() when the answer arrived


@dataclass
class BackgroundTraffic:
    """Threads posting ``/predict`` batches back to back until the scorer goes away.

    Each thread stops at its first transport error (the scorer shut down) or after ``seconds``.
    ``answered`` holds every 2xx answer; ``failures`` the error names (or non-2xx bodies).
    """

    url: str
    batches: list[list[dict[str, Any]]]
    seconds: float = 30
    answered: list[Answered] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._send, args=(b,)) for b in self.batches]
        for thread in self._threads:
            thread.start()
        assert self.started.wait(30), f"no answer from {self.url}: {self.failures}"

    def join(self) -> None:
        for thread in self._threads:
            thread.join(self.seconds + 10)

    def records(self) -> int:
        return sum(answer.records for answer in self.answered)

    def _send(self, batch: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + self.seconds
        body = json.dumps({"records": batch})
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while time.monotonic() < deadline:
                try:
                    response = client.post("/predict", content=body, headers=headers)
                except httpx.TransportError as error:
                    self.failures.append(type(error).__name__)
                    return
                self.started.set()
                if response.status_code != 200:
                    self.failures.append(response.text)
                    return
                answer = Answered(response.headers["x-request-id"], len(batch), time.monotonic())
                with self._lock:
                    self.answered.append(answer)


def triton(protocol: str, target: str, calls: list[dict[str, Any]]) -> list[Any]:
    """Run the calls with tritonclient (its ``protocol`` module, http or grpc) in a child process
    (``tests/triton_client.py``)."""
    job = json.dumps({"target": target, "calls": calls})
    finished = subprocess.run(
        [sys.executable, str(TRITON_CLIENT), protocol],
        input=job,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    answers: list[Any] = json.loads(finished.stdout)
    return answers
