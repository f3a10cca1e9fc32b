"""The real workflow files, run by nektos/act on this machine, offline: the GitOps loop of a fork.

Unlike test_train_workflow.py (which runs the ``run:`` steps itself), act reads train.yml,
retrain.yml and release.yml and runs their jobs as a self-hosted runner would, with every pinned
action at its pinned commit. In a fork of the project with a (local) origin:

1. a pull request: train.yml reproduces, reports, uploads the report; its comment job downloads
   it and hands it to ``cml`` (a recording STAND-IN: tests/act/standin/setup-cml);
2. the merge to main: train.yml registers the accepted model (a GTO tag pushed to origin) and
   dispatches the release (``gh``, a recording STAND-IN);
3. the same push again, on the same commit: nothing new to register (the same model, byte for byte);
4. the version tag: release.yml materialises the model, names the release, and stops at the
   image build (no Docker here);
5. the sidecar's ``repository_dispatch``: retrain.yml re-ingests and reproduces, and stops at
   opening the pull request (no github.com here);
6. rollout.yml: a promotion by hand (Run workflow), then the sidecar's ``rollout-verdict``
   rolling a canary back: GTO stage tags pushed to origin saying who and why, the release of the
   changed stage dispatched through ``gh`` (the recording STAND-IN).

What stands in for GitHub is listed in tests/act_runner.py. ci.yml is not run: it runs
``make test``, this suite, again. Each act run takes one to two minutes.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from act_runner import (
    REPOSITORY,
    ActEnvironment,
    ActRun,
    act_environment,
    workspaces,
)
from conftest import PROJECT_ROOT, copy_project, run
from mlops.monitor.retrain import GitHubDispatcher
from mlops.params import project_model_name
from workflows import load_workflow

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
MAIN_ONLY = (  # the steps of train.yml's train job that run on a push to main only
    "push outputs and run cache to the DVC remote (skipped without DVC_REMOTE_URL)",
    "decide whether to register the model",
)


@dataclass
class Fork:
    root: Path
    origin: Path
    standin: Path  # where the stand-ins and act's logs of each run go
    model: str  # package.model_name, or named after data.source

    def git(self, *arguments: str) -> str:
        return run(["git", *arguments], self.root).stdout.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def tag_message(self, tag: str) -> str:
        return run(["git", "tag", "-l", "--format=%(contents)", tag], self.origin).stdout


@pytest.fixture(scope="module")
def act(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActEnvironment]:
    """act, the pinned actions, Node 24 and the tool cache, once; all removed at the end."""
    root = tmp_path_factory.mktemp("act")
    try:
        with act_environment(root) as environment:
            yield environment
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fork(act: ActEnvironment) -> Fork:
    """The project as a fresh fork: its files committed on main, an origin that takes pushes."""
    root = copy_project(act.root / "project")
    origin = act.root / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], act.root)
    run(["git", "remote", "add", "origin", str(origin)], root)
    run(["git", "remote", "add", "github", f"https://github.com/{REPOSITORY}"], root)
    run(["git", "push", "-q", "origin", "main"], root)
    model = project_model_name(root / "params.yaml")
    return Fork(root, origin, act.root / "runs", str(model))


def repository() -> dict[str, Any]:
    owner, name = REPOSITORY.split("/")
    return {"full_name": REPOSITORY, "name": name, "owner": {"login": owner}}


def pull_request_event(fork: Fork, number: int, base: str) -> dict[str, Any]:
    side = {"repo": repository()}
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": fork.head(), "ref": f"feature-{number}", **side},
            "base": {"sha": base, "ref": "main", **side},
        },
        "repository": repository(),
    }


def push_event(ref: str, before: str, after: str) -> dict[str, Any]:
    return {"ref": ref, "before": before, "after": after, "repository": repository()}


def run_workflow(
    act: ActEnvironment, fork: Fork, name: str, workflow: str, event: str, payload: dict[str, Any]
) -> tuple[ActRun, Path]:
    """One act run; returns it and the folder of what its stand-ins recorded."""
    standin = fork.standin / name
    result = act.run(fork.root, workflow, event, payload, standin)
    assert workspaces(act) == [], "act left job workspaces behind"
    return result, standin


def step_names(workflow: str, job: str, leave_out: tuple[str, ...] = ()) -> list[str]:
    """The names act gives a job's steps (a ``uses:`` step without a name is its ``uses``)."""
    steps = load_workflow(workflow)["jobs"][job]["steps"]
    names = [step.get("name") or step["uses"] for step in steps]
    return [name for name in names if name not in leave_out]


