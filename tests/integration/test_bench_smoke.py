"""``make bench QUICK=1``: every part of the benchmark runs and writes its report (a smoke test)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, run

pytestmark = pytest.mark.slow
STAGES = [
    "harvest",
    "ingest",
    "validate",
    "clean",
    "label",
    "split",
    "train",
    "evaluate",
    "accept",
    "package",
]


def test_the_quick_benchmark_measures_every_stage_and_the_scorer(tmp_path: Path) -> None:
    report, results = tmp_path / "BENCHMARKS.md", tmp_path / "results.json"
    workspace_report = PROJECT_ROOT / "BENCHMARKS.md"
    committed = workspace_report.read_bytes() if workspace_report.exists() else None
    command = [sys.executable, "benchmarks/run.py", "--quick"]
    command += ["--output", str(report), "--json", str(results)]
    serve = all(shutil.which(tool) for tool in ("wrk", "h2load"))  # HTTP; gRPC
    completed = run([*command, *([] if serve else ["--no-serve"])], PROJECT_ROOT, timeout=900)
    assert "bench:" in completed.stdout

    measured = json.loads(results.read_text())
    pipeline = measured["default_pipeline"]
    assert [stage["stage"] for stage in pipeline["repro"]["stages"]] == STAGES
    for stage in pipeline["repro"]["stages"]:
        assert stage["seconds"] > 0.1 and stage["peak_rss_mib"] > 50, stage
    assert 0 < pipeline["noop_seconds"] < pipeline["repro"]["seconds"]
    assert 0 < pipeline["dvc_floor_seconds"] < pipeline["repro"]["seconds"]
    assert "one-stage DVC project" in report.read_text()
    assert set(measured["targets"]) == {
        "default_pipeline_seconds",
        "noop_repro_seconds",
        "report_intervals_seconds",
    }
    assert {case["case"] for case in measured["report"]} >= {
        "binary, paired",
        "regression, unpaired",
    }
    assert all(case["metrics"] > 0 and case["seconds"] > 0 for case in measured["report"])
    (regression,) = measured["regression"]
    assert (regression["task"], regression["rows"]) == ("regression", 2000)
    assert [stage["stage"] for stage in regression["repro"]["stages"]] == STAGES
    assert "## A regression pipeline" in report.read_text()
    text = report.read_text()
    assert "| train |" in text and "## The scorer" in text and "load average" in text
    assert "## The pull request report's intervals" in text
    drift = measured["drift"]
    assert drift["quick"] is True and set(drift["sources"]) == {"synthetic", "data"}
    assert {row["condition"] for row in drift["results"]} == {
        "none",
        "shift +0.25 sd",
        "category +20 points",
        "missing 10 %",
    }
    assert {row["size"] for row in drift["results"]} == {200, 1000}
    assert "## Drift detection" in text and "| target (detection: at 1,000 records) |" in text
    assert float(drift["assess_ms"]["1000"]) > 0
    if serve:
        assert measured["scorer"]["errors"] == 0
        names = [result["name"] for result in measured["scorer"]["scorer"]]
        assert {"single c1", "single c16", "grpc single c16", "v2 binary batch 100 c4"} <= set(
            names
        )
        assert "grpc_batch_vs_v2_json_batch" in measured["scorer"]["ratios"]
        assert "| single c16 |" in text
        forms = measured["scorer"]["v2_forms"]
        assert forms["reference"] == "v2 batch 100 c4" and len(forms["rates"]) == 3
        rounds = len(forms["rates"]["grpc batch 100 c4"])
        assert f"({rounds} rounds of {forms['seconds_per_round']} s" in text
        assert "| v2 batch 100 c4 |" in text and "| 1.00 |" in text
    assert (workspace_report.read_bytes() if workspace_report.exists() else None) == committed
