"""The sidecar as a real process over real HTTP: penguins traffic, then one feature shifted.

The reference (profile, signature, manifest) is built here from data/penguins.csv with the
pipeline's own ``profile_table``; a local HTTP server stands in for the GitHub API.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops import artifacts
from mlops.profile import profile_table

TARGET = "species"
EXCLUDED = ["year"]
TOKEN = "ghp_integration_test_token"
MODEL_VERSION = "penguins-test-1"


def build_package(source: Path, directory: Path) -> pd.DataFrame:
    """The three files the sidecar reads, as the package stage will write them."""
    data = pd.read_csv(source)
    features = data.drop(columns=[TARGET, *EXCLUDED])
    profile: dict[str, Any] = profile_table(features)
    profile["classes"] = data[TARGET].value_counts(normalize=True).to_dict()
    signature = {
        "model_name": "penguins",
        "target": TARGET,
        "features": [describe(features[name]) for name in features.columns],
        "classes": sorted(data[TARGET].unique()),
    }
    directory.mkdir(parents=True)
    (directory / artifacts.SIGNATURE_FILE).write_text(json.dumps(signature))
    (directory / artifacts.PROFILE_FILE).write_text(json.dumps(profile))
    manifest = {
        "model_name": "penguins",
        "model_version": MODEL_VERSION,
        "lineage": {"git_commit": "", "data_hash": "", "params_hash": "", "created": ""},
        "metrics": {"validation": {"accuracy": 0.97, "macro_f1": 0.96}, "test": {}},
        "files": {
            name: artifacts.sha256_of(directory / name)
            for name in (artifacts.SIGNATURE_FILE, artifacts.PROFILE_FILE)
        },
    }
    (directory / artifacts.MANIFEST_FILE).write_text(json.dumps(manifest))
    return data


def describe(column: pd.Series) -> dict[str, Any]:
    numeric = pd.api.types.is_numeric_dtype(column)
    return {
        "name": str(column.name),
        "type": "number" if numeric else "string",
        "nullable": bool(column.isna().any()),
        "categories": None if numeric else sorted(column.dropna().astype(str).unique()),
        "min": float(column.min()) if numeric else None,
        "max": float(column.max()) if numeric else None,
    }


def log_lines(rows: pd.DataFrame, prefix: str) -> bytes:
    """PredictionRecord lines, five records per request, the species as the prediction."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    out = []
    for position, row in enumerate(rows.to_dict("records")):
        features = {
            name: None if pd.isna(value) else value
            for name, value in row.items()
            if name not in (TARGET, *EXCLUDED)
        }
        record = {
            "ts": stamp,
            "request_id": f"{prefix}-{position // 5}",
            "index": position % 5,
            "model_version": MODEL_VERSION,
            "features": features,
            "prediction": row[TARGET],
            "probabilities": {row[TARGET]: 1.0},
            "latency_seconds": 0.002,
        }
        out.append(json.dumps(record).encode() + b"\n")
    return b"".join(out)


