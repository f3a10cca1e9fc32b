"""Prometheus accepts the compose project's config and alert rules, and the alerts behave.

deploy/prometheus/rules_test.yml holds the alert unit tests (`promtool test rules`): each alert
fires on the series that should raise it, after its hold, and stays quiet on healthy traffic.
"""

from __future__ import annotations

from pathlib import Path

from conftest import PROJECT_ROOT, run
from infra.tools import require_tool

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"


def promtool(*arguments: str, cwd: Path = PROMETHEUS_DIR) -> tuple[int, str]:
    result = run([require_tool("promtool"), *arguments], cwd, check=False)
    return result.returncode, result.stdout + result.stderr


def test_config_is_valid_and_loads_the_rules() -> None:
    returncode, output = promtool("check", "config", "prometheus.yml")
    assert returncode == 0, output
    assert "1 rule files found" in output


def test_rules_are_valid() -> None:
    returncode, output = promtool("check", "rules", "rules.yml")
    assert returncode == 0, output


def test_alerts_fire_when_they_should_and_only_then() -> None:
    returncode, output = promtool("test", "rules", "rules_test.yml")
    assert returncode == 0, output


def test_alert_tests_fail_when_a_threshold_changes(tmp_path: Path) -> None:
    rules = (PROMETHEUS_DIR / "rules.yml").read_text()
    loosened = rules.replace("> 0.01", "> 0.5")
    assert loosened != rules
    (tmp_path / "rules.yml").write_text(loosened)
    (tmp_path / "rules_test.yml").write_text((PROMETHEUS_DIR / "rules_test.yml").read_text())
    returncode, output = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert returncode != 0
    assert "ScorerHighErrorRate" in output


def test_every_alert_is_covered_by_a_unit_test() -> None:
    rules = (PROMETHEUS_DIR / "rules.yml").read_text()
    tests = (PROMETHEUS_DIR / "rules_test.yml").read_text()
    alerts = [line.split(":")[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert alerts
    for alert in alerts:
        assert f"alertname: {alert}" in tests, alert
