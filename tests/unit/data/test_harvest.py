"""Stage harvest: the sidecar's shipped predictions and labels (written here by the shipper's own
code) as labelled rows of the source, and ingest appending them.

The columns are a user's own (spaces, brackets, unicode), the schema refuses what it should, and
a regressor's labels are numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from mlops.data.harvest import main
from mlops.data.ingest import main as ingest
from mlops.data.rules.harvest import append_harvest, labelled_predictions, source_rows
from mlops.data.validate import main as validate
from mlops.monitor.ship import partitions
from mlops.stage import StageError

WEIGHT, PLACE, TARGET, ID = "Gewicht [kg]", "Insel / île", "Art", "tier id"
SCHEMA = {
    "schema_type": "dataframe",
    "api": "pandas",
    "columns": {
        ID: {"dtype": "float64", "nullable": True, "coerce": True},  # null when harvested
        WEIGHT: {"dtype": "float64", "nullable": True, "coerce": True,
                 "checks": {"in_range": {"min_value": 0.0, "max_value": 10.0}}},
        PLACE: {"dtype": "str", "nullable": True, "coerce": True,
                "checks": {"isin": ["Biscoe", "Dream"]}},
        TARGET: {"dtype": "str", "coerce": True, "checks": {"isin": ["a", "b"]}},
    },
    "strict": True,
}  # fmt: skip
SOURCE = pd.DataFrame(
    {ID: [1, 2, 3], WEIGHT: [1.5, 2.5, 3.5], PLACE: ["Biscoe", "Dream", None], TARGET: list("aba")}
)


def prediction(
    request_id: str,
    index: int,
    weight: float | None,
    place: str | None,
    ts: str,
    version: str = "v1",
) -> dict[str, Any]:
    return {
        "ts": ts,
        "request_id": request_id,
        "index": index,
        "model_version": version,
        "features": {WEIGHT: weight, PLACE: place},
        "prediction": "a",
        "probabilities": {"a": 0.9, "b": 0.1},
        "latency_seconds": 0.001,
    }


def label(request_id: str, index: int, value: Any, ts: str) -> dict[str, Any]:
    return {"ts": ts, "request_id": request_id, "index": index, "label": value}


def ship(store: Path, log: str, records: list[dict[str, Any]], segment: str) -> None:
    """What the sidecar's shipper writes for a segment holding ``records``."""
    data = b"".join(json.dumps(record).encode() + b"\n" for record in records)
    for partition, table in partitions(log, data)[0].items():
        path = store / log / partition / f"{segment}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(table)


def project(tmp_path: Path, **harvest: Any) -> Path:
    params = {
        "data": {"source": str(tmp_path / "source.parquet"), "target": TARGET,
                 "schema": str(tmp_path / "schema.yaml")},
        "harvest": {"enabled": True, "source": str(tmp_path / "store"), **harvest},
        "label": {"method": "column"},
        "clean": {"normalize_strings": True},
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "schema.yaml").write_text(
        yaml.safe_dump(SCHEMA, allow_unicode=True, sort_keys=False)
    )
    SOURCE.to_parquet(tmp_path / "source.parquet", index=False)
    return tmp_path / "params.yaml"


