"""A hard kill of the scorer loses no answered record, and no request can write a line longer
than the scorer states.

Concurrent clients score records over HTTP until every scorer process is killed with SIGKILL (what
the OOM killer or a lost container does): each request answered 200 has exactly one log line per
record, none is written twice, and a scorer started on the same log afterwards cuts off the
unfinished line the kill may have left and appends whole lines after it. Three kills in a row, on
one process and on two worker processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops.core.segments import closed_segments
from serve_fixtures import (
    SHUTDOWN_ERRORS,
    BackgroundTraffic,
    Scorer,
    bundled_records,
    launch,
    post_json,
    running_scorer,
    signature_of,
    wait_ready,
)

RUNS = 3
ANSWERED_BEFORE_THE_KILL = 2000  # requests
CLIENTS = (1, 1, 1, 1, 10, 10, 100)  # records per request, one client each
SEGMENT_BYTES = 256 * 1024  # small segments: the load closes several before the kill


def descendants(pid: int) -> list[int]:
    """The process's children, their children, ... (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def kill_hard(scorer: Scorer) -> None:
    """SIGKILL to every process of the scorer at once: nothing gets to clean up."""
    processes = [*descendants(scorer.process.pid), scorer.process.pid]
    for pid in processes:
        os.kill(pid, signal.SIGKILL)
    scorer.process.wait(10)


def log_contents(log: Path) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The records of every whole line of every segment, and what is not a whole record."""
    records, broken = [], []
    for segment in [*closed_segments(log), log]:
        for line in segment.read_bytes().splitlines(keepends=True):
            try:
                records.append(json.loads(line))
            except ValueError:
                broken.append(line)
            else:
                if not line.endswith(b"\n"):
                    broken.append(line)
    return records, broken


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_under_load_loses_no_answered_record(
    packaged_model: Path, tmp_path: Path, workers: int
) -> None:
    records = bundled_records(signature_of(packaged_model))
    batches = [records[start : start + size] for start, size in enumerate(CLIENTS)]
    workdir, answered, outcomes = tmp_path / "scorer", [], []
    for run in range(RUNS):
        scorer = launch(
            packaged_model,
            workdir,
            SCORER_WORKERS=str(workers),
            SCORER_LOG_MAX_BYTES=str(SEGMENT_BYTES),
            SCORER_LOG_SIDECAR="true",  # keep every closed segment: the test reads them all
        )
        wait_ready(scorer)
        if run:  # the unfinished line the last kill may have left is gone
            assert not log_contents(scorer.prediction_log)[1], scorer.output()
        traffic = BackgroundTraffic(scorer.url, batches)
        traffic.start()
        deadline = time.monotonic() + 60
        while len(traffic.answered) < ANSWERED_BEFORE_THE_KILL and time.monotonic() < deadline:
            time.sleep(0.05)
        kill_hard(scorer)
        traffic.join()
        assert set(traffic.failures) <= SHUTDOWN_ERRORS, traffic.failures
        assert len(traffic.answered) >= ANSWERED_BEFORE_THE_KILL
        answered += traffic.answered
        logged, broken = log_contents(scorer.prediction_log)
        assert len(broken) <= 1, broken  # at most the line the kill interrupted, at the very end
        counts = Counter((record["request_id"], record["index"]) for record in logged)
        missing = [
            (answer.request_id, index)
            for answer in answered
            for index in range(answer.records)
            if counts[(answer.request_id, index)] != 1
        ]
        assert not missing, f"{len(missing)} answered record(s) not logged exactly once"
        assert max(counts.values()) == 1  # nothing written twice, answered or not
        answered_records = sum(answer.records for answer in traffic.answered)
        outcomes.append(
            f"run {run + 1}: {len(traffic.answered)} requests ({answered_records} records) "
            f"answered 200, all logged once; {len(logged) - sum(a.records for a in answered)} "
            f"record(s) logged without an answer, {len(broken)} unfinished line"
        )
    print(f"\n{workers} worker(s):\n" + "\n".join(outcomes))


def test_an_oversized_value_is_refused_and_no_line_outgrows_the_stated_bound(
    packaged_model: Path, tmp_path: Path
) -> None:
    """The issue's flood: a megabyte string in a categorical field used to be scored and logged
    whole, and 600 of them rotated every backup away."""
    signature = signature_of(packaged_model)
    record = bundled_records(signature, 1)[0]
    categorical = next(f["name"] for f in signature["features"] if f["type"] == "string")
    with running_scorer(packaged_model, tmp_path / "scorer", SCORER_LOG_BACKUPS="1") as scorer:
        stated = re.search(r"prediction log lines: at most (\d+) bytes", scorer.output())
        assert stated is not None, scorer.output()
        bound = int(stated.group(1))
        with httpx.Client(base_url=scorer.url, timeout=30) as client:
            flood = {"records": [{**record, categorical: "x" * (1 << 20)}]}
            for _ in range(20):
                response = post_json(client, "/predict", flood)
                assert response.status_code == 422, response.text
            details = response.json()["details"]
            assert [(d["field"], d["index"]) for d in details] == [(categorical, 0)]
            assert "1048576 characters; at most 256" in details[0]["message"]
            assert len(response.content) < 2000  # the value is not echoed back
            # the longest strings accepted, in the characters that take the most bytes logged
            for text in ("\x01" * 256, "\U0001f600" * 256, '"' * 256):
                response = post_json(
                    client, "/predict", {"records": [{**record, categorical: text}]}
                )
                assert response.status_code == 200, response.text
                assert response.json()["predictions"][0]["warnings"]  # an unknown category
    lines = scorer.prediction_log.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3 and not closed_segments(scorer.prediction_log)
    assert max(map(len, lines)) <= bound
    assert bound < 16 * 1024  # penguins: two string features of at most 256 characters