def artifact(standin: Path, name: str) -> dict[str, bytes]:
    """The files of an artifact as act's artifact server stored it (run 1: act's run id)."""
    (archive,) = (standin / "artifacts" / "1" / name).glob("*.zip")
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as bundle:
        return {item: bundle.read(item) for item in bundle.namelist()}


# --- 1. a pull request ----------------------------------------------------------------------


@dataclass
class PullRequest:
    act: ActRun
    standin: Path


@pytest.fixture(scope="module")
def pull_request(act: ActEnvironment, fork: Fork) -> PullRequest:
    base = fork.head()
    fork.git("checkout", "-q", "-b", "feature-1")
    params = fork.root / "params.yaml"
    text, count = re.subn(r"(?m)^(  n_iter: )\d+", r"\g<1>6", params.read_text())
    assert count == 1, "params.yaml has no train.n_iter to change"
    params.write_text(text)
    fork.git("commit", "-q", "-am", "fewer tuning candidates")
    result, standin = run_workflow(
        act, fork, "pull-request", "train", "pull_request", pull_request_event(fork, 1, base)
    )
    return PullRequest(result, standin)


def test_a_pull_request_reproduces_reports_and_uploads_the_report(
    pull_request: PullRequest,
) -> None:
    train = pull_request.act.job("train")
    assert train.result == "success", pull_request.act.explain()
    assert train.results() == [
        (name, "success") for name in step_names("train.yml", "train", leave_out=MAIN_ONLY)
    ]
    pulled = train.step("pull from the DVC remote (skipped without DVC_REMOTE_URL)")
    assert "uv sync --frozen" in pulled.text, "the job bootstraps its own .venv from uv.lock"
    assert "DVC_REMOTE_URL is not set: skipping dvc pull" in pulled.text
    assert "register" not in pull_request.act.jobs, "registration runs on main only"
    report = artifact(pull_request.standin, "report")  # reports/pr/: the report and its images
    assert {"report.md", "summary.md"} <= set(report)
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report["report.md"].decode())
    assert linked and all(link in report for link in linked), (linked, sorted(report))
    first_line = report["summary.md"].decode().splitlines()[0]
    assert train.summary.startswith(first_line) and "![" not in train.summary


def test_the_comment_job_hands_the_reports_text_to_cml_and_publishes_no_image(
    fork: Fork, pull_request: PullRequest
) -> None:
    """What the cml STAND-IN received: the text of the train job's report, which links the run
    (its artifact holds the images), with --publish=false: nothing leaves for CML's asset host."""
    comment = pull_request.act.job("comment")
    assert comment.result == "success", pull_request.act.explain()
    results = dict(comment.results())
    assert results["iterative/setup-cml@f12ea7685438c1fc438d50f77519b3860cf5fa98"] == "success"
    private = "post the report (its images linked from the run's artifact, not published)"
    assert results[private] == "success"
    opted_in = "post the report with its images published on CML's public asset host (opted in)"
    assert results.get(opted_in, "skipped") == "skipped", results
    cml = pull_request.standin / "cml"
    setup = load_workflow("train.yml")["jobs"]["comment"]["steps"][2]["with"]
    assert (cml / "setup.txt").read_text() == f"version={setup['version']}\nvega=false\n"
    calls = (cml / "calls.txt").read_text()
    arguments = [line[5:] for line in calls.splitlines() if line.startswith("arg: ")]
    assert arguments == [
        "comment",
        "update",
        "--target=pr",
        "--publish=false",
        "--watermark-title=mlops train report",
        "reports/pr/summary.md",
    ]
    assert "REPO_TOKEN=set" in calls and "image" not in calls.replace("images", "")
    received = (cml / "summary.md").read_text()
    assert received == artifact(pull_request.standin, "report")["summary.md"].decode()
    assert fork.model in received and "/actions/runs/" in received  # the run, with its artifact
    assert "![" not in received and not list((cml / "images").iterdir())


def test_the_artifact_proxy_was_needed_and_worked(act: ActEnvironment) -> None:
    """upload-artifact v7 against act's server: fields dropped and signatures re-padded."""
    log = (act.act_dir / "artifact-proxy.log").read_text()
    assert "CreateArtifact -> 200 dropped=['mime_type']" in log
    assert re.search(r"UploadArtifact -> 201 sig-padded", log)
    assert "FinalizeArtifact -> 200" in log


