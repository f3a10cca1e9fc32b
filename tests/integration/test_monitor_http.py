"""The sidecar as a real process over real HTTP: penguins traffic, then one feature shifted; and a
regressor's sidecar on a table with the headers people have, its predictions and ground truth.

The reference (profile, signature, manifest) is built here with the pipeline's own
``profile_table``: from data/penguins.csv in the format of a package from before the task switch
(no task in its signature), and for the regressor as the package stage writes it now. A local
HTTP server stands in for the GitHub API.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops.core import artifacts
from mlops.profile import profile_table
from monitor_fixtures import (
    GITHUB_TOKEN,
    FakeGitHub,
    Sidecar,
    assert_one_retrain_dispatch,
    prediction_lines,
    sidecar_for,
    wait_until,
    write_package,
)

TARGET = "species"
EXCLUDED = ["year"]
MODEL_VERSION = "penguins-test-1"


def build_package(source: Path, directory: Path) -> pd.DataFrame:
    """The three files the sidecar reads, as the package stage will write them."""
    data = pd.read_csv(source)
    features = data.drop(columns=[TARGET, *EXCLUDED])
    profile: dict[str, Any] = profile_table(features)
    profile["classes"] = data[TARGET].value_counts(normalize=True).to_dict()
    signature = {
        "model_name": "penguins",
        "target": TARGET,
        "features": [describe(features[name]) for name in features.columns],
        "classes": sorted(data[TARGET].unique()),
    }
    directory.mkdir(parents=True)
    (directory / artifacts.SIGNATURE_FILE).write_text(json.dumps(signature))
    (directory / artifacts.PROFILE_FILE).write_text(json.dumps(profile))
    manifest = {
        "model_name": "penguins",
        "model_version": MODEL_VERSION,
        "lineage": {"git_commit": "", "data_hash": "", "params_hash": "", "created": ""},
        "metrics": {"validation": {"accuracy": 0.97, "macro_f1": 0.96}, "test": {}},
        "files": {
            name: artifacts.sha256_of(directory / name)
            for name in (artifacts.SIGNATURE_FILE, artifacts.PROFILE_FILE)
        },
    }
    (directory / artifacts.MANIFEST_FILE).write_text(json.dumps(manifest))
    return data


def describe(column: pd.Series) -> dict[str, Any]:
    numeric = pd.api.types.is_numeric_dtype(column)
    return {
        "name": str(column.name),
        "type": "number" if numeric else "string",
        "nullable": bool(column.isna().any()),
        "categories": None if numeric else sorted(column.dropna().astype(str).unique()),
        "min": float(column.min()) if numeric else None,
        "max": float(column.max()) if numeric else None,
    }


def log_lines(rows: pd.DataFrame, prefix: str) -> bytes:
    """PredictionRecord lines, five records per request, the species as the prediction."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    out = []
    for position, row in enumerate(rows.to_dict("records")):
        features = {
            name: None if pd.isna(value) else value
            for name, value in row.items()
            if name not in (TARGET, *EXCLUDED)
        }
        record = {
            "ts": stamp,
            "request_id": f"{prefix}-{position // 5}",
            "index": position % 5,
            "model_version": MODEL_VERSION,
            "features": features,
            "prediction": row[TARGET],
            "probabilities": {row[TARGET]: 1.0},
            "latency_seconds": 0.002,
        }
        out.append(json.dumps(record).encode() + b"\n")
    return b"".join(out)


@pytest.fixture
def sidecar(tmp_path: Path, github: FakeGitHub) -> Iterator[Sidecar]:
    logs = tmp_path / "logs"
    running = sidecar_for(logs, tmp_path / "package", logs / "predictions.jsonl", github)
    yield running
    running.kill()


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


