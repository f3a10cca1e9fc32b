"""The pipeline's outputs round-trip through DVC remotes: the default local one and S3 (moto)."""

from __future__ import annotations

import hashlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run

pytestmark = pytest.mark.slow

OUTPUTS = [
    "data/raw.parquet",
    "data/clean.parquet",
    "data/split/train.parquet",
    "models/pipeline.joblib",
    "models/package/model.onnx",
    "models/package/manifest.json",
]


def digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in OUTPUTS}


def forget_outputs(root: Path) -> None:
    """Delete the DVC cache and every output, as a fresh clone of the repository would be."""
    shutil.rmtree(root / ".dvc" / "cache")
    for name in ("data/raw.parquet", "data/clean.parquet", "data/labelled.parquet"):
        (root / name).unlink()
    for directory in ("data/split", "models/package"):
        shutil.rmtree(root / directory)
    (root / "models" / "pipeline.joblib").unlink()


@pytest.fixture
def pipeline_copy(reproduced_project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(reproduced_project, copy, symlinks=True)
    return copy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_outputs_round_trip_through_the_default_local_remote(pipeline_copy: Path) -> None:
    before = digests(pipeline_copy)
    run(["dvc", "push"], pipeline_copy)
    assert any((pipeline_copy / "dvc-storage").rglob("*")), "nothing was pushed"

    forget_outputs(pipeline_copy)
    run(["dvc", "pull"], pipeline_copy)
    assert digests(pipeline_copy) == before
    assert "up to date" in run(["dvc", "status"], pipeline_copy).stdout


def test_outputs_round_trip_through_an_s3_remote(pipeline_copy: Path, s3_endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="models")
    run(["dvc", "remote", "add", "--local", "s3", "s3://models/mlops"], pipeline_copy)
    run(["dvc", "remote", "modify", "--local", "s3", "endpointurl", s3_endpoint], pipeline_copy)
    before = digests(pipeline_copy)

    run(["dvc", "push", "--run-cache", "-r", "s3"], pipeline_copy)
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="models")
    assert listed["KeyCount"] > len(OUTPUTS)

    forget_outputs(pipeline_copy)
    run(["dvc", "pull", "-r", "s3"], pipeline_copy)
    assert digests(pipeline_copy) == before