# --- 2 and 3. the merge to main, and the same push again --------------------------------------


@dataclass
class MainRuns:
    first: ActRun
    second: ActRun
    first_standin: Path
    commit: str


@pytest.fixture(scope="module")
def main_runs(act: ActEnvironment, fork: Fork, pull_request: PullRequest) -> MainRuns:
    before = fork.git("rev-parse", "main")
    fork.git("checkout", "-q", "main")
    fork.git("merge", "-q", "--ff-only", "feature-1")
    fork.git("push", "-q", "origin", "main")
    event = push_event("refs/heads/main", before, fork.head())
    first, standin = run_workflow(act, fork, "main-1", "train", "push", event)
    fork.git("fetch", "-q", "origin", "--tags")  # what the next checkout on GitHub would see
    second, _ = run_workflow(act, fork, "main-2", "train", "push", event)
    return MainRuns(first, second, standin, fork.head())


def test_main_registers_the_accepted_model_and_dispatches_the_release(
    fork: Fork, main_runs: MainRuns
) -> None:
    train = main_runs.first.job("train")
    assert train.result == "success", main_runs.first.explain()
    assert train.results() == [
        (name, "success")
        for name in step_names(
            "train.yml", "train", leave_out=("keep the report for the comment job",)
        )
    ]
    assert "comment" not in main_runs.first.jobs
    plan = train.outputs["plan"]
    assert (plan["register"], plan["version"]) == ("true", "v1.0.0")
    register = main_runs.first.job("register")
    assert register.result == "success", main_runs.first.explain()
    assert register.results() == [(name, "success") for name in step_names("train.yml", "register")]
    tag = f"{fork.model}@v1.0.0"
    assert (
        f"refs/tags/{tag}"
        in run(["git", "ls-remote", "--tags", str(fork.origin)], fork.root).stdout
    )
    assert f"model.onnx sha256={plan['model-sha256']}" in fork.tag_message(tag)
    assert register.outputs["register"]["tag"] == tag
    gh = (main_runs.first_standin / "gh.txt").read_text().splitlines()
    assert gh == [f"GH_TOKEN=set args: workflow run release.yml --ref {tag}"]  # the gh STAND-IN


def test_the_same_push_again_plans_no_new_version(main_runs: MainRuns) -> None:
    first = main_runs.first.job("train").outputs["plan"]
    train = main_runs.second.job("train")
    assert train.result == "success", main_runs.second.explain()
    plan = train.outputs["plan"]
    assert plan["model-sha256"] == first["model-sha256"]  # the same model, byte for byte
    assert plan["register"] == "false", train.step("decide whether to register the model").text
    assert "register" not in main_runs.second.jobs


# --- 4. the version tag starts the release ----------------------------------------------------


@pytest.fixture(scope="module")
def release(act: ActEnvironment, fork: Fork, main_runs: MainRuns) -> tuple[ActRun, Path]:
    tag = f"{fork.model}@v1.0.0"
    fork.git("checkout", "-q", tag)
    event = push_event(f"refs/tags/{tag}", "0" * 40, fork.head())
    try:
        return run_workflow(act, fork, "release", "release", "push", event)
    finally:
        fork.git("checkout", "-q", "main")


def test_the_release_runs_up_to_the_image_build(
    fork: Fork, main_runs: MainRuns, release: tuple[ActRun, Path]
) -> None:
    result, standin = release
    image = result.job("image")
    assert image.result == "failure", result.explain()
    names = step_names("release.yml", "image")
    buildx = next(i for i, name in enumerate(names) if name.startswith("docker/setup-buildx"))
    # everything up to Docker ran and succeeded; Docker is not here, and nothing ran after it
    expected = [(name, "success") for name in names[:buildx]] + [(names[buildx], "failure")]
    assert image.results() == expected, result.explain()
    assert "deploy" not in result.jobs
    assert "resources.yaml" in artifact(standin, "k8s-resources")
    outputs = image.outputs["release"]
    assert (outputs["version"], outputs["stage"]) == ("v1.0.0", "")
    assert outputs["tags"].splitlines()[0] == f"ghcr.io/{REPOSITORY}:{fork.model}-v1.0.0"
    assert outputs["deploy"] == "false"
    build_args = dict(line.split("=", 1) for line in outputs["build-args"].splitlines())
    assert build_args["REVISION"] == main_runs.commit
    recorded = main_runs.first.job("train").outputs["plan"]["model-sha256"]
    assert build_args["MODEL_SHA256"] == recorded  # the released model is the registered one


