import html
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlops.core import artifacts
from mlops.monitor.app import create_app
from mlops.monitor.feedback import ClassFeedback
from mlops.monitor.reference import load_reference
from mlops.monitor.retrain import GitHubDispatcher, Outcome
from mlops.monitor.service import Monitor, build_monitor
from mlops.monitor.settings import MonitorSettings
from mlops.monitor.state import load_state
from mlops.profile import profile_table
from mlops.stage import StageError
from monitor_fixtures import REGRESSION_PERFORMANCE, prediction_lines, write_package

CLASSES = {"a": 0.6, "b": 0.4}
START = 1_800_000_000.0


def draw(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": generator.normal(10.0, 2.0, rows),
            "kind": generator.choice(["p", "q"], rows, p=[0.7, 0.3]),
        }
    )


def write_model_dir(directory: Path) -> Path:
    """signature.json, reference_profile.json and manifest.json of a two-feature toy model."""
    train = draw(2000, seed=0)
    profile: dict[str, Any] = profile_table(train)
    profile["classes"] = CLASSES
    signature = {
        "model_name": "toy",
        "target": "label",
        "features": [
            {"name": "x", "type": "number", "nullable": True, "categories": None}
            | {"min": float(train["x"].min()), "max": float(train["x"].max())},
            {"name": "kind", "type": "string", "nullable": True, "categories": ["p", "q"]}
            | {"min": None, "max": None},
        ],
        "classes": list(CLASSES),
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / artifacts.SIGNATURE_FILE).write_text(json.dumps(signature))
    (directory / artifacts.PROFILE_FILE).write_text(json.dumps(profile))
    files = {
        name: artifacts.sha256_of(directory / name)
        for name in (artifacts.SIGNATURE_FILE, artifacts.PROFILE_FILE)
    }
    manifest = {
        "model_name": "toy",
        "model_version": "7",
        "lineage": {"git_commit": "", "data_hash": "", "params_hash": "", "created": ""},
        "metrics": {"accuracy": 0.9, "macro_f1": 0.9},
        "files": files,
    }
    (directory / artifacts.MANIFEST_FILE).write_text(json.dumps(manifest))
    return directory


def lines(frame: pd.DataFrame, prefix: str, ts: float = START) -> bytes:
    """Prediction log lines in the scorer's format, five records per request."""
    stamp = pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.000Z")
    generator = np.random.default_rng(len(frame))
    labels = generator.choice(list(CLASSES), len(frame), p=list(CLASSES.values()))
    out = []
    for position, row in enumerate(frame.to_dict("records")):
        record = {
            "ts": stamp,
            "request_id": f"{prefix}-{position // 5}",
            "index": position % 5,
            "model_version": "7",
            "features": row,
            "prediction": str(labels[position]),
            "probabilities": {"a": 0.5, "b": 0.5},
            "latency_seconds": 0.001,
        }
        out.append(json.dumps(record).encode() + b"\n")
    return b"".join(out)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def settings_for(model_dir: Path, logs: Path, alert_hold_seconds: float) -> MonitorSettings:
    return MonitorSettings(
        prediction_log=logs / "predictions.jsonl",
        model_dir=model_dir,
        feedback_log=logs / "feedback.jsonl",
        state_file=logs / "state.json",
        label_log=logs / "labels.jsonl",
        ship_state_file=logs / "ship_state.json",
        window_size=300,
        min_window_size=100,
        min_feedback=10,
        alert_hold_seconds=alert_hold_seconds,
        poll_interval_seconds=0.05,
    )


@pytest.fixture
def settings(tmp_path: Path) -> MonitorSettings:
    return settings_for(write_model_dir(tmp_path / "model"), tmp_path / "logs", 30)


def make_monitor(settings: MonitorSettings, clock: Clock) -> Monitor:
    dispatcher = GitHubDispatcher(settings.github_api_url, None, None, timeout=1)
    return Monitor(
        settings,
        load_reference(settings.model_dir),
        load_state(settings.state_file),
        dispatcher,
        clock=clock,
    )


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


