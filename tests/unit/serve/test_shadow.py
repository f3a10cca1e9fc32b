"""The shadow queue (``mlops.serve.shadow``): copies beyond ``SCORER_SHADOW_QUEUE`` are dropped
and counted, never waited for; the copies waiting are merged into one challenger call; a merged
call that fails is retried copy by copy so that each copy's outcome is its own; a graceful stop
scores what waits; every copy scored leaves lines that repeat the answered request's ids and
features with the challenger's prediction and ``shadow: true``."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mlops.serve.batches import Records
from mlops.serve.metrics import ScorerMetrics
from mlops.serve.model import Prediction
from mlops.serve.predlog import PredictionLogWriter
from mlops.serve.schema import input_schema
from mlops.serve.shadow import ShadowCopy, ShadowScorer

SIGNATURE: Any = {
    "model_name": "tiny",
    "target": "y",
    "task": "regression",
    "features": [
        {
            "name": "Distance (km)",
            "input_name": "Distance__km_",
            "type": "number",
            "nullable": True,
            "categories": None,
            "min": 0.0,
            "max": 10.0,
        }
    ],
    "classes": [],
    "positive_class": None,
    "threshold": None,
}
SCHEMA = input_schema(SIGNATURE)
CHALLENGER = ("challenger", "v2")


class FakeChallenger:
    """A regressor predicting twice the distance; it fails on calls of ``fail_from`` rows or
    more, and waits for ``gate`` (when set) before each call."""

    model_version = "v2"
    regression = True
    classes: list[str] = []

    def __init__(self, fail_from: int = 10_000, gate: threading.Event | None = None) -> None:
        self.fail_from = fail_from
        self.gate = gate
        self.calls: list[int] = []

    def predict(self, feed: dict[str, Any]) -> Prediction:
        if self.gate is not None:
            assert self.gate.wait(10)
        values = np.asarray(feed["Distance__km_"], dtype=np.float64).reshape(-1)
        self.calls.append(len(values))
        if len(values) >= self.fail_from:
            raise RuntimeError(f"cannot score {len(values)} rows")
        return Prediction([], [], (2 * values).tolist())


def copy_of(request_id: str, distances: list[float]) -> ShadowCopy:
    inputs = Records([{"Distance (km)": value} for value in distances])
    inputs.client_id = "client-7"
    return ShadowCopy(
        1_795_000_000.0,
        request_id,
        {"Distance (km)": list(distances)},
        len(distances),
        inputs,
        0.001,
    )


def run(
    tmp_path: Path, challenger: FakeChallenger, copies: list[ShadowCopy], limit: int
) -> tuple[list[dict[str, Any]], ScorerMetrics, ShadowScorer]:
    """Offer ``copies`` in one loop turn, drain, and read back the log and the metrics."""
    log = PredictionLogWriter(tmp_path / "predictions.jsonl", 1 << 20, 1)
    metrics = ScorerMetrics("tiny", "v1", "commit")

    async def offer_all() -> ShadowScorer:
        shadow = ShadowScorer(challenger, SCHEMA, limit, log, metrics)  # type: ignore[arg-type]
        for copy in copies:
            shadow.offer(copy)
        if challenger.gate is not None:
            challenger.gate.set()
        await shadow.drain(10)
        await asyncio.sleep(0)  # the last group's commit
        return shadow

    shadow = asyncio.run(offer_all())
    log.close()
    lines = [json.loads(line) for line in log.file.path.read_text().splitlines()]
    return lines, metrics, shadow


def outcomes(metrics: ScorerMetrics) -> dict[str, int]:
    return {key[2]: count for key, count in metrics.own.model_requests.items()}


def test_copies_beyond_the_queue_are_dropped_and_counted_and_the_rest_merged(
    tmp_path: Path,
) -> None:
    challenger = FakeChallenger(gate=threading.Event())  # busy with the first copy meanwhile
    copies = [copy_of(f"r{number}", [number, number + 0.5]) for number in range(8)]
    lines, metrics, _ = run(tmp_path, challenger, copies, limit=3)
    assert challenger.calls == [2, 6]  # the first alone, then the three that waited, merged
    assert outcomes(metrics) == {"ok": 4, "dropped": 4}
    assert [(line["request_id"], line["index"]) for line in lines] == [
        (f"r{number}", index) for number in range(4) for index in range(2)
    ]
    first = lines[0]
    assert first["role"] == "challenger" and first["shadow"] is True
    assert first["model_version"] == "v2" and first["client_request_id"] == "client-7"
    assert first["features"] == {"Distance (km)": 0} and first["prediction"] == 0.0
    assert lines[3]["prediction"] == 3.0  # r1, index 1: twice 1.5
    assert all(line["latency_seconds"] >= 0.001 for line in lines)  # the checks' share too
    assert metrics.own.model_latency[CHALLENGER].counts[-1] == 0
    assert sum(metrics.own.model_latency[CHALLENGER].counts) == 4


def test_a_failing_merged_call_is_retried_copy_by_copy(tmp_path: Path) -> None:
    challenger = FakeChallenger(fail_from=5, gate=threading.Event())
    copies = [copy_of("first", [1.0]), *(copy_of(f"r{n}", [1.0, 2.0]) for n in range(3))]
    copies.append(copy_of("large", [1.0] * 6))
    lines, metrics, _ = run(tmp_path, challenger, copies, limit=10)
    assert challenger.calls == [1, 12, 2, 2, 2, 6]  # merged fails: each alone, the large fails
    assert outcomes(metrics) == {"ok": 4, "error": 1}
    assert {line["request_id"] for line in lines} == {"first", "r0", "r1", "r2"}


def test_nothing_is_waited_for_when_the_challenger_hangs(tmp_path: Path) -> None:
    """``offer`` returns at once while the challenger is stuck; the copies wait or drop."""
    gate = threading.Event()
    challenger = FakeChallenger(gate=gate)
    log = PredictionLogWriter(tmp_path / "predictions.jsonl", 1 << 20, 1)
    metrics = ScorerMetrics("tiny", "v1", "commit")

    async def offer_while_stuck() -> tuple[int, bool]:
        shadow = ShadowScorer(challenger, SCHEMA, 2, log, metrics)  # type: ignore[arg-type]
        for number in range(50):
            shadow.offer(copy_of(f"r{number}", [1.0]))
        waiting, busy = len(shadow.waiting), shadow.busy
        gate.set()
        await shadow.drain(10)
        return waiting, busy

    assert asyncio.run(offer_while_stuck()) == (2, True)
    log.close()
    assert outcomes(metrics) == {"ok": 3, "dropped": 47}
