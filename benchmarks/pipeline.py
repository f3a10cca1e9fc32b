"""Pipeline benchmark: ``dvc repro`` in a throw-away copy of the project, stage by stage.

    python benchmarks/pipeline.py --output /tmp/pipeline.json                  # bundled data
    python benchmarks/pipeline.py --rows 100000 --rows 1000000 --output ...     # synthetic data
    python benchmarks/pipeline.py --rows 1000000 --target body_mass_g --output ...  # regression

Each run copies the project's files (as a fork would start: tracked and untracked-but-not-ignored)
into a temporary git repository, never touching the workspace it runs from. With ``--rows N`` it
writes N synthetic rows (``mlops.data.synth``, seeded) to ``data/synthetic.parquet`` and points
``data.source`` at it. Then it runs ``dvc repro --force`` (every stage, from an empty DVC cache)
and then a no-op ``dvc repro`` (the median of ``NOOP_RUNS``), alternating with the no-op
``dvc repro`` of a one-stage DVC project: the floor of that command on this machine (DVC's
start-up and imports), measured in the same run.

While DVC runs, the process tree is sampled every ``SAMPLE_SECONDS``: each ``python -m mlops...``
process is a stage; its wall time is the time it was seen alive, its peak memory the largest sum of
the resident set sizes of it and its children (loky workers of a parallel search), or its own
kernel high-water mark (VmHWM) when that is larger. Whatever DVC does around the stages (start-up,
hashing, caching) is reported as ``dvc``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 0.05
NOOP_RUNS = 9  # a no-op repro lasts a second: its median over a few runs
SYNTHETIC_SOURCE = "data/synthetic.parquet"
SEED = 0
STAGE_MODULE = re.compile(r"^mlops\.(?:data|model)\.(\w+)$")
MIB = 1 << 20


@dataclass
class StageUsage:
    stage: str
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    cpu_seconds: float = 0.0


@dataclass
class RunUsage:
    command: str
    seconds: float
    peak_rss_mib: float  # the whole tree, DVC included
    returncode: int
    stages: list[StageUsage] = field(default_factory=list)


# --- the project copy ----------------------------------------------------------------------------


def project_files(root: Path) -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    return [name for name in listing.stdout.splitlines() if (root / name).is_file()]


def copy_project(destination: Path, source: Path = PROJECT_ROOT) -> Path:
    """The project's files in ``destination`` as a fresh git repository with one commit."""
    for name in project_files(source):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target)
    git = ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run([*git, *command], cwd=destination, check=True, capture_output=True)
    return destination


def environment() -> dict[str, str]:
    """The project's virtualenv first on PATH, as ``make`` sets it."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def use_synthetic_source(root: Path, rows: int, target: str | None = None) -> float:
    """Write ``rows`` synthetic rows and point data.source at them (and data.target at ``target``,
    a numeric column for a regression); returns the seconds taken."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable, "-m", "mlops.data.synth", "--params", "params.yaml",
            "--fit", "data/penguins.csv", "--rows", str(rows), "--seed", str(SEED),
            "--out", SYNTHETIC_SOURCE, *(["--target", target] if target else []),
        ],
        cwd=root, check=True, capture_output=True, env=environment(),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["data"]["source"] = SYNTHETIC_SOURCE
    if target:
        params["data"]["target"] = target
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return seconds


# --- measuring -----------------------------------------------------------------------------------


def stage_of(process: psutil.Process) -> str | None:
    """The stage a ``python -m mlops.<part>.<stage>`` process runs, else None."""
    try:
        command = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for flag, module in itertools.pairwise(command):
        if flag == "-m" and (match := STAGE_MODULE.match(module)):
            return match.group(1)
    return None


