"""Fixtures shared by the tests: the project root, the bundled data, throw-away project copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from monitor_fixtures import FakeGitHub

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The files through which a GitHub Actions step talks to its runner. CI runs this suite inside such
# a step; a test (or a command it starts) that wrote to them would set the step's outputs, env,
# PATH or summary.
RUNNER_FILES = ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STATE")


@pytest.fixture(scope="session", autouse=True)
def no_runner_files() -> Iterator[None]:
    """The runner's files are out of every test's reach (and of every process a test starts).

    Session-scoped and autouse, so it is in force before any other fixture runs; a test that needs
    such a file sets its own (as the workflow runners in tests/workflows.py do).
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in RUNNER_FILES:
            patch.delenv(name, raising=False)
        yield


def project_files() -> list[str]:
    """The files a fresh clone would have: tracked plus untracked-but-not-ignored ones."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [name for name in listing.stdout.splitlines() if (PROJECT_ROOT / name).is_file()]


def run(
    command: list[str], cwd: Path, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a command with the project's virtualenv first on PATH, capturing its output."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.update(kwargs.pop("env", {}))  # type: ignore[arg-type]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result  # type: ignore[no-any-return]


def copy_project(root: Path) -> Path:
    """Copy the project's files into ``root`` as a fresh git repository, as a fork starts."""
    for name in project_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, target)
    run(["git", "init", "-q", "-b", "main"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "fork"], root)
    return root


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A fresh git + DVC repository holding the project's files, as a fork would start."""
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after a full ``dvc repro`` on the bundled data, made once per test session.

    Read-only for the tests that share it: copy what you need to change.
    """
    root = copy_project(tmp_path_factory.mktemp("reproduced") / "project")
    run(["dvc", "repro"], root)
    return root


@pytest.fixture(scope="session")
def packaged_model(reproduced_project: Path) -> Path:
    """The packaged model directory (``models/package``) the real pipeline wrote. Read-only."""
    return reproduced_project / "models" / "package"


@pytest.fixture
def penguins_csv() -> Path:
    return PROJECT_ROOT / "data" / "penguins.csv"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A local stand-in for the GitHub API (imported here only by the tests that use it)."""
    from monitor_fixtures import fake_github

    with fake_github() as fake:
        yield fake


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with a bucket, and the credentials CI would hold."""
    import boto3
    from moto.server import ThreadedMotoServer

    from serve_fixtures import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its buckets in the process, across servers: start every test empty
    reset = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket="mlops")
    try:
        yield credentials
    finally:
        server.stop()
