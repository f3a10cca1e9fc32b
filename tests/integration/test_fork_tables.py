"""Forks of the template onto tables unlike penguins, as the README's "Use your own data" says:
set ``data.source`` and ``data.target``, ``make schema``, ``make repro`` — no other edit.

Three tables made here: a regression, a binary and a multiclass problem, each with headers holding
spaces, brackets, punctuation and non-ASCII letters, missing values and an identifier column. Each
fork runs the whole pipeline to a packaged model, is served and scored over real HTTP (REST and the
Open Inference Protocol), and the sidecar follows its prediction log with labels fed back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import BIN, PROJECT_ROOT, copy_project, run
from monitor_fixtures import FakeGitHub, fake_github, sidecar_for, wait_until
from serve_fixtures import running_scorer

pytestmark = pytest.mark.slow

VENV = BIN.parent  # the project's virtualenv, linked into each fork: no install per fork
SERVED_ROWS = 240  # rows held back from the fork's table, scored through the running service


@dataclass(frozen=True)
class Table:
    name: str  # file stem: data/<name>.csv, hence the model name
    target: str
    identifier: str
    task: str
    make: Callable[[np.random.Generator, int], pd.DataFrame]
    rows: int


def deliveries(generator: np.random.Generator, rows: int) -> pd.DataFrame:
    """Regression: minutes a delivery takes, from distance, items, weather, rating and more."""
    distance = generator.gamma(2.0, 2.5, rows).round(2)
    items = generator.integers(1, 13, rows)
    weather = generator.choice(["clear", "rain", "snow", "fog"], rows, p=[0.55, 0.25, 0.1, 0.1])
    rating = generator.uniform(3.0, 5.0, rows).round(1)
    temperature = generator.normal(12, 8, rows).round(1)
    first_order = generator.choice(["yes", "no"], rows, p=[0.2, 0.8])
    delay = pd.Series(weather).map({"clear": 0.0, "rain": 6.0, "snow": 15.0, "fog": 4.0})
    minutes = (
        8
        + 4.2 * distance
        + 1.1 * items
        + delay.to_numpy()
        - 2.0 * (rating - 4)
        + np.where(first_order == "yes", 3.0, 0.0)
        + generator.normal(0, 2.5, rows)
    ).round(1)
    frame = pd.DataFrame(
        {
            "Order ID": [f"ORD-{n:05d}" for n in generator.permutation(rows) + 1],
            "Distance (km)": distance,
            "Items #": items,
            "Weather/Condition": weather,
            "Driver rating ★": rating,
            "Temperatur (°C)": temperature,
            "1st order?": first_order,
            "Delivery Time [min]": minutes,
        }
    )
    _punch_holes(frame, generator, ["Temperatur (°C)", "Weather/Condition", "Driver rating ★"])
    return frame


def churn(generator: np.random.Generator, rows: int) -> pd.DataFrame:
    """Binary, imbalanced: whether a customer leaves, from charges, tenure, plan and calls."""
    charge = generator.uniform(20, 120, rows).round(2)
    tenure = generator.integers(0, 73, rows)
    plan = generator.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    calls = generator.poisson(1.5, rows)
    size = generator.choice(["klein", "mittel", "groß"], rows)
    logit = (
        -1.2
        + 0.035 * (charge - 70)
        - 0.07 * tenure
        + 0.75 * calls
        + pd.Series(plan).map({"basic": 0.8, "plus": 0.0, "pro": -0.9}).to_numpy()
    )
    churned = generator.random(rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "Customer ID": 100_001 + generator.permutation(rows),
            "Monthly Charge ($)": charge,
            "Tenure (months)": tenure,
            "plan/type": plan,
            "support.calls": calls,
            "Größe der Firma": size,
            "Churned?": np.where(churned, "yes", "no"),
        }
    )
    _punch_holes(frame, generator, ["Monthly Charge ($)", "plan/type", "support.calls"])
    return frame


def cultivars(generator: np.random.Generator, rows: int) -> pd.DataFrame:
    """Multiclass with whole-number class codes (1, 2, 3), like the UCI wine data."""
    cultivar = generator.choice([1, 2, 3], rows, p=[0.4, 0.35, 0.25])
    centre = {1: (13.7, 2.0, 5.5), 2: (12.3, 1.9, 3.0), 3: (13.1, 3.3, 7.4)}
    alcohol, malic, colour = (
        np.array([centre[c][k] for c in cultivar]) + generator.normal(0, s, rows)
        for k, s in enumerate((0.45, 0.6, 1.1))
    )
    frame = pd.DataFrame(
        {
            "Sample #": np.arange(1, rows + 1),
            "Alcohol %": alcohol.round(2),
            "Malic Acid": malic.round(2),
            "Color Intensity": colour.round(2),
            "Ash/Alkalinity": generator.normal(19.5, 3.3, rows).round(1),
            "1st Harvest": generator.integers(1995, 2021, rows),
            "Origin Region": generator.choice(["Piemonte", "Rioja", "Mosel"], rows),
            "Cultivar": cultivar,
        }
    )
    _punch_holes(frame, generator, ["Malic Acid", "Origin Region", "Ash/Alkalinity"])
    return frame


def _punch_holes(frame: pd.DataFrame, generator: np.random.Generator, columns: list[str]) -> None:
    """About 4 % missing values in each of ``columns``."""
    for column in columns:
        frame.loc[generator.random(len(frame)) < 0.04, column] = None


TABLES = {
    "regression": Table(
        "deliveries", "Delivery Time [min]", "Order ID", "regression", deliveries, 1400
    ),
    "binary": Table("churn", "Churned?", "Customer ID", "classification", churn, 1600),
    "multiclass": Table("cultivars", "Cultivar", "Sample #", "classification", cultivars, 1000),
}


def fork(root: Path, table: Table, frame: pd.DataFrame) -> Path:
    """A fresh fork whose params name the new table and its target, and nothing else."""
    project = copy_project(root)
    link_environment(project)
    frame.to_csv(project / "data" / f"{table.name}.csv", index=False)
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["data"]["source"] = f"data/{table.name}.csv"
    params["data"]["target"] = table.target
    params_path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    return project


def link_environment(project: Path) -> None:
    """Give the fork the project's virtualenv (and uv, when the Makefile installed its own), as
    already installed: ``make`` then runs the fork's targets without installing anything."""
    (project / ".venv").symlink_to(VENV)
    if (PROJECT_ROOT / ".tools").is_dir():
        (project / ".tools").symlink_to(PROJECT_ROOT / ".tools")
    synced = (VENV / ".synced").stat().st_mtime
    for name in ("pyproject.toml", "uv.lock"):  # not newer than the install: nothing to sync
        os.utime(project / name, (synced - 1, synced - 1))


