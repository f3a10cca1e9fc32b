"""Shipping: the closed segments of the prediction log and of the label log go to object storage
(``MONITOR_SHIP_URL``) as Parquet, exactly once, where the harvest reads them
(``mlops.data.harvest``).

Each closed segment becomes one Parquet file per partition of its records::

    <url>/predictions/date=<YYYY-MM-DD>/model_version=<version>/<segment>.parquet
    <url>/labels/date=<YYYY-MM-DD>/<segment>.parquet

(the date of the record's ``ts``: when it was scored, or when the label arrived). ``<segment>``
is the first 32 hex digits of the segment's sha256: a closed segment never changes, so shipping
it again writes the same objects under the same keys. That is how a shipment survives a crash
at any point: upload every object, then record the segment as shipped (``MONITOR_SHIP_STATE_FILE``,
written atomically), then delete it. A restart finds the segment still there: recorded, it is
only deleted; not recorded, it is uploaded again over the objects of the interrupted attempt.
No record is lost and none appears twice.

A prediction segment is deleted only once the sidecar has read it (its drift window must see
every record). Without a store (``MONITOR_SHIP_URL`` unset), nothing ships and the sidecar keeps
the newest ``MONITOR_LOG_BACKUPS`` closed prediction segments it has read, deleting older ones:
with ``SCORER_LOG_SIDECAR=true`` the scorer deletes none itself.

The open segments are closed for shipping once their first record is
``MONITOR_SHIP_SEGMENT_SECONDS`` old (the scorer closes its own by size, and at shutdown), and
at the sidecar's shutdown, when no scorer process is left (``mlops.core.segments.WriterPresence``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from mlops.core.artifacts import CHAMPION, ROLES, record_role
from mlops.core.atomic import atomic_write_bytes
from mlops.core.errors import StageError
from mlops.core.segments import (
    MAX_LINE_BYTES,
    SegmentedLog,
    WriterPresence,
    closed_segments,
    segment_number,
)
from mlops.monitor.labels import LabelLog
from mlops.monitor.objectstore import ObjectStore, StoreError, open_store
from mlops.monitor.parquet import Column, Group, Kind, write_table
from mlops.monitor.settings import MonitorSettings, env_name
from mlops.monitor.window import parse_timestamp

LOGGER = logging.getLogger(__name__)
PREDICTIONS, LABELS = "predictions", "labels"
SHIPPED_LOGS = (PREDICTIONS, LABELS)
STATE_VERSION = 1
KEPT_RECORDS = 1000  # shipped segments remembered after their file is gone
WAIT_POLL_SECONDS = 0.2


@dataclass
class LogShipping:
    segments: int = 0
    records: int = 0
    objects: int = 0
    corrupt: int = 0  # lines that were not a record of this log: left out


@dataclass
class ShipCounts:
    logs: dict[str, LogShipping] = field(
        default_factory=lambda: {log: LogShipping() for log in SHIPPED_LOGS}
    )
    failures: int = 0
    last_shipped: float | None = None


@dataclass(frozen=True)
class ShipStatus:
    """What ``/metrics`` shows: the counts, and what waits to be shipped."""

    counts: ShipCounts
    waiting_segments: dict[str, int]
    waiting_bytes: dict[str, int]


# --- records to Parquet ------------------------------------------------------------------------


def _kind(values: Iterable[Any]) -> Kind:
    """``double`` when every value present is a number, else ``string``."""
    numbers = all(
        isinstance(value, int | float) and not isinstance(value, bool)
        for value in values
        if value is not None
    )
    return "double" if numbers else "string"


def _typed(values: list[Any], kind: Kind) -> list[Any]:
    if kind == "double":
        return [None if value is None else float(value) for value in values]
    return [
        value if value is None or isinstance(value, str) else json.dumps(value) for value in values
    ]


def _union(mappings: Iterable[dict[str, Any] | None]) -> list[str]:
    """The keys of all mappings, in the order first seen."""
    return list(dict.fromkeys(key for mapping in mappings if mapping for key in mapping))


def _common_columns(records: list[dict[str, Any]]) -> list[Column]:
    return [
        Column("ts", "timestamp_ms", [round(r["_unix"] * 1000) for r in records], nullable=False),
        Column("request_id", "string", [r["request_id"] for r in records], nullable=False),
        Column("index", "int64", [r["index"] for r in records], nullable=False),
    ]


def predictions_table(records: list[dict[str, Any]]) -> bytes:
    """One partition's prediction records as Parquet: ``ts``, ``request_id``, ``index``,
    ``model_version``, ``role`` (``champion`` or ``challenger``; a line from before the rollout
    has none: the champion's) and ``shadow`` (true: a challenger's copy of a request the
    champion answered, which the harvest leaves out), the struct ``features`` (one column per
    feature, by its name), ``prediction`` (a class or a number), a classifier's struct
    ``probabilities`` (one column per class),
    ``latency_seconds``; and where any record has them, ``client_request_id`` (a V2 request's
    ``id``) and ``extra`` (a record's fields beside its features, as JSON text)."""
    names = _union(record["features"] for record in records)
    features = []
    for name in names:
        values = [record["features"].get(name) for record in records]
        kind = _kind(values)
        features.append(Column(name, kind, _typed(values, kind)))
    predictions = [record["prediction"] for record in records]
    kind = _kind(predictions)
    fields: list[Column | Group] = [
        *_common_columns(records),
        Column("model_version", "string", [r["model_version"] for r in records], nullable=False),
        Column("role", "string", [record_role(r) for r in records], nullable=False),
        Column("shadow", "boolean", [r.get("shadow", False) for r in records], nullable=False),
        Group("features", features),
        Column("prediction", kind, _typed(predictions, kind)),
    ]
    classes = _union(record.get("probabilities") for record in records)
    if classes:
        shares = [record.get("probabilities") or {} for record in records]
        columns = [Column(name, "double", [s.get(name) for s in shares]) for name in classes]
        fields.append(Group("probabilities", columns))
    latency = [record.get("latency_seconds") for record in records]
    fields.append(Column("latency_seconds", "double", _typed(latency, "double")))
    client_ids = [record.get("client_request_id") for record in records]
    if any(value is not None for value in client_ids):
        fields.append(Column("client_request_id", "string", _typed(client_ids, "string")))
    extras = [record.get("extra") for record in records]
    if any(value is not None for value in extras):
        fields.append(Column("extra", "string", _typed(extras, "string")))  # JSON text
    return write_table(fields, len(records))


def labels_table(records: list[dict[str, Any]]) -> bytes:
    """One partition's labels as Parquet: ``ts`` (arrival), ``request_id``, ``index``, ``label``
    (a class, or a regressor's number)."""
    labels = [record["label"] for record in records]
    kind = _kind(labels)
    fields = [*_common_columns(records), Column("label", kind, _typed(labels, kind))]
    return write_table(fields, len(records))


def _record(line: bytes, log: str) -> dict[str, Any] | None:
    """The line's record with its time (``_unix``), or None if it is not one of ``log``."""
    try:
        record = orjson.loads(line)
        record["_unix"] = parse_timestamp(record["ts"])
        valid = isinstance(record["request_id"], str) and type(record["index"]) is int
        if log == PREDICTIONS:
            valid = valid and isinstance(record["features"], dict)
            valid = valid and isinstance(record["model_version"], str) and "prediction" in record
            valid = valid and record.get("role", CHAMPION) in ROLES
            valid = valid and type(record.get("shadow", False)) is bool
        else:
            valid = valid and "label" in record
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return record if valid else None


def partitions(log: str, data: bytes) -> tuple[dict[str, bytes], int, int]:
    """The segment's objects (key below the log's prefix → Parquet), its records and the lines
    that are not records (left out, counted)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    corrupt = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        record = _record(line, log) if len(line) <= MAX_LINE_BYTES else None
        if record is None:
            corrupt += 1
            continue
        partition = f"date={record['ts'][:10]}"
        if log == PREDICTIONS:
            partition += f"/model_version={quote(record['model_version'], safe='')}"
        groups[partition].append(record)
    build = predictions_table if log == PREDICTIONS else labels_table
    objects = {partition: build(records) for partition, records in sorted(groups.items())}
    return objects, sum(map(len, groups.values())), corrupt


# --- the shipper ---------------------------------------------------------------------------------


class Shipper:
    def __init__(
        self,
        settings: MonitorSettings,
        store: ObjectStore | None,
        labels: LabelLog,
        reading: Callable[[], int | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store  # None: nothing ships; read segments are only pruned
        self.labels = labels
        self.reading = reading  # the inode of the prediction log file the sidecar reads
        self.clock = clock
        self.paths = {PREDICTIONS: settings.prediction_log, LABELS: labels.path}
        self._predictions = SegmentedLog(settings.prediction_log, 1 << 62, keep=None)
        self._writers = WriterPresence(settings.prediction_log)
        self._shipped, self.counts = load_ship_state(settings.ship_state_file)
        self._lock = threading.Lock()  # one pass at a time: the thread's, or the final one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the background thread ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.ship_interval_seconds):
            self.ship(seal_older_than=self.settings.ship_segment_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.ship_timeout_seconds + 5)

    # -- at the sidecar's shutdown --------------------------------------------------------------

    def seal_for_shutdown(self) -> None:
        """Close the open prediction segment once no scorer process is left (waiting up to
        ``MONITOR_SHIP_SHUTDOWN_WAIT_SECONDS``: the pod's scorer drains its requests meanwhile)
        and the open label segment, so that the final pass ships everything."""
        self.stop()
        if self.store is None:
            return
        deadline = time.monotonic() + self.settings.ship_shutdown_wait_seconds
        while not self._writers.none_left():
            if time.monotonic() >= deadline:
                LOGGER.warning(
                    "a scorer still writes %s: its open segment ships after the next start",
                    self.paths[PREDICTIONS],
                )
                break
            time.sleep(WAIT_POLL_SECONDS)
        else:
            self._seal(PREDICTIONS)
        self._seal(LABELS)

    def close(self) -> None:
        self._predictions.close()
        self._writers.close()

    # -- a pass ---------------------------------------------------------------------------------

    def ship(self, seal_older_than: float | None = None) -> None:
        """Close the open segments older than ``seal_older_than`` seconds, ship every closed
        segment not shipped yet, delete what is shipped (and read). Failures are logged,
        counted and tried again on the next pass."""
        with self._lock:
            if self.store is None:
                self._prune()
                return
            try:
                if seal_older_than is not None:
                    for log in SHIPPED_LOGS:
                        if self._age(log) > seal_older_than:
                            self._seal(log)
                for log in SHIPPED_LOGS:
                    for segment in closed_segments(self.paths[log]):
                        self._ship_segment(log, segment)
            except (StoreError, OSError) as error:
                self.counts.failures += 1
                LOGGER.error(
                    "shipping failed, tried again in %ss: %s",
                    self.settings.ship_interval_seconds,
                    error,
                )
                self._save()

    def status(self) -> ShipStatus:
        """The counts, and the closed segments not shipped yet (a shipped prediction segment
        that waits to be read is not counted)."""
        shipped = {entry["segment"] for entry in dict(self._shipped).values()}
        waiting_segments, waiting_bytes = {}, {}
        for log in SHIPPED_LOGS:
            sizes = []
            for segment in closed_segments(self.paths[log]):
                if segment.name in shipped:
                    continue
                try:
                    sizes.append(segment.stat().st_size)
                except FileNotFoundError:
                    continue
            waiting_segments[log], waiting_bytes[log] = len(sizes), sum(sizes)
        return ShipStatus(self.counts, waiting_segments, waiting_bytes)

    def _prune(self) -> None:
        """Nothing ships: keep the newest ``log_backups`` closed prediction segments read."""
        read = [s for s in closed_segments(self.paths[PREDICTIONS]) if self._read_through(s)]
        for segment in read[: -self.settings.log_backups]:
            segment.unlink(missing_ok=True)

    def _ship_segment(self, log: str, segment: Path) -> None:
        assert self.store is not None
        try:
            data = segment.read_bytes()
        except FileNotFoundError:
            return
        segment_id = hashlib.sha256(data).hexdigest()[:32]
        if segment_id not in self._shipped:
            objects, records, corrupt = partitions(log, data)
            for partition, table in objects.items():
                self.store.put(f"{log}/{partition}/{segment_id}.parquet", table)
            self._shipped[segment_id] = {"log": log, "segment": segment.name, "records": records}
            shipped = self.counts.logs[log]
            shipped.segments += 1
            shipped.records += records
            shipped.objects += len(objects)
            shipped.corrupt += corrupt
            self.counts.last_shipped = self.clock()
            self._save()
            LOGGER.info(
                "shipped %s (%d records, %d lines left out) as %d object(s) under %s",
                segment,
                records,
                corrupt,
                len(objects),
                self.store.describe(f"{log}/"),
            )
        if log == LABELS or self._read_through(segment):
            segment.unlink(missing_ok=True)

    def _read_through(self, segment: Path) -> bool:
        """Whether the sidecar has read the closed prediction segment whole."""
        reading = self.reading()
        if reading is None:
            return False
        for path in [*closed_segments(self.paths[PREDICTIONS]), self.paths[PREDICTIONS]]:
            try:
                inode = path.stat().st_ino
            except FileNotFoundError:
                continue
            if inode == reading:
                if path == self.paths[PREDICTIONS]:
                    return True
                return segment_number(path) > segment_number(segment)
        return False

    def _seal(self, log: str) -> None:
        closed = self._predictions.seal() if log == PREDICTIONS else self.labels.seal()
        if closed is not None:
            LOGGER.info("closed %s for shipping", closed)

    def _age(self, log: str) -> float:
        """Seconds since the first record of the open segment (0 when it is empty)."""
        try:
            with self.paths[log].open("rb") as file:
                first = file.readline(MAX_LINE_BYTES)
            return self.clock() - parse_timestamp(orjson.loads(first)["ts"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0

    def _save(self) -> None:
        existing = {
            segment.name for log in SHIPPED_LOGS for segment in closed_segments(self.paths[log])
        }
        gone = [key for key, entry in self._shipped.items() if entry["segment"] not in existing]
        for key in gone[: max(0, len(gone) - KEPT_RECORDS)]:
            del self._shipped[key]
        state = {"version": STATE_VERSION, "shipped": self._shipped, "counts": asdict(self.counts)}
        atomic_write_bytes(self.settings.ship_state_file, json.dumps(state, indent=1).encode())


def load_ship_state(path: Path) -> tuple[dict[str, dict[str, Any]], ShipCounts]:
    """The segments shipped so far (by id) and the counts, or nothing shipped yet."""
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"version {raw.get('version')!r}, expected {STATE_VERSION}")
        counts = ShipCounts(
            logs={log: LogShipping(**raw["counts"]["logs"][log]) for log in SHIPPED_LOGS},
            failures=int(raw["counts"]["failures"]),
            last_shipped=raw["counts"]["last_shipped"],
        )
        return dict(raw["shipped"]), counts
    except FileNotFoundError:
        return {}, ShipCounts()
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StageError(
            f"{path}: not a shipping state file of this sidecar ({error!r}); move it away only "
            "if the segments it records as shipped are gone: they would ship again"
        ) from None


def build_shipper(
    settings: MonitorSettings, labels: LabelLog, reading: Callable[[], int | None]
) -> Shipper:
    """The shipper to the store ``MONITOR_SHIP_URL`` names (or one that only prunes, when it is
    unset); StageError on missing credentials."""
    if settings.ship_url is None:
        return Shipper(settings, None, labels, reading)
    try:
        store = open_store(settings.ship_url, settings.ship_timeout_seconds)
    except StoreError as error:
        raise StageError(f"{env_name('ship_url')}: {error}") from None
    return Shipper(settings, store, labels, reading)
