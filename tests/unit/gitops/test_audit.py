"""The audit history from the tags alone, and the deployment records the release writes."""

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, run
from mlops.core.errors import StageError
from mlops.gitops.audit import current, history, render_json, render_text
from mlops.gitops.deployments import (
    deployed_image,
    deployment_message,
    deployment_tag,
    parse_deployment,
    pod_images,
    read_deployments,
)
from mlops.gitops.records import format_record
from mlops.gitops.rollout import RegistryEvent, rollout_state

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
VERDICT = json.dumps({"verdict": "promote", "reasons": ["accuracy 0.93 | 0.91"], "window": {}})


def event(
    seconds: int, kind: str, version: str, stage: str | None, fields: dict[str, str]
) -> RegistryEvent:
    tag = f"penguins@{version}" if stage is None else f"penguins#{stage}#{seconds}"
    return RegistryEvent(
        tag=tag,
        kind=kind,  # type: ignore[arg-type]
        version=version,
        stage=stage,
        at=START + timedelta(seconds=seconds),
        counter=seconds,
        author="github-actions[bot]",
        message=format_record(f"{kind} {version}", fields),
        commit="c" * 40,
    )


def deployment(seconds: int, version: str, ref: str, result: str) -> object:
    context = {
        "Image": "ghcr.io/o/r@sha256:1",
        "Ref": ref,
        "Actor": "bob",
        "Reason": "",
        "Run": "u",
    }
    message = deployment_message("penguins", version, "production", result, context)
    at = START + timedelta(seconds=seconds)
    return parse_deployment(f"deploy/production/{seconds}.1", message, at)


@pytest.fixture
def events() -> list[RegistryEvent]:
    registered = {"Action": "register", "Actor": "alice", "Run": "https://r/1"}
    return [
        event(0, "registration", "v1.0.0", None, registered),
        event(1, "registration", "v1.1.0", None, {}),
        event(
            2,
            "assignment",
            "v1.0.0",
            "prod",
            {"Action": "promote", "Actor": "alice", "Reason": "first"},
        ),
        event(
            3,
            "assignment",
            "v1.1.0",
            "canary",
            {"Action": "promote", "Actor": "carol", "Reason": "try"},
        ),
        event(
            5,
            "assignment",
            "v1.1.0",
            "prod",
            {
                "Action": "promote",
                "Actor": "mlops-monitor",
                "Reason": "verdict",
                "Verdict": VERDICT,
            },
        ),
        event(
            6, "unassignment", "v1.1.0", "canary", {"Action": "promote", "Actor": "mlops-monitor"}
        ),
        event(
            9,
            "assignment",
            "v1.0.0",
            "prod",
            {"Action": "rollback", "Actor": "dave", "Reason": "p99"},
        ),
    ]


def test_the_history_names_each_event_who_and_why_oldest_first(events: list[RegistryEvent]) -> None:
    deployments = [deployment(7, "v1.1.0", "penguins#prod#5", "success")]
    entries = history(reversed(events), deployments)  # type: ignore[arg-type]
    assert [(e.event, e.version, e.where, e.who) for e in entries] == [
        ("registered", "v1.0.0", "", "alice"),
        ("registered", "v1.1.0", "", "github-actions[bot]"),  # a tag without fields: its tagger
        ("promoted", "v1.0.0", "prod", "alice"),
        ("promoted", "v1.1.0", "canary", "carol"),
        ("promoted", "v1.1.0", "prod", "mlops-monitor"),
        ("left (promoted)", "v1.1.0", "canary", "mlops-monitor"),
        ("deployed", "v1.1.0", "production", "bob"),
        ("rolled back", "v1.0.0", "prod", "dave"),
    ]
    assert entries[0].run == "https://r/1" and entries[-1].why == "p99"
    assert entries[4].verdict == "promote (accuracy 0.93 | 0.91)"
    deployed = entries[6]
    # the deployment released the verdict's tag: it shows that verdict, and its health
    assert (deployed.verdict, deployed.health) == (entries[4].verdict, "healthy")


