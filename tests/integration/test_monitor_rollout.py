"""The sidecar as a real process with a challenger in shadow mode: a regressor whose challenger
predicts worse, the scorer's ``/metrics`` and the GitHub API each a real HTTP server on
127.0.0.1. The verdict is rollback, sent once as ``rollout-verdict`` (read back with the
workflow's own parser), and neither a clean restart nor a hard kill sends it again. A bad
thresholds file stops the start with one line naming the file and the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.gitops.rollout import VERDICT_EVENT, parse_verdict
from monitor_fixtures import (
    GITHUB_TOKEN,
    FakeGitHub,
    FakeScorer,
    Sidecar,
    fake_scorer,
    role_lines,
    rollout_rules,
    sidecar_for,
    wait_until,
    write_package,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AREA, TOWN = "Wohnfläche (m²)", "Ort [PLZ]"


def flats(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    area = generator.normal(80.0, 20.0, rows)
    area[::13] = np.nan
    return pd.DataFrame({AREA: area, TOWN: generator.choice(["Köln 50667", "Bonn 53111"], rows)})


def rent(rows: pd.DataFrame) -> list[float]:
    return [float(value) for value in 12.0 * rows[AREA].fillna(80.0) + 100.0]


@pytest.fixture
def scorer() -> Iterator[FakeScorer]:
    with fake_scorer() as fake:
        yield fake


@pytest.fixture
def sidecar(tmp_path: Path, github: FakeGitHub, scorer: FakeScorer) -> Iterator[Sidecar]:
    train = flats(2000, seed=0)
    package = write_package(
        tmp_path / "package", train, {"mae": 5.0, "rmse": 7.0}, predictions=rent(train)
    )
    logs = tmp_path / "logs"
    running = sidecar_for(
        logs,
        package,
        logs / "predictions.jsonl",
        github,
        MONITOR_ROLLOUT_SETTINGS=str(
            rollout_rules(tmp_path / "rollout.yaml", min_records=150, hold_seconds=0)
        ),
        MONITOR_SCORER_URL=scorer.url,
        MONITOR_SCORER_SCRAPE_SECONDS="0.2",
        MONITOR_CHAMPION_REGISTRY_VERSION="v2.0.0",
        MONITOR_CHALLENGER_REGISTRY_VERSION="v2.1.0",
    )
    yield running
    running.kill()


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


def shadow_traffic(log: Path, scorer: FakeScorer, rows: pd.DataFrame, prefix: str) -> None:
    """The champion's answers and the challenger's copies, 30 % off the champion's rent."""
    champion = rent(rows)
    challenger = [value * 1.3 for value in champion]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    append(log, role_lines(rows.to_dict("records"), champion, challenger, prefix, stamp=stamp))
    scorer.add("champion", "champ-1", "ok", len(rows))
    scorer.add("challenger", "chall-2", "ok", len(rows))


def test_a_worse_shadow_challenger_is_rolled_back_once(
    sidecar: Sidecar, github: FakeGitHub, scorer: FakeScorer
) -> None:
    log = Path(sidecar.environment["PREDICTION_LOG"])
    sidecar.start()
    wait_until(lambda: scorer.scrapes >= 1, 20, "the first scrape of the scorer", sidecar)
    shadow_traffic(log, scorer, flats(200, seed=1), "a")
    wait_until(lambda: len(github.requests) >= 1, 30, "the verdict's dispatch", sidecar)
    (request,) = github.requests
    body = json.loads(request["body"])
    assert body["event_type"] == VERDICT_EVENT
    assert request["path"] == "/repos/owner/template/dispatches"
    verdict = parse_verdict(body["client_payload"])
    assert (verdict.verdict, verdict.champion_version, verdict.challenger_version) == (
        "rollback",
        "v2.0.0",
        "v2.1.0",
    )
    assert any(
        reason.startswith("prediction_difference: mean |difference|")
        and "above shadow.max_prediction_difference 0.25" in reason
        for reason in verdict.reasons
    ), verdict.reasons
    assert verdict.window["records"] == {"champion": 200, "challenger": 200}

    # the verdict needs no error counts (the difference alone breaks a rule): the scorer's
    # counters may reach the status a scrape (0.2 s) after it
    wait_until(
        lambda: sidecar.get("/rollout").json()["roles"]["challenger"]["requests"] is not None,
        10,
        "the scorer's counters in the status",
        sidecar,
    )
    status = sidecar.get("/rollout").json()
    assert status["verdict"] == "rollback" and status["mode"] == "shadow"
    assert status["roles"]["challenger"]["requests"] == 200  # from the scorer's counters
    assert status["prediction_difference"] > 0.25
    drift = sidecar.get("/drift").json()
    assert drift["window_size"] == 200  # the answered lines only
    metrics = sidecar.metrics()
    assert metrics[("monitor_rollout_verdict", (("verdict", "rollback"),))] == 1.0
    assert metrics[("monitor_rollout_pairs", ())] == 200
    assert metrics[("monitor_rollout_verdict_dispatches_total", (("outcome", "sent"),))] == 1
    assert "Rollout" in sidecar.get("/").text
    assert GITHUB_TOKEN not in sidecar.output()

    # a clean restart, then a hard kill once the state holds the verdict: never sent again
    sidecar.stop()
    sidecar.start()
    shadow_traffic(log, scorer, flats(200, seed=2), "b")
    wait_until(lambda: sidecar.records_read() == 800, 20, "the lines written after the restart")
    state = Path(sidecar.environment["MONITOR_STATE_FILE"])
    assert json.loads(state.read_text())["rollout_verdicts_sent"] == [
        ["v2.0.0", "v2.1.0", "rollback"]
    ]
    assert sidecar.process is not None
    sidecar.process.kill()
    sidecar.process.wait(timeout=10)
    sidecar.starts -= 1  # a killed process never says "Application shutdown complete."
    sidecar.start()
    shadow_traffic(log, scorer, flats(200, seed=3), "c")
    wait_until(
        lambda: sidecar.get("/rollout").json()["verdict"] == "rollback", 20, "the verdict again"
    )
    time.sleep(1.0)  # ten more polls holding the verdict
    assert len(github.requests) == 1
    sidecar.stop()


def test_a_bad_thresholds_file_stops_the_start_naming_the_file_and_the_key(
    sidecar: Sidecar, tmp_path: Path
) -> None:
    rules = yaml.safe_load((PROJECT_ROOT / "deploy" / "rollout.yaml").read_text())
    del rules["latency"]["max_p95_ratio"]
    bad = tmp_path / "bad rollout.yaml"
    bad.write_text(yaml.safe_dump(rules))
    environment = sidecar.environment | {"MONITOR_ROLLOUT_SETTINGS": str(bad)}
    result = subprocess.run(
        [sys.executable, "-m", "mlops.monitor"],
        env=environment,
        cwd=sidecar.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f"{bad}: missing key(s) latency.max_p95_ratio" in result.stderr
    assert "Traceback" not in result.stderr