# --- 5. the sidecar asks for a retrain ----------------------------------------------------------


def sidecar_dispatch() -> dict[str, Any]:
    """The event GitHub makes of the sidecar's request (mlops.monitor.retrain builds the body)."""
    payload = {
        "model_name": "penguins",
        "model_version": "20261121-fa753576",
        "reasons": ["drift"],
        "window_size": 1000,
        "drifted_features": {"body_mass_g": {"psi": 0.31, "reasons": ["psi"]}},
        "prediction": {"psi": 0.02, "drifted": False},
        "alert_since": "2026-11-21T10:00:00Z",
        "sent_at": "2026-11-21T10:05:00Z",
    }
    request = GitHubDispatcher("https://api.github.com", REPOSITORY, None, 5).build_request(payload)
    assert isinstance(request.data, bytes)
    body = json.loads(request.data)
    return {
        "action": body["event_type"],
        "client_payload": body["client_payload"],
        "repository": repository(),
        "sender": {"login": "mlops-monitor"},
    }


@pytest.fixture(scope="module")
def retrain(act: ActEnvironment, fork: Fork, main_runs: MainRuns) -> ActRun:
    fork.git("checkout", "-q", "main")
    result, _ = run_workflow(
        act, fork, "retrain", "retrain", "repository_dispatch", sidecar_dispatch()
    )
    return result


def test_the_sidecars_dispatch_retrains_up_to_the_pull_request(retrain: ActRun) -> None:
    job = retrain.job("retrain")
    names = step_names("retrain.yml", "retrain")
    # every step ran; only the pull request, which needs github.com, failed
    expected = [(name, "success") for name in names[:-1]] + [(names[-1], "failure")]
    assert names[-1] == "open or update the retrain pull request"
    assert job.results() == expected, retrain.explain()
    reproduced = job.step("re-ingest the source and the harvest, and reproduce the pipeline").text
    assert "Running stage 'ingest'" in reproduced
    assert "body_mass_g" in job.summary and "0.31" in job.summary  # the sidecar's reasons


def test_make_act_says_how_to_call_it() -> None:
    result = run(["make", "-s", "act"], PROJECT_ROOT, check=False)
    assert result.returncode == 2
    assert "usage: make act WORKFLOW=<ci|train|release|retrain|rollout> EVENT=<push|" in (
        result.stdout
    )


# --- 6. promotion by hand and the sidecar's rollback verdict (rollout.yml) --------------------


@dataclass
class Rollouts:
    promotion: ActRun
    promotion_standin: Path
    verdict: ActRun
    verdict_standin: Path


@pytest.fixture(scope="module")
def rollouts(act: ActEnvironment, fork: Fork, main_runs: MainRuns) -> Rollouts:
    """After the loop above: v1.0.0 promoted by hand; then, locally, v1.1.0 registered and made
    the canary challenger; then the sidecar's verdict on the pair: rollback."""
    fork.git("checkout", "-q", "main")
    fork.git("fetch", "-q", "origin", "--tags")
    inputs = {"action": "promote", "version": "v1.0.0", "stage": "prod", "reason": "first model"}
    event = {"inputs": inputs, "repository": repository(), "sender": {"login": "developer"}}
    promotion, promotion_standin = run_workflow(
        act, fork, "rollout-promote", "rollout", "workflow_dispatch", event
    )
    fork.git("fetch", "-q", "origin", "--tags")
    fork.git("commit", "-q", "--allow-empty", "-m", "the next model")
    python = str(PROJECT_ROOT / ".venv" / "bin" / "python")
    register = [python, "-m", "mlops.gitops.registry", "register", "--version", "v1.1.0"]
    run([*register, "--model-sha256", "1" * 64, "--push"], fork.root)
    promote = [python, "-m", "mlops.gitops.promotion", "promote", "--version", "v1.1.0"]
    run([*promote, "--stage", "canary", "--reason", "try it", "--push"], fork.root)
    fork.git("push", "-q", "origin", "main")
    payload = {
        "model_name": fork.model,
        "champion_version": "v1.0.0",
        "challenger_version": "v1.1.0",
        "verdict": "rollback",
        "reasons": ["canary 5xx share 4.2 % > 1 %"],
        "window": {"start": "2026-11-21T10:00:00Z", "end": "2026-11-21T11:00:00Z"},
    }
    dispatch = {
        "action": "rollout-verdict",
        "client_payload": payload,
        "repository": repository(),
        "sender": {"login": "mlops-monitor"},
    }
    verdict, verdict_standin = run_workflow(
        act, fork, "rollout-verdict", "rollout", "repository_dispatch", dispatch
    )
    return Rollouts(promotion, promotion_standin, verdict, verdict_standin)


