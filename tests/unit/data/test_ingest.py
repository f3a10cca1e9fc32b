"""Stage ingest: every kind of source on a tiny table, and every way a source can be unusable."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from mlops.data.engines.pandas_engine.sources import drop_columns, read_source
from mlops.data.ingest import main
from mlops.data.rules.sources import format_of
from mlops.params import DataParams
from mlops.stage import StageError

TABLE = pd.DataFrame(
    {
        "id": [1, 2, 3],
        "colour": ["red", "green", None],
        "size": [1.5, None, 3.0],
        "label": ["a", "b", "a"],
    }
)


def params(source: object, **overrides: object) -> DataParams:
    return DataParams(source=str(source), target="label", **overrides)  # type: ignore[arg-type]


def same_table(actual: pd.DataFrame, expected: pd.DataFrame = TABLE) -> None:
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )


@pytest.fixture
def table_files(tmp_path: Path) -> dict[str, Path]:
    """The table as CSV, Parquet and JSON lines."""
    files = {
        "csv": tmp_path / "table.csv",
        "parquet": tmp_path / "table.parquet",
        "jsonl": tmp_path / "table.jsonl",
    }
    TABLE.to_csv(files["csv"], index=False)
    TABLE.to_parquet(files["parquet"], index=False)
    TABLE.to_json(files["jsonl"], orient="records", lines=True)
    return files


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_reads_each_file_format(table_files: dict[str, Path], kind: str) -> None:
    same_table(read_source(params(table_files[kind])))


def test_a_json_array_and_an_explicit_format(tmp_path: Path) -> None:
    path = tmp_path / "export.data"
    TABLE.to_json(path, orient="records")
    same_table(read_source(params(path, format="jsonl")))


def test_a_glob_concatenates_the_matches_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    TABLE.iloc[2:].to_csv(tmp_path / "parts" / "b.csv", index=False)
    TABLE.iloc[:2].to_csv(tmp_path / "parts" / "a.csv", index=False)
    (tmp_path / "parts" / "notes.txt").write_text("not data")
    same_table(read_source(params(tmp_path / "parts" / "*.csv")))


def test_a_directory_is_its_files_in_name_order(tmp_path: Path) -> None:
    TABLE.iloc[1:].to_parquet(tmp_path / "2024-02.parquet", index=False)
    TABLE.iloc[:1].to_csv(tmp_path / "2024-01.csv", index=False)
    (tmp_path / ".hidden").write_text("ignored")
    same_table(read_source(params(tmp_path)))


def test_drop_columns_removes_them_and_names_an_unknown_one() -> None:
    assert list(drop_columns(TABLE, ["id"], "src")) == ["colour", "size", "label"]
    with pytest.raises(StageError, match=r"data.drop_columns: \['idd'\] not in src"):
        drop_columns(TABLE, ["idd"], "src")


def test_main_writes_parquet_without_the_dropped_columns(tmp_path: Path) -> None:
    TABLE.to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "params.yaml").write_text(
        f"data:\n  source: {tmp_path / 'table.csv'}\n  target: label\n  drop_columns: [id]\n"
    )
    main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw.parquet")])
    same_table(pd.read_parquet(tmp_path / "raw.parquet"), TABLE.drop(columns=["id"]))


# --- over the network, on this machine only ---------------------------------------------------


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path``."""

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_reads_an_http_url(http_root: tuple[str, Path]) -> None:
    url, root = http_root
    TABLE.to_csv(root / "table.csv", index=False)
    same_table(read_source(params(f"{url}/table.csv")))


def test_a_missing_http_url_is_named(http_root: tuple[str, Path]) -> None:
    url, _ = http_root
    with pytest.raises(StageError, match=rf"{url}/missing.csv: file not found"):
        read_source(params(f"{url}/missing.csv"))


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 API (moto) on 127.0.0.1, with the standard AWS variables pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield endpoint
    finally:
        server.stop()


def test_reads_an_s3_uri(s3_endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="ingest-test")
    s3.put_object(Bucket="ingest-test", Key="raw/table.csv", Body=TABLE.to_csv(index=False))
    same_table(read_source(params("s3://ingest-test/raw/table.csv")))
    s3.put_object(Bucket="ingest-test", Key="raw/table2.csv", Body=TABLE.to_csv(index=False))
    same_table(read_source(params("s3://ingest-test/raw/*.csv")), pd.concat([TABLE, TABLE]))
    with pytest.raises(StageError, match=r"s3://ingest-test/raw/other\.csv: file not found"):
        read_source(params("s3://ingest-test/raw/other.csv"))