def served_records(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    """The rows as a client sends them: the data's own column names, JSON null for missing."""
    return [
        {name: _json_value(row[name]) for name in features}
        for row in frame.to_dict(orient="records")
    ]


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None:
        return None
    return value.item() if hasattr(value, "item") else value


def v2_inputs(signature: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": feature["name"],
            "shape": [len(records), 1],
            "datatype": "FP32" if feature["type"] == "number" else "BYTES",
            "data": [record[feature["name"]] for record in records],
        }
        for feature in signature["features"]
    ]


@pytest.fixture(scope="module", params=sorted(TABLES))
def forked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A fork reproduced to a packaged model, and the rows held back for serving."""
    table = TABLES[request.param]
    frame = table.make(np.random.default_rng(13), table.rows + SERVED_ROWS)
    held_back = frame.iloc[table.rows :].reset_index(drop=True)
    project = fork(tmp_path_factory.mktemp(table.name) / "project", table, frame.iloc[: table.rows])
    schema_run = run(["make", "schema"], project)
    repro = run(["make", "repro"], project)
    return table, project, held_back, schema_run.stdout + schema_run.stderr, repro


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_make_schema_and_repro_package_a_model_of_the_task_under_the_users_names(
    forked: Any,
) -> None:
    table, project, _, schema_output, _ = forked
    assert table.identifier in schema_output  # named as left out of the features
    schema = yaml.safe_load((project / "data" / "schema.yaml").read_text())
    assert table.target in schema["columns"] and table.identifier in schema["columns"]

    validation = read_json(project / "reports/validate/validation.json")
    assert validation["task"]["task"] == table.task, validation["task"]
    assert table.target in validation["task"]["reason"]

    signature = read_json(project / "models/package/signature.json")
    frame = pd.read_csv(project / "data" / f"{table.name}.csv")
    expected_features = [c for c in frame.columns if c not in (table.target, table.identifier)]
    assert signature["task"] == table.task
    assert signature["model_name"] == table.name
    assert [f["name"] for f in signature["features"]] == expected_features
    input_names = [f["input_name"] for f in signature["features"]]
    assert len(set(input_names)) == len(input_names)
    assert all(name.replace("_", "").isalnum() for name in input_names), input_names
    verdict = read_json(project / "reports/accept/verdict.json")
    assert verdict["passed"] is True, verdict
    model_card = (project / "models/package/model_card.md").read_text()
    assert all(name in model_card for name in expected_features)


# Floors from the first runs of these tables (seed 13), a little below what was reached; the
# baseline that ignores the features is far below each.
QUALITY_FLOORS: dict[str, dict[str, float]] = {
    "deliveries": {"r2": 0.85},
    "churn": {"roc_auc": 0.80},
    "cultivars": {"macro_f1": 0.85},
}


def test_each_fork_reaches_its_quality_floor(forked: Any) -> None:
    table, project, _, _, _ = forked
    metrics = read_json(project / "reports/evaluate/metrics.json")
    assert metrics["task"] == table.task
    for name, floor in QUALITY_FLOORS[table.name].items():
        assert metrics[name] >= floor, (name, metrics[name], floor)
    if table.task == "regression":
        assert metrics["rmse"] > 0 and metrics["mae"] <= metrics["rmse"]
        for plot in ("predicted_actual.png", "residuals.png"):
            assert (project / "reports/evaluate/plots" / plot).is_file(), plot
    elif table.name == "churn":
        assert metrics["positive_class"] == "yes"  # the rarer class
        assert 0 < metrics["pr_auc"] <= 1


def test_a_fork_is_served_over_rest_and_v2_and_watched_by_the_sidecar(
    forked: Any, tmp_path: Path
) -> None:
    table, project, held_back, _, _ = forked
    package = project / "models" / "package"
    signature = read_json(package / "signature.json")
    features = [f["name"] for f in signature["features"]]
    records = served_records(held_back, features)
    truth = held_back[table.target].tolist()
    with running_scorer(package, tmp_path / "scorer") as scorer, fake_github() as github:
        client = httpx.Client(base_url=scorer.url, timeout=30)
        predictions = []
        for start in range(0, len(records), 40):
            response = client.post("/predict", json={"records": records[start : start + 40]})
            assert response.status_code == 200, response.text
            predictions += response.json()["predictions"]
        assert len(predictions) == len(records)
        v2 = client.post(
            f"/v2/models/{signature['model_name']}/infer",
            json={"inputs": v2_inputs(signature, records[:25])},
        )
        assert v2.status_code == 200, v2.text
        outputs = {output["name"]: output for output in v2.json()["outputs"]}
        if table.task == "regression":
            values = [p["prediction"] for p in predictions]
            assert all(isinstance(value, float) for value in values)
            assert outputs["prediction"]["data"] == pytest.approx(values[:25], rel=1e-6)
            rmse = float(np.sqrt(np.mean((np.array(values) - np.array(truth)) ** 2)))
            assert rmse < float(np.std(truth)) * 0.5  # far better than predicting the mean
        else:
            labels = [p["label"] for p in predictions]
            assert set(labels) <= set(signature["classes"])
            assert outputs["label"]["data"] == labels[:25]
            accuracy = float(np.mean(np.array(labels) == np.array([str(t) for t in truth])))
            assert accuracy >= 0.75
        answered = len(records) + 25  # the log's writer flushes within 50 ms of an answer
        wait_until(lambda: len(scorer.log_lines()) >= answered, 10, "the prediction log")
        logged = [json.loads(line) for line in scorer.log_lines()]
        assert len(logged) == answered
        assert set(logged[0]["features"]) == set(features)  # the user's names in the log
        _watch_with_the_sidecar(tmp_path, package, scorer.prediction_log, github, table, truth)


def _watch_with_the_sidecar(
    tmp_path: Path,
    package: Path,
    prediction_log: Path,
    github: FakeGitHub,
    table: Table,
    truth: list[Any],
) -> None:
    """The sidecar reads the traffic, takes the labels of the /predict records, and reports
    drift per feature (the user's names) and performance of the task's kind."""
    sidecar = sidecar_for(tmp_path / "sidecar", package, prediction_log, github)
    sidecar.start()
    try:
        logged = [json.loads(line) for line in prediction_log.read_text().splitlines()]
        wait_until(lambda: sidecar.records_read() == len(logged), 30, "the log read", sidecar)
        feedback = [
            {
                "request_id": line["request_id"],
                "index": line["index"],
                "label": float(value) if table.task == "regression" else str(value),
            }
            for line, value in zip(logged, truth, strict=False)
        ]
        response = httpx.post(f"{sidecar.url}/feedback", json=feedback, timeout=10)
        assert response.status_code in (200, 202), response.text
        wait_until(
            lambda: sidecar.get("/performance").json()["labelled"] == len(truth),
            30,
            "the labels matched",
            sidecar,
        )
        drift = sidecar.get("/drift").json()
        signature = read_json(package / "signature.json")
        assert set(drift["features"]) == {f["name"] for f in signature["features"]}
        assert drift["alert"] is False, drift  # held-back rows of the same table
        performance = sidecar.get("/performance").json()
        if table.task == "regression":
            assert performance["rmse"] < float(np.std(truth)) * 0.5, performance
            assert performance["mae"] <= performance["rmse"]
        else:
            assert performance["accuracy"] >= 0.75, performance
    finally:
        sidecar.stop()
