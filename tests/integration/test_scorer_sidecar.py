"""The deployed pair over real HTTP: the real scorer logs, the real sidecar follows that log.

The model is the one the real pipeline packaged; traffic goes to the scorer's ``/predict``, never
into the log directly, and a local HTTP server stands in for the GitHub API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from monitor_fixtures import (
    GITHUB_TOKEN,
    FakeGitHub,
    Sidecar,
    assert_one_retrain_dispatch,
    sidecar_for,
    wait_until,
)
from serve_fixtures import (
    SHUTDOWN_ERRORS,
    BackgroundTraffic,
    Scorer,
    bundled_records,
    running_scorer,
    signature_of,
)

SHIFTED = "body_mass_g"
BATCH = 10


@pytest.fixture(scope="module")
def records(packaged_model: Path) -> list[dict[str, Any]]:
    return bundled_records(signature_of(packaged_model))


@pytest.fixture
def pair(
    packaged_model: Path, tmp_path: Path, github: FakeGitHub
) -> Iterator[tuple[Scorer, Sidecar]]:
    """The scorer, and the sidecar reading its prediction log and the same package."""
    with running_scorer(packaged_model, tmp_path / "scorer") as scorer:
        sidecar = sidecar_for(tmp_path / "sidecar", packaged_model, scorer.prediction_log, github)
        try:
            sidecar.start()
            yield scorer, sidecar
        finally:
            sidecar.kill()


def draw(records: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` records drawn with replacement from the bundled (training) distribution."""
    picks = np.random.default_rng(seed).integers(0, len(records), size=count)
    return [dict(records[pick]) for pick in picks]


def score(scorer: Scorer, records: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=scorer.url, timeout=30) as client:
        for start in range(0, len(records), BATCH):
            response = client.post("/predict", json={"records": records[start : start + BATCH]})
            assert response.status_code == 200, response.text


def read_exactly(sidecar: Sidecar, expected: int) -> None:
    """The sidecar reaches ``expected`` records and stays there (no double counting)."""
    wait_until(lambda: sidecar.records_read() >= expected, 30, f"{expected} records", sidecar)
    time.sleep(0.5)  # five more polls
    assert sidecar.records_read() == expected
    assert sidecar.corrupt_lines() == 0


def test_training_traffic_is_quiet_and_one_shifted_feature_requests_one_retrain(
    pair: tuple[Scorer, Sidecar],
    records: list[dict[str, Any]],
    packaged_model: Path,
    github: FakeGitHub,
) -> None:
    scorer, sidecar = pair
    model_version = json.loads((packaged_model / "manifest.json").read_text())["model_version"]

    # 1. traffic drawn from the training distribution: measured, nothing drifts, nothing is sent
    score(scorer, draw(records, 300, seed=1))
    read_exactly(sidecar, 300)
    drift = sidecar.get("/drift").json()
    assert drift["window_size"] == 300
    assert drift["alert"] is False, drift
    assert not any(feature["drifted"] for feature in drift["features"].values()), drift
    assert drift["prediction"]["drifted"] is False, drift
    time.sleep(1.5)  # longer than the alert hold: a false alarm would have been sent by now
    assert github.requests == []

    # 2. the same traffic with body mass 1.5 kg heavier: that feature alone drifts, one dispatch
    shifted = draw(records, 300, seed=2)
    for record in shifted:
        if record[SHIFTED] is not None:
            record[SHIFTED] += 1500
    score(scorer, shifted)
    read_exactly(sidecar, 600)
    drift = sidecar.get("/drift").json()
    drifted = {name for name, feature in drift["features"].items() if feature["drifted"]}
    assert drifted == {SHIFTED}, drift
    assert drift["alert"] is True
    wait_until(lambda: len(github.requests) >= 1, 20, "the retrain dispatch", sidecar)
    time.sleep(1.0)  # ten more polls with the alert still holding: the cool-down allows no more
    assert_one_retrain_dispatch(github, model_version, SHIFTED)
    assert GITHUB_TOKEN not in sidecar.output()
    assert len(scorer.log_lines()) == 600


def test_a_scorer_restart_with_requests_in_flight_loses_and_repeats_nothing(
    pair: tuple[Scorer, Sidecar],
    records: list[dict[str, Any]],
    packaged_model: Path,
    tmp_path: Path,
) -> None:
    first, sidecar = pair
    traffic = BackgroundTraffic(first.url, [draw(records, BATCH, seed=n) for n in range(4)])
    traffic.start()
    wait_until(lambda: traffic.records() >= 200, 30, "200 records answered")
    terminated_at = time.monotonic()
    first.stop()  # SIGTERM with requests in flight, as a rolling update sends it
    traffic.join()
    assert any(answer.at > terminated_at for answer in traffic.answered), "none in flight"
    assert set(traffic.failures) <= SHUTDOWN_ERRORS, traffic.failures
    before = traffic.records()
    read_exactly(sidecar, before)

    # the new scorer appends to the same log; the sidecar follows it without a restart
    with running_scorer(packaged_model, tmp_path / "scorer") as second:
        score(second, draw(records, 200, seed=9))
        read_exactly(sidecar, before + 200)
        assert len(second.log_lines()) == before + 200
        request_ids = {json.loads(line)["request_id"] for line in second.log_lines()}
        assert {answer.request_id for answer in traffic.answered} <= request_ids
    assert sidecar.get("/drift").json()["window_size"] == 300
