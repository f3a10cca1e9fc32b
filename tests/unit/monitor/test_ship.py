"""Shipping (``mlops.monitor.ship``): the standard-library Parquet writer read back by pyarrow,
the S3 request signature against botocore's, and the shipper's exactly-once bookkeeping on a
local directory store."""

from __future__ import annotations

import datetime
import io
import json
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mlops.core.segments import SegmentedLog, closed_segments
from mlops.monitor import ship
from mlops.monitor.labels import LabelLog
from mlops.monitor.objectstore import (
    Credentials,
    DirectoryStore,
    S3Store,
    StoreError,
    open_store,
    signed_headers,
)
from mlops.monitor.parquet import Column, Group, write_table
from mlops.monitor.settings import MonitorSettings
from mlops.monitor.ship import Shipper, partitions

DAY_1, DAY_2 = "2026-11-21T23:59:59.999Z", "2026-11-22T00:00:00.000Z"


def record(
    request_id: str, index: int, ts: str = DAY_1, version: str = "v1", **extra: Any
) -> dict[str, Any]:
    return {
        "ts": ts,
        "request_id": request_id,
        "index": index,
        "model_version": version,
        "features": {"Größe (cm)": 1.5 * index, 'Farbe "x"': None if index % 2 else "rot"},
        "prediction": "Klasse Ä",
        "probabilities": {"Klasse Ä": 0.75, "b": 0.25},
        "latency_seconds": 0.001,
        **extra,
    }


def lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def read(data: bytes) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(data)).to_pylist()  # type: ignore[no-any-return]


def test_the_parquet_writer_is_read_back_exactly_by_pyarrow() -> None:
    rows = 40
    numbers = [None if n % 3 == 0 else n * 0.5 for n in range(rows)]
    texts = [None if n % 4 == 1 else "é😀\x00\n" * (n % 5) for n in range(rows)]
    fields = [
        Column("ts", "timestamp_ms", [1_795_000_000_000 + n for n in range(rows)], nullable=False),
        Column("n", "int64", [2**62 - n for n in range(rows)], nullable=False),
        Group("features", [Column("a b [c]", "double", numbers), Column("ü", "string", texts)]),
        Column("maybe", "double", [math.inf if n == 7 else None for n in range(rows)]),
    ]
    data = write_table(fields, rows)
    table = pq.read_table(io.BytesIO(data))
    assert str(table.schema.field("ts").type) == "timestamp[ms, tz=UTC]"
    assert str(table.schema.field("features").type) == "struct<a b [c]: double, ü: string>"
    back = table.to_pylist()
    assert [row["n"] for row in back] == [2**62 - n for n in range(rows)]
    assert [row["features"]["a b [c]"] for row in back] == numbers
    assert [row["features"]["ü"] for row in back] == texts
    assert back[7]["maybe"] == math.inf and back[8]["maybe"] is None
    assert back[0]["ts"] == datetime.datetime(2026, 11, 18, 11, 6, 40, tzinfo=datetime.UTC)
    assert write_table(fields, rows) == data  # the same table, the same bytes
    with pytest.raises(ValueError, match="not nullable"):
        write_table([Column("x", "int64", [None], nullable=False)], 1)


def test_a_segment_becomes_one_object_per_date_and_model_version() -> None:
    records = [
        record("r1", 0),
        record("r1", 1),
        record("r2", 0, ts=DAY_2),
        record("r3", 0, ts=DAY_2, version="v2/β"),
    ]
    data = lines(records) + b"not json\n" + b'{"ts": "2026-11-21T00:00:00.000Z"}\n'
    objects, shipped, corrupt = partitions("predictions", data)
    assert (shipped, corrupt) == (4, 2)
    assert sorted(objects) == [
        "date=2026-11-21/model_version=v1",
        "date=2026-11-22/model_version=v1",
        "date=2026-11-22/model_version=v2%2F%CE%B2",
    ]
    first = read(objects["date=2026-11-21/model_version=v1"])
    assert [(row["request_id"], row["index"]) for row in first] == [("r1", 0), ("r1", 1)]
    assert first[1]["features"] == {"Größe (cm)": 1.5, 'Farbe "x"': None}
    assert first[0]["probabilities"] == {"Klasse Ä": 0.75, "b": 0.25}
    assert first[0]["prediction"] == "Klasse Ä" and first[0]["model_version"] == "v1"


