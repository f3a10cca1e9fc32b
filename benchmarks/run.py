"""``make bench``: the pipeline and the scorer measured, written to BENCHMARKS.md and results.json.

    python benchmarks/run.py                 # the full run: about 15 minutes on two cores
    python benchmarks/run.py --quick         # a smoke run in about a minute (numbers not kept)

Parts, each in a throw-away copy of the project (never in this workspace):

1. the default pipeline on the bundled data, from an empty DVC cache (``dvc repro --force``),
   then a no-op ``dvc repro`` (benchmarks/pipeline.py);
2. the pipeline on 10 k, 100 k and 1 M synthetic rows (``mlops.data.synth``), stage by stage,
   and a regression pipeline on 1 M synthetic rows (the same rows predicting ``body_mass_g``);
3. the scorer on the model the first part packaged: benchmarks/serve.py (wrk against the scorer,
   against a constant-JSON endpoint on the same server stack, and onnxruntime in-process);
4. the pull request report's intervals on a 100 k-row split: benchmarks/report.py;
5. the sidecar's drift detection: benchmarks/drift.py (detection and false-alarm rates in seeded
   windows of synthetic and bundled records, per condition).

The machine's load average is recorded before and after each part: the machine may be shared, and
the numbers mean most next to it. ``--quick`` runs part 1 on 2,000 synthetic rows with a cut-down
search (2 candidates, 2 folds), part 2's regression only, on 2,000 rows, and the scorer and drift
benchmarks in their quick modes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import drift  # a sibling script, not a package
import report as report_benchmark  # a sibling script
from pipeline import (  # a sibling script, not a package
    PROJECT_ROOT,
    benchmark_project,
    copy_project,
    run_benchmarks,
    stage_table,
)

SIZES = (10_000, 100_000, 1_000_000)
REGRESSION_TARGET = "body_mass_g"  # a numeric column of the synthetic penguins: a regression
QUICK_ROWS = 2_000
DEFAULT_RUNS = 3  # the headline number: the median of three runs
QUICK_SEARCH = {"n_iter": 2, "cv_folds": 2}
TARGETS = {
    "default_pipeline_seconds": 30.0,
    "noop_repro_seconds": 1.0,
    "million_rows_seconds": 300.0,
    "million_rows_peak_mib": 4096.0,
    "growth_100k_to_1m": 10.0,  # linear: ten times the rows, at most ten times the time
    "regression_million_rows_seconds": 300.0,
    "regression_million_rows_peak_mib": 4096.0,
    "report_intervals_seconds": 5.0,
}
TARGET_NAMES = {
    "default_pipeline_seconds": "default pipeline, empty cache (s)",
    "noop_repro_seconds": "no-op `dvc repro` (s)",
    "million_rows_seconds": "1 M rows, empty cache (s)",
    "million_rows_peak_mib": "1 M rows, peak memory of a stage (MiB)",
    "growth_100k_to_1m": "time at 1 M rows / time at 100 k rows",
    "regression_million_rows_seconds": "1 M rows, regression, empty cache (s)",
    "regression_million_rows_peak_mib": "1 M rows, regression, peak memory of a stage (MiB)",
    "report_intervals_seconds": "PR report: intervals of the changes, slowest case (s)",
}
MEASURED = "Measured by `make bench` ({mode}) on {date}; commit {commit}."


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict[str, Any]:
    memory_kib = _proc_field("/proc/meminfo", "MemTotal", "0").split()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name", platform.processor()),
        "memory_gib": round(int(memory_kib) / (1 << 20), 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _proc_field(path: str, name: str, default: str) -> str:
    """The value of the first ``name: value`` line of a /proc file."""
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return default


def git_commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


# --- the parts -----------------------------------------------------------------------------------


def default_pipeline(scratch: Path, quick: bool) -> tuple[dict[str, Any], Path]:
    """Part 1, ``DEFAULT_RUNS`` times in fresh copies in ``scratch``: the median run (by its
    total time, all runs' totals attached) and the packaged model it wrote."""
    runs = []
    before = load()
    for number in range(1 if quick else DEFAULT_RUNS):
        root = copy_project(scratch / f"default-{number}")
        if quick:
            shrink_search(root)
        runs.append((benchmark_project(root, QUICK_ROWS if quick else None), root))
    runs.sort(key=lambda run: run[0]["repro"]["seconds"])
    result, root = runs[len(runs) // 2]
    result["runs_seconds"] = [run["repro"]["seconds"] for run, _ in runs]
    result["load"] = {"before": before, "after": load()}
    print(stage_table([result]), flush=True)
    return result, root / "models" / "package"


def shrink_search(root: Path) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train"].update(QUICK_SEARCH)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def sizes(rows: Sequence[int], target: str | None = None) -> list[dict[str, Any]]:
    results = []
    for count in rows:
        before = load()
        [result] = run_benchmarks([count], target=target)
        result["load"] = {"before": before, "after": load()}
        results.append(result)
    return results


def scorer(
    model_dir: Path, scratch: Path, quick: bool, baseline: str | None = None
) -> dict[str, Any]:
    """Part 3: benchmarks/serve.py on ``model_dir`` (and the scorer of the ``baseline`` revision,
    in the same run); its report, or why it could not run."""
    output = scratch / "serve.json"
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "serve.py")]
    command += ["--model-dir", str(model_dir), "--output", str(output)]
    command += ["--quick"] if quick else []
    command += ["--baseline-rev", baseline] if baseline else []
    before = load()
    result = subprocess.run(command, cwd=PROJECT_ROOT, text=True, capture_output=True)
    print(result.stdout, end="", flush=True)
    if not output.is_file():
        return {"skipped": (result.stderr.strip() or "no report").splitlines()[-1]}
    report: dict[str, Any] = json.loads(output.read_text())
    report["load"] = {"before": before, "after": load()}
    report["exit_code"] = result.returncode
    return report


