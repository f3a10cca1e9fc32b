"""Shipping to S3 (moto on 127.0.0.1) by the real sidecar, from the real scorer's log.

- A sidecar killed in the middle of its uploads, then started again: every logged record is in
  the bucket exactly once (no segment missing, none twice).
- A store that cannot be reached, then both containers killed and started again: nothing was
  deleted meanwhile (more closed segments than SCORER_LOG_BACKUPS), and it all ships once the
  store answers.
- A shutdown as Kubernetes does it (SIGTERM to both containers at once): the open segments ship
  too, labels included, and nothing is left on the volume.
"""

from __future__ import annotations

import io
import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pyarrow.parquet as pq
import pytest

from mlops.core.segments import closed_segments
from monitor_fixtures import FakeGitHub, Sidecar, sidecar_for, wait_until
from serve_fixtures import Scorer, bundled_records, launch, running_scorer, signature_of, wait_ready

BUCKET, PREFIX = "mlops", "inference"
SEGMENT_BYTES = 64 * 1024  # the smallest the scorer allows: many segments
BATCH = 50


def bucket_records(log: str) -> Counter[tuple[str, int]]:
    """(request_id, index) of every row of every Parquet object under ``<prefix>/<log>/``."""
    client = boto3.client("s3")
    found: Counter[tuple[str, int]] = Counter()
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{PREFIX}/{log}/"
    ):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            table = pq.read_table(io.BytesIO(body), columns=["request_id", "index"])
            found.update(
                zip(table["request_id"].to_pylist(), table["index"].to_pylist(), strict=True)
            )
    return found


def object_count() -> int:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    return int(listed.get("KeyCount", 0))


def logged(scorer: Scorer) -> Counter[tuple[str, int]]:
    """(request_id, index) of every line of the log on disk, closed segments and open one."""
    found: Counter[tuple[str, int]] = Counter()
    for segment in [*closed_segments(scorer.prediction_log), scorer.prediction_log]:
        if segment.exists():
            for line in segment.read_text().splitlines():
                record = json.loads(line)
                found[(record["request_id"], record["index"])] += 1
    return found


def score(scorer: Scorer, records: list[dict[str, Any]], rounds: int) -> Counter[tuple[str, int]]:
    """Post ``records`` in batches ``rounds`` times; the (request_id, index) answered 200."""
    answered: Counter[tuple[str, int]] = Counter()
    with httpx.Client(base_url=scorer.url, timeout=30) as client:
        for _ in range(rounds):
            for start in range(0, len(records), BATCH):
                batch = records[start : start + BATCH]
                response = client.post("/predict", json={"records": batch})
                assert response.status_code == 200, response.text
                request_id = response.json()["request_id"]
                answered.update((request_id, index) for index in range(len(batch)))
    return answered


def shipping_sidecar(
    workdir: Path, model: Path, log: Path, github: FakeGitHub, s3: dict[str, str], **settings: str
) -> Sidecar:
    return sidecar_for(
        workdir,
        model,
        log,
        github,
        MONITOR_SHIP_URL=f"s3://{BUCKET}/{PREFIX}",
        MONITOR_SHIP_INTERVAL_SECONDS="0.2",
        MONITOR_SHIP_SHUTDOWN_WAIT_SECONDS="20",
        MONITOR_LABEL_LOG=str(workdir / "labels.jsonl"),
        MONITOR_SHIP_STATE_FILE=str(workdir / "ship_state.json"),
        **s3,
        **settings,
    )


def metric(sidecar: Sidecar, name: str, **labels: str) -> float:
    return sidecar.metrics().get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def records(packaged_model: Path) -> list[dict[str, Any]]:
    return bundled_records(signature_of(packaged_model))


@pytest.fixture
def scorer(packaged_model: Path, tmp_path: Path) -> Iterator[Scorer]:
    with running_scorer(
        packaged_model,
        tmp_path / "scorer",
        SCORER_LOG_MAX_BYTES=str(SEGMENT_BYTES),
        SCORER_LOG_SIDECAR="true",
    ) as running:
        yield running


