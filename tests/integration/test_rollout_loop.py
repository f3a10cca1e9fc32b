"""The rollout loop with real processes: the scorer serving a champion and a challenger in shadow
mode, the monitoring sidecar reading the scorer's prediction log and scraping its ``/metrics``,
labels posted to the sidecar as clients would, and the GitHub API a real HTTP server on
127.0.0.1 receiving the verdict. The verdict is read back with the rollout workflow's own parser
(``mlops.gitops.rollout.parse_verdict``), so what the sidecar sends is what the workflow acts on.

- a deliberately worse challenger (trained on shuffled targets) → ``rollback``, naming the rule;
- a challenger that predicts as the champion does (another version) → ``promote``;
- a better challenger than the champion, shown by labels (the shadow pairs disagree, so only
  performance can tell which is right) → ``promote``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from onnx import TensorProto

from mlops.gitops.rollout import VERDICT_EVENT, Verdict, parse_verdict
from model_fixtures import REGRESSION_TARGET
from monitor_fixtures import FakeGitHub, Sidecar, rollout_rules, sidecar_for, wait_until
from package_fixtures import (
    constant,
    regression_package,
    rewired,
    shuffled_regressor,
    version_of,
)
from serve_fixtures import Scorer, post_json, running_scorer, table_records

CHAMPION, CHALLENGER = "v3.0.0", "v3.1.0"  # the registry versions the deployment names
MIN_RECORDS = 120
RECORDS_PER_REQUEST = 8
REQUESTS = 20  # 160 records: each role past MIN_RECORDS


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return regression_package(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def worse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shuffled_regressor(tmp_path_factory.mktemp("worse"))


@contextlib.contextmanager
def served(
    tmp_path: Path, champion: Path, challenger: Path, github: FakeGitHub, **changes: Any
) -> Iterator[tuple[Scorer, Sidecar]]:
    """The scorer with ``challenger`` in shadow mode, and its sidecar, both started."""
    with running_scorer(
        champion,
        tmp_path / "scorer",
        SCORER_CHALLENGER_DIR=str(challenger),
        SCORER_CHALLENGER_MODE="shadow",
    ) as scorer:
        sidecar = sidecar_for(
            tmp_path / "sidecar",
            champion,
            scorer.prediction_log,
            github,
            MONITOR_ROLLOUT_SETTINGS=str(
                rollout_rules(
                    tmp_path / "rollout.yaml", min_records=MIN_RECORDS, hold_seconds=0, **changes
                )
            ),
            MONITOR_SCORER_URL=scorer.url,
            MONITOR_SCORER_SCRAPE_SECONDS="0.2",
            MONITOR_CHAMPION_REGISTRY_VERSION=CHAMPION,
            MONITOR_CHALLENGER_REGISTRY_VERSION=CHALLENGER,
            MONITOR_CHALLENGER_MODEL_DIR=str(challenger),  # as the deployments mount it
        )
        sidecar.start()
        try:
            time.sleep(1.0)  # a first scrape of the scorer's counters, before any traffic
            yield scorer, sidecar
        finally:
            sidecar.kill()


def send_traffic(scorer: Scorer, sidecar: Sidecar, package: Path, labels: bool) -> None:
    """REQUESTS requests of the champion's test rows, each answered by the champion (the
    X-Model-Role header), their true targets posted to the sidecar right after when ``labels``."""
    records = table_records(package)
    targets = pd.read_parquet(package.parent / "test.parquet")[REGRESSION_TARGET].tolist()
    with httpx.Client(base_url=scorer.url, timeout=30) as client:
        for number in range(REQUESTS):
            start = (number * RECORDS_PER_REQUEST) % (len(records) - RECORDS_PER_REQUEST)
            batch = slice(start, start + RECORDS_PER_REQUEST)
            response = post_json(client, "/predict", {"records": records[batch]})
            assert response.status_code == 200, response.text
            assert response.headers["x-model-role"] == "champion"
            if labels:
                request_id = response.json()["request_id"]
                feedback = [
                    {"request_id": request_id, "index": index, "label": float(target)}
                    for index, target in enumerate(targets[batch])
                ]
                posted = httpx.post(f"{sidecar.url}/feedback", json=feedback, timeout=10)
                assert posted.status_code == 200, posted.text


def the_verdict(github: FakeGitHub, sidecar: Sidecar) -> Verdict:
    wait_until(lambda: len(github.requests) >= 1, 60, "the verdict's dispatch", sidecar)
    time.sleep(0.5)  # a second dispatch, were there one, would be here by now
    sent = [json.loads(request["body"]) for request in github.requests]
    assert len(sent) == 1, [body["client_payload"] for body in sent]  # one verdict, no flapping
    (body,) = sent
    assert body["event_type"] == VERDICT_EVENT
    verdict = parse_verdict(body["client_payload"])
    assert (verdict.champion_version, verdict.challenger_version) == (CHAMPION, CHALLENGER)
    return verdict


def shadow_lines(scorer: Scorer) -> dict[str, int]:
    lines = [json.loads(line) for line in scorer.log_lines()]
    roles: dict[str, int] = {}
    for line in lines:
        key = f"{line['role']}{' shadow' if line.get('shadow') else ''}"
        roles[key] = roles.get(key, 0) + 1
    return roles


def test_a_worse_challenger_in_shadow_is_rolled_back(
    tmp_path: Path, good: Path, worse: Path, github: FakeGitHub
) -> None:
    with served(tmp_path, good, worse, github) as (scorer, sidecar):
        send_traffic(scorer, sidecar, good, labels=False)
        verdict = the_verdict(github, sidecar)
        assert verdict.verdict == "rollback", verdict
        assert any(reason.startswith("prediction_difference") for reason in verdict.reasons)
        records = REQUESTS * RECORDS_PER_REQUEST
        assert shadow_lines(scorer) == {"champion": records, "challenger shadow": records}
        wait_until(  # a rollback needs no error counts: they may come a scrape after it
            lambda: sidecar.get("/rollout").json()["roles"]["challenger"]["requests"] == REQUESTS,
            10,
            "the scorer's counters in the sidecar's status",
            sidecar,
        )
        status = sidecar.get("/rollout").json()
        assert status["verdict"] == "rollback" and status["mode"] == "shadow"
        assert status["roles"]["champion"]["requests"] == REQUESTS  # the scorer's own count
        assert status["roles"]["challenger"]["requests"] == REQUESTS


def test_a_challenger_that_predicts_as_the_champion_is_promoted(
    tmp_path: Path, good: Path, github: FakeGitHub
) -> None:
    same = rewired(good, tmp_path / "same", "same-predictions", lambda _: [zero()])
    assert version_of(same) != version_of(good)
    with served(tmp_path, good, same, github) as (scorer, sidecar):
        send_traffic(scorer, sidecar, good, labels=False)
        verdict = the_verdict(github, sidecar)
    assert verdict.verdict == "promote", verdict
    assert verdict.window["records"] == {"champion": 160, "challenger": 160}


def test_a_better_challenger_shown_by_labels_is_promoted(
    tmp_path: Path, good: Path, worse: Path, github: FakeGitHub
) -> None:
    """The worse model is the champion here: the pairs disagree as much as in the rollback
    test, and the labels (required before any verdict) show the challenger is the better."""
    with served(
        tmp_path,
        worse,
        good,
        github,
        performance__required=True,
        performance__min_labelled=MIN_RECORDS,
    ) as (scorer, sidecar):
        send_traffic(scorer, sidecar, good, labels=True)
        verdict = the_verdict(github, sidecar)
        performance = sidecar.get("/rollout").json()["roles"]
    assert verdict.verdict == "promote", verdict.reasons
    champion_rmse = performance["champion"]["performance"]["rmse"]
    challenger_rmse = performance["challenger"]["performance"]["rmse"]
    assert challenger_rmse < champion_rmse, performance


def zero() -> Any:
    """An ONNX node writing ``zero`` = 0.0: the model plus it predicts what the model does."""
    return constant("zero", [0.0], TensorProto.FLOAT)