def drift_detection(scratch: Path, quick: bool) -> dict[str, Any]:
    """Part 4: benchmarks/drift.py; its report, or why it could not run."""
    output = scratch / "drift.json"
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "drift.py")]
    command += ["--output", str(output), *(["--quick"] if quick else [])]
    before = load()
    result = subprocess.run(command, cwd=PROJECT_ROOT, text=True, capture_output=True)
    print(result.stdout, end="", flush=True)
    if not output.is_file():
        return {"skipped": (result.stderr.strip() or "no report").splitlines()[-1]}
    report: dict[str, Any] = json.loads(output.read_text())
    report["load"] = {"before": before, "after": load()}
    return report


# --- the verdicts and the report -----------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every target with the value measured and whether it was met."""
    default = results["default_pipeline"]
    found = {
        "default_pipeline_seconds": default["repro"]["seconds"],
        "noop_repro_seconds": default["noop_seconds"],
    }
    by_rows = {result["rows"]: result for result in results.get("sizes", [])}
    if 1_000_000 in by_rows:
        found["million_rows_seconds"] = by_rows[1_000_000]["repro"]["seconds"]
        found["million_rows_peak_mib"] = max(
            stage["peak_rss_mib"] for stage in by_rows[1_000_000]["repro"]["stages"]
        )
        if 100_000 in by_rows:
            found["growth_100k_to_1m"] = round(
                by_rows[1_000_000]["repro"]["seconds"] / by_rows[100_000]["repro"]["seconds"], 2
            )
    if results.get("report"):
        found["report_intervals_seconds"] = max(case["seconds"] for case in results["report"])
    for result in results.get("regression", []):
        if result["rows"] == 1_000_000:
            found["regression_million_rows_seconds"] = result["repro"]["seconds"]
            found["regression_million_rows_peak_mib"] = max(
                stage["peak_rss_mib"] for stage in result["repro"]["stages"]
            )
    return {
        name: {"value": value, "target": TARGETS[name], "met": value <= TARGETS[name]}
        for name, value in found.items()
    }


def markdown(results: dict[str, Any]) -> str:
    sections = [
        "# Benchmarks",
        MEASURED.format(
            mode="quick smoke run, not for quoting" if results["quick"] else "full run",
            date=results["date"],
            commit=results["commit"],
        ),
        _machine(results),
        _targets(results["targets"]),
        "## The default pipeline, from an empty DVC cache",
        _pipeline_note(results["default_pipeline"]),
        stage_table([results["default_pipeline"]]),
    ]
    if results.get("sizes"):
        sections += ["## The pipeline at 10 k, 100 k and 1 M rows", _sizes_note(results["sizes"])]
        sections += [stage_table(results["sizes"]), _dominant(results["sizes"])]
    if results.get("regression"):
        sections += [
            "## A regression pipeline",
            _regression_note(results["regression"]),
            stage_table(results["regression"]),
        ]
    if results.get("report"):
        sections += ["## The pull request report's intervals", _report(results["report"])]
    sections += ["## The scorer", _scorer(results["scorer"])]
    if results.get("drift"):
        sections.append(_drift(results["drift"]))
    sections.append(_reproduce())
    return "\n\n".join(sections) + "\n"


