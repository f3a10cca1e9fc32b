import json
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

from mlops import artifacts
from mlops.monitor.app import create_app
from mlops.monitor.feedback import Feedback
from mlops.monitor.reference import load_reference
from mlops.monitor.retrain import GitHubDispatcher, Outcome
from mlops.monitor.service import Monitor, build_monitor
from mlops.monitor.settings import MonitorSettings
from mlops.monitor.state import load_state
from mlops.profile import profile_table
from mlops.stage import StageError

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


@pytest.fixture
def settings(tmp_path: Path) -> MonitorSettings:
    return MonitorSettings(
        prediction_log=tmp_path / "logs" / "predictions.jsonl",
        model_dir=write_model_dir(tmp_path / "model"),
        feedback_log=tmp_path / "logs" / "feedback.jsonl",
        state_file=tmp_path / "logs" / "state.json",
        window_size=300,
        min_window_size=100,
        min_feedback=10,
        alert_hold_seconds=30,
        poll_interval_seconds=0.05,
    )


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
    http = [Feedback(request_id="f-2", index=0, label=wrong), Feedback(request_id="zz", label="a")]
    assert monitor.add_feedback(http) == (1, 1)
    monitor.poll()
    snapshot = monitor.snapshot()
    assert snapshot.counts.feedback == {"matched": 11, "unmatched": 1}
    assert snapshot.counts.logs["feedback"].corrupt == 1
    assert snapshot.performance.labelled == 11
    assert snapshot.performance.accuracy == pytest.approx(10 / 11)


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
    assert set(drift["prediction"]) == {"score", "drifted"}
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200

    good = client.post("/feedback", json={"request_id": "c-0", "label": "a"})
    assert good.json() == {"matched": 1, "unmatched": 0}
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
    assert 'monitor_model_info{model_name="toy",model_version="7"} 1.0' in text
    assert "request_id" not in text and "c-0" not in text

    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "<td>x</td>" in page.text and "<td>kind</td>" in page.text
    assert "<script" not in page.text and "https://" not in page.text


class BlockedDispatcher(GitHubDispatcher):
    """A GitHub API that hangs until released, as a slow network would."""

    def __init__(self) -> None:
        super().__init__("https://api.github.com", "owner/repo", None, timeout=1)
        self.entered, self.release = threading.Event(), threading.Event()

    def send(self, payload: dict[str, Any]) -> Outcome:
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