def rollout_fields(fork: Fork, tag: str) -> dict[str, str]:
    from mlops.gitops.records import parse_record

    return parse_record(fork.tag_message(tag))[1]


def test_a_promotion_by_hand_pushes_its_tag_and_dispatches_the_release(
    fork: Fork, rollouts: Rollouts
) -> None:
    job = rollouts.promotion.job("rollout")
    assert job.result == "success", rollouts.promotion.explain()
    ran = [name for name, result in job.results() if result == "success"]
    assert ran[-2:] == ["promote a version by hand", "start the release of the stage it changed"]
    tag = f"{fork.model}#prod#1"
    recorded = rollout_fields(fork, tag)
    assert (recorded["Action"], recorded["Version"], recorded["Reason"]) == (
        "promote",
        "v1.0.0",
        "first model",
    )
    assert recorded["Actor"] == "developer" and recorded["Trigger"] == "workflow_dispatch"
    gh = (rollouts.promotion_standin / "gh.txt").read_text().splitlines()
    assert gh == [f"GH_TOKEN=set args: workflow run release.yml --ref {tag} -f reason=first model"]


def test_the_sidecars_rollback_verdict_withdraws_the_canary_and_redeploys_the_champion(
    fork: Fork, rollouts: Rollouts
) -> None:
    job = rollouts.verdict.job("rollout")
    assert job.result == "success", rollouts.verdict.explain()
    ran = [name for name, result in job.results() if result == "success"]
    assert ran[-2:] == [
        "act on the monitoring sidecar's verdict",
        "start the release of the stage it changed",
    ]
    withdrawal = f"{fork.model}#canary!#3"
    recorded = rollout_fields(fork, withdrawal)  # on origin: the job pushed it
    assert (recorded["Action"], recorded["Version"], recorded["Stage"]) == (
        "rollback",
        "v1.1.0",
        "canary",
    )
    # the actor act runs as (--actor); on GitHub, the owner of the sidecar's token
    assert recorded["Actor"] == "developer" and recorded["Trigger"] == "repository_dispatch"
    assert json.loads(recorded["Verdict"])["reasons"] == ["canary 5xx share 4.2 % > 1 %"]
    gh = (rollouts.verdict_standin / "gh.txt").read_text().splitlines()
    assert gh == [
        f"GH_TOKEN=set args: workflow run release.yml --ref {fork.model}#prod#1 -f reason=the "
        "monitoring sidecar's verdict: rollback (canary 5xx share 4.2 % > 1 %)"
    ]


def test_a_withdrawal_pushed_from_a_clone_releases_the_champion(
    act: ActEnvironment, fork: Fork, rollouts: Rollouts
) -> None:
    """The canary's withdrawal, as a push from a clone would start release.yml on it: the image
    job is skipped (nothing to build), the withdrawal job dispatches the release of the
    champion's prod tag with the withdrawal's reason (through the gh STAND-IN)."""
    withdrawal = f"{fork.model}#canary!#3"
    fork.git("fetch", "-q", "origin", "--tags")
    fork.git("checkout", "-q", withdrawal)
    event = push_event(f"refs/tags/{withdrawal}", "0" * 40, fork.head())
    try:
        result, standin = run_workflow(act, fork, "release-withdrawal", "release", "push", event)
    finally:
        fork.git("checkout", "-q", "main")
    assert "image" not in result.jobs and "deploy" not in result.jobs
    job = result.job("withdrawal")
    assert job.result == "success", result.explain()
    names = step_names("release.yml", "withdrawal")
    assert job.results() == [(name, "success") for name in names], result.explain()
    gh = (standin / "gh.txt").read_text().splitlines()
    assert gh == [
        f"GH_TOKEN=set args: workflow run release.yml --ref {fork.model}#prod#1 -f reason=the "
        "monitoring sidecar's verdict: rollback (canary 5xx share 4.2 % > 1 %)"
    ]