def test_one_shifted_feature_drifts_alone_and_retraining_is_requested_once(
    sidecar: Sidecar, github: FakeGitHub, penguins_csv: Path, tmp_path: Path
) -> None:
    data = build_package(penguins_csv, tmp_path / "package")
    log = Path(sidecar.environment["PREDICTION_LOG"])
    generator = np.random.default_rng(0)
    sidecar.start()

    # 1. traffic drawn from the training data: measured, nothing drifts, nothing is sent
    reference_rows = data.sample(300, replace=True, random_state=generator)
    append(log, log_lines(reference_rows, "ref") + b"this is not json\n")
    wait_until(lambda: sidecar.get("/drift").json()["window_size"] == 300, 20, "300 records")
    drift = sidecar.get("/drift").json()
    assert drift["alert"] is False, drift
    assert all(feature["drifted"] is False for feature in drift["features"].values()), drift
    assert drift["prediction"]["drifted"] is False
    time.sleep(1.5)  # longer than the alert hold: a false alarm would have been sent by now
    assert github.requests == []

    # 2. the same traffic with body mass shifted: that feature alone drifts, one dispatch
    shifted = data.sample(300, replace=True, random_state=generator)
    shifted["body_mass_g"] += 1500
    append(log, log_lines(shifted, "shifted"))
    wait_until(lambda: sidecar.records_read() == 600, 20, "600 records", sidecar)
    drift = sidecar.get("/drift").json()
    drifted = {name for name, feature in drift["features"].items() if feature["drifted"]}
    assert drifted == {"body_mass_g"}, drift
    assert drift["features"]["body_mass_g"]["score"] > 0.2
    wait_until(lambda: len(github.requests) >= 1, 20, "the retrain dispatch", sidecar)
    time.sleep(1.0)  # ten more polls with the alert still holding: the cool-down allows no more
    assert_one_retrain_dispatch(github, MODEL_VERSION, "body_mass_g")
    assert GITHUB_TOKEN not in sidecar.output()

    # 3. ground truth for a few shifted predictions, over HTTP
    feedback = [{"request_id": "shifted-0", "index": n, "label": "Adelie"} for n in range(5)]
    response = httpx.post(f"{sidecar.url}/feedback", json=feedback, timeout=5)
    assert response.json() == {"matched": 5, "pending": 0}
    bad = httpx.post(f"{sidecar.url}/feedback", json={"label": "Adelie"}, timeout=5)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "request_id"

    # /metrics publishes the state of the last poll: the feedback shows after the next one
    matched = ("monitor_feedback_total", (("result", "matched"),))
    wait_until(lambda: sidecar.metrics().get(matched) == 5, 20, "the feedback in /metrics", sidecar)
    metrics = sidecar.metrics()
    assert sidecar.records_read() == 600
    assert metrics[("monitor_corrupt_lines_total", (("log", "predictions"),))] == 1
    assert metrics[("monitor_window_records", ())] == 300
    assert metrics[("monitor_drift_alert", ())] == 1
    for name in drift["features"]:
        flag = metrics[("monitor_feature_drifted", (("feature", name),))]
        assert flag == (1.0 if name == "body_mass_g" else 0.0), name
    assert metrics[("monitor_retrain_requests_total", (("outcome", "sent"),))] == 1
    assert metrics[("monitor_feedback_total", (("result", "matched"),))] == 5
    assert metrics[("monitor_labelled_records", ())] == 5
    assert metrics[("monitor_reference_accuracy_ratio", ())] == 0.97
    assert "text/plain" in sidecar.get("/metrics").headers["content-type"]
    assert "body_mass_g" in sidecar.get("/").text

    # 4. a restart resumes where it stopped: nothing lost, nothing counted twice, no second dispatch
    sidecar.stop()
    append(log, log_lines(shifted.head(20), "after-restart"))
    sidecar.start()
    wait_until(lambda: sidecar.records_read() == 620, 20, "the records written meanwhile", sidecar)
    time.sleep(1.0)
    assert sidecar.records_read() == 620
    assert len(github.requests) == 1
    metrics = sidecar.metrics()
    assert metrics[("monitor_corrupt_lines_total", (("log", "predictions"),))] == 1
    assert metrics[("monitor_feedback_total", (("result", "matched"),))] == 5
    sidecar.stop()


# -- a regressor ---------------------------------------------------------------------------------

AREA, ROOMS, TOWN = "Floor area (m²)", "rooms [n]", "Town / Stadt"
VALIDATION_RMSE = 9.0


def flats(rows: int, seed: int) -> pd.DataFrame:
    """Features of flats, with missing values, as the scorer logs them (by the user's names)."""
    generator = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            AREA: generator.normal(75.0, 20.0, rows).round(1),
            ROOMS: generator.integers(1, 6, rows).astype(float),
            TOWN: generator.choice(["Köln", "Zürich", "Lyon"], rows, p=[0.5, 0.3, 0.2]),
        }
    )
    frame.loc[generator.random(rows) < 0.05, ROOMS] = np.nan
    return frame


