"""release.yml's steps that need no Docker, run for real on a reproduced project with GTO tags.

The image job's ``run:`` steps run in order (``make model``, ``make release-info``); the image
build, the kind cluster and the push are GitHub actions and skipped, and the in-cluster smoke
test (``make kind-smoke``) is replaced by the same smoke test (``make smoke``) against the real
scorer and sidecar processes started from the packaged model, as the pod runs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import BIN, PROJECT_ROOT, run
from mlops.core import artifacts
from mlops.gitops.records import parse_record
from serve_fixtures import free_port
from workflows import (
    JobResult,
    WorkflowRun,
    interpolate,
    load_workflow,
    runner_environment,
    use_project_venv,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
REPOSITORY = "owner/project"
NEEDS_A_CLUSTER = ("make kind-smoke", "make deploy-production")
GH_STANDIN = PROJECT_ROOT / "tests" / "act" / "standin" / "gh-bin"
KUBE_CONFIG = {"KUBE_CONFIG": "apiVersion: v1\nkind: Config\n"}


@pytest.fixture(scope="module")
def released(reproduced_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the reproduced project, results committed, v1.0.0 registered and in prod."""
    root = tmp_path_factory.mktemp("release") / "project"
    shutil.copytree(reproduced_project, root, symlinks=True)
    use_project_venv(root, PROJECT_ROOT / ".venv")
    run(["git", "add", "dvc.lock", "reports"], root)
    run(["git", "commit", "-q", "-m", "results", "--", "dvc.lock", "reports"], root)
    sha = artifacts.load_manifest(root / "models" / "package")["files"]["model.onnx"]
    registry = [str(BIN / "python"), "-m", "mlops.gitops.registry"]
    run([*registry, "register", "--version", "v1.0.0", "--model-sha256", sha], root)
    promotion = [str(BIN / "python"), "-m", "mlops.gitops.promotion", "promote"]
    run(
        [*promotion, "--version", "v1.0.0", "--reason", "the first model", "--actor", "alice"], root
    )
    return root


def release_run(
    root: Path,
    tag: str,
    secrets: dict[str, str],
    inputs: dict[str, str] | None = None,
    standins: list[Path] | None = None,
) -> WorkflowRun:
    github = {
        "event_name": "workflow_dispatch" if inputs else "push",
        "ref": f"refs/tags/{tag}",
        "ref_name": tag,
        "ref_type": "tag",
        "sha": run(["git", "rev-parse", "HEAD"], root).stdout.strip(),
        "repository": REPOSITORY,
        "actor": "developer",
        "triggering_actor": "developer",
        "run_id": "777",
        "run_number": "31",
    }
    environment = runner_environment(standins or [])
    environment["ACT_STANDIN_LOG"] = str(root.parent / "standin")
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        environment.pop(key, None)
    return WorkflowRun(
        load_workflow("release.yml"),
        root,
        github,
        environment,
        secrets=secrets,
        inputs=inputs,
        skip=lambda step: str(step.get("run", "")).strip() in NEEDS_A_CLUSTER,
    )


def test_a_registered_version_is_named_labelled_and_not_deployed(released: Path) -> None:
    workflow = release_run(released, "penguins@v1.0.0", secrets={})
    image = workflow.run_job("image")
    for step in image.steps:
        assert step.returncode == 0, f"{step.command}:\n{step.output[-3000:]}"
    assert image.commands() == ["make model", "make deploy-resources", "make release-info"]
    assert "Data and pipelines are up to date" in image.steps[0].output
    assert "make kind-smoke" not in image.commands()
    sha = artifacts.load_manifest(released / "models" / "package")["files"]["model.onnx"]
    assert f"verified: model.onnx sha256 {sha} is the one 'penguins@v1.0.0' registered" in (
        image.steps[2].output
    )

    outputs = image.step_outputs["release"]
    assert outputs["version"] == "v1.0.0" and outputs["stage"] == ""
    manifest = artifacts.load_manifest(released / "models" / "package")
    assert outputs["tags"].splitlines()[0] == "ghcr.io/owner/project:penguins-v1.0.0"
    build_args = dict(line.split("=", 1) for line in outputs["build-args"].splitlines())
    assert build_args["MODEL_SHA256"] == manifest["files"]["model.onnx"]
    assert build_args["MODEL_VERSION"] == manifest["model_version"]
    assert build_args["REVISION"] == workflow.github["sha"]
    assert image.outputs["deploy"] == "false"
    assert not workflow.run_job("deploy").ran


