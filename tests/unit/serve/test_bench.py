"""The serve benchmark's parsing and verdicts (the wrk runs themselves are in ``make bench``)."""

import importlib.util
import sys
from types import ModuleType

import pytest

from conftest import PROJECT_ROOT

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:18095/predict
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.98ms    1.27ms  12.96ms   87.27%
    Req/Sec     3.21k   446.73     4.16k    80.00%
  Latency Distribution
     50%  469.00us
     75%  814.00us
     90%    2.68ms
     99%    1.20s
  3204 requests in 1.00s, 522.66KB read
  Non-2xx or 3xx responses: 4
Requests/sec:   3193.20
Transfer/sec:    520.90KB
"""


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "serve_bench", PROJECT_ROOT / "benchmarks" / "serve.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_bench"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_wrk_latencies_are_read_in_milliseconds_whatever_the_unit(bench: ModuleType) -> None:
    assert bench.percentile_ms(WRK_OUTPUT, "50%") == pytest.approx(0.469)
    assert bench.percentile_ms(WRK_OUTPUT, "90%") == pytest.approx(2.68)
    assert bench.percentile_ms(WRK_OUTPUT, "99%") == pytest.approx(1200.0)
    with pytest.raises(SystemExit, match="no 95% latency"):
        bench.percentile_ms(WRK_OUTPUT, "95%")


def result(bench: ModuleType, name: str, rate: float, p99: float, records: int = 1) -> object:
    return bench.WrkResult(
        name, "url", 16, records, rate, rate * records, 1.0, 2.0, p99, 100, 0, 50.0
    )


def test_summary_compares_with_both_floors_and_judges_the_targets(bench: ModuleType) -> None:
    batch = bench.batch_name(1000)
    scorer = [
        result(bench, "single c1", 1000, 1.0),
        result(bench, "single c16", 4000, 9.0),
        result(bench, "v2 single c16", 3000, 9.0),
        result(bench, batch, 300, 50.0, records=1000),
        result(bench, bench.with_workers("single c16"), 6000, 12.0),
        result(bench, bench.with_workers(batch), 240, 50.0, records=1000),
    ]
    floor = [result(bench, r.name, 8000, 2.0, r.records_per_request) for r in scorer]
    ort = {
        "single_record_median_ms": 0.025,
        "batch_records": 1000,
        "batch_records_per_second": 600_000.0,
    }
    report = bench.summarize(scorer, floor, ort, 1000)
    assert report["ratios"]["single_c16_vs_http_floor"] == 0.5
    assert report["ratios"]["batch_vs_model_floor"] == 0.5
    assert report["ratios"]["single_c1_p50_vs_model_floor"] == 40.0
    assert {name: target["met"] for name, target in report["targets"].items()} == {
        "single_c16_vs_http_floor": True,
        "single_c16_p99_ms": True,
        "batch_records_per_second": True,
        "single_c16_vs_http_floor_2_workers": True,
        "single_c16_p99_ms_2_workers": False,
        "batch_records_per_second_2_workers": False,
    }
    assert report["targets"]["single_c16_vs_http_floor_2_workers"]["value"] == 0.75
    table = bench.table(report)
    assert "target batch_records_per_second: 300,000.00 vs 250,000 -> met" in table
    assert "target batch_records_per_second_2_workers: 240,000.00 vs 250,000 -> MISSED" in table


def test_the_v2_forms_are_compared_by_the_medians_of_their_alternating_rounds(
    bench: ModuleType,
) -> None:
    """One slow round (the machine busy) moves no ratio; without rounds the table's runs do."""
    batch = bench.batch_name(1000)
    scorer = [
        result(bench, "single c1", 1000, 1.0),
        result(bench, "single c16", 4000, 9.0),
        result(bench, batch, 200, 50.0, records=1000),
        result(bench, f"v2 {batch}", 300, 50.0, records=1000),
        result(bench, f"v2 binary {batch}", 150, 50.0, records=1000),  # a slow moment
        result(bench, f"grpc {batch}", 270, 50.0, records=1000),
    ]
    floor = [result(bench, r.name, 8000, 2.0, r.records_per_request) for r in scorer]
    ort = {"single_record_median_ms": 0.025, "batch_records": 1000, "batch_records_per_second": 6e5}
    rounds = {
        f"v2 {batch}": [300e3, 100e3, 300e3],
        f"v2 binary {batch}": [330e3, 110e3, 330e3],
        f"grpc {batch}": [270e3, 90e3, 270e3],
    }
    forms = bench.FormRounds(5, f"v2 {batch}", rounds)
    report = bench.summarize(scorer, floor, ort, 1000, forms)
    ratios = report["ratios"]
    assert ratios["binary_batch_vs_v2_json_batch"] == pytest.approx(1.1)
    assert ratios["grpc_batch_vs_v2_json_batch"] == pytest.approx(0.9)
    assert report["targets"]["binary_batch_vs_v2_json_batch"]["met"] is True
    assert report["targets"]["grpc_batch_vs_v2_json_batch"]["met"] is False  # JSON's ahead
    assert ratios["binary_batch_vs_predict_batch"] == pytest.approx(330 / 200)
    single = bench.summarize(scorer, floor, ort, 1000)["ratios"]
    assert single["binary_batch_vs_v2_json_batch"] == pytest.approx(0.5)