def test_the_current_state_and_each_environments_last_deployment(
    events: list[RegistryEvent],
) -> None:
    deployments = [
        deployment(7, "v1.1.0", "penguins#prod#5", "success"),
        deployment(10, "v1.0.0", "penguins#prod#9", "failure"),
    ]
    entries = history(events, deployments)  # type: ignore[arg-type]
    lines = current(rollout_state(events), entries)
    assert lines[:2] == ["champion (prod): v1.0.0", "challenger: none"]
    assert lines[2].startswith("production: v1.0.0, failed, deployed 2026-11-02T09:00:10+00:00")


def test_text_and_json_renderings(events: list[RegistryEvent]) -> None:
    entries = history(events, [deployment(7, "v1.1.0", "penguins#prod#5", "cancelled")])  # type: ignore[list-item]
    state = rollout_state(events)
    text = render_text("penguins", state, entries)
    rows = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert len(rows) == len(entries)
    assert all(row.count(" | ") == 8 for row in rows)  # a | inside a cell is escaped
    assert "accuracy 0.93 \\| 0.91" in text and "deployed: cancelled" in text
    document = json.loads(render_json("penguins", state, entries))
    assert document["champion"] == "v1.0.0" and document["challenger"] is None
    assert document["history"][0]["at"] == "2026-11-02T09:00:00+00:00"


def test_deployment_records_and_their_names() -> None:
    assert deployment_tag("production", "42", "2") == "deploy/production/42.2"
    with pytest.raises(StageError, match="environment 'Prod uction'"):
        deployment_tag("Prod uction", "42", "1")
    with pytest.raises(StageError, match="deploy result 'skipped'"):
        deployment_message("penguins", "v1.0.0", "production", "skipped", {})
    assert parse_deployment("penguins#prod#3", "x", START) is None