def high_water_mark(pid: int) -> int:
    """The kernel's peak resident set size of ``pid`` (VmHWM), in bytes; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class TreeSampler:
    """Per-stage wall time, peak memory and CPU time of a running process tree."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root
        self.stages: dict[str, StageUsage] = {}
        self.first_seen: dict[str, float] = {}
        self.peak_total = 0
        self._stage_pids: dict[int, str] = {}

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        now = time.perf_counter()
        parents = {p.pid: _parent_pid(p) for p in processes}
        for process in processes:
            if process.pid not in self._stage_pids and (stage := stage_of(process)):
                self._stage_pids[process.pid] = stage
        resident = {p.pid: _rss(p) for p in processes}
        self.peak_total = max(self.peak_total, sum(resident.values()))
        memory: dict[str, int] = {}
        cpu: dict[str, float] = {}
        for process in processes:
            stage = self._stage_above(process.pid, parents)
            if stage is not None:
                memory[stage] = memory.get(stage, 0) + resident[process.pid]
                cpu[stage] = cpu.get(stage, 0.0) + _cpu_seconds(process)
        for pid, stage in self._stage_pids.items():
            if pid not in resident:
                continue
            usage = self.stages.setdefault(stage, StageUsage(stage))
            self.first_seen.setdefault(stage, now)
            usage.seconds = now - self.first_seen[stage]
            peak = max(memory.get(stage, 0), high_water_mark(pid))
            usage.peak_rss_mib = max(usage.peak_rss_mib, peak / MIB)
            usage.cpu_seconds = max(usage.cpu_seconds, cpu.get(stage, 0.0))

    def _stage_above(self, pid: int, parents: dict[int, int | None]) -> str | None:
        current: int | None = pid
        while current is not None:
            if current in self._stage_pids:
                return self._stage_pids[current]
            current = parents.get(current)
        return None


def _parent_pid(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.NoSuchProcess:
        return None


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return 0


def _cpu_seconds(process: psutil.Process) -> float:
    """User and system time of a process and of the children it has reaped."""
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return 0.0
    return times.user + times.system + times.children_user + times.children_system


def measure(command: list[str], cwd: Path, log: Path) -> RunUsage:
    """Run ``command`` in ``cwd`` (output to ``log``), sampling its process tree until it ends."""
    started = time.perf_counter()
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, env=environment()
        )
        sampler = TreeSampler(psutil.Process(process.pid))
        while process.poll() is None:
            sampler.sample()
            time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    return RunUsage(
        command=" ".join(command),
        seconds=round(seconds, 3),
        peak_rss_mib=round(sampler.peak_total / MIB, 1),
        returncode=process.returncode,
        stages=[_rounded(sampler.stages[name]) for name in _in_order(sampler)],
    )


def _in_order(sampler: TreeSampler) -> list[str]:
    return sorted(sampler.stages, key=lambda stage: sampler.first_seen[stage])


def _rounded(usage: StageUsage) -> StageUsage:
    return StageUsage(
        usage.stage,
        round(usage.seconds, 2),
        round(usage.peak_rss_mib, 1),
        round(usage.cpu_seconds, 2),
    )


# --- one benchmark run ---------------------------------------------------------------------------


def benchmark_project(
    root: Path, rows: int | None, target: str | None = None, noop: bool = True
) -> dict[str, Any]:
    """Synthetic source (if ``rows``; predicting ``target`` if given), then a full
    ``dvc repro --force`` and (if ``noop``) a no-op one beside DVC's one-stage floor."""
    result: dict[str, Any] = {"rows": rows, "source": "data/penguins.csv (bundled)"}
    if rows is not None:
        result["synth_seconds"] = round(use_synthetic_source(root, rows, target), 2)
        result["source"] = f"{SYNTHETIC_SOURCE} ({rows:,} synthetic rows, seed {SEED})"
    if target is not None:
        result["target"] = target
    log = root / "bench.log"
    full = measure(["dvc", "repro", "--force"], root, log)
    if full.returncode != 0:
        raise RuntimeError(f"dvc repro failed in {root}; see {log}:\n{_tail(log)}")
    result["repro"] = asdict(full)
    result["repro"]["dvc_seconds"] = round(full.seconds - sum(s.seconds for s in full.stages), 2)
    result["task"] = json.loads((root / "reports/evaluate/metrics.json").read_text())["task"]
    result["progress"] = [line for line in log.read_text().splitlines() if "rows/s" in line]
    if not noop:
        return result
    floor = _one_stage_project(root.parent / f"{root.name}-dvc-floor")
    noop, floor_runs = [], []
    for _ in range(NOOP_RUNS):
        noop.append(measure(["dvc", "repro"], root, log).seconds)
        floor_runs.append(measure(["dvc", "repro"], floor, log).seconds)
    result["noop_seconds"] = statistics.median(noop)
    result["noop_runs"] = noop
    result["dvc_floor_seconds"] = statistics.median(floor_runs)
    result["dvc_floor_runs"] = floor_runs
    return result