@dataclass
class FakeGitHub:
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.requests.append({"path": self.path, "headers": self.headers, "body": body})
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield fake
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sidecar:
    environment: dict[str, str]
    workdir: Path
    url: str
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        output = (self.workdir / "sidecar.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlops.monitor"],
            env=self.environment,
            cwd=self.workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.ready, 60, "the sidecar to become ready", self)

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the sidecar exited {self.process.returncode}:\n{self.output()}")
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM, as Kubernetes sends it: the sidecar shuts down cleanly, saving its state."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError("the sidecar ignored SIGTERM") from None
        # uvicorn re-raises the signal once shut down, so the exit status is the signal's.
        assert code in (0, -signal.SIGTERM), self.output()
        assert self.output().count("Application shutdown complete.") == self.starts

    def output(self) -> str:
        return (self.workdir / "sidecar.log").read_text(errors="replace")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.get("/metrics").text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def wait_until(
    condition: Callable[[], bool], seconds: float, what: str, sidecar: Sidecar | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    log = f"\nsidecar output:\n{sidecar.output()}" if sidecar else ""
    raise AssertionError(f"timed out after {seconds}s waiting for {what}{log}")


@pytest.fixture
def sidecar(tmp_path: Path, github: FakeGitHub) -> Iterator[Sidecar]:
    port = free_port()
    environment = {
        "PATH": os.environ["PATH"],
        "PREDICTION_LOG": str(tmp_path / "logs" / "predictions.jsonl"),
        "MODEL_DIR": str(tmp_path / "package"),
        "MONITOR_PORT": str(port),
        "MONITOR_STATE_FILE": str(tmp_path / "logs" / "monitor_state.json"),
        "MONITOR_FEEDBACK_LOG": str(tmp_path / "logs" / "feedback.jsonl"),
        "MONITOR_POLL_INTERVAL_SECONDS": "0.1",
        "MONITOR_WINDOW_SIZE": "300",
        "MONITOR_MIN_WINDOW_SIZE": "200",
        "MONITOR_ALERT_HOLD_SECONDS": "1",
        "MONITOR_GITHUB_REPOSITORY": "owner/template",
        "MONITOR_GITHUB_TOKEN": TOKEN,
        "MONITOR_GITHUB_API_URL": github.url,
    }
    running = Sidecar(environment, tmp_path, f"http://127.0.0.1:{port}")
    yield running
    if running.process is not None and running.process.poll() is None:
        running.process.kill()
        running.process.wait(timeout=10)


def records_read(sidecar: Sidecar) -> float:
    return sidecar.metrics()[("monitor_records_read_total", (("log", "predictions"),))]


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


def test_one_shifted_feature_drifts_alone_and_retraining_is_requested_once(
    sidecar: Sidecar, github: FakeGitHub, penguins_csv: Path, tmp_path: Path
) -> None:
    data = build_package(penguins_csv, tmp_path / "package")
    log = Path(sidecar.environment["PREDICTION_LOG"])
    generator = np.random.default_rng(0)
    sidecar.start()

    # 1. traffic drawn from the training data: measured, nothing drifts, nothing is sent
    reference_rows = data.sample(300, replace=True, random_state=generator)
    append(log, log_lines(reference_rows, "ref") + b"this is not json\n")
    wait_until(lambda: sidecar.get("/drift").json()["window_size"] == 300, 20, "300 records")
    drift = sidecar.get("/drift").json()
    assert drift["alert"] is False, drift
    assert all(feature["drifted"] is False for feature in drift["features"].values()), drift
    assert drift["prediction"]["drifted"] is False
    time.sleep(1.5)  # longer than the alert hold: a false alarm would have been sent by now
    assert github.requests == []

    # 2. the same traffic with body mass shifted: that feature alone drifts, one dispatch
    shifted = data.sample(300, replace=True, random_state=generator)
    shifted["body_mass_g"] += 1500
    append(log, log_lines(shifted, "shifted"))
    wait_until(lambda: records_read(sidecar) == 600, 20, "600 records", sidecar)
    drift = sidecar.get("/drift").json()
    drifted = {name for name, feature in drift["features"].items() if feature["drifted"]}
    assert drifted == {"body_mass_g"}, drift
    assert drift["features"]["body_mass_g"]["score"] > 0.2
    wait_until(lambda: len(github.requests) >= 1, 20, "the retrain dispatch", sidecar)
    time.sleep(1.0)  # ten more polls with the alert still holding: the cool-down allows no more
    assert len(github.requests) == 1

    (request,) = github.requests
    assert request["path"] == "/repos/owner/template/dispatches"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Accept"] == "application/vnd.github+json"
    assert request["headers"]["X-GitHub-Api-Version"] == "2022-11-28"
    body = json.loads(request["body"])
    assert body["event_type"] == "retrain"
    assert body["client_payload"]["model_version"] == MODEL_VERSION
    assert list(body["client_payload"]["drifted_features"]) == ["body_mass_g"]
    assert TOKEN not in sidecar.output()

    # 3. ground truth for a few shifted predictions, over HTTP
    feedback = [{"request_id": "shifted-0", "index": n, "label": "Adelie"} for n in range(5)]
    response = httpx.post(f"{sidecar.url}/feedback", json=feedback, timeout=5)
    assert response.json() == {"matched": 5, "unmatched": 0}
    bad = httpx.post(f"{sidecar.url}/feedback", json={"label": "Adelie"}, timeout=5)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "request_id"

    # /metrics publishes the state of the last poll: the feedback shows after the next one
    matched = ("monitor_feedback_total", (("result", "matched"),))
    wait_until(lambda: sidecar.metrics().get(matched) == 5, 20, "the feedback in /metrics", sidecar)
    metrics = sidecar.metrics()
    assert records_read(sidecar) == 600
    assert metrics[("monitor_corrupt_lines_total", (("log", "predictions"),))] == 1
    assert metrics[("monitor_window_records", ())] == 300
    assert metrics[("monitor_drift_alert", ())] == 1
    for name in drift["features"]:
        flag = metrics[("monitor_feature_drifted", (("feature", name),))]
        assert flag == (1.0 if name == "body_mass_g" else 0.0), name
    assert metrics[("monitor_retrain_requests_total", (("outcome", "sent"),))] == 1
    assert metrics[("monitor_feedback_total", (("result", "matched"),))] == 5
    assert metrics[("monitor_labelled_records", ())] == 5
    assert metrics[("monitor_reference_accuracy_ratio", ())] == 0.97
    assert "text/plain" in sidecar.get("/metrics").headers["content-type"]
    assert "body_mass_g" in sidecar.get("/").text

    # 4. a restart resumes where it stopped: nothing lost, nothing counted twice, no second dispatch
    sidecar.stop()
    append(log, log_lines(shifted.head(20), "after-restart"))
    sidecar.start()
    wait_until(lambda: records_read(sidecar) == 620, 20, "the records written meanwhile", sidecar)
    time.sleep(1.0)
    assert records_read(sidecar) == 620
    assert len(github.requests) == 1
    metrics = sidecar.metrics()
    assert metrics[("monitor_corrupt_lines_total", (("log", "predictions"),))] == 1
    assert metrics[("monitor_feedback_total", (("result", "matched"),))] == 5
    sidecar.stop()