def test_reads_a_sql_query_from_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    TABLE.to_sql("penguins", sqlalchemy.create_engine(url), index=False)
    same_table(read_source(params(url, query="SELECT * FROM penguins ORDER BY id")))


# --- bad sources ------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ragged.csv", "a,b\n1,2\n3,4,5\n", "malformed CSV: line 3 has 3 fields, the header has 2"),
        ("short.csv", "a,b\n1,2\n3\n", "malformed CSV: line 3 has 1 fields, the header has 2"),
        ("quote.csv", 'a,b\n1,"2\n', "malformed CSV"),
        ("twice.csv", "a,a\n1,2\n", "duplicate column name(s) ['a']"),
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "a,b\n", "the table has no rows (columns: ['a', 'b'])"),
        ("latin1.csv", "name\ncaf\xe9\n".encode("latin-1"), "not UTF-8 text"),
        ("broken.parquet", b"PAR1 not really", "not a readable Parquet file"),
        ("broken.jsonl", '{"a": 1}\n{"a": \n', "not valid JSON lines"),
        ("scalars.jsonl", "1\n2\n", "expected one JSON object per record"),
        ("empty.jsonl", "[]", "the table has no columns"),
        ("table.xlsx", "x", "cannot tell the format from the extension '.xlsx'"),
    ],
)
def test_an_unreadable_file_is_named_with_what_is_wrong(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(StageError) as raised:
        read_source(params(path))
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("source", "overrides", "message"),
    [
        ("missing.csv", {}, "missing.csv: file not found"),
        ("nothing/*.csv", {}, "nothing/*.csv: the glob matches no files"),
        (
            "sqlite:///{tmp}/missing.db",
            {"query": "SELECT 1"},
            "missing.db: database file not found",
        ),
        ("sqlite:///{tmp}/db.sqlite", {}, "db.sqlite: a database source needs data.query"),
        ("sqlite:///{tmp}/db.sqlite", {"query": "SELECT * FROM nope"}, "no such table: nope"),
        ("sqlite:///{tmp}/db.sqlite", {"query": "SELECT * FROM t WHERE 0"}, "has no rows"),
        ("{tmp}/t.csv", {"query": "SELECT 1"}, "data.source must be a SQLAlchemy database URL"),
        ("ftp2://host/x.csv", {}, "cannot open this kind of source"),
    ],
)
def test_a_bad_source_is_named_with_what_is_wrong(
    tmp_path: Path, source: str, overrides: dict[str, str], message: str
) -> None:
    pd.DataFrame({"a": [1]}).to_sql(
        "t", sqlalchemy.create_engine(f"sqlite:///{tmp_path}/db.sqlite")
    )
    with pytest.raises(StageError, match=None) as raised:
        read_source(params(source.format(tmp=tmp_path), **overrides))
    assert message in str(raised.value)


def test_messages_name_files_as_the_user_wrote_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    write(tmp_path / "in", "a.csv", "x,y\n1,2\n")
    write(tmp_path / "in", "b.csv", "x,y\n1,2,3\n")
    with pytest.raises(StageError, match=r"^in/b\.csv: malformed CSV: line 2"):
        read_source(params("in/*.csv"))
    with pytest.raises(StageError, match=r"^in/b\.csv: malformed CSV"):
        read_source(params("in/b.csv"))


def test_files_of_one_source_must_share_their_columns(tmp_path: Path) -> None:
    TABLE.to_csv(tmp_path / "a.csv", index=False)
    TABLE.drop(columns=["size"]).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(StageError, match="the files have different columns"):
        read_source(params(tmp_path / "*.csv"))


def test_a_database_password_never_appears_in_an_error() -> None:
    with pytest.raises(StageError) as raised:
        read_source(params("sqlite://user:secret@/nowhere.db"))
    assert "secret" not in str(raised.value)


def test_format_of_reads_the_extension_past_compression_and_query() -> None:
    assert format_of("a/b.CSV.gz") == "csv"
    assert format_of("https://host/x.ndjson?token=1") == "jsonl"
    assert format_of("s3://bucket/part.pq") == "parquet"