def test_a_promotion_to_prod_deploys_when_a_cluster_is_configured(released: Path) -> None:
    secrets = {"KUBE_CONFIG": "apiVersion: v1\nkind: Config\n"}
    workflow = release_run(released, "penguins#prod#1", secrets)
    image = workflow.run_job("image")
    outputs = image.step_outputs["release"]
    assert "verified: model.onnx sha256" in image.steps[2].output  # v1.0.0's, through the stage
    assert (outputs["version"], outputs["stage"]) == ("v1.0.0", "prod")
    assert "ghcr.io/owner/project:penguins-prod" in outputs["tags"].splitlines()
    assert image.outputs["deploy"] == "true"
    assert image.outputs["image"].startswith("ghcr.io/owner/project@")
    deploy = workflow.run_job("deploy")
    assert deploy.ran and deploy.steps == []
    assert (
        deploy.skipped[-1] == "apply the manifests with the released image and wait for the rollout"
    )
    without_cluster = release_run(released, "penguins#prod#1", secrets={})
    assert without_cluster.run_job("image").outputs["deploy"] == "false"


@pytest.fixture
def released_with_origin(released: Path, tmp_path: Path) -> Path:
    """A copy of the released project whose tags also are on an origin that takes pushes."""
    root = tmp_path / "project"
    shutil.copytree(released, root, symlinks=True)
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], root)
    run(["git", "push", "-q", "--tags", "origin", "main"], root)
    return root


@pytest.mark.parametrize(("result", "health"), [("success", "healthy"), ("failure", "failed")])
def test_every_deployment_is_recorded_in_git_with_its_health(
    released_with_origin: Path, result: str, health: str
) -> None:
    """The record job tags the released commit: which run deployed which version where, who
    asked, why (the stage tag's reason), and whether the rollout became healthy; make audit reads
    it back from the tags alone."""
    root = released_with_origin
    secrets = {"KUBE_CONFIG": "apiVersion: v1\nkind: Config\n"}
    workflow = release_run(root, "penguins#prod#1", secrets)
    image = workflow.run_job("image")
    assert image.outputs["deploy"] == "true" and image.outputs["version"] == "v1.0.0"
    workflow.run_job("deploy")
    workflow.needs["deploy"]["result"] = result  # what the cluster made of it
    record = workflow.run_job("record")
    assert record.ran and record.commands() == ["make deployment-record"]
    assert not record.failed, record.steps[0].output
    tag = "deploy/production/31.1"
    assert f"recorded {tag}: deploy penguins v1.0.0 to production: {health}" in (
        record.steps[0].output
    )
    origin = root.parent / "origin.git"
    message = run(["git", "tag", "-l", "--format=%(contents)", tag], origin).stdout
    fields = dict(line.split(": ", 1) for line in message.strip().splitlines()[2:])
    assert fields["Health"] == health and fields["Ref"] == "penguins#prod#1"
    assert fields["Reason"] == "the first model"  # from the stage tag the release ran on
    assert fields["Actor"] == "developer" and fields["Image"] == image.outputs["image"]
    assert fields["Run"] == f"https://github.com/{REPOSITORY}/actions/runs/777"
    deployed = run(["git", "rev-list", "-n", "1", tag], origin).stdout.strip()
    assert deployed == workflow.github["sha"]
    audit = json.loads(run(["make", "-s", "audit", "FORMAT=json"], root).stdout)
    entries = [(entry["event"], entry["who"], entry["why"]) for entry in audit["history"]]
    assert entries[-2:] == [
        ("promoted", "alice", "the first model"),
        ("deployed", "developer", "the first model"),
    ]
    assert audit["history"][-1]["health"] == health


