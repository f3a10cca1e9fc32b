"""The prediction log: one JSON line per scored record (``mlops.core.artifacts.PredictionRecord``),
written before the record's answer leaves.

Group commit on the event loop: a request handler formats its lines into one buffer and waits;
on the loop's next turn one write hands every buffer queued meanwhile to the operating system
(the requests of one turn share it, as they share an ONNX Runtime call), and only then are
their answers released. A large batch's lines are a group of their own: written at once
(``append``, about 0.1 ms for a thousand records), not after the rest of the loop's turn.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from mlops.core.artifacts import CHALLENGER, CHAMPION, PredictionRecord, Role, iso_timestamp
from mlops.core.errors import StageError
from mlops.core.segments import MAX_LINE_BYTES, SegmentedLog, WriterPresence, log_bytes
from mlops.serve.batches import MAX_CLIENT_ID_LENGTH, MAX_EXTRA_BYTES, Columns, Inputs
from mlops.serve.errors import ClientError
from mlops.serve.jsonparts import Part, object_parts, records_json, value_json
from mlops.serve.model import Prediction, Scorer
from mlops.serve.schema import InputSchema

logger = logging.getLogger("mlops.serve")

RETRY_SECONDS = 5.0  # after a failed write: not ready (503) this long, then writes are tried again
BUSY_TURNS = 3  # turns a group waits for another worker's write before blocking on the lock
BUDGET_CHECK_SECONDS = 1.0  # how often the log's size is held to SCORER_LOG_MAX_TOTAL_BYTES
NUMBER_BYTES = 24  # the longest number orjson writes: -1.7976931348623157e+308
REQUEST_ID_BYTES = 34  # 32 hex digits, quoted (dataplane.RequestIds)
ESCAPED_CHARACTER_BYTES = 6  # a control character is written as \u00XX


@dataclass(slots=True)
class ScoredBatch:
    """What one request scored: the records as received and what the model said."""

    received: float  # Unix time the request arrived
    request_id: str
    model_version: str
    inputs: Inputs  # the records as received: their features, extra fields, the client's id
    prediction: Prediction
    classes: Sequence[str] | None  # a classifier's, in its probabilities' order; None: a regressor
    latency_seconds: float
    role: Role = CHAMPION  # which model scored it
    shadow: bool = False  # a challenger's copy of an answered request (not the answer)


COLUMN_WISE_MIN_RECORDS = 32  # fewer tensor records are formatted a line at a time (faster)


def log_lines(batch: ScoredBatch) -> bytes | bytearray:
    """The batch's JSON lines (``PredictionRecord``): the records of a column-wise request (V2
    tensors) column by column when there are many (``lines_by_column``), else a line at a time
    (``lines_by_record``: faster for a few, and for row-wise records, which are dicts already).
    The two give the same bytes."""
    inputs = batch.inputs
    if isinstance(inputs, Columns) and inputs.size >= COLUMN_WISE_MIN_RECORDS:
        return lines_by_column(batch, inputs)
    return lines_by_record(batch)


def lines_by_record(batch: ScoredBatch) -> bytearray:
    """One record dict, refilled per line (the fields the request shares are set once), and one
    orjson call per line."""
    inputs, prediction, classes = batch.inputs, batch.prediction, batch.classes
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
    if inputs.client_id is not None:
        record["client_request_id"] = inputs.client_id
    extras = inputs.extras
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
    lines = bytearray()
    if classes is None:
        shares: Sequence[dict[str, float] | None] = [None] * len(prediction.values)
        predicted: Sequence[str | float] = prediction.values
    else:
        shares, predicted = prediction.probability_maps(list(classes)), prediction.labels
    for index, (features, label, probabilities) in enumerate(
        zip(inputs.records(), predicted, shares, strict=True)
    ):
        record["index"] = index
        record["features"] = features
        record["prediction"] = label
        record["probabilities"] = probabilities
        if extras is not None:
            if extras[index]:
                record["extra"] = extras[index]  # type: ignore[typeddict-item]
            else:
                record.pop("extra", None)
        lines += dumps(record, option=option)
    return lines


def lines_by_column(batch: ScoredBatch, inputs: Columns) -> bytes:
    """The batch's JSON lines made column by column (``mlops.serve.jsonparts``): the head with
    the index, the features, the prediction, each class's probability, the tail."""
    dumps, size = orjson.dumps, inputs.size
    head = b'{"ts":' + dumps(iso_timestamp(batch.received))
    head += b',"request_id":' + dumps(batch.request_id) + b',"index":'
    after_index = b',"model_version":' + dumps(batch.model_version)
    after_index += b',"role":' + dumps(batch.role) + b',"features":'
    parts: list[Part] = [head, value_json(list(range(size))), after_index]
    parts += object_parts(inputs.values.items())  # in the schema's order
    prediction, classes = batch.prediction, batch.classes
    if classes is None:
        parts += [b',"prediction":', value_json(prediction.values), b',"probabilities":null']
    else:
        parts += [b',"prediction":', value_json(prediction.labels), b',"probabilities":']
        parts += object_parts(probability_columns(prediction, classes))
    tail = b',"latency_seconds":' + dumps(round(batch.latency_seconds * 1e6) / 1e6)
    if batch.shadow:
        tail += b',"shadow":true'
    if inputs.client_id is not None:
        tail += b',"client_request_id":' + dumps(inputs.client_id)
    parts.append(tail + b"}\n")  # a tensor request has no extra fields
    return records_json(parts, size)


