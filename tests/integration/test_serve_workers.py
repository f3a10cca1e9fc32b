"""The scorer as several worker processes (``SCORER_WORKERS=2``) over real HTTP and gRPC: one
prediction log they rotate together, metrics that add up whichever worker answers the scrape,
HTTP and gRPC connections spread over the workers (each listens on the port), a taken port
refused before any worker starts, and a worker that cannot start stopping the server instead of
restarting forever."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from mlops.core.artifacts import sha256_of
from mlops.serve.grpc.open_inference_pb2_grpc import GRPCInferenceServiceStub
from mlops.serve.grpc.service import INFER_ROUTE
from mlops.serve.metrics import PUBLISH_SECONDS, Counts
from package_fixtures import binary_package
from serve_fixtures import (
    bundled_records,
    copy_package,
    free_port,
    grpc_infer_request,
    launch_to_refusal,
    running_scorer,
    signature_of,
    table_records,
)

LOG_MAX_BYTES = 64 * 1024  # the smallest the settings allow: the load below rotates ~20 times
BATCH = 20


def version_of(package: Path) -> str:
    return str(json.loads((package / "manifest.json").read_text())["model_version"])


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
        champion = ("/predict", "champion", version_of(packaged_model))
        assert all(counts.records[champion] > 0 for counts in per_worker), "one worker idle"
        for _ in range(6):  # new connections: the scrapes reach both workers
            text = httpx.get(f"{scorer.url}/metrics", timeout=10).text
            ok = 'scorer_requests_total{method="POST",route="/predict",status="200"}'
            assert metric(text, ok) == 200
            version = version_of(packaged_model)
            scored = (
                f'scorer_records_scored_total{{model_version="{version}",role="champion",'
                'route="/predict"}'
            )
            assert metric(text, scored) == 200 * BATCH
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


def wait_for_every_worker(output: Callable[[], str], workers: int = 2) -> None:
    """Ready means one worker is: wait until each has said so."""
    deadline = time.monotonic() + 60
    while len(set(re.findall(r"\[(\d+)\] INFO mlops\.serve: ready", output()))) < workers:
        assert time.monotonic() < deadline, output()
        time.sleep(0.1)


def test_connections_opened_at_once_spread_over_the_workers(
    packaged_model: Path, tmp_path: Path
) -> None:
    """32 keep-alive connections opened before any request is sent, as a load balancer's pool or
    wrk opens them: each worker takes a share. (With one accept queue shared by the workers, the
    first to wake took every waiting connection in 3 of 8 tries with 16.) Each worker draws the
    prefix of its request ids: the prefix says who answered."""
    body = json.dumps({"records": bundled_records(signature_of(packaged_model))[:1]}).encode()
    with running_scorer(packaged_model, tmp_path / "scorer", SCORER_WORKERS="2") as scorer:
        wait_for_every_worker(scorer.output)
        host, port = scorer.http_target.rsplit(":", 1)
        connections = [socket.create_connection((host, int(port)), timeout=30) for _ in range(32)]
        try:
            for connection in connections:
                connection.sendall(
                    b"POST /predict HTTP/1.1\r\nhost: scorer\r\ncontent-type: application/json"
                    b"\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )
            answered_by: Counter[str] = Counter()
            for connection in connections:
                response = http.client.HTTPResponse(connection)
                response.begin()
                assert response.status == 200, response.read()
                answered_by[response.getheader("x-request-id", "")[:16]] += 1
        finally:
            for connection in connections:
                connection.close()
    # Each connection is hashed to a worker: 4 or fewer of 32 on one has odds of 3 in a million.
    assert len(answered_by) == 2 and min(answered_by.values()) > 4, answered_by


@pytest.mark.parametrize("reuse_port", [False, True], ids=["a program", "another scorer"])
def test_a_taken_port_stops_the_workers_before_they_start(
    packaged_model: Path, tmp_path: Path, reuse_port: bool
) -> None:
    """The port is taken by a program, or by another scorer's workers (sockets with
    SO_REUSEPORT, which would otherwise let this scorer's workers join them and split the
    connections): refused, naming the setting and the address."""
    port = free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        taken.bind(("127.0.0.1", port))
        taken.listen()
        scorer, exit_code = launch_to_refusal(
            packaged_model, tmp_path / "scorer", SCORER_WORKERS="2", SCORER_PORT=str(port)
        )
    output = scorer.output()
    assert exit_code == 1, output
    assert f"SCORER_PORT={port}: cannot listen on 127.0.0.1:{port} (Address already in use)" in (
        output
    )
    assert "Started parent process" not in output and "Traceback" not in output


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


def test_every_worker_serves_grpc_and_logs_each_answered_call_through_sigterm(
    tmp_path: Path,
) -> None:
    package = binary_package(tmp_path / "binary", threshold=0.3)
    signature = signature_of(package)
    records = table_records(package)
    with running_scorer(package, tmp_path / "scorer", SCORER_WORKERS="2") as scorer:
        wait_for_every_worker(scorer.output)

        def call(number: int) -> tuple[str, int]:
            batch = records[number % 20 : number % 20 + 5]
            # A new connection each time (gRPC shares connections between a process's channels
            # to one target unless told otherwise), for the kernel to hand to either worker.
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(scorer.grpc_target, options) as channel:
                stub = GRPCInferenceServiceStub(channel)
                request = grpc_infer_request(signature, batch)
                _, answer = stub.ModelInfer.with_call(request, timeout=30)
            return dict(answer.trailing_metadata())["x-request-id"], len(batch)

        with ThreadPoolExecutor(max_workers=8) as pool:
            answered = dict(pool.map(call, range(40)))
        time.sleep(2 * PUBLISH_SECONDS)
        shared = scorer.prediction_log.with_name(f".{scorer.prediction_log.name}.workers")
        per_worker = [Counts.from_json(path.read_bytes()) for path in shared.glob("worker-*")]
        champion = (INFER_ROUTE, "champion", version_of(package))
        assert [counts.records[champion] > 0 for counts in per_worker] == [True, True]

        in_flight: dict[str, int] = {}
        stop_sending = time.monotonic() + 30

        def keep_calling() -> None:
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(scorer.grpc_target, options) as channel:
                stub = GRPCInferenceServiceStub(channel)
                request = grpc_infer_request(signature, records[:50])
                while time.monotonic() < stop_sending:
                    try:
                        _, answer = stub.ModelInfer.with_call(request, timeout=30)
                    except grpc.RpcError:  # the server went away
                        return
                    in_flight[dict(answer.trailing_metadata())["x-request-id"]] = 50

        with ThreadPoolExecutor(max_workers=4) as pool:
            senders = [pool.submit(keep_calling) for _ in range(4)]
            time.sleep(1.0)
            exit_code = scorer.stop()
            for sender in senders:
                sender.result(timeout=60)
    assert exit_code == 0, scorer.output()
    assert in_flight, "no call was answered while the workers ran"
    answered |= in_flight
    lines = [json.loads(line) for line in scorer.log_lines()]
    assert {line["request_id"] for line in lines} == set(answered)
    assert len(lines) == sum(answered.values())