def _one_stage_project(root: Path) -> Path:
    """A git + DVC repository with one tiny stage, reproduced once: DVC's no-op floor."""
    root.mkdir(parents=True)
    (root / "params.yaml").write_text("value: 1\n")
    stage = {"cmd": "echo value > out.txt", "params": ["value"], "outs": ["out.txt"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"floor": stage}}))
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["dvc", "repro", "-q"],
    ):
        subprocess.run(command, cwd=root, check=True, capture_output=True, env=environment())
    return root


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_benchmarks(
    sizes: Sequence[int | None], keep: bool = False, target: str | None = None
) -> list[dict[str, Any]]:
    """One fresh project copy per size; with ``target`` a regression on it, without the no-op
    measurements (they do not depend on the task)."""
    results = []
    for rows in sizes:
        scratch = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
        try:
            root = copy_project(scratch / "project")
            label = "bundled data" if rows is None else f"{rows:,} rows"
            label += f", predicting {target}" if target else ""
            print(f"pipeline benchmark: {label} in {root}", flush=True)
            results.append(benchmark_project(root, rows, target, noop=target is None))
            print(stage_table([results[-1]]), flush=True)
        finally:
            if not keep:
                shutil.rmtree(scratch, ignore_errors=True)
    return results


def stage_table(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table: one row per stage, one seconds / peak MiB column pair per run."""
    labels = [_label(result) for result in results]
    stages: list[str] = []
    for result in results:
        stages += [s["stage"] for s in result["repro"]["stages"] if s["stage"] not in stages]
    header = "| stage | " + " | ".join(f"{label}: s | {label}: MiB" for label in labels) + " |"
    lines = [header, "|---|" + "---:|---:|" * len(results)]
    for stage in stages:
        cells = []
        for result in results:
            usage = {s["stage"]: s for s in result["repro"]["stages"]}.get(stage)
            cells += (
                [f"{usage['seconds']:.1f}", f"{usage['peak_rss_mib']:.0f}"] if usage else ["", ""]
            )
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    dvc = [f"{r['repro']['dvc_seconds']:.1f}" for r in results]
    lines.append("| dvc (start-up, hashing, cache) | " + " | ".join(f"{d} | " for d in dvc) + "|")
    total = [
        f"**{r['repro']['seconds']:.1f}** | **{r['repro']['peak_rss_mib']:.0f}**" for r in results
    ]
    lines.append("| **dvc repro --force** | " + " | ".join(total) + " |")
    if all("noop_seconds" in r for r in results):
        noop = [f"{r['noop_seconds']:.2f} | " for r in results]
        lines.append("| no-op dvc repro | " + " | ".join(noop) + "|")
    return "\n".join(lines)


def _label(result: dict[str, Any]) -> str:
    rows = result["rows"]
    if rows is None:
        return "penguins"
    size = f"{rows // 1_000_000} M" if rows >= 1_000_000 else f"{rows // 1000} k"
    return f"{size} {result['task']}" if "target" in result else size


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, action="append", help="synthetic rows (repeat for several sizes)"
    )
    parser.add_argument("--bundled", action="store_true", help="also run on the bundled data")
    parser.add_argument("--output", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--keep", action="store_true", help="keep the project copies")
    parser.add_argument(
        "--target", help="a numeric column of the synthetic rows to predict instead (regression)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    sizes: list[int | None] = list(arguments.rows or [])
    if arguments.bundled or not sizes:
        sizes.insert(0, None)
    results = run_benchmarks(sizes, keep=arguments.keep, target=arguments.target)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
