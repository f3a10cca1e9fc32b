import json
import logging
from typing import Any

import pytest
from pydantic import SecretStr

from mlops.monitor.detect import DriftReport, FeatureDrift, PredictionDrift
from mlops.monitor.feedback import PerformanceReport
from mlops.monitor.reference import Reference
from mlops.monitor.retrain import GitHubDispatcher, RetrainTrigger, retrain_payload
from monitor_fixtures import FakeGitHub

TOKEN = "ghp_test_token_0123456789"


def payload() -> dict[str, Any]:
    validation = {"accuracy": 0.9, "macro_f1": 0.9}
    reference = Reference("penguins", "3", (), {"a": 1.0}, validation=validation)
    feature = FeatureDrift("x", "numeric", 0.71, 0.2, 0.0, 0.0, 0.3, ("psi", "out_of_range"))
    drift = DriftReport(500, (feature,), PredictionDrift(0.01, 0.2, False, {"a": 1.0}))
    performance = PerformanceReport(0, {"accuracy": None, "macro_f1": None}, validation, False)
    return retrain_payload(reference, drift, performance, alert_since=1_700_000_000.0, now=1.7e9)


def test_a_regressors_payload_has_the_same_shape_with_its_own_metrics() -> None:
    validation = {"mae": 2.0, "rmse": 2.5}
    reference = Reference("prices", "4", (), {}, validation=validation, task="regression")
    feature = FeatureDrift("Floor area (m²)", "numeric", 0.5, 0.2, 0.0, 0.0, 0.0, ("psi",))
    prediction = PredictionDrift(0.31, 0.2, True, {}, numeric=True, mean=14.0, reference_mean=11.0)
    performance = PerformanceReport(80, {"mae": 2.9, "rmse": 3.4}, validation, True)
    sent = retrain_payload(
        reference, DriftReport(500, (feature,), prediction), performance, None, 1.7e9
    )
    assert set(sent) == set(payload()) and len(sent) <= 10
    assert sent["prediction"] == {"psi": 0.31, "drifted": True}
    assert sent["reasons"] == ["drift", "performance"]
    assert sent["drifted_features"] == {"Floor area (m²)": {"psi": 0.5, "reasons": ["psi"]}}
    assert sent["performance"] == {
        "labelled": 80,
        "mae": 2.9,
        "rmse": 3.4,
        "reference_mae": 2.0,
        "reference_rmse": 2.5,
        "degraded": True,
    }


def test_the_dispatch_is_the_exact_github_request(github: FakeGitHub) -> None:
    dispatcher = GitHubDispatcher(github.url, "owner/repo", SecretStr(TOKEN), timeout=5)
    assert dispatcher.send(payload()) == "sent"
    (request,) = github.requests
    assert (request["method"], request["path"]) == ("POST", "/repos/owner/repo/dispatches")
    headers = request["headers"]  # case-insensitive, as HTTP header names are
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/vnd.github+json"
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"
    body = json.loads(request["body"])
    assert body["event_type"] == "retrain"
    sent = body["client_payload"]
    assert sent == payload()
    assert sent["model_version"] == "3" and sent["reasons"] == ["drift"]
    assert sent["drifted_features"] == {"x": {"psi": 0.71, "reasons": ["psi", "out_of_range"]}}
    assert len(sent) <= 10  # GitHub's limit on client_payload's top-level keys


def test_the_alert_is_signalled_once_per_cool_down(github: FakeGitHub) -> None:
    dispatcher = GitHubDispatcher(github.url, "owner/repo", SecretStr(TOKEN), timeout=5)
    trigger = RetrainTrigger(hold_seconds=60, cooldown_seconds=3600, retry_seconds=300)
    sent_at = []
    for minute in range(0, 150):  # an alert holding for 2.5 hours, one poll a minute
        now = 1_000_000.0 + 60 * minute
        if trigger.due(alerting=True, now=now):
            trigger.record(dispatcher.send(payload()), now)
            sent_at.append(minute)
    assert sent_at == [1, 61, 121]
    assert len(github.requests) == 3


def test_the_hold_restarts_when_the_alert_clears() -> None:
    trigger = RetrainTrigger(hold_seconds=60, cooldown_seconds=3600, retry_seconds=300)
    assert not trigger.due(True, 0.0)
    assert not trigger.due(False, 50.0)
    assert not trigger.due(True, 70.0)
    assert trigger.due(True, 130.0)


def test_a_failed_dispatch_is_retried_after_the_retry_delay_not_at_once(
    github: FakeGitHub,
) -> None:
    github.status = 500
    dispatcher = GitHubDispatcher(github.url, "owner/repo", SecretStr(TOKEN), timeout=5)
    trigger = RetrainTrigger(hold_seconds=0, cooldown_seconds=3600, retry_seconds=300)
    outcomes = []
    for second in range(0, 700, 10):
        if trigger.due(True, float(second)):
            outcome = dispatcher.send(payload())
            trigger.record(outcome, float(second))
            outcomes.append((second, outcome))
    assert outcomes == [(0, "failed"), (300, "failed"), (600, "failed")]


def test_without_a_token_nothing_is_sent_and_the_log_says_what_would_be(
    github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = GitHubDispatcher(github.url, "owner/repo", None, timeout=5)
    with caplog.at_level(logging.WARNING):
        assert dispatcher.send(payload()) == "dry_run"
    assert github.requests == []
    assert "would POST" in caplog.text and "/repos/owner/repo/dispatches" in caplog.text
    assert '"event_type": "retrain"' in caplog.text


def test_the_token_is_never_logged(github: FakeGitHub, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for status in (204, 401):
            github.status = status
            GitHubDispatcher(github.url, "owner/repo", SecretStr(TOKEN), timeout=5).send(payload())
    assert len(github.requests) == 2
    assert TOKEN not in caplog.text


def test_an_unreachable_api_fails_without_raising(github: FakeGitHub) -> None:
    dispatcher = GitHubDispatcher("http://127.0.0.1:9", "owner/repo", SecretStr(TOKEN), timeout=2)
    assert dispatcher.send(payload()) == "failed"


def test_a_redirect_is_not_followed_so_the_token_stays_with_the_api(github: FakeGitHub) -> None:
    github.status, github.location = 307, "http://127.0.0.1:9/elsewhere"
    dispatcher = GitHubDispatcher(github.url, "owner/repo", SecretStr(TOKEN), timeout=5)
    assert dispatcher.send(payload()) == "failed"
    assert len(github.requests) == 1