def test_the_role_and_shadow_columns_ship_and_booleans_read_back() -> None:
    """Every prediction ships with who scored it; a line from before the rollout is the
    champion's, answered. 19 rows: the booleans' bits fill two bytes and part of a third."""
    records = [
        record(f"r{n}", 0, role="challenger", shadow=True) if n % 3 == 0 else record(f"r{n}", 0)
        for n in range(18)
    ] + [record("canary", 0, role="challenger")]
    objects, shipped, corrupt = partitions("predictions", lines(records))
    assert (shipped, corrupt) == (19, 0)
    rows = read(objects["date=2026-11-21/model_version=v1"])
    assert [row["shadow"] for row in rows] == [n % 3 == 0 for n in range(18)] + [False]
    assert [row["role"] for row in rows] == [
        "challenger" if n % 3 == 0 else "champion" for n in range(18)
    ] + ["challenger"]
    bad = [record("r", 0, role="referee"), record("s", 0, shadow="yes")]
    assert partitions("predictions", lines(bad))[1:] == (0, 2)


def test_the_clients_own_ids_and_extra_fields_ship_beside_the_features() -> None:
    """What a client sent to join its labels by (a V2 ``id``, a record's extra fields) ships."""
    records = [
        record("r1", 0, client_request_id="order-17", extra={"order id": "A-17", "n": [1, 2]}),
        record("r1", 1, client_request_id="order-17"),
        record("r2", 0),
    ]
    objects, shipped, corrupt = partitions("predictions", lines(records))
    assert (shipped, corrupt) == (3, 0)
    rows = read(objects["date=2026-11-21/model_version=v1"])
    assert [row["client_request_id"] for row in rows] == ["order-17", "order-17", None]
    assert json.loads(rows[0]["extra"]) == {"order id": "A-17", "n": [1, 2]}
    assert rows[1]["extra"] is None and rows[2]["extra"] is None
    plain, _, _ = partitions("predictions", lines([record("r3", 0)]))
    assert {"client_request_id", "extra"}.isdisjoint(read(next(iter(plain.values())))[0])


def test_a_regressors_predictions_and_labels_are_numbers() -> None:
    regression = [
        record("r1", 0, prediction=23, probabilities=None),
        record("r2", 0, prediction=1.5, probabilities=None),
    ]
    objects, _, _ = partitions("predictions", lines(regression))
    (table,) = objects.values()
    rows = read(table)
    assert [row["prediction"] for row in rows] == [23.0, 1.5]
    assert "probabilities" not in rows[0]
    labels = [{"ts": DAY_1, "request_id": "r1", "index": 0, "label": 412.5}]
    objects, shipped, _ = partitions("labels", lines(labels))
    assert list(objects) == ["date=2026-11-21"] and shipped == 1
    assert read(objects["date=2026-11-21"])[0]["label"] == 412.5