def _machine(results: dict[str, Any]) -> str:
    info = results["machine"]
    loads = [("default pipeline", results["default_pipeline"]["load"])]
    loads += [(f"{r['rows']:,} rows", r["load"]) for r in results.get("sizes", [])]
    if "load" in results["scorer"]:
        loads.append(("scorer", results["scorer"]["load"]))
    if "load" in results.get("drift", {}):
        loads.append(("drift detection", results["drift"]["load"]))
    spans = "; ".join(f"{name} {load['before'][0]} → {load['after'][0]}" for name, load in loads)
    return (
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB, "
        f"Python {info['python']}, {info['platform']}. The machine is shared: its 1-minute load "
        f"average before → after each part was: {spans}. A load above the number of CPUs means "
        "other processes took a share of them, so wall times are upper bounds."
    )


def _targets(targets: dict[str, dict[str, Any]]) -> str:
    lines = ["## Targets", "", "| target | measured | goal | |", "|---|---:|---:|---|"]
    for name, verdict in targets.items():
        mark = "met" if verdict["met"] else "**missed**"
        value, goal = f"{verdict['value']:,.2f}", f"{verdict['target']:,.0f}"
        lines.append(f"| {TARGET_NAMES[name]} | {value} | {goal} | {mark} |")
    return "\n".join(lines)


def _pipeline_note(result: dict[str, Any]) -> str:
    stages = result["repro"]["stages"]
    slowest = max(stages, key=lambda stage: stage["seconds"])
    runs = ", ".join(f"{seconds:.1f}" for seconds in result["runs_seconds"])
    noops = ", ".join(f"{seconds:.2f}" for seconds in result["noop_runs"])
    floors = ", ".join(f"{seconds:.2f}" for seconds in result["dvc_floor_runs"])
    return (
        f"Source: {result['source']}. `dvc repro --force` ran every stage in "
        f"{result['repro']['seconds']:.1f} s (the median of runs taking {runs} s; peak "
        f"{result['repro']['peak_rss_mib']:.0f} MiB for the whole process tree); the slowest "
        f"stage was {slowest['stage']} ({slowest['seconds']:.1f} s). A no-op `dvc repro` then "
        f"took {result['noop_seconds']:.2f} s (the median of {noops}); in the same run, the "
        f"no-op `dvc repro` of a one-stage DVC project took {result['dvc_floor_seconds']:.2f} s "
        f"(the median of {floors}): that is DVC starting and importing its modules, the floor of "
        "the command on this machine. The rest "
        f"({result['noop_seconds'] - result['dvc_floor_seconds']:.2f} s) is DVC parsing dvc.yaml, "
        "dvc.lock and params.yaml (once per stage) and checking the hashes it keeps for nine "
        "stages, without running anything. Per stage: wall seconds and peak resident memory (MiB) "
        "of the stage's processes."
    )


def _sizes_note(results: list[dict[str, Any]]) -> str:
    lines = [
        "Synthetic rows (`make data-synth`, seed 0) as `data.source`; every stage from an empty "
        "cache. Per stage: wall seconds and peak MiB.",
        "",
    ]
    for result in results:
        lines.append(
            f"- {result['rows']:,} rows: {result['repro']['seconds']:.1f} s in all, peak "
            f"{max(s['peak_rss_mib'] for s in result['repro']['stages']):.0f} MiB in one stage "
            f"({result['repro']['peak_rss_mib']:.0f} MiB with DVC), no-op repro "
            f"{result['noop_seconds']:.2f} s; writing the rows took "
            f"{result['synth_seconds']:.1f} s."
        )
    return "\n".join(lines)


def _regression_note(results: list[dict[str, Any]]) -> str:
    lines = [
        f"The same synthetic rows with `data.target: {REGRESSION_TARGET}` (a number: the task "
        "switches to regression and `species` becomes a feature); every stage from an empty "
        "cache, as above.",
        "",
    ]
    for result in results:
        lines.append(
            f"- {result['rows']:,} rows: {result['repro']['seconds']:.1f} s in all, peak "
            f"{max(s['peak_rss_mib'] for s in result['repro']['stages']):.0f} MiB in one stage."
        )
    return "\n".join(lines)


