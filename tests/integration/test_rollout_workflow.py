"""rollout.yml's steps in a fork with an origin: promotions, rollbacks and the sidecar's verdicts
become pushed GTO tags that say who and why, and the release of the stage they changed is
dispatched (through ``gh``, a recording STAND-IN: tests/act/standin/gh-bin).

The jobs run as tests/workflows.py runs them: every ``run:`` step for real, in order, with the
event's context; the ``uses:`` steps (checkout, Python, uv) are what this machine already has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import PROJECT_ROOT, copy_project, run
from mlops.gitops.records import parse_record
from mlops.params import project_model_name
from workflows import JobResult, WorkflowRun, load_workflow, runner_environment, use_project_venv

REPOSITORY = "owner/project"
GH_STANDIN = PROJECT_ROOT / "tests" / "act" / "standin" / "gh-bin"
VERSIONS = ("v1.0.0", "v1.1.0", "v1.2.0")


@dataclass
class Fork:
    root: Path
    origin: Path
    calls: Path  # what the gh stand-in recorded
    model: str

    def git(self, *arguments: str) -> str:
        return run(["git", *arguments], self.root).stdout.strip()

    def origin_fields(self, tag: str) -> dict[str, str]:
        message = run(["git", "tag", "-l", "--format=%(contents)", tag], self.origin).stdout
        return parse_record(message)[1]

    def dispatches(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> Fork:
    """The project as a fork with three registered versions (a commit each), pushed to origin."""
    base = tmp_path_factory.mktemp("rollout")
    root = copy_project(base / "project")
    use_project_venv(root, PROJECT_ROOT / ".venv")
    origin = base / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], base)
    run(["git", "remote", "add", "origin", str(origin)], root)
    model = str(project_model_name(root / "params.yaml"))
    for index, version in enumerate(VERSIONS):
        if index:
            run(["git", "commit", "-q", "--allow-empty", "-m", f"model {version}"], root)
        register = ["make", "register", f"MODEL_VERSION={version}", f"MODEL_SHA256={index:064d}"]
        run(register, root)
    run(["git", "push", "-q", "origin", "main"], root)
    return Fork(root, origin, base / "standin" / "gh.txt", model)


PROJECT_MODEL = (
    "from mlops.params import project_model_name; print(project_model_name('params.yaml'))"
)


def rollout(fork: Fork, event: str, payload: dict[str, Any], inputs: dict[str, Any]) -> JobResult:
    github = {
        "event_name": event,
        "event": payload,
        "ref": "refs/heads/main",
        "ref_name": "main",
        "ref_type": "branch",
        "sha": fork.git("rev-parse", "HEAD"),
        "repository": REPOSITORY,
        "actor": payload.get("sender", {}).get("login", "alice"),
        "triggering_actor": payload.get("sender", {}).get("login", "alice"),
        "run_id": "4242",
    }
    environment = runner_environment([GH_STANDIN])
    environment["ACT_STANDIN_LOG"] = str(fork.calls.parent)
    workflow = WorkflowRun(
        load_workflow("rollout.yml"),
        fork.root,
        github,
        environment,
        secrets={"GITHUB_TOKEN": "ghs_token_of_the_run"},
        inputs=inputs,
    )
    job = workflow.run_job("rollout")
    fork.git("fetch", "-q", "origin", "--tags")  # the next run's checkout sees what was pushed
    return job


def by_hand(fork: Fork, **inputs: str) -> JobResult:
    return rollout(fork, "workflow_dispatch", {"inputs": inputs}, inputs)


def verdict(fork: Fork, **payload: Any) -> JobResult:
    event = {
        "action": "rollout-verdict",
        "client_payload": {
            "model_name": fork.model,
            "reasons": ["accuracy 0.94 vs 0.91"],
            **payload,
        },
        "sender": {"login": "mlops-monitor"},
    }
    return rollout(fork, "repository_dispatch", event, {})


def succeeded(job: JobResult) -> None:
    for step in job.steps:
        assert step.returncode == 0, f"{step.command}:\n{step.output[-3000:]}"


def test_a_promotion_by_hand_pushes_a_tag_saying_who_and_why_and_dispatches_the_release(
    fork: Fork,
) -> None:
    job = by_hand(fork, action="promote", version="v1.0.0", stage="prod", reason="first model")
    succeeded(job)
    assert job.commands() == ["make promote", "make release-dispatch"]
    tag = f"{fork.model}#prod#1"
    recorded = fork.origin_fields(tag)
    assert (recorded["Action"], recorded["Version"], recorded["Stage"]) == (
        "promote",
        "v1.0.0",
        "prod",
    )
    assert recorded["Actor"] == "alice" and recorded["Reason"] == "first model"
    assert recorded["Trigger"] == "workflow_dispatch"
    assert recorded["Run"] == f"https://github.com/{REPOSITORY}/actions/runs/4242"
    tagger = run(["git", "tag", "-l", "--format=%(taggername)", tag], fork.origin).stdout.strip()
    assert tagger == "github-actions[bot]"
    assert fork.dispatches()[-1] == (
        f"GH_TOKEN=set args: workflow run release.yml --ref {tag} -f reason=first model"
    )


def test_a_challenger_then_the_sidecars_promote_verdict(fork: Fork) -> None:
    succeeded(by_hand(fork, action="promote", version="v1.1.0", stage="canary", reason="try it"))
    assert fork.dispatches()[-1].endswith(f"--ref {fork.model}#canary#2 -f reason=try it")
    job = verdict(fork, champion_version="v1.0.0", challenger_version="v1.1.0", verdict="promote")
    succeeded(job)
    assert job.commands() == ["make rollout-verdict", "make release-dispatch"]
    assert job.step_outputs["verdict"]["tag"].splitlines() == [
        f"{fork.model}#prod#3",
        f"{fork.model}#canary!#4",
    ]
    recorded = fork.origin_fields(f"{fork.model}#prod#3")
    assert recorded["Actor"] == "mlops-monitor" and recorded["Trigger"] == "repository_dispatch"
    assert json.loads(recorded["Verdict"])["reasons"] == ["accuracy 0.94 vs 0.91"]
    assert fork.dispatches()[-1].startswith(
        f"GH_TOKEN=set args: workflow run release.yml --ref {fork.model}#prod#3 -f reason=the "
        "monitoring sidecar's verdict: promote"
    )


def test_hold_and_stale_verdicts_change_nothing_and_dispatch_nothing(fork: Fork) -> None:
    before = (fork.git("tag", "-l"), fork.dispatches())
    hold = verdict(fork, champion_version="v1.1.0", challenger_version="v1.0.0", verdict="hold")
    succeeded(hold)
    assert hold.commands() == ["make rollout-verdict"]  # the release step's condition is false
    assert "ignored: a hold verdict" in hold.steps[0].output  # v1.0.0 challenges nothing now
    summary = (fork.root.parent / f"{fork.root.name}-runner" / "step_summary.md").read_text()
    assert "**ignore**" in summary
    assert (fork.git("tag", "-l"), fork.dispatches()) == before


def test_a_malformed_verdict_fails_the_run_naming_the_field(fork: Fork) -> None:
    job = verdict(fork, champion_version="v1.1.0", challenger_version="v1.2.0", verdict="yes")
    assert job.failed and job.commands() == ["make rollout-verdict"]
    assert "error: client_payload.verdict 'yes': expected one of" in job.steps[0].output
    assert "Traceback" not in job.steps[0].output


def test_a_rollback_by_hand_puts_the_previous_production_version_back(fork: Fork) -> None:
    job = by_hand(fork, action="rollback", version="", stage="prod", reason="p99 doubled")
    succeeded(job)
    assert job.commands() == ["make rollback", "make release-dispatch"]
    tag = f"{fork.model}#prod#5"
    recorded = fork.origin_fields(tag)
    assert (recorded["Action"], recorded["Version"], recorded["Previous"]) == (
        "rollback",
        "v1.0.0",
        "v1.1.0",
    )
    assert fork.dispatches()[-1].endswith(f"--ref {tag} -f reason=p99 doubled")
    audit = run(["make", "-s", "audit"], fork.root).stdout
    assert "- champion (prod): v1.0.0" in audit
    assert f"| rolled back | v1.0.0 | prod | alice | p99 doubled |  | `{tag}` |" in audit


def test_a_promotion_without_a_reason_stops_before_any_tag(fork: Fork) -> None:
    before = fork.git("tag", "-l")
    job = by_hand(fork, action="promote", version="v1.2.0", stage="prod", reason="  ")
    assert job.failed and job.commands() == ["make promote"]
    assert "error: say why: --reason (REASON=... for make)" in job.steps[0].output
    assert fork.git("tag", "-l") == before
