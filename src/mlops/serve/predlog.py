"""The prediction log: one JSON line per scored record (``mlops.core.artifacts.PredictionRecord``).

Request handlers format their lines into one buffer per request and queue it; a writer thread
appends what is queued in large writes and rotates the file by size (``<log>.1`` is the newest
old file). ``close`` writes out what is queued, so every record answered with a 2xx is on disk
once shutdown completes. Worker processes share one log: each write is locked and follows the
others' rotations (``RotatingFile``).
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlops.core.artifacts import PredictionRecord

logger = logging.getLogger("mlops.serve")

FLUSH_SECONDS = 0.05
FLUSH_BYTES = 1 << 20
MAX_PENDING_BYTES = 256 << 20  # submitted but unwritten; beyond it requests wait, then get a 503


@dataclass(slots=True)
class ScoredBatch:
    """What one request scored: the records as received and what the model said."""

    received: float  # Unix time the request arrived
    request_id: str
    model_version: str
    features: list[dict[str, Any]]
    predictions: Sequence[str | float]  # a classifier's labels or a regressor's values
    probabilities: list[dict[str, float]] | None  # shared with the response; None: a regressor
    latency_seconds: float
    extras: list[dict[str, Any] | None] | None = None  # fields beside the features, per record
    client_id: str | None = None  # the id the client gave its request (V2 ``id``)


def iso_timestamp(unix_time: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-21T06:00:00.123Z``."""
    second = int(unix_time)
    return f"{_iso_second(second)}.{int((unix_time - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    """Formatting a time costs more than the rest of a log line; requests share their second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def log_lines(batch: ScoredBatch) -> bytearray:
    """The batch's JSON lines, formatted straight into one buffer (keeping many small orjson
    results alive before joining them is several times slower). One record dict is refilled
    per line rather than built anew: the fields shared by the request are set once."""
    record: PredictionRecord = {
        "ts": iso_timestamp(batch.received),
        "request_id": batch.request_id,
        "index": 0,
        "model_version": batch.model_version,
        "features": {},
        "prediction": "",
        "probabilities": None,
        "latency_seconds": round(batch.latency_seconds * 1e6) / 1e6,  # round(x, 6) is slower
    }
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    lines = bytearray()
    probabilities: Sequence[dict[str, float] | None] = batch.probabilities or [None] * len(
        batch.predictions
    )
    if batch.client_id is not None:
        record["client_request_id"] = batch.client_id
    for index, (features, prediction, shares) in enumerate(
        zip(batch.features, batch.predictions, probabilities, strict=True)
    ):
        record["index"] = index
        record["features"] = features
        record["prediction"] = prediction
        record["probabilities"] = shares
        if batch.extras is not None:
            _set_extra(record, batch.extras[index])
        lines += dumps(record, option=option)
    return lines


def _set_extra(record: PredictionRecord, extra: dict[str, Any] | None) -> None:
    """A record's fields beside the features, under ``extra``, only on the lines that have some."""
    if extra:
        record["extra"] = extra
    else:
        record.pop("extra", None)


class RotatingFile:
    """Append-only file that moves itself to ``.1`` (older ones to ``.2``) before outgrowing max.

    Several processes may append to the same path (the scorer's workers): every write holds an
    exclusive lock on ``<path>.lock``, first follows a rotation another process made (or a log
    someone deleted), then appends its chunks whole, so lines never interleave or split."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = path.with_name(path.name + ".lock").open("ab")
        self._file = path.open("ab")

    @property
    def size(self) -> int:
        """Bytes in the file this process appends to."""
        return os.fstat(self._file.fileno()).st_size

    def write(self, data: bytes | bytearray) -> None:
        self.write_all([data], len(data))

    def write_all(self, chunks: Sequence[bytes | bytearray], size: int) -> None:
        """Append ``chunks`` (``size`` bytes in all) as one piece: a rotation never splits them.
        One write call: every system call releases the GIL, and getting it back from a busy event
        loop costs more than joining the chunks."""
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._follow()
            current = self.size
            if current and current + size > self.max_bytes:
                self.rotate()
            self._file.write(b"".join(chunks))
            self._file.flush()
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _follow(self) -> None:
        """Reopen the path if the file behind it is no longer the one this process holds."""
        try:
            on_disk = self.path.stat()
        except FileNotFoundError:
            on_disk = None
        held = os.fstat(self._file.fileno())
        if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
            self._file.close()
            self._file = self.path.open("ab")

    def rotate(self) -> None:
        self._file.close()
        for number in range(self.backups - 1, 0, -1):
            older = self.backup(number)
            if older.exists():
                older.replace(self.backup(number + 1))
        self.path.replace(self.backup(1))
        self._file = self.path.open("ab")

    def backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def close(self) -> None:
        self._file.flush()
        self._file.close()
        self._lock.close()


class PredictionLogWriter:
    """Handlers format their lines and queue them (CPU only, no I/O, no copy); one thread writes
    the queue out every ``FLUSH_SECONDS``, or sooner once ``FLUSH_BYTES`` wait. Handlers never
    touch the disk, and the thread wakes rarely, so it seldom competes with the event loop for the
    GIL."""

    def __init__(
        self, path: Path, max_bytes: int, backups: int, max_pending_bytes: int = MAX_PENDING_BYTES
    ) -> None:
        self.file = RotatingFile(path, max_bytes, backups)
        self.max_pending_bytes = max_pending_bytes
        self.failed: str | None = None  # the error that stopped the writer, if any
        self._chunks: list[bytearray] = []  # one per request, written out in order
        self._chunk_bytes = 0
        self._pending = 0  # records, buffered or being written
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._stopped = False  # set by the thread as it ends (cheaper to read than is_alive)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Records accepted but not yet handed to the operating system."""
        return self._pending

    @property
    def healthy(self) -> bool:
        return self.failed is None and not self._stopped

    def submit(self, batch: ScoredBatch) -> bool:
        """Queue the batch's lines; False (nothing queued) when the backlog is full."""
        lines = log_lines(batch)
        with self._lock:
            if self._pending_bytes and self._pending_bytes + len(lines) > self.max_pending_bytes:
                return False
            self._chunks.append(lines)
            self._chunk_bytes += len(lines)
            self._pending += len(batch.predictions)
            self._pending_bytes += len(lines)
            urgent = self._chunk_bytes >= FLUSH_BYTES
        if urgent:
            self._wake.set()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything submitted so far, then stop the thread and close the file."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error(
                "prediction log: %d record(s) unwritten after %.0fs", self._pending, timeout
            )

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(FLUSH_SECONDS)
                self._wake.clear()
                stopping = self._stopping
                self._flush()
                if stopping:
                    return
        except (
            Exception
        ) as error:  # a full disk or a vanished directory: report it, stop being ready
            self.failed = f"{type(error).__name__}: {error}"
            logger.error("prediction log %s: writing failed (%s)", self.file.path, self.failed)
        finally:
            self._stopped = True
            try:
                self.file.close()
            except OSError as error:
                logger.error("prediction log %s: closing failed (%s)", self.file.path, error)

    def _flush(self) -> None:
        with self._lock:
            chunks, self._chunks = self._chunks, []
            size, self._chunk_bytes = self._chunk_bytes, 0
            count = self._pending
        if chunks:
            self.file.write_all(chunks, size)
        with self._lock:
            self._pending -= count
            self._pending_bytes -= size