def _dominant(results: list[dict[str, Any]]) -> str:
    """What the time goes to at the largest size, and how each stage grew with the rows."""
    largest = results[-1]
    total = largest["repro"]["seconds"]
    stages = sorted(largest["repro"]["stages"], key=lambda stage: -stage["seconds"])
    shares = ", ".join(
        f"{stage['stage']} {stage['seconds']:.0f} s ({stage['seconds'] / total:.0%})"
        for stage in stages[:3]
    )
    lines = [f"At {largest['rows']:,} rows the time goes to {shares}."]
    if len(results) > 1:
        previous = results[-2]
        before = {stage["stage"]: stage["seconds"] for stage in previous["repro"]["stages"]}
        growth = ", ".join(
            f"{stage['stage']} x{stage['seconds'] / before[stage['stage']]:.1f}"
            for stage in largest["repro"]["stages"]
            if before.get(stage["stage"])
        )
        factor = largest["rows"] / previous["rows"]
        lines.append(
            f"From {previous['rows']:,} to {largest['rows']:,} rows (x{factor:.0f}) the stages "
            f"took: {growth}; linear growth would be x{factor:.0f}. Every stage has a fixed cost "
            "(Python start-up and imports, about half a second to two seconds) that small tables "
            "show and large ones spread; docs/scale.md explains what grows and what is bounded."
        )
    return "\n\n".join(lines)


def _report(cases: list[dict[str, Any]]) -> str:
    lines = [
        "benchmarks/report.py: the bootstrap of every metric change (1000 resamples) on the "
        f"{cases[0]['sample_rows']:,} rows predictions.csv keeps of a {cases[0]['rows']:,}-row "
        "split, against a base on the same rows (paired) and on other rows (unpaired).",
        "",
        "| case | metrics | seconds |",
        "|---|---:|---:|",
    ]
    lines += [f"| {case['case']} | {case['metrics']} | {case['seconds']:.2f} |" for case in cases]
    return "\n".join(lines)


