"""deploy/grafana/dashboards/mlops.json is a dashboard Grafana's schema accepts, laid out on its
grid, and provisioned by deploy/compose.yaml.

The schema check: Grafana publishes its dashboard schema as TypeScript types (@grafana/schema, npm);
the dashboard, and each panel's options and field config against its panel type's own schema, is
written out as typed TypeScript and compiled with ``tsc``, which refuses an unknown key, a
missing required one or a value outside an enum. The versions are pinned by
deploy/grafana/schema-check/package-lock.json and installed with ``npm ci`` (once per lock, under
.tools/). No Grafana server is packaged for Debian, PyPI or npm, so none is started here; the
queries themselves run against a real Prometheus in tests/integration/test_prometheus_scrape.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import PROJECT_ROOT

GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mlops.json"
CHECK = GRAFANA / "schema-check"
COMPOSE = PROJECT_ROOT / "deploy" / "compose.yaml"
GRID_COLUMNS = 24
# Panel types whose options and field config have a schema of their own in @grafana/schema.
PANEL_SCHEMAS = {
    "timeseries": ("timeseries", "TimeSeriesPanelCfg"),
    "stat": ("stat", "StatPanelCfg"),
    "state-timeline": ("statetimeline", "StateTimelinePanelCfg"),
}
# String enums of the schema take their values as text, as in JSON.
LOOSE = (
    "type Loose<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined"
    " ? T : T extends ReadonlyArray<infer U> ? Array<Loose<U>> : { [K in keyof T]: Loose<T[K]> };"
)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    return [panel for top in board["panels"] for panel in (top, *top.get("panels", []))]


def typed_source(board: dict[str, Any]) -> str:
    """The dashboard as TypeScript typed by Grafana's schema."""
    lines = ["import type { Dashboard } from '@grafana/schema';"]
    for module, config in PANEL_SCHEMAS.values():
        path = f"@grafana/schema/dist/esm/raw/composable/{module}/panelcfg/x/{config}_types.gen"
        lines.append(f"import type * as {module} from '{path}';")
    lines += [LOOSE, f"export const dashboard: Loose<Dashboard> = {json.dumps(board, indent=2)};"]
    for panel in panels(board):
        if panel["type"] not in PANEL_SCHEMAS:
            continue
        module = PANEL_SCHEMAS[panel["type"]][0]
        options = json.dumps(panel.get("options", {}))
        lines.append(f"export const options{panel['id']}: Loose<{module}.Options> = {options};")
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None:
            lines.append(
                f"export const custom{panel['id']}: Loose<{module}.FieldConfig> = "
                f"{json.dumps(custom)};"
            )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def compiler() -> Path:
    """The pinned TypeScript and @grafana/schema, installed once per lock file; or skip."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed (apt-get install nodejs npm)")
    lock = (CHECK / "package-lock.json").read_bytes()
    home = PROJECT_ROOT / ".tools" / f"grafana-schema-{hashlib.sha256(lock).hexdigest()[:12]}"
    tsc = home / "node_modules" / ".bin" / "tsc"
    if not tsc.is_file():
        home.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "tsconfig.json"):
            shutil.copy(CHECK / name, home / name)
        installed = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.skip(f"npm ci could not install the schema: {installed.stderr.strip()[-300:]}")
    return home


def type_check(home: Path, board: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    generated = home / "generated"
    generated.mkdir(exist_ok=True)
    (generated / "dashboard.ts").write_text(typed_source(board))
    tsc = home / "node_modules" / ".bin" / "tsc"
    return subprocess.run(
        [str(tsc), "-p", str(home)], capture_output=True, text=True, timeout=300, cwd=home
    )


def test_the_dashboard_follows_grafanas_schema(compiler: Path, dashboard: dict[str, Any]) -> None:
    result = type_check(compiler, dashboard)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_schema_check_rejects_a_wrong_key_and_a_wrong_value(
    compiler: Path, dashboard: dict[str, Any]
) -> None:
    wrong_key = json.loads(json.dumps(dashboard).replace('"gridPos"', '"gridPosition"', 1))
    result = type_check(compiler, wrong_key)
    assert result.returncode != 0 and "gridPosition" in result.stdout
    wrong_value = json.loads(
        json.dumps(dashboard).replace('"placement": "bottom"', '"placement": "below"', 1)
    )
    result = type_check(compiler, wrong_value)
    assert result.returncode != 0 and '"below"' in result.stdout


def test_panels_tile_the_grid_and_use_the_dashboards_data_source(
    dashboard: dict[str, Any],
) -> None:
    every = panels(dashboard)
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for column in range(grid["x"], grid["x"] + grid["w"]):
            for row in range(grid["y"], grid["y"] + grid["h"]):
                assert (column, row) not in cells, (panel["title"], cells.get((column, row)))
                cells[(column, row)] = panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel.get("description"), f"{panel['title']}: say what it shows"
    titles = {panel["title"] for panel in every}
    for title in ("Drift score (PSI) per feature", "Flagged features", "Latency p50 / p99"):
        assert title in titles


def test_compose_provisions_the_dashboard_and_its_data_source(dashboard: dict[str, Any]) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    grafana = compose["services"]["grafana"]
    mounts = {
        source: target for source, target, *_ in (mount.split(":") for mount in grafana["volumes"])
    }
    provisioning = GRAFANA / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "mlops.yml").read_text())
    (provider,) = providers["providers"]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    prometheus_port = compose["services"]["prometheus"]["command"][-1].rsplit(":", 1)[1]
    assert source["url"] == f"http://127.0.0.1:{prometheus_port}"
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert (variable["query"], variable["current"]["value"]) == (source["type"], source["uid"])
    assert grafana["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
