from pathlib import Path

from mlops.core.segments import SegmentedLog
from mlops.monitor.follow import CHUNK_BYTES, MAX_LINE_BYTES, LogFollower, Position


def line(number: int) -> bytes:
    return b'{"n": %d}\n' % number


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def rotate(path: Path) -> None:
    """What the scorer does: name -> name.<number> (larger than the closed segments' numbers),
    then a new empty name."""
    log = SegmentedLog(path, 1 << 20)
    log.seal()
    log.close()
    path.touch()


def numbers(lines: list[bytes]) -> list[int]:
    return [int(item.split(b":")[1].rstrip(b"}")) for item in lines]


def test_returns_complete_lines_once_and_waits_for_a_partial_line(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(1) + line(2) + b'{"n": 3')
    follower = LogFollower(log)
    assert numbers(follower.poll().lines) == [1, 2]
    assert follower.poll().lines == []
    append(log, b"}\n" + line(4))
    assert numbers(follower.poll().lines) == [3, 4]
    assert follower.position.offset == log.stat().st_size


def test_a_missing_log_is_waited_for(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    follower = LogFollower(log)
    assert follower.poll().lines == []
    append(log, line(1))
    assert numbers(follower.poll().lines) == [1]


def test_rotation_mid_stream_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(1) + line(2))
    follower = LogFollower(log)
    assert numbers(follower.poll().lines) == [1, 2]
    append(log, line(3) + line(4))  # written after the last poll, before the rename
    rotate(log)
    append(log, line(5))
    result = follower.poll()
    assert numbers(result.lines) == [3, 4, 5]
    assert result.rotations == 1
    append(log, line(6))
    assert numbers(follower.poll().lines) == [6]


def test_several_rotations_between_two_polls_are_read_in_order(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(1))
    follower = LogFollower(log)
    assert numbers(follower.poll().lines) == [1]
    for number in (2, 3, 4):
        append(log, line(number))
        rotate(log)
    append(log, line(5))
    result = follower.poll()
    assert numbers(result.lines) == [2, 3, 4, 5]
    assert result.rotations == 3


def test_an_unfinished_last_line_of_a_rotated_file_counts_as_corrupt(tmp_path: Path) -> None:
    """The scorer cuts such a line off before it closes a segment; another writer may not."""
    log = tmp_path / "predictions.jsonl"
    append(log, line(1) + b'{"n": 2')
    follower = LogFollower(log)
    assert numbers(follower.poll().lines) == [1]
    log.replace(log.with_name(log.name + ".1"))
    append(log, line(3))
    result = follower.poll()
    assert (numbers(result.lines), result.corrupt) == ([3], 1)


def test_truncation_reads_the_file_again_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(1) + line(2) + line(3))
    follower = LogFollower(log)
    assert numbers(follower.poll().lines) == [1, 2, 3]
    log.write_bytes(line(4))
    result = follower.poll()
    assert (numbers(result.lines), result.truncations) == ([4], 1)


def test_an_over_long_line_is_dropped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(1) + b"x" * (MAX_LINE_BYTES + 10))
    follower = LogFollower(log)
    first = follower.poll()
    assert (numbers(first.lines), first.corrupt) == ([1], 1)
    append(log, b"xx\n" + line(2))
    second = follower.poll()
    assert (numbers(second.lines), second.corrupt) == ([2], 0)


def test_a_byte_budget_spreads_a_backlog_over_polls_without_loss(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    count = 3 * CHUNK_BYTES // len(line(100000))
    append(log, b"".join(line(100000 + n) for n in range(count)))
    follower = LogFollower(log)
    read, polls = [], 0
    while polls < 10:
        result = follower.poll(budget=CHUNK_BYTES)
        read += result.lines
        polls += 1
        if not result.exhausted:
            break
    assert numbers(read) == [100000 + n for n in range(count)]
    assert polls > 1


def restarted(follower: LogFollower) -> LogFollower:
    """A new follower from the position the old one would have persisted."""
    saved = follower.position.to_json()
    follower.close()
    return LogFollower(follower.path, Position.from_json(saved))


def test_a_restart_resumes_at_the_persisted_position(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(1) + line(2))
    follower = LogFollower(log)
    assert numbers(follower.poll().lines) == [1, 2]
    append(log, line(3))
    assert numbers(restarted(follower).poll().lines) == [3]


def test_a_restart_after_a_rotation_finishes_the_rotated_file_first(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(1))
    follower = LogFollower(log)
    assert numbers(follower.poll().lines) == [1]
    saved = follower.position.to_json()
    follower.close()
    append(log, line(2))  # while the sidecar is down
    rotate(log)
    append(log, line(3))
    rotate(log)
    append(log, line(4))
    result = LogFollower(log, Position.from_json(saved)).poll()
    assert numbers(result.lines) == [2, 3, 4]
    assert (result.rotations, result.lost_files) == (2, 0)


def test_a_restart_on_a_different_file_with_the_same_inode_reads_it_whole(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    append(log, line(7) + line(8))
    stale = Position(inode=log.stat().st_ino, offset=len(line(1)), fingerprint="0" * 64)
    stale.fingerprint_length = len(line(1))
    result = LogFollower(log, stale).poll()
    assert numbers(result.lines) == [7, 8]
    assert result.lost_files == 1
