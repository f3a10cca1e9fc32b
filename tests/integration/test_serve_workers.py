"""The scorer as several worker processes (``SCORER_WORKERS=2``) over real HTTP: one prediction
log they rotate together, metrics that add up whichever worker answers the scrape, and a
worker that cannot start stopping the server instead of restarting forever."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from mlops.core.artifacts import sha256_of
from mlops.serve.metrics import PUBLISH_SECONDS, Counts
from serve_fixtures import (
    bundled_records,
    copy_package,
    launch_to_refusal,
    running_scorer,
    signature_of,
)

LOG_MAX_BYTES = 64 * 1024  # the smallest the settings allow: the load below rotates ~20 times
BATCH = 20


def metric(text: str, series: str) -> float:
    line = next((line for line in text.splitlines() if line.startswith(series + " ")), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def test_workers_share_one_rotating_log_and_one_set_of_metrics(
    packaged_model: Path, tmp_path: Path
) -> None:
    records = bundled_records(signature_of(packaged_model))
    with running_scorer(
        packaged_model,
        tmp_path / "scorer",
        SCORER_WORKERS="2",
        SCORER_LOG_MAX_BYTES=str(LOG_MAX_BYTES),
        SCORER_LOG_BACKUPS="1000",
    ) as scorer:

        def send(number: int) -> tuple[int, str]:
            start = number * 7 % (len(records) - BATCH)
            body = json.dumps({"records": records[start : start + BATCH]})
            with httpx.Client(base_url=scorer.url, timeout=30) as client:  # a new connection
                response = client.post(
                    "/predict", content=body, headers={"content-type": "application/json"}
                )
            return response.status_code, response.headers.get("x-request-id", "")

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(send, range(200)))
        assert {status for status, _ in results} == {200}
        time.sleep(2 * PUBLISH_SECONDS)  # every worker has published its counts since
        shared = scorer.prediction_log.with_name(f".{scorer.prediction_log.name}.workers")
        per_worker = [Counts.from_json(path.read_bytes()) for path in shared.glob("worker-*")]
        assert len(per_worker) == 2
        assert all(counts.records["/predict"] > 0 for counts in per_worker), "one worker idle"
        for _ in range(6):  # new connections: the scrapes reach both workers
            text = httpx.get(f"{scorer.url}/metrics", timeout=10).text
            ok = 'scorer_requests_total{method="POST",route="/predict",status="200"}'
            assert metric(text, ok) == 200
            assert metric(text, 'scorer_records_scored_total{route="/predict"}') == 200 * BATCH
            assert metric(text, 'scorer_request_duration_seconds_count{route="/predict"}') == 200
        exit_code = scorer.stop()
    output = scorer.output()
    assert exit_code == 0, output
    ready = re.findall(r"\[(\d+)\] INFO mlops\.serve: ready: model", output)
    assert len(set(ready)) == 2, output
    assert output.count("Application shutdown complete") == 2
    assert not shared.exists()  # the parent cleans up after its workers
    log = scorer.prediction_log
    files = [log, *(f for f in log.parent.glob(log.name + ".*") if f.suffix[1:].isdigit())]
    assert len(files) > 10  # rotated many times, by both workers
    assert all(file.stat().st_size <= LOG_MAX_BYTES for file in files)
    lines = [json.loads(line) for file in files for line in file.read_text().splitlines()]
    answered = {request_id for _, request_id in results}
    assert {line["request_id"] for line in lines} == answered
    assert len({(line["request_id"], line["index"]) for line in lines}) == len(lines) == 200 * BATCH


def test_a_worker_that_cannot_load_the_model_stops_the_server(
    packaged_model: Path, tmp_path: Path
) -> None:
    """The manifest matches (the parent's check passes) but the signature names a feature the
    model does not have: each worker fails to load it, and the server exits instead of
    restarting them in a loop."""
    package = copy_package(packaged_model, tmp_path / "package")
    signature: dict[str, Any] = json.loads((package / "signature.json").read_text())
    signature["features"][0].update(name="renamed_feature", input_name="renamed_feature")
    (package / "signature.json").write_text(json.dumps(signature))
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["files"]["signature.json"] = sha256_of(package / "signature.json")
    (package / "manifest.json").write_text(json.dumps(manifest))
    scorer, exit_code = launch_to_refusal(package, tmp_path / "scorer", SCORER_WORKERS="2")
    output = scorer.output()
    assert exit_code == 1, output
    assert "refusing to serve" in output and "renamed_feature" in output
    assert "error: a worker could not start" in output
    assert "Traceback" not in output