def test_a_manual_release_records_the_reason_it_was_given(released_with_origin: Path) -> None:
    secrets = {"KUBE_CONFIG": "apiVersion: v1\nkind: Config\n"}
    inputs = {"deploy": "true", "reason": "redeploy after the node pool upgrade"}
    workflow = release_run(released_with_origin, "penguins#prod#1", secrets, inputs)
    workflow.run_job("image")
    workflow.run_job("deploy")
    record = workflow.run_job("record")
    assert not record.failed, record.steps[0].output
    message = run(
        ["git", "tag", "-l", "--format=%(contents)", "deploy/production/31.1"], released_with_origin
    ).stdout
    assert "Reason: redeploy after the node pool upgrade" in message


def test_a_release_that_deploys_nothing_records_nothing(released: Path) -> None:
    workflow = release_run(released, "penguins@v1.0.0", secrets={})
    workflow.run_job("image")
    workflow.run_job("deploy")
    assert not workflow.run_job("record").ran


def test_a_version_tag_recording_another_model_stops_the_release(released: Path) -> None:
    """The tag says which model was evaluated and registered; an image must not ship another
    (a model rebuilt differently, a tag made by hand)."""
    other = "0" * 64
    tag = "penguins@v1.1.0"
    message = f"Register penguins v1.1.0: model.onnx sha256={other}"
    run(["git", "tag", "-a", tag, "-m", message], released)
    try:
        image = release_run(released, tag, secrets={}).run_job("image")
    finally:
        run(["git", "tag", "-d", tag], released)
    assert image.commands() == ["make model", "make deploy-resources", "make release-info"]
    failed = image.steps[2]
    assert failed.returncode != 0 and "Traceback" not in failed.output
    sha = artifacts.load_manifest(released / "models" / "package")["files"]["model.onnx"]
    assert f"the packaged model.onnx (sha256 {sha}) is not the model '{tag}' registered" in (
        failed.output
    )
    assert f"(sha256 {other})" in failed.output
    assert image.step_outputs["release"] == {}  # no tags, no build arguments: nothing is built
    assert image.outputs["deploy"] == ""


def test_the_manifests_deploy_the_released_image_by_digest(released: Path) -> None:
    digest = "ghcr.io/owner/project@sha256:" + "a" * 64
    rendered = run(
        ["scripts/ci/k8s-release.sh", "render"],
        released,
        env={"IMAGE": digest, "NAMESPACE": "production"},
    ).stdout
    assert rendered.count(f"image: {digest}") == 2  # the scorer and the sidecar
    assert "namespace: production" in rendered


def promote(root: Path, version: str, stage: str, reason: str) -> str:
    """``make promote`` from a clone: the stage tag it made (pushed when there is an origin)."""
    promotion = [str(BIN / "python"), "-m", "mlops.gitops.promotion", "promote", "--actor", "carol"]
    push = ["--push"] if run(["git", "remote"], root).stdout.strip() else []
    made = run(
        [*promotion, "--version", version, "--stage", stage, "--reason", reason, *push], root
    )
    return made.stdout.split("created ", 1)[1].split()[0]


def register_again(root: Path, version: str) -> None:
    """Another version of the same packaged model, on a commit of its own (what GTO asks)."""
    run(["git", "commit", "-q", "--allow-empty", "-m", f"model {version}"], root)
    sha = artifacts.load_manifest(root / "models" / "package")["files"]["model.onnx"]
    registry = [str(BIN / "python"), "-m", "mlops.gitops.registry", "register"]
    push = ["--push"] if run(["git", "remote"], root).stdout.strip() else []
    run([*registry, "--version", version, "--model-sha256", sha, *push], root)


def deployed(workflow: WorkflowRun, result: str, digest: str) -> tuple[JobResult, str]:
    """The image job, then deploy (its cluster step skipped) and record: the image job and the
    deployment's record. ``digest``: what the push step (GitHub's action, skipped here) gives."""
    image = workflow.run_job("image")
    assert not image.failed, "\n".join(step.output for step in image.steps)
    workflow.needs["image"]["outputs"]["image"] = f"ghcr.io/owner/project@sha256:{digest * 64}"
    workflow.run_job("deploy")
    workflow.needs["deploy"]["result"] = result
    record = workflow.run_job("record")
    assert record.ran and not record.failed, record.steps[0].output
    tag = f"deploy/production/{workflow.github['run_number']}.1"
    return image, run(["git", "tag", "-l", "--format=%(contents)", tag], workflow.workspace).stdout


