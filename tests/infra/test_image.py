"""The production image, built and run for real: read-only, non-root, scoring and monitoring.

Builds with ``scripts/image.sh`` (as ``make image`` does) from a build context holding the project's
sources and the packaged model of this test session, then runs the scorer and the sidecar from
that one image, sharing a log directory, the way deploy/compose.yaml and deploy/k8s run them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import PROJECT_ROOT, run
from mlops.serve.grpc.open_inference_pb2_grpc import GRPCInferenceServiceStub
from serve_fixtures import bundled_records, free_port, grpc_infer_request, signature_of

pytestmark = pytest.mark.slow

TAG = "localhost/mlops-test:latest"
BUILD_TIMEOUT = 1800  # a cold build on a machine without a registry includes debootstrap
READY_SECONDS = 90
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md")
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOG_DIR = "/var/log/mlops"
USER = "10001:10001"


@dataclass(frozen=True)
class Engine:
    command: str
    env: dict[str, str]

    def __call__(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.command, *arguments], PROJECT_ROOT, check=check, env=self.env, timeout=120)


@pytest.fixture(scope="module")
def engine() -> Engine:
    """docker or podman, with the settings ``make image`` uses; skipped when neither is there."""
    found = run([str(PROJECT_ROOT / "scripts" / "container-env.sh")], PROJECT_ROOT, check=False)
    if found.returncode != 0:
        pytest.skip(f"no container engine: {found.stderr.strip()}")
    settings = dict(line.split("=", 1) for line in found.stdout.splitlines())
    env = {key: value for key, value in settings.items() if value}
    return Engine(env["CONTAINER_ENGINE"], env)


def build_context(packaged_model: Path, directory: Path) -> Path:
    for name in CONTEXT_FILES:
        shutil.copy2(PROJECT_ROOT / name, directory / name)
    shutil.copytree(
        PROJECT_ROOT / "src", directory / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(packaged_model, directory / "models" / "package")
    (directory / "deploy").mkdir()
    shutil.copy2(PROJECT_ROOT / "deploy" / "rollout.yaml", directory / "deploy" / "rollout.yaml")
    return directory


def ca_bundle() -> str:
    """The CA bundle the host trusts, for builds behind a TLS-intercepting proxy."""
    configured = os.environ.get("CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if configured:
        return configured
    return str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else ""


@pytest.fixture(scope="module")
def image(engine: Engine, packaged_model: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = build_context(packaged_model, tmp_path_factory.mktemp("image-context"))
    script = str(PROJECT_ROOT / "scripts" / "image.sh")
    env = {**engine.env, "IMAGE": TAG, "CA_BUNDLE": ca_bundle()}
    started = time.monotonic()
    run([script, str(context)], PROJECT_ROOT, env=env, timeout=BUILD_TIMEOUT)
    print(f"image built in {time.monotonic() - started:.0f} s")
    return TAG


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The volume both containers share; writable by the image's user, as an emptyDir would be."""
    directory = tmp_path_factory.mktemp("container-logs")
    directory.chmod(0o777)
    return directory


@dataclass(frozen=True)
class Container:
    name: str
    url: str
    grpc_target: str = ""


@contextlib.contextmanager
def running(
    engine: Engine, image: str, name: str, command: list[str], log_dir: Path, env: dict[str, str]
) -> Iterator[Container]:
    """A container on the host's network, read-only, as the non-root user, without capabilities."""
    port = free_port()
    role = "SCORER" if command[-1] == "mlops.serve" else "MONITOR"
    settings = {f"{role}_HOST": "127.0.0.1", f"{role}_PORT": str(port), **env}
    if role == "SCORER":  # a free port for gRPC too: the container shares the host's network
        settings.setdefault("SCORER_GRPC_PORT", str(free_port()))
    settings["HEALTHCHECK_URL"] = f"http://127.0.0.1:{port}/health/ready"
    options = [
        "--detach",
        f"--name={name}",
        "--network=host",
        "--read-only",
        f"--user={USER}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--volume={log_dir}:{LOG_DIR}",
        *(f"--env={key}={value}" for key, value in settings.items()),
    ]
    engine("rm", "--force", name, check=False)
    engine("run", *options, image, *command)
    grpc_port = settings.get("SCORER_GRPC_PORT")
    container = Container(
        name, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}" if grpc_port else ""
    )
    try:
        wait_ready(engine, container)
        yield container
    finally:
        engine("rm", "--force", name, check=False)


