"""The real sidecar process on a free 127.0.0.1 port, a local stand-in for the GitHub API, and
packaged model directories (the three files the sidecar reads) for a classifier or a regressor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlops.core import artifacts
from mlops.profile import profile_column, profile_table
from serve_fixtures import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GITHUB_TOKEN = "ghp_integration_test_token"
# The keys of a regressor's ``GET /performance`` (and of the retrain payload's "performance").
REGRESSION_PERFORMANCE = {"labelled", "mae", "rmse", "reference_mae", "reference_rmse", "degraded"}


@dataclass
class FakeGitHub:
    """Records every POST it receives; answers ``status`` (204, as the dispatches endpoint does)
    with an optional ``Location`` header."""

    status: int = 204
    location: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


def rollout_rules(path: Path, **changes: Any) -> Path:
    """deploy/rollout.yaml written to ``path`` with ``changes``: a key, or ``section__name``
    for a key of a section (``performance__required=True``)."""
    rules = yaml.safe_load((PROJECT_ROOT / "deploy" / "rollout.yaml").read_text())
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            rules[section][name] = value
        else:
            rules[section] = value
    path.write_text(yaml.safe_dump(rules, allow_unicode=True))
    return path


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 with ``handler``, in a thread: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.requests.append(
                {"method": "POST", "path": self.path, "headers": self.headers, "body": body}
            )
            self.send_response(fake.status)
            if fake.location:
                self.send_header("Location", fake.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as fake.url:
        yield fake


@dataclass
class Sidecar:
    environment: dict[str, str]
    workdir: Path
    url: str
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with (self.workdir / "sidecar.log").open("ab") as output:
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

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

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

    def records_read(self) -> float:
        return self.metrics()[("monitor_records_read_total", (("log", "predictions"),))]

    def corrupt_lines(self) -> float:
        return self.metrics()[("monitor_corrupt_lines_total", (("log", "predictions"),))]


def sidecar_for(
    workdir: Path, model_dir: Path, prediction_log: Path, github: FakeGitHub, **settings: str
) -> Sidecar:
    """A sidecar (not yet started) reading ``prediction_log``, dispatching to ``github``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environment = {
        "PATH": os.environ["PATH"],
        "PREDICTION_LOG": str(prediction_log),
        "MODEL_DIR": str(model_dir),
        "MONITOR_PORT": str(port),
        "MONITOR_STATE_FILE": str(workdir / "monitor_state.json"),
        "MONITOR_FEEDBACK_LOG": str(workdir / "feedback.jsonl"),
        "MONITOR_POLL_INTERVAL_SECONDS": "0.1",
        "MONITOR_WINDOW_SIZE": "300",
        "MONITOR_MIN_WINDOW_SIZE": "200",
        "MONITOR_ALERT_HOLD_SECONDS": "1",
        "MONITOR_GITHUB_REPOSITORY": "owner/template",
        "MONITOR_GITHUB_TOKEN": GITHUB_TOKEN,
        "MONITOR_GITHUB_API_URL": github.url,
        **settings,
    }
    return Sidecar(environment, workdir, f"http://127.0.0.1:{port}")


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