def test_a_canary_is_deployed_beside_the_champion_and_recorded_in_both_roles(
    released_with_origin: Path, tmp_path: Path
) -> None:
    """The champion's release records its image by digest; the canary's release builds the
    challenger's image and deploys it beside that one, with the registry versions the sidecar's
    verdict will name; the record and make audit say which version ran in which role."""
    root = released_with_origin
    first = release_run(root, "penguins#prod#1", KUBE_CONFIG)
    first.github["run_number"] = "30"
    deployed(first, "success", "a")
    champion_image = first.needs["image"]["outputs"]["image"]
    register_again(root, "v1.1.0")
    canary = promote(root, "v1.1.0", "canary", "compare on live traffic")
    workflow = release_run(root, canary, KUBE_CONFIG)
    image, message = deployed(workflow, "success", "b")
    assert "deployment: production: the champion v1.0.0 with the canary challenger v1.1.0" in (
        image.steps[2].output
    )
    outputs = workflow.needs["image"]["outputs"]
    assert (outputs["deploy"], outputs["version"], outputs["role"]) == (
        "true",
        "v1.1.0",
        "challenger",
    )
    assert (outputs["champion"], outputs["challenger"], outputs["challenger-mode"]) == (
        "v1.0.0",
        "v1.1.0",
        "canary",
    )
    assert outputs["companion-image"] == champion_image  # the digest the champion ran from
    assert "ghcr.io/owner/project:penguins-canary" in image.step_outputs["release"]["tags"]
    fields = parse_record(message)[1]
    assert message.startswith(
        "deploy penguins v1.0.0 with the canary challenger v1.1.0 to production: healthy"
    )
    assert (fields["Version"], fields["Image"]) == ("v1.0.0", champion_image)
    assert (fields["Challenger"], fields["Challenger-Mode"]) == ("v1.1.0", "canary")
    assert fields["Challenger-Image"] == outputs["image"] != champion_image
    assert fields["Reason"] == "compare on live traffic"
    # what the deploy job applies: its environment, through the overlay writer
    deploy = load_workflow("release.yml")["jobs"]["deploy"]["steps"][-1]["env"]
    values = {name: interpolate(value, workflow.context({}, {})) for name, value in deploy.items()}
    overlay = tmp_path / "overlay" / "kustomization.yaml"
    written = run(
        [
            str(BIN / "python"),
            "-m",
            "mlops.gitops.k8s_overlay",
            "--out",
            str(overlay),
            "--image",
            values["IMAGE"],
            "--role",
            values["RELEASE_ROLE"],
            "--companion-image",
            values["COMPANION_IMAGE"],
            "--champion",
            values["CHAMPION_VERSION"],
            "--challenger",
            values["CHALLENGER_VERSION"],
            "--challenger-mode",
            values["CHALLENGER_MODE"],
        ],
        root,
    )
    assert "deploy/k8s-challenger, the champion v1.0.0 with the canary challenger v1.1.0" in (
        written.stdout
    )
    audit = json.loads(run(["make", "-s", "audit", "FORMAT=json"], root).stdout)
    last = audit["history"][-1]
    assert (last["event"], last["version"], last["challenger"], last["challenger_mode"]) == (
        "deployed",
        "v1.0.0",
        "v1.1.0",
        "canary",
    )
    assert audit["challenger"] == "v1.1.0" and audit["challenger_mode"] == "canary"