def _scorer(report: dict[str, Any]) -> str:
    if "skipped" in report:
        return f"Not measured: {report['skipped']}."
    floor = {result["name"]: result for result in report["http_floor"]}
    model = report["model_floor"]
    lines = [
        f"benchmarks/serve.py, {report['settings']['seconds_per_run']} s per wrk run (h2load for "
        "gRPC), against the scorer with validation, prediction log and metrics on; the rows "
        "marked 2 workers ran with SCORER_WORKERS=2; v2 rows are the Open Inference Protocol "
        "(JSON, binary tensor data, gRPC with raw tensors). HTTP floor: a constant-JSON endpoint "
        "on the same server stack (with as many worker processes) reading the same bodies, and a "
        "constant gRPC ModelInfer for the gRPC rows. Model floor: onnxruntime in-process, one "
        "thread.",
        "",
        "| run | scorer req/s | records/s | p50 ms | p99 ms | HTTP floor req/s | vs HTTP floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in report["scorer"]:
        base = floor[result["name"]]["requests_per_second"]
        lines.append(
            f"| {result['name']} | {result['requests_per_second']:,.0f} "
            f"| {result['records_per_second']:,.0f} | {result['p50_ms']:.2f} "
            f"| {result['p99_ms']:.2f} | {base:,.0f} | {result['requests_per_second'] / base:.2f} |"
        )
    lines += _baseline(report)
    lines += _forms(report)
    lines += [
        "",
        f"Model floor: {model['single_record_median_ms']:.3f} ms per single record, "
        f"{model['batch_records_per_second']:,.0f} records/s in {model['batch_records']:,}-record "
        "batches. Ratios: "
        + ", ".join(
            f"{name.replace('_', ' ')} {value:.2f}" for name, value in report["ratios"].items()
        )
        + ".",
        "",
        "| scorer target | measured | goal | |",
        "|---|---:|---:|---|",
    ]
    for name, goal in report["targets"].items():
        mark = "met" if goal["met"] else "**missed**"
        lines.append(
            f"| {name.replace('_', ' ')} | {goal['value']:,.2f} | {goal['target']:,} | {mark} |"
        )
    return "\n".join(lines)


def _drift(report: dict[str, Any]) -> str:
    if "skipped" in report:
        return f"## Drift detection\n\nNot measured: {report['skipped']}."
    return drift.markdown(report)


def _baseline(report: dict[str, Any]) -> list[str]:
    """The scorer against the baseline revision's, measured alternately in the same run."""
    comparisons = report.get("baseline") or []
    if not comparisons:
        return []
    lines = [
        "",
        f"Against the scorer of `{report['settings']['baseline_rev']}` (the same environment and "
        "model; the two scorers alternate, each run as long as the others), requests per second:",
        "",
        "| run | this scorer | baseline | median ratio |",
        "|---|---|---|---:|",
    ]
    for comparison in comparisons:
        ours = ", ".join(f"{rate:,.0f}" for rate in comparison["rates"])
        theirs = ", ".join(f"{rate:,.0f}" for rate in comparison["baseline_rates"])
        lines.append(f"| {comparison['name']} | {ours} | {theirs} | {comparison['ratio']:.2f} |")
    return lines


def _forms(report: dict[str, Any]) -> list[str]:
    """The V2 forms of a batch on the same scorer, measured alternately in the same run."""
    forms = report.get("v2_forms") or {}
    if not forms:
        return []
    seconds, rates = forms["seconds_per_round"], forms["rates"]
    rounds = len(next(iter(rates.values())))
    reference = statistics.median(rates[forms["reference"]])
    lines = [
        "",
        f"The V2 forms of a batch on the same scorer, alternating ({rounds} rounds of {seconds} s, "
        "each round starting with the next form), records per second:",
        "",
        "| run | records/s per round | median | vs V2 JSON |",
        "|---|---|---:|---:|",
    ]
    for name, measured in rates.items():
        median = statistics.median(measured)
        shown = ", ".join(f"{rate / 1000:,.0f} k" for rate in measured)
        lines.append(f"| {name} | {shown} | {median:,.0f} | {median / reference:.2f} |")
    return lines


def _reproduce() -> str:
    return "\n".join(
        [
            "## Reproduce",
            "",
            "```",
            "make bench            # all of the above: this file and benchmarks/results.json",
            "make bench QUICK=1    # a smoke run of every part, in a temporary directory",
            "python benchmarks/pipeline.py --bundled --rows 1000000 --output /tmp/pipeline.json",
            "python benchmarks/serve.py --output /tmp/serve.json   # the scorer, after make repro",
            "make bench BENCH_BASELINE=<rev>   # the scorer against <rev>'s, in the same run",
            "python benchmarks/report.py   # the report's intervals on a 100 k-row split",
            "python benchmarks/drift.py --output /tmp/drift.json   # the drift check's detection",
            "make data-synth ROWS=1000000 OUT=data/synthetic.parquet   # then point data.source",
            "```",
        ]
    )


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of every part")
    parser.add_argument("--output", type=Path, help="markdown report (default: BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, help="results (default: benchmarks/results.json)")
    parser.add_argument(
        "--no-serve", action="store_true", help="skip the scorer (no wrk or h2load here)"
    )
    parser.add_argument(
        "--baseline-rev", help="measure the scorer of this git revision too, in the same run"
    )
    parser.add_argument(
        "--render", type=Path, help="only write the markdown of an earlier results.json"
    )
    arguments = parser.parse_args(argv)
    quick_dir = Path(tempfile.gettempdir()) / "mlops-bench-quick"
    if arguments.output is None:
        arguments.output = (
            quick_dir / "BENCHMARKS.md" if arguments.quick else PROJECT_ROOT / "BENCHMARKS.md"
        )
    if arguments.json is None:
        arguments.json = (
            quick_dir / "results.json"
            if arguments.quick
            else PROJECT_ROOT / "benchmarks" / "results.json"
        )
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.render:
        arguments.output.write_text(markdown(json.loads(arguments.render.read_text())))
        return 0
    started = time.perf_counter()
    results: dict[str, Any] = {
        "quick": arguments.quick,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        scratch = Path(directory)
        results["default_pipeline"], model_dir = default_pipeline(scratch, arguments.quick)
        if not arguments.quick:
            results["sizes"] = sizes(SIZES)
        regression_rows = QUICK_ROWS if arguments.quick else SIZES[-1]
        results["regression"] = sizes([regression_rows], target=REGRESSION_TARGET)
        results["report"] = report_benchmark.measure(
            report_benchmark.QUICK_ROWS if arguments.quick else report_benchmark.ROWS
        )
        if arguments.no_serve:
            results["scorer"] = {"skipped": "--no-serve"}
        else:
            results["scorer"] = scorer(model_dir, scratch, arguments.quick, arguments.baseline_rev)
        results["drift"] = drift_detection(scratch, arguments.quick)
    results["targets"] = verdicts(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    for path, text in (
        (arguments.json, json.dumps(results, indent=2) + "\n"),
        (arguments.output, markdown(results)),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"bench: {results['seconds']:.0f} s; wrote {arguments.output} and {arguments.json}")
    targets = results["drift"].get("targets", {})
    missed = [name for name, goal in targets.items() if not goal["met"]]
    if missed:
        print(f"bench: drift detection targets missed: {missed}")
    failed = bool(missed) and not arguments.quick  # a quick run's few windows are not the test
    return 0 if results["scorer"].get("exit_code", 0) == 0 and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
