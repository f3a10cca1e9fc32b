"""The sidecar's engine with a challenger: log lines as the scorer writes them (role, shadow
copies), labels from the feedback file, the scorer's counters and the GitHub API each a real HTTP
server on 127.0.0.1; the verdict is sent once, and a restart does not send it again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from mlops.gitops.rollout import VERDICT_EVENT, parse_verdict
from mlops.monitor.app import create_app
from mlops.monitor.reference import load_reference
from mlops.monitor.retrain import GitHubDispatcher
from mlops.monitor.service import Monitor
from mlops.monitor.settings import MonitorSettings
from mlops.monitor.state import load_state
from monitor_fixtures import FakeGitHub, FakeScorer, fake_scorer, role_lines, write_package

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TOKEN = "ghp_rollout_test_token"
WEIGHT, ISLAND = "Körpermasse [g]", "Insel / île"
CLASSES = ["Adélie", "Gentoo"]
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, the lines' time


def frame(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    weights = generator.normal(4200.0, 400.0, rows)
    weights[::17] = np.nan  # missing values, as traffic has them
    return pd.DataFrame({WEIGHT: weights, ISLAND: generator.choice(["Biscoe", "Dream"], rows)})


def truth(rows: pd.DataFrame) -> list[str]:
    return ["Gentoo" if weight > 4200 else "Adélie" for weight in rows[WEIGHT].fillna(0)]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scorer() -> Iterator[FakeScorer]:
    with fake_scorer() as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, scorer: FakeScorer, github: FakeGitHub) -> MonitorSettings:
    train = frame(2000, seed=0)
    package = write_package(
        tmp_path / "model", train, {"accuracy": 0.9, "macro_f1": 0.9}, labels=truth(train)
    )
    rules = yaml.safe_load((PROJECT_ROOT / "deploy" / "rollout.yaml").read_text())
    rules |= {"min_records": 100, "hold_seconds": 0}
    rules["performance"]["min_labelled"] = 40
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(rules))
    logs = tmp_path / "logs"
    return MonitorSettings(
        prediction_log=logs / "predictions.jsonl",
        model_dir=package,
        feedback_log=logs / "feedback.jsonl",
        state_file=logs / "state.json",
        label_log=logs / "labels.jsonl",
        ship_state_file=logs / "ship_state.json",
        window_size=1000,
        min_window_size=100,
        poll_interval_seconds=0.05,
        rollout_settings=tmp_path / "rollout.yaml",
        scorer_url=scorer.url,
        scorer_scrape_seconds=1,
        champion_registry_version="v1.4.0",
        challenger_registry_version="v1.5.0",
        github_repository="owner/template",
        github_token=SecretStr(TOKEN),
        github_api_url=github.url,
    )


def make_monitor(settings: MonitorSettings, clock: Clock) -> Monitor:
    dispatcher = GitHubDispatcher(
        settings.github_api_url, settings.github_repository, settings.github_token, timeout=5
    )
    reference = load_reference(settings.model_dir)
    return Monitor(settings, reference, load_state(settings.state_file), dispatcher, clock=clock)


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


def traffic(scorer: FakeScorer, requests: int, challenger_errors: int = 0) -> None:
    """What the scorer counts while it answers ``requests`` and scores their shadow copies."""
    scorer.add("champion", "champ-1", "ok", requests)
    scorer.add("challenger", "chall-2", "ok", requests - challenger_errors)
    scorer.add("challenger", "chall-2", "error", challenger_errors)


def poll(monitor: Monitor, clock: Clock, times: int = 2) -> None:
    for _ in range(times):
        clock.now += 1  # a scrape is due every second
        monitor.poll()


def verdicts(github: FakeGitHub) -> list[dict[str, Any]]:
    bodies = [json.loads(request["body"]) for request in github.requests]
    assert all(body["event_type"] == VERDICT_EVENT for body in bodies), bodies
    return [body["client_payload"] for body in bodies]


def test_a_worse_shadow_challenger_is_rolled_back_once_across_a_restart(
    settings: MonitorSettings, scorer: FakeScorer, github: FakeGitHub
) -> None:
    clock = Clock()
    rows = frame(300, seed=1)
    champion = truth(rows)
    worse = [label if n % 2 else "Gentoo" for n, label in enumerate(champion)]  # ~75 % agree
    monitor = make_monitor(settings, clock)
    traffic(scorer, 0)
    monitor.poll()  # the first scrape: the counters' baseline
    append(settings.prediction_log, role_lines(rows.to_dict("records"), champion, worse, "s"))
    traffic(scorer, 300)
    poll(monitor, clock)
    snapshot = monitor.snapshot()
    assert snapshot.counts.logs["predictions"].records == 600  # both roles' lines are read
    assert snapshot.drift.window_size == 300  # drift sees what clients got, each request once
    rollout = snapshot.rollout
    assert (rollout.verdict, rollout.mode, rollout.pairs) == ("rollback", "shadow", 300)
    assert rollout.roles["challenger"].counts is not None
    assert rollout.roles["challenger"].counts.requests == 300
    (payload,) = verdicts(github)
    verdict = parse_verdict(payload)
    assert (verdict.verdict, verdict.champion_version, verdict.challenger_version) == (
        "rollback",
        "v1.4.0",
        "v1.5.0",
    )
    assert verdict.model_name == "toy"
    assert verdict.reasons[0].startswith("agreement: 0.7")
    assert "below shadow.min_agreement 0.8" in verdict.reasons[0]
    assert github.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert monitor.snapshot().counts.verdict_dispatches["sent"] == 1
    poll(monitor, clock, times=3)
    assert len(github.requests) == 1  # once per (champion, challenger, verdict)
    monitor.stop()
    assert load_state(settings.state_file).verdicts_sent == [("v1.4.0", "v1.5.0", "rollback")]

    restarted = make_monitor(settings, clock)
    more = frame(200, seed=2)
    more_champion = truth(more)
    more_worse = [label if n % 2 else "Gentoo" for n, label in enumerate(more_champion)]
    append(
        settings.prediction_log, role_lines(more.to_dict("records"), more_champion, more_worse, "t")
    )
    traffic(scorer, 200)
    poll(restarted, clock, times=3)
    assert restarted.snapshot().rollout.verdict == "rollback"
    assert len(github.requests) == 1  # remembered across the restart
    assert restarted.snapshot().counts.verdict_dispatches["sent"] == 1
    restarted.stop()


def test_labels_join_both_roles_and_the_answered_performance_counts_each_request_once(
    settings: MonitorSettings, scorer: FakeScorer, github: FakeGitHub
) -> None:
    """A better challenger: per-role performance from the labels decides (promote), and a
    shadow line written after its label arrived still joins it."""
    clock = Clock()
    rows = frame(200, seed=3)
    right = truth(rows)
    champion = [label if n % 4 else "Gentoo" for n, label in enumerate(right)]  # ~88 % right
    monitor = make_monitor(settings, clock)
    traffic(scorer, 0)
    monitor.poll()
    lines = role_lines(rows.to_dict("records"), champion, right, "p").splitlines(keepends=True)
    answered, copies = lines[0::2], lines[1::2]
    append(settings.prediction_log, b"".join(answered))  # the shadow copies are written later
    traffic(scorer, 200)
    poll(monitor, clock)
    feedback = [{"request_id": f"p-{n}", "label": right[n]} for n in range(100)]
    append(settings.feedback_log, b"".join(json.dumps(item).encode() + b"\n" for item in feedback))
    poll(monitor, clock)
    assert monitor.snapshot().rollout.verdict is None  # no challenger line read yet
    append(settings.prediction_log, b"".join(copies))
    poll(monitor, clock)
    snapshot = monitor.snapshot()
    assert snapshot.counts.feedback["matched"] == 100
    assert snapshot.performance.labelled == 100  # the answered predictions only
    roles = snapshot.rollout.roles
    assert (roles["champion"].labelled, roles["challenger"].labelled) == (100, 100)
    assert roles["challenger"].performance["accuracy"] == 1.0
    expected = sum(c == r for c, r in zip(champion[:100], right[:100], strict=True)) / 100
    assert roles["champion"].performance["accuracy"] == pytest.approx(expected)
    assert snapshot.rollout.verdict == "promote", snapshot.rollout.reasons
    (payload,) = verdicts(github)
    assert parse_verdict(payload).verdict == "promote"
    assert payload["window"]["labelled"] == {"champion": 100, "challenger": 100}

    client = TestClient(create_app(monitor))  # not started: the handlers read the snapshot
    body = client.get("/rollout").json()
    assert body["verdict"] == "promote" and body["mode"] == "shadow"
    assert body["registry_versions"] == {"champion": "v1.4.0", "challenger": "v1.5.0"}
    assert body["roles"]["challenger"]["performance"]["accuracy"] == 1.0
    assert body["roles"]["challenger"]["requests"] == 200
    families = {
        family.name: family
        for family in text_string_to_metric_families(client.get("/metrics").text)
    }
    verdict = {s.labels["verdict"]: s.value for s in families["monitor_rollout_verdict"].samples}
    assert verdict == {"promote": 1.0, "hold": 0.0, "rollback": 0.0}
    records = {s.labels["role"]: s.value for s in families["monitor_rollout_records"].samples}
    assert records == {"champion": 200.0, "challenger": 200.0}
    accuracy = {
        s.labels["role"]: s.value for s in families["monitor_rollout_accuracy_ratio"].samples
    }
    assert accuracy == {"champion": pytest.approx(expected), "challenger": 1.0}
    (info,) = families["monitor_rollout_info"].samples
    assert info.labels["challenger_registry_version"] == "v1.5.0"
    assert info.labels["challenger_model_version"] == "chall-2"
    agreeing = sum(c == r for c, r in zip(champion, right, strict=True)) / 200
    assert families["monitor_rollout_agreement_ratio"].samples[0].value == pytest.approx(agreeing)
    sent = {
        s.labels["outcome"]: s.value for s in families["monitor_rollout_verdict_dispatches"].samples
    }
    assert sent["sent"] == 1.0
    page = client.get("/").text
    assert "<h2>Rollout</h2>" in page and "promote" in page and "chall-2" in page
    monitor.stop()


def test_without_a_challenger_nothing_is_decided_or_sent(
    settings: MonitorSettings, scorer: FakeScorer, github: FakeGitHub
) -> None:
    clock = Clock()
    rows = frame(150, seed=4)
    append(settings.prediction_log, role_lines(rows.to_dict("records"), truth(rows), None, "o"))
    monitor = make_monitor(settings, clock)
    poll(monitor, clock)
    snapshot = monitor.snapshot()
    assert snapshot.rollout.verdict is None and snapshot.drift.window_size == 150
    assert snapshot.rollout.roles["champion"].records == 150
    assert github.requests == []
    client = TestClient(create_app(monitor))
    text = client.get("/metrics").text
    assert "monitor_rollout_active 0.0" in text and "monitor_rollout_verdict{" not in text
    assert "<h2>Rollout</h2>" not in client.get("/").text
    monitor.stop()
