import asyncio
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from mlops.core.artifacts import PredictionRecord
from mlops.core.segments import closed_segments
from mlops.serve import predlog
from mlops.serve.batches import MAX_CLIENT_ID_LENGTH, MAX_EXTRA_BYTES, Columns, Records
from mlops.serve.errors import ClientError
from mlops.serve.model import Prediction
from mlops.serve.predlog import (
    PredictionLogWriter,
    ScoredBatch,
    iso_timestamp,
    line_bound,
    log_lines,
)
from mlops.serve.schema import input_schema


def batch(size: int, request_id: str = "r1") -> ScoredBatch:
    return ScoredBatch(
        received=1_795_000_000.1234,
        request_id=request_id,
        model_version="v1",
        inputs=Records([{"x": index, "colour": None} for index in range(size)]),
        prediction=Prediction(["a"] * size, [[0.75, 0.25]] * size),
        classes=["a", "b"],
        latency_seconds=0.0012345678,
    )


def test_one_line_per_record_with_exactly_the_prediction_record_fields() -> None:
    lines = log_lines(batch(3)).decode().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert all(set(record) == PredictionRecord.__required_keys__ for record in records)
    assert [record["index"] for record in records] == [0, 1, 2]
    assert records[2] == {
        "ts": "2026-11-18T11:06:40.123Z",
        "request_id": "r1",
        "index": 2,
        "model_version": "v1",
        "role": "champion",
        "features": {"x": 2, "colour": None},
        "prediction": "a",
        "probabilities": {"a": 0.75, "b": 0.25},
        "latency_seconds": 0.001235,
    }


def test_a_regressors_line_holds_the_number_and_no_probabilities() -> None:
    scored = ScoredBatch(
        received=1_795_000_000.5,
        request_id="r2",
        model_version="v1",
        inputs=Records([{"Distance (km)": 3.5, "Weather/Condition": None}, {"Distance (km)": 1}]),
        prediction=Prediction([], [], [23.4, 7.0]),
        classes=None,
        latency_seconds=0.002,
    )
    records = [json.loads(line) for line in log_lines(scored).decode().splitlines()]
    assert all(set(record) == PredictionRecord.__required_keys__ for record in records)
    assert [(r["prediction"], r["probabilities"]) for r in records] == [(23.4, None), (7.0, None)]
    assert records[0]["features"] == {"Distance (km)": 3.5, "Weather/Condition": None}
    assert isinstance(records[1]["prediction"], float)


def test_a_batch_without_as_many_predictions_as_records_is_refused() -> None:
    broken = batch(2)
    broken.prediction = Prediction(["a"], [[0.75, 0.25]])
    with pytest.raises(ValueError):
        log_lines(broken)
    size = 2 * predlog.COLUMN_WISE_MIN_RECORDS  # formatted column by column
    broken.inputs = awkward_columns(size)
    broken.prediction = Prediction(["a"] * (size - 1), [[0.75, 0.25]] * (size - 1))
    with pytest.raises(ValueError, match=f"a column of {size - 1} value"):
        log_lines(broken)


AWKWARD_TEXT = ["Biscoe", 'a "quoted", text', '},{"ts":', "\x00 nul, \n newline", "Größe", None]


