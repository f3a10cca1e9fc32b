"""A real Prometheus scrapes the real scorer and sidecar, and answers queries about them.

Prometheus (Debian's package) runs with deploy/prometheus/prometheus.yml, its targets pointed at
the free ports the two processes got and its intervals shortened, and with the real rules.yml.
Every query of the Grafana dashboard (deploy/grafana/dashboards/mlops.json) runs in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from conftest import PROJECT_ROOT
from serve_fixtures import Scorer, bundled_records, free_port, running_scorer, signature_of

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "mlops.json"
# Grafana's variables, as the dashboard shows them by default.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$feature": ".*"}
# Panels that must show data once records were scored and read.
PANELS_WITH_DATA = (
    "Drift score (PSI) per feature",
    "Flagged features",
    "P-value of each feature's checks",
    "Missing values per feature",
    "Records in the window",
    "Requests per second by status",
    "Latency p50 / p99",
    "Records scored per second",
)
STARTUP_SECONDS = 90
SCRAPE_SECONDS = 60
BATCHES = 6
BATCH_SIZE = 10
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something other than None, for at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            value = probe()
            if value is not None:
                return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def background(command: list[str], env: dict[str, str], output: Path) -> Iterator[None]:
    with output.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield
        assert process.poll() is None, f"{command[0]} exited:\n{output.read_text()}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def ready(url: str) -> bool | None:
    return True if httpx.get(url, timeout=2).status_code == 200 else None


@pytest.fixture(scope="module")
def scorer(packaged_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorer]:
    with running_scorer(packaged_model, tmp_path_factory.mktemp("scorer")) as process:
        yield process


@pytest.fixture(scope="module")
def sidecar_url(
    scorer: Scorer, packaged_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("sidecar")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MONITOR_")}
    env.update(
        MODEL_DIR=str(packaged_model),
        PREDICTION_LOG=str(scorer.prediction_log),
        MONITOR_HOST="127.0.0.1",
        MONITOR_PORT=str(port),
        MONITOR_STATE_FILE=str(workdir / "state.json"),
        MONITOR_FEEDBACK_LOG=str(workdir / "feedback.jsonl"),
        MONITOR_POLL_INTERVAL_SECONDS="0.2",
        MONITOR_WINDOW_SIZE="200",
        MONITOR_MIN_WINDOW_SIZE="20",
        MONITOR_LABEL_LOG=str(workdir / "labels.jsonl"),
        MONITOR_SHIP_STATE_FILE=str(workdir / "ship_state.json"),
        MONITOR_SHIP_URL=str(workdir / "store"),  # shipping on: its metrics are exported
    )
    command = [sys.executable, "-m", "mlops.monitor"]
    with background(command, env, workdir / "sidecar.out"):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(f"{url}/health/ready"), STARTUP_SECONDS, "the sidecar")
        yield url


def prometheus_config(scorer_url: str, sidecar_url: str) -> dict[str, Any]:
    """The compose project's config, scraping these two processes every second."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    targets = {"scorer": scorer_url, "sidecar": sidecar_url}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]].removeprefix("http://")]}]
    return config


@pytest.fixture(scope="module")
def prometheus(
    scorer: Scorer, sidecar_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("prometheus", path=f"{os.environ['PATH']}:/usr/sbin:/usr/bin")
    if binary is None:
        pytest.skip("prometheus is not installed (run scripts/install-test-deps.sh as root)")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(scorer.url, sidecar_url)))
    port = free_port()
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with background(command, dict(os.environ), workdir / "prometheus.out"):
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(f"{url}/-/ready"), STARTUP_SECONDS, "Prometheus")
        yield url


@pytest.fixture(scope="module")
def scored(scorer: Scorer, packaged_model: Path) -> int:
    """Send BATCHES requests of BATCH_SIZE records of the bundled data; the records scored."""
    records = bundled_records(signature_of(packaged_model), limit=BATCHES * BATCH_SIZE)
    with httpx.Client(base_url=scorer.url, timeout=30) as client:
        for start in range(0, len(records), BATCH_SIZE):
            batch = records[start : start + BATCH_SIZE]
            response = client.post("/predict", json={"records": batch})
            assert response.status_code == 200, response.text
    return len(records)


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def value_reaching(prometheus: str, expression: str, expected: float) -> Callable[[], Any]:
    """A probe returning the query's series once their first value reaches ``expected``."""

    def probe() -> list[dict[str, Any]] | None:
        result = query(prometheus, expression)
        return result if result and float(result[0]["value"][1]) >= expected else None

    return probe


def test_both_targets_are_up(prometheus: str) -> None:
    def all_up() -> dict[str, str] | None:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
        health = {target["labels"]["job"]: target["health"] for target in targets["activeTargets"]}
        return health if set(health.values()) == {"up"} else None

    assert wait_for(all_up, SCRAPE_SECONDS, "both targets up") == {"scorer": "up", "sidecar": "up"}


