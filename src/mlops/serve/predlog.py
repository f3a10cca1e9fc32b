"""The prediction log: one JSON line per scored record (``mlops.artifacts.PredictionRecord``).

The event loop only hands a scored batch to a queue; a writer thread turns batches into lines,
appends them in large writes and rotates the file by size (``<log>.1`` is the newest old file).
``close`` drains the queue, so every record answered with a 2xx is on disk once shutdown completes.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from mlops.artifacts import PredictionRecord

logger = logging.getLogger("mlops.serve")

MAX_BATCHES_PER_WRITE = 256


@dataclass(frozen=True)
class ScoredBatch:
    """What one request scored, as the event loop hands it over (the thread formats it)."""

    received: float  # Unix time the request arrived
    request_id: str
    model_version: str
    features: list[dict[str, Any]]
    labels: list[str]
    probabilities: list[dict[str, float]]  # shared with the response, not copied
    latency_seconds: float


def iso_timestamp(unix_time: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-21T06:00:00.123Z``."""
    moment = datetime.fromtimestamp(unix_time, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def log_lines(batch: ScoredBatch) -> bytes:
    """The batch's JSON lines. Each line goes straight into one buffer: keeping many small orjson
    results alive before joining them is several times slower."""
    timestamp = iso_timestamp(batch.received)
    latency = round(batch.latency_seconds, 6)
    lines = bytearray()
    for index, (features, label, probabilities) in enumerate(
        zip(batch.features, batch.labels, batch.probabilities, strict=True)
    ):
        record: PredictionRecord = {
            "ts": timestamp,
            "request_id": batch.request_id,
            "index": index,
            "model_version": batch.model_version,
            "features": features,
            "prediction": label,
            "probabilities": probabilities,
            "latency_seconds": latency,
        }
        lines += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    return bytes(lines)


class RotatingFile:
    """Append-only file that moves itself to ``.1`` (older ones to ``.2``) before outgrowing max."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        self.size = self._file.tell()

    def write(self, data: bytes) -> None:
        if self.size and self.size + len(data) > self.max_bytes:
            self.rotate()
        self._file.write(data)
        self._file.flush()
        self.size += len(data)

    def rotate(self) -> None:
        self._file.close()
        for number in range(self.backups - 1, 0, -1):
            older = self.backup(number)
            if older.exists():
                older.replace(self.backup(number + 1))
        self.path.replace(self.backup(1))
        self._file = self.path.open("ab")
        self.size = 0

    def backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def close(self) -> None:
        self._file.flush()
        self._file.close()


class PredictionLogWriter:
    """A queue and one writer thread; ``submit`` never blocks and returns False when full."""

    def __init__(self, path: Path, max_bytes: int, backups: int, max_pending_records: int) -> None:
        self.file = RotatingFile(path, max_bytes, backups)
        self.max_pending_records = max_pending_records
        self._queue: queue.SimpleQueue[ScoredBatch | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self.failed: str | None = None  # the error that stopped the writer, if any
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def healthy(self) -> bool:
        return self.failed is None and self._thread.is_alive()

    def submit(self, batch: ScoredBatch) -> bool:
        count = len(batch.labels)
        with self._lock:
            if self._pending and self._pending + count > self.max_pending_records:
                return False
            self._pending += count
        self._queue.put(batch)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued so far, then stop the thread and close the file."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error(
                "prediction log: %d record(s) still unwritten after %.0fs", self._pending, timeout
            )

    def _run(self) -> None:
        stopping = False
        try:
            while not stopping:
                batches, stopping = self._take()
                if batches:
                    self.file.write(b"".join([log_lines(batch) for batch in batches]))
                    with self._lock:
                        self._pending -= sum(len(batch.labels) for batch in batches)
        except (
            Exception
        ) as error:  # a full disk or a vanished directory: report it, stop being ready
            self.failed = f"{type(error).__name__}: {error}"
            logger.error("prediction log %s: writing failed (%s)", self.file.path, self.failed)
        finally:
            try:
                self.file.close()
            except OSError as error:
                logger.error("prediction log %s: closing failed (%s)", self.file.path, error)

    def _take(self) -> tuple[list[ScoredBatch], bool]:
        """Block for one batch, then take whatever else is already queued."""
        batches: list[ScoredBatch] = []
        item = self._queue.get()
        while item is not None:
            batches.append(item)
            if len(batches) >= MAX_BATCHES_PER_WRITE:
                return batches, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batches, False
        return batches, True
