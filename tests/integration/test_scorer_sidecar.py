"""The deployed pair over real HTTP: the real scorer logs, the real sidecar follows that log.

The model is the one the real pipeline packaged; traffic goes to the scorer's ``/predict``, never
into the log directly, and a local HTTP server stands in for the GitHub API (and moto on
127.0.0.1 for S3, where the sidecar ships and the retrained pipeline harvests).
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import PROJECT_ROOT, run
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
    onnx_reference,
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


# --- the loop closed: shifted traffic with labels -> alert -> shipped -> harvested -> retrained ---

SHIFT = {"flipper_length_mm": -25.0, "bill_depth_mm": 3.0, "body_mass_g": -1000.0}


def shifted(rows: list[dict[str, Any]], seed: int | None = None) -> list[dict[str, Any]]:
    """The penguins after a change in the field (within the schema's ranges): flippers 25 mm
    shorter, bills 3 mm deeper, 1 kg lighter; a Gentoo now looks like the other two species.
    With ``seed``, a little noise, so that repeated rows are not duplicates."""
    noise = np.random.default_rng(seed)
    out = []
    for row in rows:
        moved = dict(row)
        for name, delta in SHIFT.items():
            if moved[name] is not None:
                jitter = noise.normal(0, 0.4) if seed is not None else 0.0
                moved[name] = round(moved[name] + delta + jitter, 1)
        out.append(moved)
    return out


def accuracy(package: Path, rows: list[dict[str, Any]], species: list[str]) -> float:
    labels, _ = onnx_reference(package, signature_of(package), rows)
    return float(np.mean([label == truth for label, truth in zip(labels, species, strict=True)]))


def test_shifted_traffic_with_labels_is_harvested_and_the_retrained_model_scores_it_better(
    packaged_model: Path,
    reproduced_project: Path,
    tmp_path: Path,
    github: FakeGitHub,
    s3: dict[str, str],
) -> None:
    """The seeds' loop: the real scorer answers shifted traffic, the client posts the true
    species right after each answer (before the sidecar has read the prediction), the drift alert
    sends the retrain event, the pod's shutdown ships everything, and the retrain (harvest on,
    as the event says) gives a model that scores shifted traffic it never saw better than the
    old one; the report counts the harvested rows."""
    records = bundled_records(signature_of(packaged_model))
    species = [row["species"] for row in csv_rows()]
    seen, unseen = list(range(0, len(records), 2)), list(range(1, len(records), 2))
    ship_url = "s3://mlops/inference"
    with running_scorer(packaged_model, tmp_path / "scorer", SCORER_LOG_SIDECAR="true") as scorer:
        sidecar = sidecar_for(
            tmp_path / "sidecar",
            packaged_model,
            scorer.prediction_log,
            github,
            MONITOR_SHIP_URL=ship_url,
            MONITOR_LABEL_LOG=str(tmp_path / "sidecar" / "labels.jsonl"),
            MONITOR_SHIP_STATE_FILE=str(tmp_path / "sidecar" / "ship.json"),
            **s3,
        )
        sidecar.start()
        labelled, early = 0, 0
        with httpx.Client(timeout=30) as client:
            for copy in range(2):
                traffic = shifted([records[i] for i in seen], seed=copy)
                truth = [species[i] for i in seen]
                for start in range(0, len(traffic), BATCH):
                    batch = traffic[start : start + BATCH]
                    answer = client.post(f"{scorer.url}/predict", json={"records": batch})
                    assert answer.status_code == 200, answer.text
                    request_id = answer.json()["request_id"]
                    labels = [
                        {"request_id": request_id, "index": index, "label": truth[start + index]}
                        for index in range(len(batch))
                    ]
                    posted = client.post(f"{sidecar.url}/feedback", json=labels)
                    assert posted.status_code == 200, posted.text
                    labelled += len(labels)
                    early += posted.json()["pending"]
        assert early > 0, "every label found its prediction already read: the race was not run"
        wait_until(lambda: len(github.requests) == 1, 30, "the retrain dispatch", sidecar)
        payload = json.loads(github.requests[0]["body"])["client_payload"]
        assert set(payload["drifted_features"]) >= set(SHIFT)
        assert payload["harvest_source"] == ship_url
        read_exactly(sidecar, labelled)
        feedback = {
            result: sidecar.metrics()[("monitor_feedback_total", (("result", result),))]
            for result in ("matched", "expired", "dropped", "duplicate")
        }
        assert feedback == {"matched": labelled, "expired": 0, "dropped": 0, "duplicate": 0}
        scorer.process.send_signal(signal.SIGTERM)  # the pod goes: both containers get SIGTERM
        assert sidecar.process is not None
        sidecar.process.send_signal(signal.SIGTERM)
        scorer.process.wait(30)
        sidecar.process.wait(60)

    project = tmp_path / "retrain"
    shutil.copytree(reproduced_project, project, symlinks=True)
    run(["python", "-m", "mlops.params", "set", "harvest.enabled=true",
         f"harvest.source={payload['harvest_source']}"], project)  # fmt: skip
    run(["dvc", "repro"], project)
    summary = json.loads((project / "reports" / "harvest" / "summary.json").read_text())
    assert summary["labels"] == summary["labelled"] == labelled  # every label found its prediction
    assert summary["rows"] == labelled - summary["refused"] and summary["rows"] > 0.9 * labelled

    test_rows, test_species = shifted([records[i] for i in unseen]), [species[i] for i in unseen]
    old = accuracy(packaged_model, test_rows, test_species)
    new = accuracy(project / "models" / "package", test_rows, test_species)
    print(f"\naccuracy on shifted penguins neither model trained on: old {old:.3f}, new {new:.3f}")
    assert new > old + 0.1

    run(["python", "-m", "mlops.report", "--base-rev", "HEAD", "--out", "reports/pr/report.md",
         "--summary", "reports/pr/summary.md"], project)  # fmt: skip
    for name in ("report.md", "summary.md"):
        text = (project / "reports" / "pr" / name).read_text()
        assert f"Harvested: **{summary['rows']} rows** of labelled inference data" in text
        assert f"from `{ship_url}`" in text


def csv_rows() -> list[dict[str, str]]:
    with (PROJECT_ROOT / "data" / "penguins.csv").open(newline="") as file:
        return list(csv.DictReader(file))