def test_a_deployment_is_recorded_with_the_standard_library_only(tmp_path: Path) -> None:
    """The release's record job runs it with the runner's python3, nothing installed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "ci@example.com"],
        ["git", "config", "user.name", "ci"],
        ["git", "commit", "-q", "--allow-empty", "-m", "model"],
        ["git", "tag", "-a", "penguins#prod#3", "-m", "promote\n\nReason: better at night"],
    ):
        run(command, repo)
    commit = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    arguments = ["--environment", "production", "--result", "success", "--model", "penguins"]
    arguments += ["--champion", "v1.2.0", "--commit", commit, "--ref-name", "penguins#prod#3"]
    arguments += ["--run-number", "12", "--image", "ghcr.io/o/r@sha256:1", "--actor", "erin"]
    command = [sys.executable, "-S", "-m", "mlops.gitops.deployments", "record", *arguments]
    result = run(command, repo, check=False, env={"PYTHONPATH": str(PROJECT_ROOT / "src")})
    assert result.returncode == 0, result.stderr
    assert "recorded deploy/production/12.1: deploy penguins v1.2.0 to production: healthy" in (
        result.stdout
    )
    (recorded,) = read_deployments(repo, "penguins")
    assert recorded.fields["Reason"] == "better at night"  # from the tag the release ran on
    assert recorded.fields["Actor"] == "erin" and recorded.version == "v1.2.0"
    assert read_deployments(repo, "another model") == []
    again = run(command, repo, check=False, env={"PYTHONPATH": str(PROJECT_ROOT / "src")})
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


CHAMPION_IMAGE = "ghcr.io/o/r@sha256:" + "c" * 64
CHALLENGER_IMAGE = "ghcr.io/o/r@sha256:" + "e" * 64


def git_repo(path: Path, *tags: tuple[str, str]) -> str:
    path.mkdir()
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "ci@example.com"],
        ["git", "config", "user.name", "ci"],
        ["git", "commit", "-q", "--allow-empty", "-m", "model"],
    ):
        run(command, path)
    for tag, message in tags:
        run(["git", "tag", "-a", tag, "-m", message], path)
    return run(["git", "rev-parse", "HEAD"], path).stdout.strip()


def test_a_deployment_with_a_challenger_records_which_role_ran_which_version(
    tmp_path: Path,
) -> None:
    """A canary's release built the challenger's image; the champion's came from before. The
    record says which version ran in which role, from which image."""
    repo = tmp_path / "repo"
    commit = git_repo(repo, ("penguins#canary#4", "challenge\n\nReason: try it at night"))
    arguments = ["--environment", "production", "--result", "success", "--model", "penguins"]
    arguments += ["--champion", "v1.2.0", "--challenger", "v1.3.0", "--challenger-mode", "canary"]
    arguments += ["--role", "challenger", "--image", CHALLENGER_IMAGE]
    arguments += ["--companion-image", CHAMPION_IMAGE, "--commit", commit]
    arguments += ["--ref-name", "penguins#canary#4", "--run-number", "13"]
    command = [sys.executable, "-S", "-m", "mlops.gitops.deployments", "record", *arguments]
    env = {"PYTHONPATH": str(PROJECT_ROOT / "src")}
    result = run(command, repo, check=False, env=env)
    assert result.returncode == 0, result.stderr
    subject = "deploy penguins v1.2.0 with the canary challenger v1.3.0 to production: healthy"
    assert f"recorded deploy/production/13.1: {subject}" in result.stdout
    (recorded,) = read_deployments(repo, "penguins")
    assert (recorded.version, recorded.fields["Image"]) == ("v1.2.0", CHAMPION_IMAGE)
    assert (recorded.challenger, recorded.mode) == ("v1.3.0", "canary")
    assert recorded.fields["Challenger-Image"] == CHALLENGER_IMAGE
    assert recorded.fields["Reason"] == "try it at night"
    bad_mode = [*command[:-1], "14"]
    bad_mode[bad_mode.index("canary")] = "blue-green"
    refused = run(bad_mode, repo, check=False, env=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "--challenger-mode 'blue-green': expected one of ('canary', 'shadow')" in refused.stderr


def test_the_images_of_both_roles_and_where_a_version_ran_before() -> None:
    assert pod_images("champion", "built", "other") == ("built", "other")
    assert pod_images("challenger", "built", "other") == ("other", "built")
    with pytest.raises(StageError, match="release role 'prod'"):
        pod_images("prod", "built", "")
    context = {"Image": CHAMPION_IMAGE, "Challenger": "v1.3.0", "Challenger-Mode": "shadow"}
    older = parse_deployment(
        "deploy/production/1.1",
        deployment_message("penguins", "v1.2.0", "production", "success", {"Image": "old@x"}),
        START,
    )
    newer = parse_deployment(
        "deploy/production/2.1",
        deployment_message(
            "penguins",
            "v1.2.0",
            "production",
            "failure",
            {**context, "Challenger-Image": CHALLENGER_IMAGE},
        ),
        START + timedelta(minutes=5),
    )
    assert older is not None and newer is not None
    found = [older, newer]
    assert deployed_image(found, "v1.2.0") == CHAMPION_IMAGE  # the newest, pinned by digest
    assert deployed_image(found, "v1.3.0") == CHALLENGER_IMAGE  # it ran as the challenger
    assert deployed_image(found, "v1.4.0") is None
    assert deployed_image([older], "v1.2.0") is None  # not pinned: the tag's image instead


def test_the_audit_shows_the_challenger_each_deployment_ran(events: list[RegistryEvent]) -> None:
    fields = {
        "Image": CHAMPION_IMAGE,
        "Challenger": "v1.1.0",
        "Challenger-Mode": "canary",
        "Challenger-Image": CHALLENGER_IMAGE,
        "Ref": "penguins#canary#3",
        "Actor": "carol",
    }
    message = deployment_message("penguins", "v1.0.0", "production", "success", fields)
    assert message.startswith(
        "deploy penguins v1.0.0 with the canary challenger v1.1.0 to production: healthy\n"
    )
    deployed = parse_deployment("deploy/production/4.1", message, START + timedelta(seconds=4))
    entries = history(events[:4], [deployed])  # type: ignore[list-item]
    entry = entries[-1]
    assert (entry.version, entry.challenger, entry.challenger_mode) == (
        "v1.0.0",
        "v1.1.0",
        "canary",
    )
    lines = current(rollout_state(events[:4]), entries)
    assert lines[1] == "challenger: v1.1.0 (canary)"
    serving = "production: v1.0.0 with the canary challenger v1.1.0, healthy"
    assert lines[2].startswith(f"{serving}, deployed 2026-11-02T09:00:04")
    text = render_text("penguins", rollout_state(events[:4]), entries)
    assert "| deployed: healthy | v1.0.0 with the canary challenger v1.1.0 | production |" in text
    document = json.loads(render_json("penguins", rollout_state(events[:4]), entries))
    assert document["history"][-1]["challenger"] == "v1.1.0"
    assert document["history"][-1]["challenger_mode"] == "canary"
