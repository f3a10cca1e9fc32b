"""The segmented log the scorer's workers and the sidecar share (``mlops.core.segments``)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops.core import segments
from mlops.core.segments import SegmentedLog, WriterPresence, closed_segments


def contents(path: Path) -> list[bytes]:
    """The closed segments' bytes, oldest first, then the open segment's."""
    return [segment.read_bytes() for segment in closed_segments(path)] + [path.read_bytes()]


def test_segments_close_by_size_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = SegmentedLog(path, max_bytes=10, keep=2)
    for chunk in (b"aaaaaa\n", b"bbbbbb\n", b"cccccc\n", b"dddddd\n"):
        log.append(chunk)
    log.close()
    assert contents(path) == [b"bbbbbb\n", b"cccccc\n", b"dddddd\n"]
    numbers = [segments.segment_number(segment) for segment in closed_segments(path)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 2  # oldest first, never reused


def test_without_a_limit_every_closed_segment_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = SegmentedLog(path, max_bytes=10, keep=None)
    for number in range(30):
        log.append(b"line %02d\n" % number)
    log.close()
    assert b"".join(contents(path)) == b"".join(b"line %02d\n" % n for n in range(30))
    assert len(closed_segments(path)) == 29


def test_chunks_written_together_are_never_split_by_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = SegmentedLog(path, max_bytes=10, keep=1)
    log.append(b"aaaaaa\n")
    log.append(b"bb\ncc\n")
    log.close()
    assert contents(path) == [b"aaaaaa\n", b"bb\ncc\n"]


def test_appends_to_an_existing_log_and_counts_its_size(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_bytes(b"old line\n")
    log = SegmentedLog(tmp_path / "p.jsonl", max_bytes=100)
    assert log.size == 9
    log.append(b"new line\n")
    log.close()
    assert (tmp_path / "p.jsonl").read_bytes() == b"old line\nnew line\n"


def test_a_rotation_made_by_another_writer_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    first, second = SegmentedLog(path, 24), SegmentedLog(path, 24)
    first.append(b"first 1\n")
    second.append(b"second writer 12\n")  # 8 + 17 bytes > 24: the second writer rotates
    first.append(b"f2\n")  # lands in the new open segment, not in the closed one it still holds
    first.close()
    second.close()
    assert contents(path) == [b"first 1\n", b"second writer 12\nf2\n"]


def test_a_deleted_log_is_created_again(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    log = SegmentedLog(path, 1 << 20)
    log.append(b"before\n")
    path.unlink()
    log.append(b"after\n")
    log.close()
    assert path.read_bytes() == b"after\n"


def test_sealing_closes_the_open_segment_only_when_it_holds_something(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    writer, sealer = SegmentedLog(path, 1 << 20), SegmentedLog(path, 1 << 20)
    assert sealer.seal() is None
    writer.append(b"one\n")
    closed = sealer.seal()
    assert closed is not None and closed.read_bytes() == b"one\n"
    writer.append(b"two\n")  # the writer follows the seal into a new open segment
    assert path.read_bytes() == b"two\n"
    assert closed_segments(path) == [closed]
    writer.close()
    sealer.close()


def test_the_unfinished_line_of_a_killed_writer_is_cut_off_before_the_next_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3, "feat')  # killed in the middle of a write
    log = SegmentedLog(path, 1 << 20)
    log.append(b'{"n": 4}\n')
    assert path.read_bytes() == b'{"n": 1}\n{"n": 2}\n{"n": 4}\n'
    assert log.cut_bytes == len(b'{"n": 3, "feat')
    with path.open("ab") as other:  # another worker, killed mid-write after this one wrote
        other.write(b'{"n": 5')
    log.append(b'{"n": 6}\n')
    assert path.read_bytes().splitlines() == [b'{"n": 1}', b'{"n": 2}', b'{"n": 4}', b'{"n": 6}']
    log.close()


def test_a_sealed_segment_never_ends_in_an_unfinished_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"whole\nbroken")
    log = SegmentedLog(path, 1 << 20)
    closed = log.seal()
    assert closed is not None and closed.read_bytes() == b"whole\n"
    path.write_bytes(b"only a broken one")
    assert log.seal() is None  # nothing whole was left
    log.close()


def test_a_failed_write_leaves_the_segment_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.jsonl"
    log = SegmentedLog(path, 1 << 20)
    log.append(b"kept\n")
    real_write = os.write

    def disk_full_halfway(fd: int, data: memoryview) -> int:
        if len(data) > 8:
            return real_write(fd, data[:8])  # a short write; the rest fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segments.os, "write", disk_full_halfway)
    with pytest.raises(OSError, match="No space left"):
        log.append(b"never written whole\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"kept\n"
    log.append(b"next\n")
    assert path.read_bytes() == b"kept\nnext\n"
    log.close()


WRITER = """
import sys, time
from pathlib import Path
from mlops.core.segments import SegmentedLog
path, tag, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
log = SegmentedLog(path, max_bytes=16384, keep=None)
while not go.exists():
    time.sleep(0.001)
for number in range(3000):
    lines = b"".join(f"{tag} {number} {part} ".encode() + b"x" * 40 + b"\\n" for part in "abc")
    log.append(lines)
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
    files = contents(path)
    assert all(len(content) <= 16384 for content in files)
    # One rotation at a time: every closed segment was full (the next write did not fit in it).
    assert all(len(content) > 16384 - 200 for content in files[:-1])
    lines = [line for content in files for line in content.decode().splitlines()]
    expected = {
        f"{tag} {n} {part} " + "x" * 40 for tag in "PQ" for n in range(3000) for part in "abc"
    }
    assert len(lines) == len(expected) and set(lines) == expected  # each whole, each once
    for content in files:  # the three lines of one write stay together, in one segment
        words = [line.split()[:3] for line in content.decode().splitlines()]
        for index in range(0, len(words), 3):
            assert [word[2] for word in words[index : index + 3]] == ["a", "b", "c"]
            assert len({tuple(word[:2]) for word in words[index : index + 3]}) == 1
    assert any(b"P " in content and b"Q " in content for content in files), (
        "the writers never overlapped"
    )


HOLDER = """
import sys, time
from pathlib import Path
from mlops.core.segments import WriterPresence
WriterPresence(Path(sys.argv[1])).hold()
print("holding", flush=True)
time.sleep(60)
"""


def test_writer_presence_ends_with_the_process_however_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    probe = WriterPresence(path)
    assert probe.none_left()
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        assert not probe.none_left()
        holders[0].send_signal(signal.SIGKILL)
        holders[0].wait(10)
        assert not probe.none_left()  # one writer is still there
        holders[1].send_signal(signal.SIGKILL)
        holders[1].wait(10)
        assert probe.none_left()
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(10)
    probe.close()