def test_a_withdrawal_pushed_by_hand_releases_the_champion_alone(
    released_with_origin: Path,
) -> None:
    """make rollback from a clone withdraws the canary; the push starts release.yml on the
    withdrawal, which builds nothing and dispatches the champion's release; that release then
    deploys the champion alone; the withdrawn canary's tag, released again, deploys nothing."""
    root = released_with_origin
    register_again(root, "v1.1.0")
    canary = promote(root, "v1.1.0", "canary", "compare on live traffic")
    rollback = [str(BIN / "python"), "-m", "mlops.gitops.promotion", "rollback", "--push"]
    made = run([*rollback, "--reason", "p99 doubled", "--actor", "dave"], root).stdout
    withdrawal = made.split("created ", 1)[1].split()[0]
    assert "!#" in withdrawal
    secrets = {**KUBE_CONFIG, "GITHUB_TOKEN": "ghs_token_of_the_run"}
    workflow = release_run(root, withdrawal, secrets, standins=[GH_STANDIN])
    assert not workflow.run_job("image").ran
    job = workflow.run_job("withdrawal")
    assert job.ran and not job.failed, "\n".join(step.output for step in job.steps)
    assert job.commands() == ["make withdrawal-release", "make release-dispatch"]
    calls = (root.parent / "standin" / "gh.txt").read_text().splitlines()
    assert calls == [
        "GH_TOKEN=set args: workflow run release.yml --ref penguins#prod#1 -f reason=p99 doubled"
    ]
    for job_id in ("deploy", "record"):
        assert not workflow.run_job(job_id).ran
    champion = release_run(root, "penguins#prod#1", KUBE_CONFIG, {"deploy": "false", "reason": ""})
    outputs = champion.run_job("image").outputs
    assert (outputs["deploy"], outputs["role"], outputs["challenger"]) == ("true", "champion", "")
    stale = release_run(root, canary, KUBE_CONFIG).run_job("image")
    assert stale.outputs["deploy"] == "false"
    assert "v1.1.0 is no longer the canary challenger (the challenger now: none)" in (
        stale.steps[2].output
    )


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(module: str, workdir: Path, settings: dict[str, str]) -> Service:
    port = free_port()
    prefix = "SCORER" if module == "mlops.serve" else "MONITOR"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCORER_", "MONITOR_"))}
    env.update({f"{prefix}_HOST": "127.0.0.1", f"{prefix}_PORT": str(port), **settings})
    if prefix == "SCORER":  # its gRPC port too: the default 8081 may be taken on this machine
        env.setdefault("SCORER_GRPC_PORT", str(free_port()))
    log = workdir / f"{module}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=workdir, env=env, stdout=output, stderr=output
        )
    return Service(process, f"http://127.0.0.1:{port}", log)


def wait_ready(service: Service, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert service.process.poll() is None, service.log.read_text(errors="replace")
        url = f"{service.url}/health/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"{service.url} not ready:\n{service.log.read_text(errors='replace')}")


@pytest.fixture
def pod(released: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Scorer and sidecar sharing a prediction log, as the two containers of the pod do."""
    shared = {
        "MODEL_DIR": str(released / "models" / "package"),
        "PREDICTION_LOG": str(tmp_path / "predictions.jsonl"),
    }
    scorer = start("mlops.serve", tmp_path, shared)
    sidecar_settings = {
        **shared,
        "MONITOR_STATE_FILE": str(tmp_path / "state.json"),
        "MONITOR_FEEDBACK_LOG": str(tmp_path / "feedback.jsonl"),
    }
    sidecar = start("mlops.monitor", tmp_path, sidecar_settings)
    lonely = start("mlops.monitor", tmp_path, {**sidecar_settings, "PREDICTION_LOG": "other.jsonl"})
    try:
        yield {"scorer": scorer, "sidecar": sidecar, "lonely": lonely, "root": released}
    finally:
        for service in (scorer, sidecar, lonely):
            service.stop()


def test_the_smoke_test_passes_against_the_real_scorer_and_sidecar(pod: dict[str, Any]) -> None:
    result = run(
        ["make", "smoke", f"SCORER_URL={pod['scorer'].url}", f"SIDECAR_URL={pod['sidecar'].url}"],
        pod["root"],
        check=False,
    )
    logs = "\n".join(s.log.read_text(errors="replace") for s in (pod["scorer"], pod["sidecar"]))
    assert result.returncode == 0, result.stdout + result.stderr + logs
    lines = [line for line in result.stdout.splitlines() if line.startswith("ok  ")]
    assert len(lines) == 9, result.stdout
    assert any("drift: the sidecar read the scored records" in line for line in lines)


def test_the_smoke_test_fails_when_the_sidecar_never_sees_the_predictions(
    pod: dict[str, Any],
) -> None:
    wait_ready(pod["lonely"])
    command = [str(BIN / "python"), "-m", "mlops.gitops.smoke", "--timeout", "8"]
    command += ["--scorer", pod["scorer"].url, "--sidecar", pod["lonely"].url]
    result = run(command, pod["root"], check=False)
    assert result.returncode == 1
    assert "sidecar reading 20 logged predictions: not after 8s" in result.stderr
    assert "Traceback" not in result.stderr