def run_harvest(tmp_path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    main(
        [
            "--params", str(tmp_path / "params.yaml"), "--schema", str(tmp_path / "schema.yaml"),
            "--out", str(tmp_path / "harvest.parquet"), "--summary", str(tmp_path / "summary.json"),
        ]
    )  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    return pd.read_parquet(tmp_path / "harvest.parquet"), summary


DAY = "2026-11-21T10:00:00.000Z"
LATER = "2026-11-22T10:00:00.000Z"


def shipped_store(store: Path) -> None:
    ship(
        store,
        "predictions",
        [
            prediction("r1", 0, 4.0, "Biscoe", DAY),
            prediction("r1", 1, None, " dream ", DAY),  # normalised as clean will: kept
            prediction("r2", 0, 99.0, "Dream", LATER, version="v2"),  # outside the range
            prediction("r3", 0, 5.0, "Torgersen", LATER, version="v2"),  # a category not listed
            prediction("r4", 0, 6.0, "Dream", LATER, version="v2"),  # never labelled
        ],
        "segment-1",
    )
    ship(store, "predictions", [prediction("r1", 0, 4.0, "Biscoe", DAY)], "segment-again")
    ship(
        store,
        "labels",
        [
            label("r1", 0, "a", DAY),
            label("r1", 0, "b", LATER),  # a second label for the same prediction: the latest wins
            label("r1", 1, "a", DAY),
            label("r2", 0, "b", DAY),
            label("r3", 0, "a", DAY),
            label("r9", 0, "a", DAY),  # its prediction was never shipped (another pod's, late)
        ],
        "labels-1",
    )


def test_labelled_predictions_become_source_rows_and_the_schema_refuses_what_it_should(
    tmp_path: Path,
) -> None:
    project(tmp_path)
    shipped_store(tmp_path / "store")
    rows, summary = run_harvest(tmp_path)
    assert list(rows.columns) == [ID, WEIGHT, PLACE, TARGET]
    assert rows.astype(object).where(rows.notna(), None).to_dict("records") == [
        {ID: None, WEIGHT: 4.0, PLACE: "Biscoe", TARGET: "b"},
        {ID: None, WEIGHT: None, PLACE: " dream ", TARGET: "a"},
    ]
    assert {key: summary[key] for key in ("files", "predictions", "labels")} == {
        "files": {"predictions": 3, "labels": 2},  # partitions by date (and model version)
        "predictions": 5,  # the labelled ones read, the copy of r1/0 included
        "labels": 6,
    }
    assert summary["duplicate_predictions"] == 1 and summary["duplicate_labels"] == 1
    assert summary["labels_without_prediction"] == 1
    assert (summary["labelled"], summary["refused"], summary["rows"]) == (4, 2, 2)
    assert {(f["column"], f["count"]) for f in summary["failures"]} == {(WEIGHT, 1), (PLACE, 1)}
    assert summary["model_versions"] == {"v1": 2}
    assert summary["not_carried"] == [ID]


def test_a_column_the_predictions_do_not_carry_must_hold_nulls(tmp_path: Path) -> None:
    """An integer id column cannot be null: every harvested row is refused, and the summary
    names the column and why."""
    SCHEMA["columns"][ID]["dtype"] = "int64"
    try:
        project(tmp_path)
    finally:
        SCHEMA["columns"][ID]["dtype"] = "float64"
    shipped_store(tmp_path / "store")
    rows, summary = run_harvest(tmp_path)
    assert rows.empty and summary["refused"] == summary["labelled"] == 4
    assert summary["not_carried"] == [ID]
    assert any(f["column"] == ID and "int64" in f["check"] for f in summary["failures"])


def test_ingest_appends_the_harvested_rows_in_the_sources_types_and_validate_counts_them(
    tmp_path: Path,
) -> None:
    params = project(tmp_path)
    shipped_store(tmp_path / "store")
    run_harvest(tmp_path)
    raw = tmp_path / "raw.parquet"
    ingest(
        ["--params", str(params), "--out", str(raw), "--harvest", str(tmp_path / "harvest.parquet")]
    )
    table = pd.read_parquet(raw)
    assert len(table) == 5 and table[TARGET].tolist() == ["a", "b", "a", "b", "a"]
    assert table[WEIGHT].dtype == "float64" and table[ID].isna().tolist()[3:] == [True, True]
    validate(
        [
            "--params", str(params), "--input", str(raw), "--schema", str(tmp_path / "schema.yaml"),
            "--reports", str(tmp_path / "reports"), "--harvest", str(tmp_path / "summary.json"),
        ]
    )  # fmt: skip
    report = json.loads((tmp_path / "reports" / "validation.json").read_text())
    assert report["harvested"] == {"rows": 2, "share": 0.4}
    assert (
        "harvested: 2 rows of labelled inference data (40.0% of the table)"
        in (tmp_path / "reports" / "profile.md").read_text()
    )


def test_disabled_it_reads_nothing_and_adds_nothing(tmp_path: Path) -> None:
    params = project(tmp_path, enabled=False, source=str(tmp_path / "nowhere"))
    rows, summary = run_harvest(tmp_path)
    assert rows.empty and list(rows.columns) == [ID, WEIGHT, PLACE, TARGET]
    assert summary["enabled"] is False and summary["rows"] == 0
    raw = tmp_path / "raw.parquet"
    ingest(
        ["--params", str(params), "--out", str(raw), "--harvest", str(tmp_path / "harvest.parquet")]
    )
    pd.testing.assert_frame_equal(pd.read_parquet(raw), SOURCE)  # the same table, the same types


def test_a_missing_store_or_another_label_method_stops_the_stage_saying_why(tmp_path: Path) -> None:
    project(tmp_path, source=str(tmp_path / "nowhere"))
    with pytest.raises(StageError, match=r"harvest\.source .*nowhere: not found"):
        run_harvest(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["label"] = {"method": "rules", "rules": [{"when": "x > 1", "then": "a"}]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(StageError, match=r"label\.method column only"):
        run_harvest(tmp_path)


def test_an_empty_store_harvests_nothing(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "store").mkdir()
    rows, summary = run_harvest(tmp_path)
    assert rows.empty and summary["files"] == {"predictions": 0, "labels": 0}


def test_a_regressors_labels_are_numbers_and_the_label_goes_where_label_column_says() -> None:
    predictions = pd.DataFrame(
        {"ts": [1, 2], "request_id": ["r1", "r2"], "index": [0, 0], "model_version": ["v", "v"],
         "features.Fläche (m²)": [50.0, 80.5], "prediction": [210.0, 305.0]}
    )  # fmt: skip
    labels = pd.DataFrame(
        {"ts": [5, 6, 7], "request_id": ["r2", "r1", "r1"], "index": [0, 0, 0],
         "label": [300.0, 199.0, 201.5]}
    )  # fmt: skip
    found = labelled_predictions(predictions, labels)
    rows = source_rows(found["joined"], ["Fläche (m²)", "raw price", "Preis"], "raw price")
    assert rows.to_dict("records") == [
        {"Fläche (m²)": 50.0, "raw price": 201.5, "Preis": None},
        {"Fläche (m²)": 80.5, "raw price": 300.0, "Preis": None},
    ]
    assert found["duplicate_labels"] == 1


def test_appending_nothing_changes_nothing() -> None:
    assert append_harvest(SOURCE, SOURCE.iloc[:0]) is SOURCE


def test_only_answered_predictions_become_rows_never_a_challengers_shadow_copy(
    tmp_path: Path,
) -> None:
    """A shadow copy has the answered line's request id, index and features: shipped (with its
    role and shadow columns), never harvested; a canary challenger's answer is a row."""
    project(tmp_path)
    store = tmp_path / "store"
    shadow = {"role": "challenger", "shadow": True}
    ship(
        store,
        "predictions",
        [  # the shadow copies come first: the harvest must not keep them as "the first copy"
            prediction("r1", 0, 4.0, "Biscoe", DAY, version="v9") | shadow,
            prediction("r2", 0, 3.0, "Dream", DAY, version="v9") | shadow,
            prediction("r1", 0, 4.0, "Biscoe", DAY) | {"role": "champion"},
            prediction("r2", 0, 3.0, "Dream", DAY),  # from before the rollout: no role at all
            prediction("r3", 0, 2.0, "Dream", DAY, version="v9") | {"role": "challenger"},
        ],
        "segment-1",
    )
    ship(
        store,
        "labels",
        [label(r, 0, "a", DAY) for r in ("r1", "r2", "r3")],
        "labels-1",
    )
    shipped = pd.concat(map(pd.read_parquet, sorted(store.glob("predictions/**/*.parquet"))))
    assert sorted(zip(shipped["role"], shipped["shadow"], strict=True)) == [
        ("challenger", False),
        ("challenger", True),
        ("challenger", True),
        ("champion", False),
        ("champion", False),
    ]
    rows, summary = run_harvest(tmp_path)
    assert rows[WEIGHT].tolist() == [4.0, 3.0, 2.0]
    assert (summary["labelled"], summary["rows"], summary["duplicate_predictions"]) == (3, 3, 0)
    assert (summary["predictions"], summary["shadow_predictions"]) == (5, 2)
    assert summary["model_versions"] == {"v1": 2, "v9": 1}
