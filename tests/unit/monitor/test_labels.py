"""Labels that arrive before their prediction (``LabelBuffer``) and the label log."""

import json
import threading
from pathlib import Path

from mlops.core.segments import closed_segments
from mlops.monitor.feedback import ClassFeedback, ValueFeedback
from mlops.monitor.labels import PENDING, LabelBuffer, LabelLog


def label(request_id: str, value: str = "a", index: int = 0) -> ClassFeedback:
    return ClassFeedback(request_id=request_id, label=value, index=index)


def test_a_label_waits_for_its_prediction_and_is_taken_once() -> None:
    buffer = LabelBuffer(capacity=10, ttl_seconds=60)
    assert buffer.hold(label("r1", "b", index=2), now=0.0) == {PENDING: 1}
    assert len(buffer) == 1
    assert buffer.take("r1", 0) is None  # another record of the same request
    assert buffer.take("r1", 2) == "b"
    assert buffer.take("r1", 2) is None
    assert len(buffer) == 0


def test_labels_expire_after_the_ttl_oldest_first_and_are_counted() -> None:
    buffer = LabelBuffer(capacity=10, ttl_seconds=60)
    for second, request_id in enumerate(("r1", "r2", "r3")):
        buffer.hold(label(request_id), now=float(second * 30))  # at 0, 30, 60
    assert buffer.expire(now=60.0) == 0  # r1 is exactly 60 s old: not older than the TTL
    assert buffer.expire(now=91.0) == 2  # r1 (91 s) and r2 (61 s)
    assert buffer.take("r3", 0) == "a"
    assert buffer.expire(now=10_000.0) == 0


def test_a_full_buffer_drops_the_oldest_label_and_says_so() -> None:
    buffer = LabelBuffer(capacity=2, ttl_seconds=60)
    buffer.hold(label("r1"), 0.0)
    buffer.hold(label("r2"), 1.0)
    assert buffer.hold(label("r3"), 2.0) == {PENDING: 1, "dropped": 1}
    assert buffer.take("r1", 0) is None
    assert [buffer.take(r, 0) for r in ("r2", "r3")] == ["a", "a"]


def test_a_second_label_for_the_same_prediction_replaces_the_first() -> None:
    buffer = LabelBuffer(capacity=10, ttl_seconds=60)
    buffer.hold(label("r1", "a"), 0.0)
    assert buffer.hold(label("r1", "b"), 50.0) == {PENDING: 1, "duplicate": 1}
    assert buffer.expire(now=100.0) == 0  # its clock restarted with the later label
    assert buffer.take("r1", 0) == "b"


def test_the_label_log_holds_every_label_as_received_whole(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    log = LabelLog(path, shipped=True)
    log.append([label("r1", "Adélie"), label("r1", "b", 1)], now=1_795_000_000.25)
    log.append([ValueFeedback(request_id="r2", label=412.5)], now=1_795_000_001.0)
    log.append([], now=0.0)  # nothing to write
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"ts": "2026-11-18T11:06:40.250Z", "request_id": "r1", "index": 0, "label": "Adélie"},
        {"ts": "2026-11-18T11:06:40.250Z", "request_id": "r1", "index": 1, "label": "b"},
        {"ts": "2026-11-18T11:06:41.000Z", "request_id": "r2", "index": 0, "label": 412.5},
    ]
    closed = log.seal()
    assert closed is not None and closed_segments(path) == [closed]
    log.close()


def test_threads_append_to_the_label_log_without_mixing_their_lines(tmp_path: Path) -> None:
    log = LabelLog(tmp_path / "labels.jsonl", shipped=False)

    def post(thread: int) -> None:
        for number in range(300):
            log.append([label(f"t{thread}-{number}", index=i) for i in range(3)], now=0.0)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    records = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(records) == 4 * 300 * 3
    for start in range(0, len(records), 3):  # one append's lines stay together
        group = records[start : start + 3]
        assert [r["index"] for r in group] == [0, 1, 2]
        assert len({r["request_id"] for r in group}) == 1