def wait_ready(engine: Engine, container: Container) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        state = engine("inspect", "--format", "{{.State.Running}}", container.name).stdout
        if state.strip() != "true":
            logs = engine("logs", container.name, check=False)
            raise AssertionError(f"{container.name} stopped:\n{logs.stdout}{logs.stderr}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{container.url}/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    logs = engine("logs", container.name, check=False)
    raise AssertionError(f"{container.name} not ready in {READY_SECONDS} s:\n{logs.stdout}")


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_image_is_labelled_with_the_model_it_carries(
    engine: Engine, image: str, packaged_model: Path
) -> None:
    inspected = json.loads(engine("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    manifest = json.loads((packaged_model / "manifest.json").read_text())
    labels = config["Labels"]
    assert labels["mlops.model.sha256"] == manifest["files"]["model.onnx"]
    assert labels["mlops.model.version"] == manifest["model_version"]
    assert labels["org.opencontainers.image.revision"]
    assert config["User"] == USER
    assert LOG_DIR in config["Volumes"]
    healthcheck = config.get("Healthcheck") or inspected["Healthcheck"]  # docker | podman
    assert healthcheck["Test"][:2] == ["CMD", "python"]


def test_image_holds_neither_the_training_stack_nor_a_writable_root(
    engine: Engine, image: str
) -> None:
    check = (
        "import importlib.util, sys; "
        "found = [m for m in ('pandas', 'sklearn', 'scipy', 'dvc', 'skl2onnx') "
        "if importlib.util.find_spec(m)]; "
        "print(found); sys.exit(1 if found else 0)"
    )
    result = engine("run", "--rm", "--read-only", image, "python", "-c", check, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    as_root = ["run", "--rm", "--read-only", "--user=0", image]  # only the mount can refuse
    write = engine(*as_root, "python", "-c", "open('/app/x', 'w')", check=False)
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr


def test_scorer_and_sidecar_run_from_the_image_read_only(
    engine: Engine, image: str, log_dir: Path, packaged_model: Path
) -> None:
    signature = signature_of(packaged_model)
    records = bundled_records(signature, limit=5)
    scorer_command = ["python", "-m", "mlops.serve"]
    sidecar_command = ["python", "-m", "mlops.monitor"]
    # The sidecar ships to a directory of the volume: Parquet written in the image, which has no
    # pyarrow, read back here with pyarrow.
    sidecar_env = {"MONITOR_POLL_INTERVAL_SECONDS": "0.2", "MONITOR_SHIP_URL": f"{LOG_DIR}/store"}
    names = f"mlops-test-scorer-{os.getpid()}", f"mlops-test-sidecar-{os.getpid()}"
    # Two worker processes: what they share (the log's lock file, the metrics directory) must
    # live in the log volume, the one writable place of the read-only container.
    scorer_env = {"SCORER_WORKERS": "2", "SCORER_LOG_SIDECAR": "true"}
    with running(engine, image, names[0], scorer_command, log_dir, scorer_env) as scorer:
        response = httpx.post(f"{scorer.url}/predict", json={"records": records}, timeout=30)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == len(records)
        assert {prediction["label"] for prediction in predictions} <= set(signature["classes"])

        def metrics() -> str:
            return httpx.get(f"{scorer.url}/metrics", timeout=10).text

        # Each scrape reaches either worker; the one that did not answer the request sees the
        # other's counts as last published (every second): wait for one scrape holding both.
        version = json.loads((packaged_model / "manifest.json").read_text())["model_version"]
        labels = f'model_version="{version}",role="champion",route="/predict"'
        scored = f"scorer_records_scored_total{{{labels}}} {len(records)}.0"
        answered = 'scorer_requests_total{method="POST",route="/predict",status="200"} 1.0'
        wait_for(
            lambda: all(line in (text := metrics()) for line in (scored, answered)) and text,
            10,
            "the workers to share their counts",
        )
        records_logged = len(records)

        healthcheck = container_health(engine, scorer.name)
        assert healthcheck == "healthy"

        # gRPC from the image: its health service, and a call scored as /predict scores it
        with grpc.insecure_channel(scorer.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            request = grpc_infer_request(signature, records)
            answer = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        labels = deserialize_labels(answer.raw_output_contents[0])
        assert labels == [prediction["label"] for prediction in predictions]
        records_logged = 2 * len(records)

        log = log_dir / "predictions.jsonl"
        wait_for(lambda: line_count(log) == records_logged, 10, "the prediction log")
        with running(engine, image, names[1], sidecar_command, log_dir, sidecar_env) as sidecar:
            wait_for(
                lambda: drift_window(sidecar.url) == records_logged,
                20,
                "the sidecar to read the log",
            )
            sidecar_metrics = httpx.get(f"{sidecar.url}/metrics", timeout=10).text
            assert "monitor_feature_psi{" in sidecar_metrics
            request_id = response.json()["request_id"]
            label = {"request_id": request_id, "label": predictions[0]["label"]}
            assert httpx.post(f"{sidecar.url}/feedback", json=label, timeout=10).json() == {
                "matched": 1,
                "pending": 0,
            }
            engine("stop", "--time=30", scorer.name)  # the scorer closes its segment...
            engine("stop", "--time=60", sidecar.name)  # ... and the sidecar ships it at its stop
    shipped = shipped_rows(log_dir / "store")
    assert len(shipped["predictions"]) == records_logged  # the /predict and the gRPC requests
    assert set(shipped["predictions"]) >= {(request_id, index) for index in range(len(records))}
    assert shipped["labels"] == [(request_id, 0)]
    assert line_count(log) == 0 and not list(log_dir.glob("*.jsonl.[0-9]*"))  # all shipped


def test_the_challengers_init_container_copies_the_images_model(
    engine: Engine, image: str, packaged_model: Path, tmp_path: Path
) -> None:
    """deploy/k8s-challenger's init container, as its manifest says, run from the image: read-only,
    as the image's user, without capabilities; the emptyDir it fills holds the packaged model,
    byte for byte, with the image's rollout thresholds beside the path the sidecar reads."""
    patch = yaml.safe_load(
        (PROJECT_ROOT / "deploy" / "k8s-challenger" / "challenger.yaml").read_text()
    )
    (init,) = patch["spec"]["template"]["spec"]["initContainers"]
    (mount,) = init["volumeMounts"]
    empty_dir = tmp_path / "challenger-model"
    empty_dir.mkdir()
    empty_dir.chmod(0o777)  # an emptyDir is writable by the pod's fsGroup
    options = ["--rm", "--read-only", f"--user={USER}", "--cap-drop=ALL"]
    options += ["--security-opt=no-new-privileges", f"--volume={empty_dir}:{mount['mountPath']}"]
    copied = engine("run", *options, image, *init["command"], check=False)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    expected = {path.name: path.read_bytes() for path in packaged_model.iterdir() if path.is_file()}
    assert {path.name: path.read_bytes() for path in empty_dir.iterdir()} == expected
    thresholds = engine(
        "run",
        "--rm",
        "--read-only",
        image,
        "python",
        "-c",
        ("import os; print(open(os.environ['MONITOR_ROLLOUT_SETTINGS']).read())"),
    )
    assert (
        thresholds.stdout.strip() == (PROJECT_ROOT / "deploy" / "rollout.yaml").read_text().strip()
    )


def shipped_rows(store: Path) -> dict[str, list[tuple[str, int]]]:
    """(request_id, index) of the rows of every Parquet object under ``store/<log>/``."""
    import pyarrow.parquet as pq

    rows: dict[str, list[tuple[str, int]]] = {}
    for log in ("predictions", "labels"):
        found = []
        for path in sorted((store / log).rglob("*.parquet")):
            table = pq.read_table(path, columns=["request_id", "index"]).to_pydict()
            found += list(zip(table["request_id"], table["index"], strict=True))
        rows[log] = sorted(found)
    return rows


def container_health(engine: Engine, name: str) -> str:
    """Run the image's HEALTHCHECK now (podman) or wait for the daemon's first run (docker)."""
    if Path(engine.command).name == "podman":
        result = engine("healthcheck", "run", name, check=False)
        return "healthy" if result.returncode == 0 else f"unhealthy: {result.stdout}"
    status = ""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and status != "healthy":
        status = engine("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        time.sleep(1)
    return status


def deserialize_labels(raw: bytes) -> list[str]:
    """A BYTES tensor's elements (a 4-byte little-endian length, then UTF-8)."""
    labels, offset = [], 0
    while offset < len(raw):
        length = int.from_bytes(raw[offset : offset + 4], "little")
        labels.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return labels


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def drift_window(url: str) -> int:
    with contextlib.suppress(httpx.TransportError):
        return int(httpx.get(f"{url}/drift", timeout=5).json()["window_size"])
    return -1
