"""Smoke test of a deployed scorer and its monitoring sidecar, over HTTP (standard library only).

``python -m mlops.gitops.smoke --scorer URL --sidecar URL``: waits until both are ready, then
checks the scorer's metadata, a batch prediction built from the model's own signature, the
rejection of a bad request with a 4xx, the V2 readiness routes and ``/metrics``; then that the
sidecar has read the scored records from the prediction log (``GET /drift``) and serves
``/metrics``. Prints one line per check and stops at the first failure. ``SCORER_API_TOKEN`` is
sent when set. It imports nothing outside the standard library but ``mlops.core.errors`` (itself
standard library only), so ``make smoke`` runs it with any python3, without the project's venv.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlops.core.errors import StageError, run

RECORDS = 20
PROBABILITY_TOLERANCE = 1e-3


class UnreachableError(StageError):
    """No HTTP answer at all: refused, reset or timed out (the server may not be up yet)."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except json.JSONDecodeError:
            raise StageError(f"expected a JSON body, got {self.body[:200]!r}") from None


class Client:
    def __init__(self, base_url: str, token: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Reply(response.status, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read())
        except OSError as error:  # URLError, connection reset, socket timeout
            raise UnreachableError(f"{method} {self.base_url}{path}: {error}") from None

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def expect(self, method: str, path: str, status: int = 200, body: Any = None) -> Reply:
        reply = self.request(method, path, body)
        if reply.status != status:
            raise StageError(
                f"{method} {self.base_url}{path}: expected {status}, got {reply.status} "
                f"{reply.body[:300]!r}"
            )
        return reply


def wait_until(condition: Callable[[], bool], timeout: float, what: str, pause: float) -> float:
    """Poll ``condition`` until it holds; the seconds it took, or StageError after ``timeout``."""
    started = time.monotonic()
    last_error = ""
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except UnreachableError as error:
            last_error = f" (last error: {error})"
        if time.monotonic() - started >= timeout:
            raise StageError(f"{what}: not after {timeout:.0f}s{last_error}")
        time.sleep(pause)


def sample_records(signature: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Valid records spread over the training ranges and categories the signature declares."""
    records = []
    for index in range(count):
        record: dict[str, Any] = {}
        for feature in signature["features"]:
            record[feature["name"]] = _sample_value(feature, index, count)
        records.append(record)
    return records


def _sample_value(feature: dict[str, Any], index: int, count: int) -> Any:
    if feature["type"] == "number":
        low, high = feature.get("min"), feature.get("max")
        if low is None or high is None:
            return 0.0
        return low + (high - low) * index / max(count - 1, 1)
    categories = feature.get("categories") or ["value"]
    return categories[index % len(categories)]


def check_predictions(
    body: Any, classes: Sequence[str], count: int, task: str = "classification"
) -> None:
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != count:
        raise StageError(f"POST /predict: expected {count} predictions, got {str(body)[:300]}")
    for prediction in predictions:
        if task == "regression":
            value = prediction.get("prediction")
            if type(value) not in (int, float) or not math.isfinite(value):
                raise StageError(f"POST /predict: prediction {value!r} is not a finite number")
            continue
        if prediction.get("label") not in classes:
            raise StageError(f"POST /predict: label {prediction.get('label')!r} not in {classes}")
        probabilities = prediction.get("probabilities", {})
        if sorted(probabilities) != sorted(classes):
            raise StageError(f"POST /predict: probabilities for {sorted(probabilities)}")
        total = math.fsum(probabilities.values())
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise StageError(f"POST /predict: probabilities sum to {total}, not 1")


def check_drift(body: Any, features: Sequence[str]) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("alert"), bool):
        raise StageError(f"GET /drift: expected window_size, alert, features, got {body}")
    missing = [name for name in features if name not in body.get("features", {})]
    if missing:
        raise StageError(f"GET /drift: no drift score for feature(s) {missing}")
    if "score" not in body.get("prediction", {}):
        raise StageError("GET /drift: no prediction drift score")


def check_exposition(reply: Reply, where: str) -> None:
    samples = [line for line in reply.body.decode().splitlines() if line and line[0] != "#"]
    if not samples:
        raise StageError(f"{where}: the Prometheus exposition holds no sample")


def smoke(scorer: Client, sidecar: Client, timeout: float, pause: float) -> list[str]:
    """Run every check; the lines describing what passed."""
    passed = []
    took = wait_until(lambda: scorer.get("/health/ready").status == 200, timeout, "scorer", pause)
    passed.append(f"scorer ready after {took:.1f}s")
    took = wait_until(lambda: sidecar.get("/health/ready").status == 200, timeout, "sidecar", pause)
    passed.append(f"sidecar ready after {took:.1f}s")

    metadata = scorer.expect("GET", "/metadata").json()
    signature = metadata["signature"]
    name, classes = metadata["model_name"], signature["classes"]
    passed.append(f"metadata: {name} {metadata['model_version']}, classes {classes}")

    records = sample_records(signature, RECORDS)
    reply = scorer.expect("POST", "/predict", body={"records": records})
    check_predictions(reply.json(), classes, RECORDS, signature.get("task", "classification"))
    passed.append(f"predict: {RECORDS} records scored")

    bad = scorer.request("POST", "/predict", {"records": "not a list of records"})
    if not 400 <= bad.status < 500:
        raise StageError(f"POST /predict with a bad body: expected a 4xx, got {bad.status}")
    passed.append(f"a bad request is refused with {bad.status}")

    scorer.expect("GET", "/v2/health/ready")
    scorer.expect("GET", f"/v2/models/{name}/ready")
    passed.append("V2 readiness routes answer 200")
    check_exposition(scorer.expect("GET", "/metrics"), "scorer /metrics")
    passed.append("scorer /metrics")

    def logged() -> bool:
        return int(sidecar.expect("GET", "/drift").json().get("window_size", 0)) >= RECORDS

    took = wait_until(logged, timeout, f"sidecar reading {RECORDS} logged predictions", pause)
    check_drift(sidecar.expect("GET", "/drift").json(), [f["name"] for f in signature["features"]])
    passed.append(f"drift: the sidecar read the scored records after {took:.1f}s")
    check_exposition(sidecar.expect("GET", "/metrics"), "sidecar /metrics")
    passed.append("sidecar /metrics")
    return passed


def main(argv: Sequence[str] | None = None) -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--scorer", default="http://127.0.0.1:8080")
    arguments.add_argument("--sidecar", default="http://127.0.0.1:8090")
    arguments.add_argument("--timeout", type=float, default=120.0, help="seconds per wait")
    options = arguments.parse_args(argv)
    token = os.environ.get("SCORER_API_TOKEN") or None
    request_timeout = 10.0
    scorer = Client(options.scorer, token, request_timeout)
    sidecar = Client(options.sidecar, None, request_timeout)
    for line in smoke(scorer, sidecar, options.timeout, pause=1.0):
        print(f"ok  {line}")


if __name__ == "__main__":
    raise SystemExit(run(main))
