"""deploy/compose.yaml follows the compose specification and wires the pair as the image expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import PROJECT_ROOT, run
from infra.tools import require_tool

COMPOSE = PROJECT_ROOT / "deploy" / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def validate(path: Path) -> tuple[int, str]:
    checker = require_tool("check-jsonschema")
    result = run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(path)], path.parent, check=False
    )
    return result.returncode, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec() -> None:
    returncode, output = validate(COMPOSE)
    assert returncode == 0, output


def test_the_schema_check_rejects_a_wrong_field(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("read_only: true", "read_only: [yes]"))
    returncode, output = validate(broken)
    assert returncode != 0
    assert "read_only" in output


def test_scorer_and_sidecar_share_the_image_and_the_prediction_log(compose: dict[str, Any]) -> None:
    scorer, sidecar = compose["services"]["scorer"], compose["services"]["sidecar"]
    assert scorer["image"] == sidecar["image"]
    assert scorer["command"][-1] == "mlops.serve"
    assert sidecar["command"][-1] == "mlops.monitor"
    assert sidecar["volumes"][0] == scorer["volumes"][0]
    volume, mount = scorer["volumes"][0].split(":")[:2]
    assert volume in compose["volumes"]
    log = scorer["environment"]["PREDICTION_LOG"]
    assert log == sidecar["environment"]["PREDICTION_LOG"]
    assert log.startswith(mount + "/")
    for name in ("MONITOR_STATE_FILE", "MONITOR_FEEDBACK_LOG"):
        assert sidecar["environment"][name].startswith(mount + "/")


def test_the_scorer_serves_grpc_beside_http_on_loopback(compose: dict[str, Any]) -> None:
    environment = compose["services"]["scorer"]["environment"]
    assert environment["SCORER_HOST"] == "127.0.0.1"
    assert environment["SCORER_GRPC_PORT"] not in (environment["SCORER_PORT"], "0")


def test_every_service_is_read_only_without_capabilities(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_prometheus_mounts_the_checked_config_and_rules(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["prometheus"]["volumes"]
    sources = {mount.split(":")[0] for mount in mounts}
    assert {"./prometheus/prometheus.yml", "./prometheus/rules.yml"} <= sources
    for source in sources:
        if source.startswith("./"):
            assert (COMPOSE.parent / source).is_file(), source
    prometheus = yaml.safe_load((COMPOSE.parent / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    }
    ports = {
        compose["services"]["scorer"]["environment"]["SCORER_PORT"],
        compose["services"]["sidecar"]["environment"]["MONITOR_PORT"],
    }
    assert targets == {f"127.0.0.1:{port}" for port in ports}


def test_the_scorer_shadows_a_challenger_package_mounted_read_only(compose: dict[str, Any]) -> None:
    """Compose runs shadow mode: the image's model answers, the package CHALLENGER_PACKAGE
    (default: this working tree's models/package) scores a copy of each request."""
    scorer = compose["services"]["scorer"]
    environment = scorer["environment"]
    (challenger,) = [mount for mount in scorer["volumes"] if "/app/challenger" in mount]
    source, target, options = challenger.rsplit(":", 2)
    assert source == "${CHALLENGER_PACKAGE:-../models/package}"
    assert (COMPOSE.parent / "../models/package").resolve() == PROJECT_ROOT / "models" / "package"
    assert target == environment["SCORER_CHALLENGER_DIR"]
    assert "ro" in options.split(",")
    assert environment["SCORER_CHALLENGER_MODE"] == "${SCORER_CHALLENGER_MODE:-shadow}"
    sidecar = compose["services"]["sidecar"]  # the same package: the challenger's reference
    assert challenger in sidecar["volumes"]
    assert sidecar["environment"]["MONITOR_CHALLENGER_MODEL_DIR"] == target


def test_the_sidecar_compares_the_roles_with_the_scorers_counts(compose: dict[str, Any]) -> None:
    scorer = compose["services"]["scorer"]["environment"]
    sidecar = compose["services"]["sidecar"]["environment"]
    assert sidecar["MONITOR_SCORER_URL"] == f"http://127.0.0.1:{scorer['SCORER_PORT']}"
    for role in ("CHAMPION", "CHALLENGER"):  # from the shell when set there; else not sent
        assert sidecar[f"MONITOR_{role}_REGISTRY_VERSION"] is None