def test_counts_are_exact_across_corrupt_lines_rotation_and_a_restart(
    settings: MonitorSettings,
) -> None:
    log, clock = settings.prediction_log, Clock()
    append(log, lines(draw(120, seed=1), "r") + b"garbage\n" + b'{"ts": "x"}\n')
    monitor = make_monitor(settings, clock)
    monitor.poll()
    append(log, lines(draw(30, seed=2), "s") + b'{"partial')
    log.replace(log.with_name(log.name + ".1"))  # the scorer rotates mid-stream
    append(log, lines(draw(40, seed=3), "t"))
    monitor.poll()
    counts = monitor.snapshot().counts.logs["predictions"]
    assert (counts.records, counts.corrupt, counts.rotations) == (190, 3, 1)
    assert monitor.snapshot().drift.window_size == 190
    monitor.stop()

    append(log, lines(draw(10, seed=4), "u"))
    restarted = make_monitor(settings, clock)
    restarted.poll()
    counts = restarted.snapshot().counts.logs["predictions"]
    assert (counts.records, counts.corrupt) == (200, 3)
    assert restarted.snapshot().drift.window_size == 10  # the window restarts; counts continue
    restarted.stop()


def test_a_shifted_feature_alerts_and_the_signal_waits_for_the_hold(
    settings: MonitorSettings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    monitor = make_monitor(settings, clock)
    append(settings.prediction_log, lines(draw(200, seed=5), "ok"))
    monitor.poll()
    assert not monitor.snapshot().drift.alert
    shifted = draw(300, seed=6)
    shifted["x"] += 6.0
    append(settings.prediction_log, lines(shifted, "shifted"))
    monitor.poll()
    drift = monitor.snapshot().drift
    assert drift.alert and [f.name for f in drift.drifted_features] == ["x"]
    for _ in range(5):
        clock.now += 10
        monitor.poll()
    assert monitor.snapshot().counts.retrain_requests == {"sent": 0, "failed": 0, "dry_run": 1}
    assert "would POST" in caplog.text
    monitor.stop()
    restarted = make_monitor(settings, clock)  # the cool-down survives a restart
    append(settings.prediction_log, lines(shifted, "again"))
    for _ in range(5):
        clock.now += 10
        restarted.poll()
    assert restarted.snapshot().counts.retrain_requests["dry_run"] == 1
    restarted.stop()


def test_the_time_window_drops_old_records(settings: MonitorSettings) -> None:
    clock = Clock()
    timed = settings.model_copy(update={"window_seconds": 60.0})
    monitor = make_monitor(timed, clock)
    append(timed.prediction_log, lines(draw(50, seed=7), "old", ts=START - 120))
    append(timed.prediction_log, lines(draw(20, seed=8), "new", ts=START - 10))
    monitor.poll()
    assert monitor.snapshot().drift.window_size == 20
    clock.now += 60
    monitor.poll()
    assert monitor.snapshot().drift.window_size == 0


def test_feedback_from_the_file_and_from_http_gives_rolling_performance(
    settings: MonitorSettings,
) -> None:
    monitor = make_monitor(settings, Clock())
    frame = draw(20, seed=9)
    append(settings.prediction_log, lines(frame, "f"))
    monitor.poll()
    predicted = [json.loads(line)["prediction"] for line in lines(frame, "f").splitlines()]
    feedback = [
        json.dumps({"request_id": f"f-{n // 5}", "index": n % 5, "label": predicted[n]})
        for n in range(10)
    ]
    append(settings.feedback_log, ("\n".join(feedback) + "\nnot json\n").encode())
    monitor.poll()
    wrong = "b" if predicted[10] == "a" else "a"
    http = [
        ClassFeedback(request_id="f-2", index=0, label=wrong),
        ClassFeedback(request_id="zz", label="a"),
    ]
    assert monitor.add_feedback(http) == (1, 1)  # one matched, one waiting for its prediction
    monitor.poll()
    snapshot = monitor.snapshot()
    assert snapshot.counts.feedback == {"matched": 11, "expired": 0, "dropped": 0, "duplicate": 0}
    assert snapshot.labels_pending == 1
    assert snapshot.counts.logs["feedback"].corrupt == 1
    assert snapshot.performance.labelled == 11
    assert snapshot.performance.live["accuracy"] == pytest.approx(10 / 11)


@pytest.fixture
def client(settings: MonitorSettings) -> Iterator[TestClient]:
    append(settings.prediction_log, lines(draw(150, seed=10), "c"))
    with TestClient(create_app(build_monitor(settings))) as test_client:
        yield test_client


def wait_for_window(client: TestClient, size: int) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = client.get("/drift").json()
        if body["window_size"] == size:
            return body
        time.sleep(0.05)
    raise AssertionError(f"the window never reached {size} records")


def test_the_http_interface(client: TestClient) -> None:
    drift = wait_for_window(client, 150)
    assert set(drift) == {"window_size", "alert", "features", "prediction"}
    assert drift["alert"] is False
    assert set(drift["features"]) == {"x", "kind"}
    assert {"score", "drifted"} <= set(drift["features"]["x"])
    assert set(drift["prediction"]) == {"score", "drifted", "threshold", "p_value", "level", "bins"}
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200

    good = client.post("/feedback", json={"request_id": "c-0", "label": "a"})
    assert good.json() == {"matched": 1, "pending": 0}
    bad = client.post("/feedback", json={"request_id": "c-0", "index": "one", "label": "a"})
    assert bad.status_code == 422
    assert [problem["field"] for problem in bad.json()["detail"]] == ["index"]
    assert client.post("/feedback", content=b"{").status_code == 422

    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'monitor_records_read_total{log="predictions"} 150.0' in text
    assert 'monitor_feature_psi{feature="x"}' in text
    assert "monitor_drift_alert 0.0" in text
    assert (
        'monitor_model_info{model_name="toy",model_version="7",task="classification"} 1.0' in text
    )
    assert 'monitor_prediction_class_ratio{class="a"}' in text
    assert "monitor_reference_accuracy_ratio 0.9" in text and "rmse" not in text
    assert "request_id" not in text and "c-0" not in text

    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "<td>x</td>" in page.text and "<td>kind</td>" in page.text
    assert "Predicted class mix" in page.text and "<td>a</td>" in page.text
    assert "<script" not in page.text and "https://" not in page.text


class BlockedDispatcher(GitHubDispatcher):
    """A GitHub API that hangs until released, as a slow network would."""

    def __init__(self) -> None:
        super().__init__("https://api.github.com", "owner/repo", None, timeout=1)
        self.entered, self.release = threading.Event(), threading.Event()

    def send(self, payload: dict[str, Any], event_type: str = "retrain") -> Outcome:
        self.entered.set()
        self.release.wait(timeout=30)
        return "dry_run"


def test_a_hanging_poll_never_blocks_the_http_handlers(settings: MonitorSettings) -> None:
    shifted = draw(150, seed=11)
    shifted["x"] += 6.0
    append(settings.prediction_log, lines(shifted, "blocked"))
    dispatcher = BlockedDispatcher()
    hold_zero = settings.model_copy(update={"alert_hold_seconds": 0.0})
    monitor = Monitor(
        hold_zero, load_reference(hold_zero.model_dir), load_state(hold_zero.state_file), dispatcher
    )
    with TestClient(create_app(monitor)) as client:
        try:
            assert dispatcher.entered.wait(timeout=20), "the retrain signal was never attempted"
            started = time.monotonic()
            assert client.get("/drift").json()["alert"] is True
            assert client.get("/metrics").status_code == 200
            assert client.get("/health/live").status_code == 200
            assert time.monotonic() - started < 2
        finally:
            dispatcher.release.set()


def test_a_threshold_for_an_unknown_feature_is_refused(settings: MonitorSettings) -> None:
    typo = settings.model_copy(update={"feature_psi_thresholds": {"xx": 0.3}})
    with pytest.raises(StageError, match=r"unknown feature\(s\) \['xx'\]"):
        build_monitor(typo)


def test_a_changed_reference_file_is_refused(settings: MonitorSettings) -> None:
    (settings.model_dir / artifacts.PROFILE_FILE).write_text("{}")
    with pytest.raises(StageError, match="sha256 does not match"):
        build_monitor(settings)


def test_the_sidecar_imports_neither_pandas_nor_scikit_learn(
    settings: MonitorSettings, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from mlops.monitor.app import create_app\n"
        "from mlops.monitor.service import build_monitor\n"
        "from mlops.monitor.settings import load_settings\n"
        "create_app(build_monitor(load_settings()))\n"
        "import mlops.monitor.__main__\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'sklearn')))\n"
    )
    environment = {
        "PREDICTION_LOG": str(settings.prediction_log),
        "MODEL_DIR": str(settings.model_dir),
        "MONITOR_STATE_FILE": str(settings.state_file),
        "MONITOR_FEEDBACK_LOG": str(settings.feedback_log),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# -- a regressor, with the column names people have ---------------------------------------------

AREA, TOWN, ODD = "Floor area (m²)", "Town / Stadt", 'ratio "a\\b" <b>&'


def regression_frame(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            AREA: generator.normal(80.0, 20.0, rows),
            TOWN: generator.choice(["Köln", "Zürich"], rows, p=[0.6, 0.4]),
            ODD: generator.uniform(0.0, 1.0, rows),
        }
    )


def price(frame: pd.DataFrame) -> list[float]:
    return [float(value) for value in 3.0 * frame[AREA] + 50.0 * frame[ODD]]


@pytest.fixture
def regression_settings(tmp_path: Path) -> MonitorSettings:
    train = regression_frame(3000, seed=0)
    package = write_package(
        tmp_path / "model",
        train,
        {"rows": 450, "mae": 4.0, "rmse": 5.0, "r2": 0.95, "mape": 0.02},
        predictions=price(train),
        model_name="prices",
    )
    return settings_for(package, tmp_path / "logs", 0)


def feedback_lines(predicted: list[float], first: int, count: int, error: float) -> bytes:
    """The true values of records ``first`` to ``first + count`` of the ``p`` requests (five
    records each): ``error`` above the prediction."""
    items = [
        {"request_id": f"p-{n // 5}", "index": n % 5, "label": predicted[n] + error}
        for n in range(first, first + count)
    ]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def test_a_regressor_measures_mae_and_rmse_from_feedback_and_degrades(
    regression_settings: MonitorSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings, clock = regression_settings, Clock()
    frame = regression_frame(150, seed=1)
    predicted = price(frame)
    class_line = prediction_lines(frame.head(1).to_dict("records"), ["cheap"], "bad")
    append(
        settings.prediction_log,
        prediction_lines(frame.to_dict("records"), predicted, "p") + class_line,
    )
    append(settings.feedback_log, feedback_lines(predicted, 0, 20, error=3.0))
    append(settings.feedback_log, b'{"request_id": "p-5", "label": "99.0"}\n')  # text: corrupt
    monitor = make_monitor(settings, clock)
    monitor.poll()
    snapshot = monitor.snapshot()
    assert snapshot.counts.logs["predictions"].records == 150
    assert snapshot.counts.logs["predictions"].corrupt == 1  # a class is no regressor's prediction
    assert snapshot.counts.logs["feedback"].corrupt == 1
    assert snapshot.performance.as_json() == {
        "labelled": 20,
        "mae": pytest.approx(3.0),
        "rmse": pytest.approx(3.0),
        "reference_mae": 4.0,
        "reference_rmse": 5.0,
        "degraded": False,
    }
    assert not snapshot.drift.alert and snapshot.drift.prediction.numeric
    # errors of 9 bring the RMSE above 5.0 * (1 + 0.2): degraded, and the retrain signal says why
    append(settings.feedback_log, feedback_lines(predicted, 20, 40, error=-9.0))
    monitor.poll()
    performance = monitor.snapshot().performance
    assert performance.live["rmse"] == pytest.approx(((20 * 9 + 40 * 9.0**2) / 60) ** 0.5)
    assert performance.degraded
    clock.now += 1
    monitor.poll()
    assert monitor.snapshot().counts.retrain_requests["dry_run"] == 1
    sent = json.loads(caplog.text.split("would POST ")[1].split(" ", 1)[1].splitlines()[0])
    assert sent["client_payload"]["reasons"] == ["performance"]
    assert sent["client_payload"]["performance"]["rmse"] == pytest.approx(performance.live["rmse"])
    monitor.stop()


@pytest.fixture
def regression_client(regression_settings: MonitorSettings) -> Iterator[TestClient]:
    frame = regression_frame(150, seed=2)
    append(
        regression_settings.prediction_log,
        prediction_lines(frame.to_dict("records"), price(frame), "c"),
    )
    with TestClient(create_app(build_monitor(regression_settings))) as test_client:
        yield test_client


def test_a_regressors_http_interface_uses_the_users_names(regression_client: TestClient) -> None:
    client = regression_client
    drift = wait_for_window(client, 150)
    assert set(drift["features"]) == {AREA, TOWN, ODD}
    assert set(drift["prediction"]) == {
        "score",
        "drifted",
        "threshold",
        "p_value",
        "level",
        "bins",
        "mean",
        "reference_mean",
    }
    assert drift["alert"] is False, drift

    refused = client.post("/feedback", json={"request_id": "c-0", "label": "250.0"})
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["field"] == "label" and "a JSON number" in problem["message"]
    assert client.post("/feedback", json={"request_id": "c-0", "label": 250}).json() == {
        "matched": 1,
        "pending": 0,
    }
    schema = client.get("/openapi.json").json()["paths"]["/feedback"]["post"]["requestBody"]
    item = schema["content"]["application/json"]["schema"]["oneOf"][0]
    assert item["properties"]["label"]["type"] == "number"
    for _ in range(200):
        if client.get("/performance").json()["labelled"] == 1:
            break
        time.sleep(0.05)
    assert set(client.get("/performance").json()) == REGRESSION_PERFORMANCE

    families = {
        family.name: family
        for family in text_string_to_metric_families(client.get("/metrics").text)
    }
    labels = {sample.labels["feature"] for sample in families["monitor_feature_psi"].samples}
    assert labels == {AREA, TOWN, ODD}  # escaped in the text format, intact once parsed
    (info,) = families["monitor_model_info"].samples
    assert info.labels["task"] == "regression"
    assert families["monitor_reference_rmse"].samples[0].value == 5.0
    assert families["monitor_rolling_rmse"].samples[0].value >= 0
    assert "monitor_prediction_mean" in families and "monitor_reference_prediction_mean" in families
    assert "monitor_prediction_class_ratio" not in families
    assert "monitor_rolling_accuracy_ratio" not in families

    page = client.get("/").text
    assert html.escape(ODD) in page and ODD not in page  # escaped, never raw HTML
    assert f"<td>{html.escape(AREA)}</td>" in page and "Predictions: PSI" in page
    assert "Predicted class mix" not in page and "RMSE" in page
    # the predicted numbers on their bins, labelled by a few edges (not ten labels on each other)
    predictions = re.search(r'<svg class="distribution[^"]*" data-for="predictions".*?</svg>', page)
    assert predictions is not None
    assert predictions.group(0).count('class="bar-live"') == 10
    assert 1 <= predictions.group(0).count("<text") <= 4
    assert re.search(r'data-feature="' + re.escape(html.escape(ODD)) + '"', page)


def test_a_label_posted_before_its_prediction_is_read_is_matched_when_it_is(
    settings: MonitorSettings,
) -> None:
    """The issue's race: feedback right after scoring, before the sidecar read the prediction."""
    clock = Clock()
    monitor = make_monitor(settings, clock)
    frame = draw(10, seed=11)
    early = [ClassFeedback(request_id=f"e-{n // 5}", index=n % 5, label="a") for n in range(10)]
    assert monitor.add_feedback(early) == (0, 10)  # written, waiting
    assert len(settings.label_log.read_text().splitlines()) == 10
    append(settings.prediction_log, lines(frame, "e"))
    monitor.poll()
    snapshot = monitor.snapshot()
    assert snapshot.counts.feedback["matched"] == 10
    assert snapshot.labels_pending == 0
    assert snapshot.performance.labelled == 10


def test_a_label_whose_prediction_never_comes_expires_counted(settings: MonitorSettings) -> None:
    clock = Clock()
    monitor = make_monitor(settings, clock)
    assert monitor.add_feedback([ClassFeedback(request_id="elsewhere", label="a")]) == (0, 1)
    monitor.poll()
    assert monitor.snapshot().labels_pending == 1
    clock.now += settings.label_ttl_seconds + 1
    monitor.poll()
    snapshot = monitor.snapshot()
    assert snapshot.labels_pending == 0
    assert snapshot.counts.feedback == {"matched": 0, "expired": 1, "dropped": 0, "duplicate": 0}
    monitor.stop()
    assert load_state(settings.state_file).counts.feedback["expired"] == 1  # survives a restart


def test_labels_and_their_fate_are_in_the_metrics(client: TestClient) -> None:
    wait_for_window(client, 150)
    early = [{"request_id": "not-yet", "index": n, "label": "a"} for n in range(3)]
    assert client.post("/feedback", json=early).json() == {"matched": 0, "pending": 3}
    client.post("/feedback", json={"request_id": "c-1", "label": "b"})
    for _ in range(100):  # the metrics are the last poll's (every 0.05 s here)
        families = {
            family.name: family
            for family in text_string_to_metric_families(client.get("/metrics").text)
        }
        if families["monitor_feedback_pending"].samples[0].value == 3:
            break
        time.sleep(0.05)
    assert families["monitor_feedback_pending"].samples[0].value == 3
    results = {s.labels["result"]: s.value for s in families["monitor_feedback"].samples}
    assert results == {"matched": 1.0, "expired": 0.0, "dropped": 0.0, "duplicate": 0.0}
