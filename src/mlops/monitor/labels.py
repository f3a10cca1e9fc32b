"""Ground truth as it arrives: the label log, and the labels waiting for their prediction.

The label log holds every label the sidecar accepts (``POST /feedback`` and the feedback file),
one JSON line each: ``{"ts", "request_id", "index", "label"}`` (``ts``: when it arrived). A label
posted over HTTP is written before the request is answered. The log is a
``mlops.core.segments.SegmentedLog``: with shipping on, its closed segments go to the object
store, where labels from every pod meet the predictions of every pod (the harvest joins them).

A label can arrive before the sidecar has read its prediction from the log (a client that posts
feedback right after the answer). ``LabelBuffer`` keeps it, by ``(request_id, index)``, until the
prediction is read (matched then) or ``ttl_seconds`` have passed (expired: counted, and still in
the label log). It holds at most ``capacity`` labels: beyond, the oldest waiting one is dropped,
counted too. Each label ends in exactly one of ``FEEDBACK_RESULTS``.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from mlops.core.artifacts import iso_timestamp
from mlops.core.segments import SegmentedLog
from mlops.monitor.window import Label

# What becomes of a label: joined to its prediction; waited for it longer than the TTL; pushed out
# of a full buffer; replaced by a later label for the same prediction while waiting.
FEEDBACK_RESULTS = ("matched", "expired", "dropped", "duplicate")
PENDING = "pending"  # waiting: not a final result, not counted
LABEL_SEGMENT_BYTES = 16 << 20
LABEL_BACKUPS = 5  # closed label segments kept when nothing ships them


class Labelled(Protocol):
    """A label and the prediction it is for (``mlops.monitor.feedback.Feedback``)."""

    @property
    def request_id(self) -> str: ...

    @property
    def index(self) -> int: ...

    @property
    def label(self) -> Label: ...


@dataclass
class Waiting:
    label: Label
    arrived: float  # the clock's time


class LabelBuffer:
    """Labels that arrived before their prediction, oldest first."""

    def __init__(self, capacity: int, ttl_seconds: float) -> None:
        self.capacity = capacity
        self.ttl_seconds = ttl_seconds
        self._waiting: OrderedDict[tuple[str, int], Waiting] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def hold(self, item: Labelled, now: float) -> Counter[str]:
        """Keep ``item`` until its prediction is read; what became of labels meanwhile
        (``pending``, and ``duplicate`` or ``dropped`` for the ones it replaced or pushed out)."""
        outcomes: Counter[str] = Counter({PENDING: 1})
        key = (item.request_id, item.index)
        if self._waiting.pop(key, None) is not None:
            outcomes["duplicate"] += 1
        self._waiting[key] = Waiting(item.label, now)
        while len(self._waiting) > self.capacity:
            self._waiting.popitem(last=False)
            outcomes["dropped"] += 1
        return outcomes

    def take(self, request_id: str, index: int) -> Label | None:
        """The label waiting for this prediction, once."""
        waiting = self._waiting.pop((request_id, index), None)
        return None if waiting is None else waiting.label

    def expire(self, now: float) -> int:
        """Forget the labels older than the TTL; how many."""
        expired = 0
        while self._waiting:
            oldest = next(iter(self._waiting.values()))
            if now - oldest.arrived <= self.ttl_seconds:
                break
            self._waiting.popitem(last=False)
            expired += 1
        return expired


class LabelLog:
    """Appends accepted labels to the label log; safe to call from several threads (the HTTP
    handlers and the polling thread)."""

    def __init__(self, path: Path, shipped: bool) -> None:
        self.path = path
        self._log = SegmentedLog(path, LABEL_SEGMENT_BYTES, keep=None if shipped else LABEL_BACKUPS)
        self._lock = threading.Lock()

    def append(self, items: Sequence[Labelled], now: float) -> None:
        """Write the labels (one piece: all or none of them). Raises OSError."""
        if not items:
            return
        received = iso_timestamp(now)
        lines = b"".join(
            orjson.dumps(
                {
                    "ts": received,
                    "request_id": item.request_id,
                    "index": item.index,
                    "label": item.label,
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
            for item in items
        )
        with self._lock:
            self._log.append(lines)

    def seal(self) -> Path | None:
        with self._lock:
            return self._log.seal()

    def close(self) -> None:
        with self._lock:
            self._log.close()