def probability_columns(
    prediction: Prediction, classes: Sequence[str]
) -> Iterator[tuple[str, npt.NDArray[np.float64]]]:
    """Each class's probabilities, a column per class in ``classes`` order."""
    array = prediction.probability_array
    if array is None:
        array = np.asarray(prediction.probabilities, dtype=np.float64).reshape(-1, len(classes))
    columns = array.T.copy()  # each class's probabilities contiguous
    return zip(classes, columns, strict=True)


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
        self._busy_turns = 0  # turns the group waited for another process's write
        self._file_lock = threading.Lock()  # the loop's writes and worker threads'
        self._closed = False

    @property
    def pending(self) -> int:
        """Records waiting for the next write (a loop turn's, a few while another worker writes)."""
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
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self.commit)
        self._chunks.append(log_lines(batch))
        self._waiting.append(done)
        self._records += batch.inputs.size
        return done

    def commit(self, wait: bool = False) -> None:
        """Write what is waiting in one piece, then release the requests that waited for it.
        When another worker process holds the log's lock, the loop does not wait for it: the
        group is tried again on the next turn, with what queues meanwhile (at most
        ``BUSY_TURNS`` times, then it waits for the lock)."""
        if not self._chunks:
            return
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        try:
            written = self.append(data, wait or self._busy_turns >= BUSY_TURNS)
        except Exception as error:
            self._release(error)
            return
        if written:
            self._release(None)
            return
        self._busy_turns += 1
        self._chunks = [data]
        asyncio.get_running_loop().call_soon(self.commit)

    def _release(self, error: Exception | None) -> None:
        """The requests of the group: answered, or refused with ``error``."""
        waiting = self._waiting
        self._chunks, self._waiting, self._records, self._busy_turns = [], [], 0, 0
        for future in waiting:
            if future.done():  # a request whose client went away was cancelled
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def append(self, lines: bytes | bytearray, wait: bool = True) -> bool:
        """Write ``lines`` now, as one piece: from the loop (a group; a large batch's lines) or
        the shadow scorer's thread. ``wait=False``: False, nothing written, if another process
        holds the log's lock. ClientError(503) if the disk refused them (then nothing of them
        is written: the writer is unhealthy for ``RETRY_SECONDS``) or the log is closed."""
        with self._file_lock:
            if self._closed:
                raise ClientError(503, "the prediction log is closed: shutting down")
            try:
                self.file.append(lines, wait)
            except BlockingIOError:
                return False
            except OSError as error:
                self.failed = f"{type(error).__name__}: {error}"
                self._failed_at = time.monotonic()
                logger.error("prediction log %s: writing failed (%s)", self.file.path, self.failed)
                raise ClientError(
                    503, f"the prediction log cannot be written ({self.failed})"
                ) from None
        return True

    def close(self) -> None:
        """Write what is still waiting; close the open segment when the sidecar takes them."""
        if self._closed:
            return
        self.commit(wait=True)
        with self._file_lock:  # a write in flight in a worker thread ends first
            self._closed = True
        try:
            if self.sidecar and self.file.seal() is not None:
                logger.info("prediction log: closed the open segment for shipping")
        except OSError as error:
            logger.error("prediction log %s: sealing failed (%s)", self.file.path, error)
        self.file.close()
        self.presence.close()