def test_scorer_request_count_reads_back_through_prometheus(prometheus: str, scored: int) -> None:
    expression = 'sum(scorer_requests_total{route="/predict",status="200"})'
    result = wait_for(value_reaching(prometheus, expression, BATCHES), SCRAPE_SECONDS, expression)
    assert float(result[0]["value"][1]) == BATCHES
    records = query(prometheus, 'scorer_records_scored_total{route="/predict"}')
    assert float(records[0]["value"][1]) == scored


def test_sidecar_drift_metrics_read_back_through_prometheus(
    prometheus: str, scored: int, packaged_model: Path
) -> None:
    wait_for(
        value_reaching(prometheus, "monitor_window_records", scored),
        SCRAPE_SECONDS,
        "the sidecar's window to hold every scored record",
    )
    psi = query(prometheus, "monitor_feature_psi")
    features = {feature["name"] for feature in signature_of(packaged_model)["features"]}
    assert {series["metric"]["feature"] for series in psi} == features
    for series in psi:
        assert float(series["value"][1]) >= 0
        assert series["metric"]["job"] == "sidecar"


def test_alert_rules_evaluate_without_errors(prometheus: str, scored: int) -> None:
    def evaluated() -> dict[str, dict[str, Any]] | None:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        done = all(not rule["lastEvaluation"].startswith("0001") for rule in rules.values())
        return rules if rules and done else None

    rules = wait_for(evaluated, SCRAPE_SECONDS, "the rules to be evaluated")
    errors = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
    assert not errors
    # Both processes are scraped and no request failed: these must not even be pending.
    for name in ("ScorerDown", "SidecarDown", "ScorerHighErrorRate"):
        assert rules[name]["state"] == "inactive", name


def exported_names(metrics_text: str) -> set[str]:
    """Metric family and sample names in a Prometheus text exposition."""
    families = set(re.findall(r"^# TYPE (\S+)", metrics_text, flags=re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", metrics_text, flags=re.MULTILINE))
    return families | samples


def test_every_metric_the_rules_use_is_exported(scorer: Scorer, sidecar_url: str) -> None:
    exported = exported_names(httpx.get(f"{scorer.url}/metrics", timeout=10).text)
    exported |= exported_names(httpx.get(f"{sidecar_url}/metrics", timeout=10).text)
    rules = (PROMETHEUS_DIR / "rules.yml").read_text()
    used = set(re.findall(r"\b((?:scorer|monitor)_[a-z0-9_]+)", rules))
    assert used
    missing = {name for name in used if not is_exported(name, exported)}
    assert not missing, f"rules.yml uses metrics nobody exports: {sorted(missing)}"


def is_exported(name: str, exported: set[str]) -> bool:
    """A sample name, or a counter's/histogram's/info's family name, in the exposition."""
    suffixes = ("_total", "_bucket", "_info")
    return name in exported or any(name.removesuffix(suffix) in exported for suffix in suffixes)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) of every dashboard query."""
    board = json.loads(DASHBOARD.read_text())
    found = []
    for top in board["panels"]:
        for panel in (top, *top.get("panels", [])):
            for target in panel.get("targets", []):
                expression = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expression = expression.replace(variable, value)
                found.append((panel["title"], expression))
    return found


def test_every_metric_the_dashboard_uses_is_exported(scorer: Scorer, sidecar_url: str) -> None:
    exported = exported_names(httpx.get(f"{scorer.url}/metrics", timeout=10).text)
    exported |= exported_names(httpx.get(f"{sidecar_url}/metrics", timeout=10).text)
    used = {
        name
        for _, expression in dashboard_queries()
        for name in re.findall(r"\b((?:scorer|monitor)_[a-z0-9_]+)", expression)
    }
    # a classifier's sidecar exports no regressor's metrics (and the reverse), nor performance
    # metrics before the first label
    task_specific = {
        "monitor_prediction_mean",
        "monitor_reference_prediction_mean",
        "monitor_rolling_mae",
        "monitor_reference_mae",
        "monitor_rolling_rmse",
        "monitor_reference_rmse",
        "monitor_rolling_accuracy_ratio",
        "monitor_rolling_macro_f1_ratio",
        "monitor_read_lag_seconds",
    }
    missing = {name for name in used - task_specific if not is_exported(name, exported)}
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


def test_every_dashboard_query_runs_and_the_main_panels_show_data(
    prometheus: str, scored: int
) -> None:
    wait_for(
        value_reaching(prometheus, "monitor_window_records", scored),
        SCRAPE_SECONDS,
        "the sidecar's window to hold every scored record",
    )
    time.sleep(3)  # a few more scrapes: rates need two samples
    empty = set()
    for title, expression in dashboard_queries():
        if not query(prometheus, expression):  # query() asserts Prometheus accepted it
            empty.add(title)
    assert not empty & set(PANELS_WITH_DATA), sorted(empty & set(PANELS_WITH_DATA))