def awkward_columns(size: int) -> Columns:
    """A column-wise request with what is hard to cut into columns: text with commas, quotes,
    braces, control characters and non-ASCII letters; NaN, -0.0, huge and long numbers."""
    numbers = np.array([1.5, np.nan, -0.0, 1e300, 55.31999969482422, 7.0] * (size // 6 + 1))
    return Columns(
        {
            'Größe "cm", [x]': numbers[:size],
            "Weather/Condition": (AWKWARD_TEXT * (size // 6 + 1))[:size],
            "count": ([1, None, 3, 4, 5, 2**53] * (size // 6 + 1))[:size],
            "unit": ["kg"] * size,
        },
        size,
        client_id='client "7", \x00',
    )


@pytest.mark.parametrize("shadow", [False, True])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_column_wise_lines_are_the_bytes_of_line_by_line_ones(shadow: bool, task: str) -> None:
    size = 2 * predlog.COLUMN_WISE_MIN_RECORDS  # formatted column by column
    classes = ["Adelie", "Gentoo", "Chin,strap"] if task == "classification" else None
    labels = ["Adelie", "Gentoo", "Chin,strap"] * size
    rows = [[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.125, 0.875, 0.0]] * size
    values = [23.4, -7.0, 0.0, 1e-9, 3.25, 12.0] * size
    prediction = (
        Prediction(labels[:size], rows[:size])
        if classes is not None
        else Prediction([], [], values[:size])
    )
    scored = ScoredBatch(
        received=1_795_000_000.987,
        request_id="0123456789abcdef0123456789abcdef",
        model_version="9e0f12d87868",
        inputs=awkward_columns(size),
        prediction=prediction,
        classes=classes,
        latency_seconds=0.0123456789,
        role="challenger" if shadow else "champion",
        shadow=shadow,
    )
    lines = log_lines(scored)
    assert lines == predlog.lines_by_column(scored, scored.inputs)  # type: ignore[arg-type]
    assert lines == predlog.lines_by_record(scored)
    records = [json.loads(line) for line in bytes(lines).splitlines()]
    assert len(records) == size
    assert records[3]["features"]["Weather/Condition"] == "\x00 nul, \n newline"
    assert records[1]["features"]['Größe "cm", [x]'] is None  # NaN is missing
    assert all(record["client_request_id"] == 'client "7", \x00' for record in records)
    assert all(record.get("shadow", False) is shadow for record in records)


def test_a_records_extra_fields_are_kept_only_on_its_own_line() -> None:
    inputs = Records(
        [{"b": "x", "a": 1}, {"a": 2, "b": "y"}, {"b": "z", "a": 3}],
        extras=[None, {"order": "x,}{", "nested": [{"ts": 1}]}, {}],
    )
    scored = ScoredBatch(
        1_795_000_000.0, "r", "v", inputs, Prediction([], [], [1.0, 2.0, 3.0]), None, 0.1
    )
    records = [json.loads(line) for line in log_lines(scored).splitlines()]
    assert [record.get("extra") for record in records] == [
        None, {"order": "x,}{", "nested": [{"ts": 1}]}, None
    ]  # fmt: skip
    assert list(records[1]["features"]) == ["a", "b"]  # the record's own order


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert iso_timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_timestamp(1.9999) == "1970-01-01T00:00:01.999Z"


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def write_concurrently(writer: PredictionLogWriter, batches: list[ScoredBatch]) -> None:
    await asyncio.gather(*(writer.write(scored) for scored in batches))


def test_the_lines_are_in_the_file_before_the_requests_are_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "logs" / "p.jsonl"
    writer = PredictionLogWriter(path, 1 << 20, 1)
    appends: list[int] = []
    real_append = writer.file.append
    monkeypatch.setattr(
        writer.file, "append", lambda data, wait=True: (appends.append(1), real_append(data, wait))
    )
    seen_on_release: list[int] = []

    async def request(number: int) -> None:
        await writer.write(batch(3, request_id=f"r{number}"))
        seen_on_release.append(len(path.read_text().splitlines()))

    async def traffic() -> None:
        await asyncio.gather(*(request(number) for number in range(20)))

    asyncio.run(traffic())
    assert appends == [1]  # the requests of one loop turn share one write
    assert seen_on_release == [60] * 20  # every request waited for it
    assert writer.pending == 0
    writer.close()
    records = lines_of(path)
    assert len({(r["request_id"], r["index"]) for r in records}) == len(records) == 60


def test_requests_of_later_turns_are_written_in_later_groups(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path / "p.jsonl", 1 << 20, 1)

    async def one_after_another() -> None:
        for number in range(5):
            await writer.write(batch(2, request_id=f"r{number}"))
            assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2 * (number + 1)

    asyncio.run(one_after_another())
    writer.close()


def test_a_failing_disk_refuses_the_waiting_requests_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PredictionLogWriter(tmp_path / "p.jsonl", 1 << 20, 1)

    def full_disk(data: bytes, wait: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.file, "append", full_disk)
    with pytest.raises(ClientError) as refused:
        asyncio.run(write_concurrently(writer, [batch(1, "r1"), batch(1, "r2")]))
    assert refused.value.status == 503 and "No space left on device" in refused.value.message
    assert not writer.healthy
    assert writer.failed is not None and "No space left on device" in writer.failed
    monkeypatch.undo()
    monkeypatch.setattr(predlog, "RETRY_SECONDS", 0.0)
    time.sleep(0.01)
    assert writer.healthy  # tried again after the pause
    asyncio.run(write_concurrently(writer, [batch(1, "r3")]))
    writer.close()
    assert [record["request_id"] for record in lines_of(tmp_path / "p.jsonl")] == ["r3"]


def test_a_log_the_sidecar_takes_is_sealed_on_close_and_keeps_every_segment(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    one_line = len(log_lines(batch(1)))
    writer = PredictionLogWriter(path, 2 * one_line, 1, sidecar=True)
    asyncio.run(write_concurrently(writer, [batch(1, f"r{n}") for n in range(1)]))
    for number in range(1, 7):  # one write per turn: segments of two lines each
        asyncio.run(write_concurrently(writer, [batch(1, f"r{number}")]))
    writer.close()
    assert path.read_bytes() == b""  # the open segment was closed for shipping
    segments = closed_segments(path)
    assert len(segments) == 4  # nothing deleted: the shipper removes them
    records = [
        json.loads(line) for segment in segments for line in segment.read_text().splitlines()
    ]
    assert [record["request_id"] for record in records] == [f"r{n}" for n in range(7)]


def test_without_the_sidecar_only_the_newest_backups_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    one_line = len(log_lines(batch(1)))
    writer = PredictionLogWriter(path, one_line, 2)
    for number in range(6):
        asyncio.run(write_concurrently(writer, [batch(1, f"r{number}")]))
    writer.close()
    assert len(closed_segments(path)) == 2
    assert lines_of(path)[0]["request_id"] == "r5"  # not sealed: no sidecar takes it


def signature_with_strings(categories: list[str]) -> Any:
    return {
        "model_name": "m",
        "target": "y",
        "task": "classification",
        "classes": ["Klasse Ä", "b"],
        "positive_class": None,
        "threshold": None,
        "features": [
            {"name": "Größe (cm)", "input_name": "x", "type": "number", "nullable": True,
             "categories": None, "min": 0.0, "max": 1.0},
            {"name": 'Farbe "x"', "input_name": "c", "type": "string", "nullable": True,
             "categories": categories, "min": None, "max": None},
            {"name": "free text", "input_name": "t", "type": "string", "nullable": True,
             "categories": None, "min": None, "max": None},
        ],
    }  # fmt: skip


class FakeScorer:
    regression = False
    classes = ["Klasse Ä", "b"]
    model_version = "0123456789ab"


def test_no_line_exceeds_the_bound_whatever_the_strings_hold(tmp_path: Path) -> None:
    schema = input_schema(signature_with_strings(["red", "blue"]))
    assert schema.max_string_length == 256  # the floor, for short categories
    longest = schema.max_string_length
    bound = line_bound(schema, FakeScorer(), 1000)  # type: ignore[arg-type]
    worst = ["\x01" * longest, '"' * longest, "\U0001f600" * longest, "é" * longest]
    # what the client sends beside the features, at the most the codecs accept
    extras = [{"order id": "x" * (MAX_EXTRA_BYTES - len('{"order id":""}'))}] * len(worst)
    inputs = Records(
        [
            {"Größe (cm)": -1.7976931348623157e308, 'Farbe "x"': text, "free text": text}
            for text in worst
        ],
        extras,  # type: ignore[arg-type]
    )
    inputs.client_id = "\x01" * MAX_CLIENT_ID_LENGTH
    scored = ScoredBatch(
        received=1_795_000_000.0,
        request_id="f" * 32,
        model_version=FakeScorer.model_version,
        inputs=inputs,
        prediction=Prediction(["Klasse Ä"] * len(worst), [[0.123456, 0.876544]] * len(worst)),
        classes=FakeScorer.classes,
        latency_seconds=123456.123456,
    )
    assert len(orjson.dumps(extras[0])) == MAX_EXTRA_BYTES
    lines = log_lines(scored).splitlines(keepends=True)
    assert max(map(len, lines)) <= bound
    assert max(map(len, lines)) > bound - 200  # the bound is tight, not a guess
    assert input_schema(signature_with_strings(["x" * 100])).max_string_length == 400
    assert input_schema(signature_with_strings(["x"]), max_string_length=10).max_string_length == 10


def test_a_log_over_its_total_budget_makes_the_scorer_unready_until_the_sidecar_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predlog, "BUDGET_CHECK_SECONDS", 0.0)
    path = tmp_path / "p.jsonl"
    one_line = len(log_lines(batch(1)))
    writer = PredictionLogWriter(path, one_line, 1, sidecar=True, max_total_bytes=3 * one_line)
    for number in range(3):
        assert writer.healthy
        asyncio.run(write_concurrently(writer, [batch(1, f"r{number}")]))
    asyncio.run(write_concurrently(writer, [batch(1, "r3")]))  # four lines: over the budget
    assert not writer.healthy
    assert writer.failed is not None and "SCORER_LOG_MAX_TOTAL_BYTES" in writer.failed
    for segment in closed_segments(path)[:2]:  # the sidecar shipped and removed two
        segment.unlink()
    monkeypatch.setattr(predlog, "RETRY_SECONDS", 0.0)
    assert writer.healthy
    writer.close()


def test_a_threads_lines_and_the_loops_group_never_interleave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large batch's lines, written from its worker thread, and the group the loop commits
    meanwhile: the group waits for the thread's write, then both are whole, in that order."""
    path = tmp_path / "p.jsonl"
    writer = PredictionLogWriter(path, 1 << 20, 1)
    gate, started = threading.Event(), threading.Event()
    real_append = writer.file.append

    def slow_disk(data: bytes, wait: bool = True) -> None:
        if threading.current_thread() is not threading.main_thread():
            started.set()
            assert gate.wait(5)
        real_append(data, wait)

    monkeypatch.setattr(writer.file, "append", slow_disk)

    async def scenario() -> None:
        large = asyncio.get_running_loop().run_in_executor(
            None, writer.append, log_lines(batch(20, "large"))
        )
        assert await asyncio.to_thread(started.wait, 5)  # the thread holds the log
        small = writer.write(batch(1, "small"))
        threading.Timer(0.05, gate.set).start()  # the loop's commit blocks until then
        await asyncio.gather(large, small)
        assert len(lines_of(path)) == 21

    asyncio.run(scenario())
    writer.close()
    assert [r["request_id"] for r in lines_of(path)] == ["large"] * 20 + ["small"]


def test_a_closed_log_refuses_a_late_threads_lines_and_a_full_disk_makes_it_unready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.jsonl"
    writer = PredictionLogWriter(path, 1 << 20, 1)

    def full_disk(data: bytes, wait: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.file, "append", full_disk)
    with pytest.raises(ClientError) as refused:
        writer.append(log_lines(batch(100)))
    assert refused.value.status == 503 and "No space left on device" in refused.value.message
    assert not writer.healthy
    monkeypatch.undo()
    writer.close()
    with pytest.raises(ClientError) as late:
        writer.append(log_lines(batch(100, "late")))
    assert late.value.status == 503 and "closed" in late.value.message
    assert lines_of(path) == []


def test_a_group_waits_turns_not_the_loop_while_another_worker_holds_the_log(
    tmp_path: Path,
) -> None:
    """Another process's write in progress (its lock on the log) does not block the loop: the
    group is tried again on the next turns, with what queued meanwhile, and waits on the lock
    only after ``BUSY_TURNS`` turns."""
    path = tmp_path / "p.jsonl"
    writer = PredictionLogWriter(path, 1 << 20, 1)
    other = os.open(path.with_name(path.name + ".lock"), os.O_RDWR)  # another open: another owner
    fcntl.flock(other, fcntl.LOCK_EX)

    async def scenario() -> None:
        first = writer.write(batch(1, "first"))
        await asyncio.sleep(0)  # a turn: the commit found the log busy
        second = writer.write(batch(2, "second"))  # joins the waiting group
        assert not first.done() and not second.done() and lines_of(path) == []
        threading.Timer(0.2, fcntl.flock, (other, fcntl.LOCK_UN)).start()
        started = time.monotonic()
        await asyncio.gather(first, second)  # after BUSY_TURNS turns: waits for the lock
        assert time.monotonic() - started >= 0.1
        assert [r["request_id"] for r in lines_of(path)] == ["first", "second", "second"]

    asyncio.run(scenario())
    writer.close()
    os.close(other)
