import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlops.core.artifacts import PredictionRecord
from mlops.serve.predlog import (
    PredictionLogWriter,
    RotatingFile,
    ScoredBatch,
    iso_timestamp,
    log_lines,
)


def batch(size: int, request_id: str = "r1") -> ScoredBatch:
    return ScoredBatch(
        received=1_795_000_000.1234,
        request_id=request_id,
        model_version="v1",
        features=[{"x": index, "colour": None} for index in range(size)],
        predictions=["a"] * size,
        probabilities=[{"a": 0.75, "b": 0.25}] * size,
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
        features=[{"Distance (km)": 3.5, "Weather/Condition": None}, {"Distance (km)": 1}],
        predictions=[23.4, 7.0],
        probabilities=None,
        latency_seconds=0.002,
    )
    records = [json.loads(line) for line in log_lines(scored).decode().splitlines()]
    assert all(set(record) == PredictionRecord.__required_keys__ for record in records)
    assert [(r["prediction"], r["probabilities"]) for r in records] == [(23.4, None), (7.0, None)]
    assert records[0]["features"] == {"Distance (km)": 3.5, "Weather/Condition": None}
    assert isinstance(records[1]["prediction"], float)


def test_a_batch_without_as_many_predictions_as_records_is_refused() -> None:
    broken = batch(2)
    broken.predictions = ["a"]
    with pytest.raises(ValueError):
        log_lines(broken)


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert iso_timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_timestamp(1.9999) == "1970-01-01T00:00:01.999Z"


def test_rotation_keeps_the_newest_files_up_to_the_backup_count(tmp_path: Path) -> None:
    log = RotatingFile(tmp_path / "p.jsonl", max_bytes=10, backups=2)
    for chunk in (b"aaaaaa\n", b"bbbbbb\n", b"cccccc\n", b"dddddd\n"):
        log.write(chunk)
    log.close()
    assert (tmp_path / "p.jsonl").read_bytes() == b"dddddd\n"
    assert (tmp_path / "p.jsonl.1").read_bytes() == b"cccccc\n"
    assert (tmp_path / "p.jsonl.2").read_bytes() == b"bbbbbb\n"
    assert not (tmp_path / "p.jsonl.3").exists()


def test_chunks_written_together_are_never_split_by_a_rotation(tmp_path: Path) -> None:
    log = RotatingFile(tmp_path / "p.jsonl", max_bytes=10, backups=1)
    log.write(b"aaaaaa\n")
    log.write_all([b"bb\n", b"cc\n"], 6)
    log.close()
    assert (tmp_path / "p.jsonl.1").read_bytes() == b"aaaaaa\n"
    assert (tmp_path / "p.jsonl").read_bytes() == b"bb\ncc\n"


def test_appends_to_an_existing_log_and_counts_its_size(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_bytes(b"old line\n")
    log = RotatingFile(tmp_path / "p.jsonl", max_bytes=100, backups=1)
    assert log.size == 9
    log.write(b"new line\n")
    log.close()
    assert (tmp_path / "p.jsonl").read_bytes() == b"old line\nnew line\n"


def test_a_rotation_made_by_another_writer_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    first, second = RotatingFile(path, 24, 5), RotatingFile(path, 24, 5)
    first.write(b"first 1\n")
    second.write(b"second writer 12\n")  # 8 + 17 bytes > 24: the second writer rotates
    first.write(b"f2\n")  # lands in the new file, not in the rotated one it still holds
    first.close()
    second.close()
    assert (tmp_path / "p.jsonl.1").read_bytes() == b"first 1\n"
    assert path.read_bytes() == b"second writer 12\nf2\n"


def test_a_deleted_log_is_created_again(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = RotatingFile(path, 1 << 20, 1)
    log.write(b"before\n")
    path.unlink()
    log.write(b"after\n")
    log.close()
    assert path.read_bytes() == b"after\n"


WRITER = """
import sys, time
from pathlib import Path
from mlops.serve.predlog import RotatingFile
path, tag, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
log = RotatingFile(path, max_bytes=16384, backups=1000)
while not go.exists():
    time.sleep(0.001)
for number in range(3000):
    lines = [f"{tag} {number} {part} ".encode() + b"x" * 40 + b"\\n" for part in "abc"]
    log.write_all(lines, sum(map(len, lines)))
log.close()
"""


def test_processes_append_to_one_log_whole_and_share_its_rotation(tmp_path: Path) -> None:
    path, go = tmp_path / "p.jsonl", tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(go)]) for tag in "PQ"
    ]
    time.sleep(0.5)  # both started: they write at the same time
    go.touch()
    assert [writer.wait(60) for writer in writers] == [0, 0]
    rotated = [file for file in tmp_path.glob("p.jsonl.*") if file.suffix[1:].isdigit()]
    contents = [file.read_bytes() for file in (path, *rotated)]
    assert all(len(content) <= 16384 for content in contents)
    # One rotation at a time: every rotated file was full (the next write did not fit in it).
    assert all(len(content) > 16384 - 200 for content in contents[1:])
    lines = [line for content in contents for line in content.decode().splitlines()]
    expected = {
        f"{tag} {n} {part} " + "x" * 40 for tag in "PQ" for n in range(3000) for part in "abc"
    }
    assert len(lines) == len(expected) and set(lines) == expected  # each whole, each once
    for content in contents:  # the three lines of one write stay together, in one file
        words = [line.split()[:3] for line in content.decode().splitlines()]
        for index in range(0, len(words), 3):
            assert [word[2] for word in words[index : index + 3]] == ["a", "b", "c"]
            assert len({tuple(word[:2]) for word in words[index : index + 3]}) == 1
    assert any(b"P " in content and b"Q " in content for content in contents), (
        "the writers never overlapped"
    )


def test_close_writes_every_submitted_record(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path / "logs" / "p.jsonl", 1 << 20, 2)
    for number in range(200):
        assert writer.submit(batch(5, request_id=f"r{number}"))
    writer.close()
    lines = (tmp_path / "logs" / "p.jsonl").read_text().splitlines()
    assert len(lines) == 1000
    assert (
        len({(json.loads(line)["request_id"], json.loads(line)["index"]) for line in lines}) == 1000
    )
    assert writer.pending == 0


def test_lines_reach_the_file_without_close(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path / "p.jsonl", 1 << 20, 1)
    writer.submit(batch(3))
    deadline = time.monotonic() + 5
    while writer.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3
    writer.close()


def test_submit_refuses_when_the_backlog_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_batch = len(log_lines(batch(2)))
    writer = PredictionLogWriter(tmp_path / "p.jsonl", 1 << 20, 1, max_pending_bytes=2 * one_batch)
    gate = threading.Event()
    original = writer.file.write_all

    def stuck_disk(chunks: list[bytearray], size: int) -> None:
        gate.wait(10)
        original(chunks, size)

    monkeypatch.setattr(writer.file, "write_all", stuck_disk)
    assert writer.submit(batch(2)) and writer.submit(batch(2))
    assert not writer.submit(batch(2))
    assert writer.pending == 4
    gate.set()
    writer.close()
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 4


def test_a_failing_disk_makes_the_writer_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PredictionLogWriter(tmp_path / "p.jsonl", 1 << 20, 1)

    def full_disk(chunks: list[bytes], size: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer.file, "write_all", full_disk)
    writer.submit(batch(1))
    writer.close()
    assert not writer.healthy
    assert writer.failed is not None and "No space left on device" in writer.failed