def test_a_sidecar_killed_mid_upload_ships_every_segment_exactly_once_after_a_restart(
    scorer: Scorer,
    records: list[dict[str, Any]],
    packaged_model: Path,
    tmp_path: Path,
    github: FakeGitHub,
    s3: dict[str, str],
) -> None:
    answered = score(scorer, records, rounds=12)  # about 4,000 records: some 25 segments
    segments = len(closed_segments(scorer.prediction_log))
    assert segments > 20
    sidecar = shipping_sidecar(
        tmp_path / "sidecar", packaged_model, scorer.prediction_log, github, s3
    )
    sidecar.start()
    wait_until(lambda: object_count() >= 5, 60, "the first uploads", sidecar)
    sidecar.kill()  # SIGKILL in the middle of the shipping
    shipped_before_the_kill = object_count()
    assert 0 < shipped_before_the_kill < segments
    sidecar.start()
    wait_until(lambda: not closed_segments(scorer.prediction_log), 120, "every segment", sidecar)
    in_the_bucket = bucket_records("predictions")
    open_segment = logged(scorer)  # not closed yet: ships later
    assert in_the_bucket + open_segment == answered  # nothing missing
    assert max(in_the_bucket.values()) == 1  # nothing twice
    assert metric(sidecar, "monitor_shipped_records_total", log="predictions") > 0
    assert metric(sidecar, "monitor_unshipped_segments", log="predictions") == 0
    sidecar.kill()


def test_unshipped_segments_survive_both_containers_restarting_and_ship_later(
    packaged_model: Path,
    records: list[dict[str, Any]],
    tmp_path: Path,
    github: FakeGitHub,
    s3: dict[str, str],
) -> None:
    unreachable = {**s3, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens there
    settings = {"SCORER_LOG_MAX_BYTES": str(SEGMENT_BYTES), "SCORER_LOG_SIDECAR": "true"}
    scorer = launch(packaged_model, tmp_path / "scorer", **settings)
    wait_ready(scorer)
    answered = score(scorer, records, rounds=3)
    sidecar = shipping_sidecar(
        tmp_path / "sidecar", packaged_model, scorer.prediction_log, github, unreachable
    )
    sidecar.start()
    wait_until(
        lambda: metric(sidecar, "monitor_ship_failures_total") >= 2, 60, "failed passes", sidecar
    )
    assert metric(sidecar, "monitor_unshipped_segments", log="predictions") > 5
    sidecar.kill()  # both containers die (OOM, a crash): nothing gets to clean up
    scorer.process.send_signal(signal.SIGKILL)
    scorer.process.wait(10)
    assert len(closed_segments(scorer.prediction_log)) > 5  # more than SCORER_LOG_BACKUPS: kept

    with running_scorer(packaged_model, tmp_path / "scorer", **settings) as second:
        answered += score(second, records, rounds=1)
        sidecar.environment.update(s3)  # the store answers now
        sidecar.start()
        wait_until(
            lambda: not closed_segments(second.prediction_log), 120, "every segment", sidecar
        )
        assert bucket_records("predictions") + logged(second) == answered
        sidecar.kill()


def test_a_pod_shutdown_ships_everything_labels_included(
    scorer: Scorer,
    records: list[dict[str, Any]],
    packaged_model: Path,
    tmp_path: Path,
    github: FakeGitHub,
    s3: dict[str, str],
) -> None:
    sidecar = shipping_sidecar(
        tmp_path / "sidecar",
        packaged_model,
        scorer.prediction_log,
        github,
        s3,
        MONITOR_SHIP_SEGMENT_SECONDS="3600",  # nothing closes by age in this test
    )
    sidecar.start()
    answered = score(scorer, records[:40], rounds=2)
    labels = [{"request_id": rid, "index": index, "label": "Adelie"} for rid, index in answered]
    posted = httpx.post(f"{sidecar.url}/feedback", json=labels, timeout=10)
    assert posted.status_code == 200, posted.text
    assert logged(scorer) == answered  # all in the open segment
    # Kubernetes: SIGTERM to both containers at once; the sidecar waits for the scorer to go
    scorer.process.send_signal(signal.SIGTERM)
    assert sidecar.process is not None
    sidecar.process.send_signal(signal.SIGTERM)
    assert scorer.process.wait(30) in (0, -signal.SIGTERM), scorer.output()
    assert sidecar.process.wait(60) in (0, -signal.SIGTERM), sidecar.output()
    assert bucket_records("predictions") == answered
    assert bucket_records("labels") == answered
    volume = scorer.prediction_log.parent
    leftovers = [path.name for path in volume.iterdir() if path.name[-1].isdigit()]
    assert leftovers == [] and not closed_segments(tmp_path / "sidecar" / "labels.jsonl")
    assert scorer.prediction_log.stat().st_size == 0
