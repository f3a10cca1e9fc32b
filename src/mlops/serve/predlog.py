"""The prediction log: one JSON line per scored record (``mlops.core.artifacts.PredictionRecord``),
written before the record's answer leaves.

Group commit on the event loop: a request handler formats its lines into one buffer and waits;
on the loop's next turn one write hands every buffer queued meanwhile to the operating system
(the requests of one turn share it, as they share an ONNX Runtime call), and only then are
their answers released. A batch's lines (``COMMIT_NOW_BYTES`` or more) are written at once with
what waits, rather than after the rest of the turn: they are a group of their own already.
Once ``write`` has returned, the lines are in the kernel's page cache:
they survive the process being killed (SIGKILL, the OOM killer) without an fsync per request;
only the machine going down loses what the kernel has not written back yet. The file is a
``mlops.core.segments.SegmentedLog``: worker processes share it (each write is locked), it is
closed into segments by size, and a writer killed mid-write leaves no broken line behind.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlops.core.artifacts import CHALLENGER, CHAMPION, PredictionRecord, Role, iso_timestamp
from mlops.core.errors import StageError
from mlops.core.segments import MAX_LINE_BYTES, SegmentedLog, WriterPresence, log_bytes
from mlops.serve.batches import MAX_CLIENT_ID_LENGTH, MAX_EXTRA_BYTES
from mlops.serve.errors import ClientError
from mlops.serve.model import Scorer
from mlops.serve.schema import InputSchema

logger = logging.getLogger("mlops.serve")

RETRY_SECONDS = 5.0  # after a failed write: not ready (503) this long, then writes are tried again
BUDGET_CHECK_SECONDS = 1.0  # how often the log's size is held to SCORER_LOG_MAX_TOTAL_BYTES
COMMIT_NOW_BYTES = 64 * 1024  # a request's lines this large (a 200-record batch) commit at once
THREAD_WRITE_BYTES = 256 * 1024  # a group this large (a 600-record batch) is written off the loop
NUMBER_BYTES = 24  # the longest number orjson writes: -1.7976931348623157e+308
REQUEST_ID_BYTES = 34  # 32 hex digits, quoted (dataplane.RequestIds)
ESCAPED_CHARACTER_BYTES = 6  # a control character is written as \u00XX


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
    role: Role = CHAMPION  # which model scored it
    shadow: bool = False  # a challenger's copy of an answered request (not the answer)


def log_lines(batch: ScoredBatch) -> bytearray:
    """The batch's JSON lines, formatted straight into one buffer (keeping many small orjson
    results alive before joining them is several times slower). One record dict is refilled
    per line rather than built anew: the fields shared by the request are set once."""
    record: PredictionRecord = {
        "ts": iso_timestamp(batch.received),
        "request_id": batch.request_id,
        "index": 0,
        "model_version": batch.model_version,
        "role": batch.role,
        "features": {},
        "prediction": "",
        "probabilities": None,
        "latency_seconds": round(batch.latency_seconds * 1e6) / 1e6,  # round(x, 6) is slower
    }
    if batch.shadow:
        record["shadow"] = True
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


def line_bound(
    schema: InputSchema, scorer: Scorer, max_records: int, other_versions: Sequence[str] = ()
) -> int:
    """The most bytes one log line can take: every string feature at its longest, written in its
    most expensive characters, every number at its longest, the client's request id and a
    record's extra fields at their longest, a challenger's shadow line (``other_versions``: the
    challenger's version, whose classes are the champion's). The checks refuse longer values
    (``InputSchema.max_string_length``, ``MAX_CLIENT_ID_LENGTH``, ``MAX_EXTRA_BYTES``), so no
    request can write a longer line."""

    def quoted(text: str) -> int:
        return len(orjson.dumps(text))

    longest_string = ESCAPED_CHARACTER_BYTES * schema.max_string_length + 2
    features = sum(
        quoted(spec.name) + 1 + (NUMBER_BYTES if spec.is_number else longest_string) + 1
        for spec in schema.fields
    )
    if scorer.regression:
        prediction, probabilities = NUMBER_BYTES, len(b"null")
    else:
        prediction = max(map(quoted, scorer.classes))
        probabilities = 2 + sum(quoted(label) + 1 + NUMBER_BYTES + 1 for label in scorer.classes)
    skeleton = {
        "ts": iso_timestamp(0.0),
        "request_id": "",
        "index": max_records,
        "model_version": max([scorer.model_version, *other_versions], key=len),
        "role": CHALLENGER,
        "shadow": True,
        "features": {},
        "prediction": 0,
        "probabilities": None,
        "latency_seconds": 0,
    }
    return (
        len(orjson.dumps(skeleton, option=orjson.OPT_APPEND_NEWLINE))
        + REQUEST_ID_BYTES
        + features
        + prediction
        + probabilities
        + 2 * NUMBER_BYTES
        + len(b',"client_request_id":')
        + ESCAPED_CHARACTER_BYTES * MAX_CLIENT_ID_LENGTH
        + 2
        + len(b',"extra":')
        + MAX_EXTRA_BYTES
    )


def require_bounded_lines(
    schema: InputSchema, scorer: Scorer, max_records: int, other_versions: Sequence[str] = ()
) -> int:
    """The line bound (``line_bound``); StageError when it is more than a log reader takes."""
    bound = line_bound(schema, scorer, max_records, other_versions)
    if bound > MAX_LINE_BYTES:
        raise StageError(
            f"SCORER_MAX_STRING_LENGTH={schema.max_string_length}: prediction log lines could "
            f"take {bound} bytes, over the {MAX_LINE_BYTES} a log reader takes; lower it"
        )
    logger.info(
        "prediction log lines: at most %d bytes (strings up to %d characters)",
        bound,
        schema.max_string_length,
    )
    return bound


class PredictionLogWriter:
    """Group commit of the request handlers' lines on the event loop (module docstring).

    ``sidecar``: the monitoring sidecar takes the closed segments (``SCORER_LOG_SIDECAR``): none
    is deleted here, and ``close`` closes the open segment too, so that it ships. Otherwise the
    newest ``backups`` closed segments are kept. ``max_total_bytes``: once the log holds more
    (segments the sidecar has not shipped, its store being down), the scorer is not ready and
    refuses requests (503) rather than fill the volume and lose the log with the pod."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        backups: int,
        sidecar: bool = False,
        max_total_bytes: int | None = None,
    ) -> None:
        self.file = SegmentedLog(path, max_bytes, keep=None if sidecar else backups)
        self.sidecar = sidecar
        self.max_total_bytes = max_total_bytes
        self._checked_at = -BUDGET_CHECK_SECONDS
        self._full = False
        self.presence = WriterPresence(path)  # the sidecar seals only once every writer is gone
        self.presence.hold()
        self.failed: str | None = None  # the last write's error, while it is recent
        self._failed_at = 0.0
        self._chunks: list[bytes | bytearray] = []  # the lines of the requests waiting, in order
        self._waiting: list[asyncio.Future[None]] = []
        self._records = 0
        self._writing = False  # a large group is being written in a worker thread
        self._file_lock = threading.Lock()  # that thread's write and the loop's close
        self._closed = False

    @property
    def pending(self) -> int:
        """Records waiting for the next write (at most one loop turn's)."""
        return self._records

    @property
    def healthy(self) -> bool:
        if self._over_budget():
            self.failed = (
                f"it holds more than SCORER_LOG_MAX_TOTAL_BYTES={self.max_total_bytes} bytes: "
                "the sidecar has not shipped its closed segments"
            )
            self._failed_at = time.monotonic()
            return False
        if self.failed is None:
            return True
        if time.monotonic() - self._failed_at > RETRY_SECONDS:
            self.failed = None  # try again: the disk may have room by now
        return self.failed is None

    def _over_budget(self) -> bool:
        """Whether the log outgrew ``max_total_bytes`` (looked at once a second at most)."""
        if self.max_total_bytes is None:
            return False
        now = time.monotonic()
        if now - self._checked_at >= BUDGET_CHECK_SECONDS:
            self._checked_at = now
            self._full = log_bytes(self.file.path) > self.max_total_bytes
        return self._full

    def write(self, batch: ScoredBatch) -> asyncio.Future[None]:
        """The batch's lines, written with the others of this loop turn; done once they are in the
        file, or ClientError(503) if they could not be written (then nothing of them is)."""
        return self.write_lines(log_lines(batch), len(batch.predictions))

    def write_lines(self, lines: bytes | bytearray, records: int) -> asyncio.Future[None]:
        """``write`` of lines already formatted (``log_lines``: a shadow copy's, formatted off the
        loop)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self.commit)
        self._chunks.append(lines)
        self._waiting.append(done)
        self._records += records
        if len(lines) >= COMMIT_NOW_BYTES:
            self.commit()  # a batch's lines: written now, not after the rest of the loop's turn
        return done

    def commit(self, inline: bool = False) -> None:
        """Write what is waiting in one piece, then release the requests that waited for it. A
        group of ``THREAD_WRITE_BYTES`` or more (large batches) is written in a worker thread, so
        the loop serves other requests meanwhile; what queues up during such a write is written
        after it, in the next group."""
        if self._writing:
            return  # the write in flight commits the next group when it ends
        chunks, waiting = self._chunks, self._waiting
        self._chunks, self._waiting, self._records = [], [], 0
        if not chunks:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if inline or len(data) < THREAD_WRITE_BYTES:
            self._release(waiting, self._append(data))
            return
        self._writing = True
        written = asyncio.get_running_loop().run_in_executor(None, self._append, data)
        written.add_done_callback(lambda done: self._written(waiting, done.result()))

    def _written(self, waiting: list[asyncio.Future[None]], error: Exception | None) -> None:
        self._writing = False
        self._release(waiting, error)
        self.commit()

    def _append(self, data: bytes | bytearray) -> Exception | None:
        """Append ``data``; the error instead of raising it (it may run in a worker thread)."""
        try:
            with self._file_lock:
                self.file.append(data)
        except Exception as error:
            return error
        return None

    def _release(self, waiting: list[asyncio.Future[None]], error: Exception | None) -> None:
        if error is not None:
            self._refuse(waiting, error)
            return
        for future in waiting:
            if not future.done():  # a request whose client went away was cancelled
                future.set_result(None)

    def _refuse(self, waiting: list[asyncio.Future[None]], error: Exception) -> None:
        """Nothing of the group was written: its requests get a 503 (a disk problem) or the error
        itself (a fault of the scorer, answered 500)."""
        refusal = error
        if isinstance(error, OSError):
            self.failed = f"{type(error).__name__}: {error}"
            self._failed_at = time.monotonic()
            logger.error("prediction log %s: writing failed (%s)", self.file.path, self.failed)
            refusal = ClientError(503, f"the prediction log cannot be written ({self.failed})")
        for future in waiting:
            if not future.done():
                future.set_exception(refusal)

    def close(self) -> None:
        """Write what is still waiting; close the open segment when the sidecar takes them."""
        if self._closed:
            return
        self._closed = True
        with self._file_lock:  # a write in flight in a worker thread ends first
            self._writing = False
        self.commit(inline=True)
        try:
            if self.sidecar and self.file.seal() is not None:
                logger.info("prediction log: closed the open segment for shipping")
        except OSError as error:
            logger.error("prediction log %s: sealing failed (%s)", self.file.path, error)
        self.file.close()
        self.presence.close()