def rent(frame: pd.DataFrame) -> list[float]:
    """The toy regressor's prediction."""
    return [float(v) for v in 8.0 * frame[AREA] + 30.0 * frame[ROOMS].fillna(3.0) + 100.0]


def test_a_regressors_sidecar_measures_numeric_drift_and_rmse(
    sidecar: Sidecar, github: FakeGitHub, tmp_path: Path
) -> None:
    train = flats(3000, seed=0)
    validation = {"rows": 450, "mae": 7.0, "rmse": VALIDATION_RMSE, "r2": 0.97, "mape": 0.01}
    write_package(
        tmp_path / "package", train, validation, predictions=rent(train), model_name="flats"
    )
    log = Path(sidecar.environment["PREDICTION_LOG"])
    feedback_log = Path(sidecar.environment["MONITOR_FEEDBACK_LOG"])
    sidecar.start()

    # 1. traffic from the training population: nothing drifts, nothing is sent
    live = flats(300, seed=1)
    predicted = rent(live)
    append(log, prediction_lines(live.to_dict("records"), predicted, "ok"))
    wait_until(lambda: sidecar.records_read() == 300, 20, "300 records", sidecar)
    drift = sidecar.get("/drift").json()
    assert set(drift["features"]) == {AREA, ROOMS, TOWN}
    assert drift["alert"] is False, drift
    assert drift["prediction"]["reference_mean"] == pytest.approx(np.mean(rent(train)))
    assert drift["features"][ROOMS]["missing_rate"] > 0

    # 2. ground truth in the feedback file: errors like validation's, so not degraded
    noise = np.random.default_rng(2).normal(0.0, VALIDATION_RMSE, 100)
    truth = [value + error for value, error in zip(predicted, noise, strict=False)]
    lines = [{"request_id": f"ok-{n // 5}", "index": n % 5, "label": truth[n]} for n in range(100)]
    append(feedback_log, "".join(json.dumps(line) + "\n" for line in lines).encode())
    wait_until(
        lambda: sidecar.get("/performance").json()["labelled"] == 100, 20, "100 labels", sidecar
    )
    performance = sidecar.get("/performance").json()
    errors = np.array(truth) - np.array(predicted[:100])
    assert performance["rmse"] == pytest.approx(float(np.sqrt(np.mean(errors**2))))
    assert performance["mae"] == pytest.approx(float(np.mean(np.abs(errors))))
    assert performance["reference_rmse"] == VALIDATION_RMSE and not performance["degraded"]
    text = httpx.post(f"{sidecar.url}/feedback", json={"request_id": "ok-0", "label": "42"})
    assert text.status_code == 422 and text.json()["detail"][0]["field"] == "label"
    time.sleep(1.5)  # longer than the alert hold
    assert github.requests == []

    # 3. the same features, predictions 25% higher (a broken model): the predictions drift alone
    again = flats(300, seed=3)
    append(log, prediction_lines(again.to_dict("records"), [1.25 * v for v in rent(again)], "hi"))
    wait_until(lambda: sidecar.records_read() == 600, 20, "600 records", sidecar)
    wait_until(lambda: len(github.requests) >= 1, 20, "the retrain dispatch", sidecar)
    drift = sidecar.get("/drift").json()
    assert drift["prediction"]["drifted"] is True and drift["prediction"]["score"] > 0.2
    assert not any(feature["drifted"] for feature in drift["features"].values()), drift
    time.sleep(1.0)
    (request,) = github.requests
    payload = json.loads(request["body"])["client_payload"]
    assert payload["prediction"] == {"psi": round(drift["prediction"]["score"], 4), "drifted": True}
    assert payload["drifted_features"] == {} and payload["reasons"] == ["drift"]
    assert payload["performance"]["reference_rmse"] == VALIDATION_RMSE

    metrics = sidecar.metrics()
    assert (
        metrics[
            (
                "monitor_model_info",
                (("model_name", "flats"), ("model_version", "7"), ("task", "regression")),
            )
        ]
        == 1
    )
    assert metrics[("monitor_rolling_rmse", ())] == pytest.approx(performance["rmse"])
    assert metrics[("monitor_prediction_drifted", ())] == 1
    assert metrics[("monitor_feature_drifted", (("feature", AREA),))] == 0
    assert not any(name == "monitor_prediction_class_ratio" for name, _ in metrics)
    assert html.escape(AREA) in sidecar.get("/").text
    sidecar.stop()