def test_the_s3_signature_is_the_one_botocore_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore import auth
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    moment = datetime.datetime(2026, 11, 21, 6, 5, 4, tzinfo=datetime.UTC)
    credentials = Credentials("AKIDEXAMPLE", "secret/key+value", "session token", "eu-west-1")
    path = "/bucket/inference/predictions/date%3D2026-11-21/model_version%3Dv1/abc.parquet"
    payload = b"PAR1 some bytes"
    ours = signed_headers("PUT", "127.0.0.1:9000", path, payload, credentials, moment)
    request = AWSRequest(method="PUT", url=f"http://127.0.0.1:9000{path}", data=payload)
    monkeypatch.setattr(auth, "get_current_datetime", lambda: moment.replace(tzinfo=None))
    request.headers["X-Amz-Content-SHA256"] = ours["x-amz-content-sha256"]
    boto = BotoCredentials("AKIDEXAMPLE", "secret/key+value", "session token")
    S3SigV4Auth(boto, "s3", "eu-west-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]


def test_credentials_come_from_the_environment_and_are_never_shown() -> None:
    with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY"):
        open_store("s3://bucket/x", 5, {"AWS_ACCESS_KEY_ID": "id"})
    store = open_store(
        "s3://bucket/a/b/",
        5,
        {
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "hidden",
            "AWS_ENDPOINT_URL": "http://h:9",
        },
    )
    assert isinstance(store, S3Store) and store.prefix == "a/b/" and store.endpoint == "http://h:9"
    assert "hidden" not in repr(store)
    assert store.describe("k") == "s3://bucket/a/b/k"
    assert open_store("/var/ship", 5) == DirectoryStore(Path("/var/ship"))
    assert open_store("file:///var/ship", 5) == DirectoryStore(Path("/var/ship"))


class Reader:
    """Stands in for the sidecar's follower: the inode of the file it reads."""

    def __init__(self) -> None:
        self.inode: int | None = None

    def __call__(self) -> int | None:
        return self.inode


def settings_in(logs: Path, **extra: Any) -> MonitorSettings:
    return MonitorSettings(
        prediction_log=logs / "predictions.jsonl",
        feedback_log=logs / "feedback.jsonl",
        state_file=logs / "state.json",
        label_log=logs / "labels.jsonl",
        ship_state_file=logs / "ship.json",
        **extra,
    )


def shipper_for(tmp_path: Path, reader: Reader, store: Any = None) -> tuple[Shipper, LabelLog]:
    store_path = str(tmp_path / "store")
    settings = settings_in(tmp_path / "logs", ship_url=store_path, ship_shutdown_wait_seconds=0)
    labels = LabelLog(settings.label_log, shipped=True)
    return Shipper(settings, store or DirectoryStore(tmp_path / "store"), labels, reader), labels


def stored(root: Path) -> list[tuple[str, int]]:
    keys = []
    for path in sorted(root.rglob("*.parquet")):
        keys += [(row["request_id"], row["index"]) for row in read(path.read_bytes())]
    return keys


def test_closed_segments_ship_once_and_go_once_read(tmp_path: Path) -> None:
    reader = Reader()
    shipper, labels = shipper_for(tmp_path, reader)
    log = SegmentedLog(shipper.paths["predictions"], 1 << 20)
    log.append(lines([record("r1", 0), record("r1", 1)]))
    first = log.seal()
    log.append(lines([record("r2", 0, ts=DAY_2)]))
    second = log.seal()
    log.append(lines([record("r3", 0)]))  # the open segment: not shipped
    labels.append([ship_label("r1")], now=1_795_000_000.0)
    labels.seal()
    assert first is not None and second is not None
    reader.inode = first.stat().st_ino  # the sidecar reads the first segment still
    shipper.ship()
    store = tmp_path / "store"
    assert sorted(stored(store / "predictions")) == [("r1", 0), ("r1", 1), ("r2", 0)]
    assert stored(store / "labels") == [("r1", 0)]
    assert closed_segments(shipper.paths["predictions"]) == [first, second]  # not read: kept
    assert shipper.status().waiting_segments["predictions"] == 0  # shipped, waiting to be read
    assert closed_segments(labels.path) == []  # the sidecar's own: gone once shipped
    assert shipper.counts.logs["predictions"].records == 3
    assert shipper.counts.logs["predictions"].objects == 2
    reader.inode = shipper.paths["predictions"].stat().st_ino  # read up to the open segment
    shipper.ship()  # recorded as shipped: not uploaded again, only deleted
    assert closed_segments(shipper.paths["predictions"]) == []
    assert shipper.counts.logs["predictions"].segments == 2
    assert sorted(stored(store / "predictions")) == [("r1", 0), ("r1", 1), ("r2", 0)]
    status = shipper.status()
    assert status.waiting_segments == {"predictions": 0, "labels": 0}
    log.close()


def ship_label(request_id: str) -> Any:
    from mlops.monitor.feedback import ClassFeedback

    return ClassFeedback(request_id=request_id, label="a")


class FailingStore:
    """Fails after ``allowed`` objects: a crash in the middle of a segment's upload."""

    def __init__(self, root: Path, allowed: int) -> None:
        self.inner = DirectoryStore(root)
        self.allowed = allowed

    def put(self, key: str, data: bytes) -> None:
        if self.allowed == 0:
            raise StoreError(f"{key}: connection reset")
        self.allowed -= 1
        self.inner.put(key, data)

    def describe(self, key: str) -> str:
        return self.inner.describe(key)


def test_an_upload_cut_short_is_repeated_whole_and_nothing_appears_twice(tmp_path: Path) -> None:
    reader = Reader()
    shipper, labels = shipper_for(tmp_path, reader, FailingStore(tmp_path / "store", allowed=1))
    log = SegmentedLog(shipper.paths["predictions"], 1 << 20)
    log.append(lines([record("r1", 0), record("r2", 0, ts=DAY_2), record("r3", 0, version="v2")]))
    log.seal()
    shipper.ship()  # one object of three written, then the store fails
    assert shipper.counts.failures == 1 and shipper.counts.logs["predictions"].segments == 0
    assert len(stored(tmp_path / "store")) == 1
    labels.close()
    reader.inode = shipper.paths["predictions"].stat().st_ino
    restarted, _ = shipper_for(tmp_path, reader)  # a new process, the state from the file
    assert restarted.counts.failures == 1
    restarted.ship()
    assert sorted(stored(tmp_path / "store")) == [("r1", 0), ("r2", 0), ("r3", 0)]
    assert closed_segments(shipper.paths["predictions"]) == []
    assert len(list((tmp_path / "store").rglob("*.parquet"))) == 3
    log.close()


def test_an_old_open_segment_is_closed_for_shipping(tmp_path: Path) -> None:
    reader = Reader()
    shipper, labels = shipper_for(tmp_path, reader)
    now = datetime.datetime.fromisoformat(DAY_1).timestamp()
    shipper.clock = lambda: now + 100
    log = SegmentedLog(shipper.paths["predictions"], 1 << 20)
    log.append(lines([record("r1", 0)]))
    shipper.ship(seal_older_than=200)
    assert closed_segments(shipper.paths["predictions"]) == []
    shipper.ship(seal_older_than=50)
    assert stored(tmp_path / "store") == [("r1", 0)]
    log.append(lines([record("r2", 0)]))  # the scorer follows into a new open segment
    assert [
        json.loads(x)["request_id"] for x in shipper.paths["predictions"].read_text().splitlines()
    ] == ["r2"]
    log.close()
    labels.close()


def test_at_shutdown_the_open_segments_close_once_no_scorer_is_left(tmp_path: Path) -> None:
    reader = Reader()
    shipper, labels = shipper_for(tmp_path, reader)
    log = SegmentedLog(shipper.paths["predictions"], 1 << 20)
    log.append(lines([record("r1", 0)]))
    labels.append([ship_label("r9")], now=0.0)
    shipper.seal_for_shutdown()  # no scorer holds the writers' lock here
    reader.inode = shipper.paths["predictions"].stat().st_ino
    shipper.ship()
    assert stored(tmp_path / "store" / "predictions") == [("r1", 0)]
    assert stored(tmp_path / "store" / "labels") == [("r9", 0)]
    log.close()
    labels.close()


def test_a_damaged_state_file_stops_the_sidecar_naming_it(tmp_path: Path) -> None:
    (tmp_path / "ship.json").write_text("{}")
    with pytest.raises(ship.StageError, match=r"ship\.json: not a shipping state file"):
        ship.load_ship_state(tmp_path / "ship.json")


def test_without_a_store_only_the_newest_read_segments_are_kept(tmp_path: Path) -> None:
    """With SCORER_LOG_SIDECAR=true the scorer deletes nothing: the sidecar prunes what it read."""
    reader = Reader()
    logs = tmp_path / "logs"
    settings = settings_in(logs, log_backups=2)
    labels = LabelLog(settings.label_log, shipped=False)
    shipper = ship.build_shipper(settings, labels, reader)
    assert shipper.store is None
    log = SegmentedLog(settings.prediction_log, 1 << 20)
    closed = []
    for number in range(5):
        log.append(lines([record(f"r{number}", 0)]))
        closed.append(log.seal())
    reader.inode = closed[3].stat().st_ino  # read up to the fourth: three are read whole
    shipper.ship()
    assert closed_segments(settings.prediction_log) == closed[1:]  # the two newest read, and on
    reader.inode = settings.prediction_log.stat().st_ino
    shipper.ship()
    assert closed_segments(settings.prediction_log) == closed[3:]
    shipper.seal_for_shutdown()  # nothing to ship: nothing is sealed
    assert closed_segments(settings.prediction_log) == closed[3:]
    assert not (logs / "ship.json").exists()
    log.close()
    labels.close()