def assert_one_retrain_dispatch(github: FakeGitHub, model_version: str, feature: str) -> None:
    """Exactly one request, to the dispatches endpoint, authenticated, naming ``feature``."""
    assert len(github.requests) == 1, github.requests
    (request,) = github.requests
    assert request["path"] == "/repos/owner/template/dispatches"
    assert request["headers"]["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert request["headers"]["Accept"] == "application/vnd.github+json"
    assert request["headers"]["X-GitHub-Api-Version"] == "2022-11-28"
    body = json.loads(request["body"])
    assert body["event_type"] == "retrain"
    assert body["client_payload"]["model_version"] == model_version
    assert list(body["client_payload"]["drifted_features"]) == [feature]


def describe_feature(column: pd.Series, input_name: str) -> artifacts.Feature:
    """The signature's entry for a training column, as the package stage writes it."""
    numeric = pd.api.types.is_numeric_dtype(column)
    return {
        "name": str(column.name),
        "input_name": input_name,
        "type": "number" if numeric else "string",
        "nullable": bool(column.isna().any()),
        "categories": None if numeric else sorted(column.dropna().astype(str).unique()),
        "min": float(column.min()) if numeric else None,
        "max": float(column.max()) if numeric else None,
    }


def write_package(
    directory: Path,
    train: pd.DataFrame,
    validation: Mapping[str, Any],
    *,
    labels: Sequence[str] | None = None,
    predictions: Sequence[float] | None = None,
    model_name: str = "toy",
    model_version: str = "7",
) -> Path:
    """signature.json, reference_profile.json and manifest.json of a model trained on ``train``
    (its feature columns): a classifier given its training ``labels``, a regressor given its
    ``predictions`` on ``train``; ``validation`` is the evaluate stage's metrics.json."""
    task: artifacts.Task = "classification" if labels is not None else "regression"
    names = artifacts.input_names([str(column) for column in train.columns])
    profile: dict[str, Any] = profile_table(train)
    if labels is not None:
        shares = pd.Series(labels).value_counts(normalize=True)
        profile["classes"] = {str(label): float(share) for label, share in shares.items()}
    else:
        profile["prediction"] = profile_column(pd.Series(predictions, dtype="float64"))
    signature: artifacts.Signature = {
        "model_name": model_name,
        "target": "target",
        "task": task,
        "features": [describe_feature(train[column], names[column]) for column in train],
        "classes": sorted(profile.get("classes", {})),
        "positive_class": None,
        "threshold": None,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / artifacts.SIGNATURE_FILE).write_text(json.dumps(signature))
    (directory / artifacts.PROFILE_FILE).write_text(json.dumps(profile))
    manifest = {
        "model_name": model_name,
        "model_version": model_version,
        "lineage": {"git_commit": "", "data_hash": "", "params_hash": "", "created": ""},
        "metrics": {"validation": {"task": task, **validation}, "test": {}},
        "files": {
            name: artifacts.sha256_of(directory / name)
            for name in (artifacts.SIGNATURE_FILE, artifacts.PROFILE_FILE)
        },
    }
    (directory / artifacts.MANIFEST_FILE).write_text(json.dumps(manifest))
    return directory


def prediction_lines(
    rows: Sequence[Mapping[str, Any]],
    predictions: Sequence[str | float],
    prefix: str,
    stamp: str = "2027-01-15T08:00:00.000Z",
    per_request: int = 5,
) -> bytes:
    """Prediction log lines as the scorer writes them: a class with its probabilities, or a
    regressor's number with null probabilities; ``per_request`` records per request id."""
    out = []
    for position, (row, prediction) in enumerate(zip(rows, predictions, strict=True)):
        record = {
            "ts": stamp,
            "request_id": f"{prefix}-{position // per_request}",
            "index": position % per_request,
            "model_version": "7",
            "features": {name: None if _missing(value) else value for name, value in row.items()},
            "prediction": prediction,
            "probabilities": None if isinstance(prediction, float) else {str(prediction): 1.0},
            "latency_seconds": 0.001,
        }
        out.append(json.dumps(record).encode() + b"\n")
    return b"".join(out)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


@dataclass
class FakeScorer:
    """The scorer's ``/metrics`` as far as the sidecar reads them: the request counters per
    role, model version and outcome, which a test raises as traffic would."""

    counts: dict[tuple[str, str, str], float] = field(default_factory=dict)
    url: str = ""
    scrapes: int = 0

    def add(self, role: str, version: str, outcome: str, value: float) -> None:
        key = (role, version, outcome)
        self.counts[key] = self.counts.get(key, 0.0) + value

    def exposition(self) -> str:
        lines = [
            "# HELP scorer_model_requests_total Requests scored, by role, version and outcome.",
            "# TYPE scorer_model_requests_total counter",
        ]
        for (role, version, outcome), value in sorted(self.counts.items()):
            labels = f'role="{role}",model_version="{version}",outcome="{outcome}"'
            lines.append(f"scorer_model_requests_total{{{labels}}} {value}")
        lines.append('scorer_requests_total{route="/predict",status="200"} 12.0')
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def fake_scorer() -> Iterator[FakeScorer]:
    """A real HTTP server on 127.0.0.1 answering ``GET /metrics`` in the text format."""
    fake = FakeScorer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            fake.scrapes += 1
            body = fake.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as fake.url:
        yield fake


def role_lines(
    rows: Sequence[Mapping[str, Any]],
    champion: Sequence[str | float],
    challenger: Sequence[str | float] | None,
    prefix: str,
    *,
    mode: str = "shadow",
    stamp: str = "2027-01-15T08:00:00.000Z",
    versions: tuple[str, str] = ("champ-1", "chall-2"),
    latency: tuple[float, float] = (0.004, 0.003),
) -> bytes:
    """Prediction log lines as the scorer with a challenger writes them, one record per request:
    in shadow mode the champion's answered line, then the challenger's copy (``"shadow": true``,
    the same request id, index and features); in a canary every other request answered by the
    challenger. ``challenger`` None: the champion alone, lines without a role (an old scorer)."""
    out = []
    for position, row in enumerate(rows):
        features = {name: None if _missing(value) else value for name, value in row.items()}
        base = {"ts": stamp, "request_id": f"{prefix}-{position}", "index": 0, "features": features}
        answered_by_challenger = mode == "canary" and challenger is not None and position % 2
        role = "challenger" if answered_by_challenger else "champion"
        answered = _scored(
            base,
            versions[role == "challenger"],
            (challenger if answered_by_challenger else champion)[position],  # type: ignore[index]
            latency[role == "challenger"],
        )
        if challenger is not None:
            answered["role"] = role
        out.append(answered)
        if mode == "shadow" and challenger is not None:
            copy = _scored(base, versions[1], challenger[position], latency[1])
            out.append(copy | {"role": "challenger", "shadow": True})
    return b"".join(json.dumps(record).encode() + b"\n" for record in out)


def _scored(
    base: Mapping[str, Any], version: str, prediction: str | float, latency: float
) -> dict[str, Any]:
    return {
        **base,
        "model_version": version,
        "prediction": prediction,
        "probabilities": None if isinstance(prediction, float) else {str(prediction): 1.0},
        "latency_seconds": latency,
    }
