"""The README's commands work as written, on a fresh copy of the project, in a plain shell.

Every ``bash`` block of README.md runs, in order, in one fresh copy of the project, each block in
its own ``bash -e`` whose PATH does not hold the project's virtualenv (a user's shell does not),
unless the line before the block is ``<!-- readme-test: skip: <why> -->``. ``make test`` is never
run: it is the suite that runs this test. The experiments the README starts are then compared the
way it says, and the table must be readable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import BIN, PROJECT_ROOT, copy_project
from workflows import use_project_venv

README = PROJECT_ROOT / "README.md"
SKIP_MARK = re.compile(r"^<!--\s*readme-test:\s*skip:\s*(?P<why>.*?)\s*-->$")
NEVER_RUN = {"make test": "the whole suite, which runs this test"}
TERMINAL_COLUMNS = 200
WIDE_TERMINAL = 240  # DVC's pager scrolls sideways up to 1,024 columns; this is what fits a screen


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    commands: list[str]
    skip: str | None  # why it is not run


@dataclass
class BlockRun:
    block: Block
    script: str
    returncode: int
    output: str


def readme_blocks(text: str) -> list[Block]:
    """The ``bash`` blocks of a markdown text, with the reason to skip one if it is marked."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            end = lines.index("```", index + 1)
            previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
            mark = SKIP_MARK.match(previous.strip())
            skip = mark.group("why") if mark else None
            blocks.append(Block(index + 1, lines[index + 1 : end], skip))
            index = end
        index += 1
    return blocks


def runnable_script(block: Block) -> str:
    """The block's lines, less the commands never run here."""
    kept = [line for line in block.commands if line.split("#")[0].strip() not in NEVER_RUN]
    return "\n".join(kept)


def users_shell() -> dict[str, str]:
    """The environment of a user's shell: this suite's own virtualenv is not on its PATH."""
    own = {str(BIN), str(PROJECT_ROOT / ".venv" / "bin")}
    path = [entry for entry in os.environ["PATH"].split(os.pathsep) if entry not in own]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join(path), "COLUMNS": str(TERMINAL_COLUMNS)}


def shell(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=users_shell(),
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = readme_blocks(README.read_text())
    assert all(block.skip for block in blocks if block.skip is not None), "a skip needs a reason"
    runnable = [runnable_script(block) for block in blocks if block.skip is None]
    assert any("make repro" in script for script in runnable)
    assert any("dvc exp run" in script for script in runnable)


def test_the_marks_are_read() -> None:
    text = "```bash\nmake a\n```\n\n<!-- readme-test: skip: no cluster -->\n```bash\nmake b\n```\n"
    first, second = readme_blocks(text)
    assert (first.commands, first.skip) == (["make a"], None)
    assert (second.commands, second.skip, second.line) == (["make b"], "no cluster", 6)
    assert runnable_script(Block(1, ["make test   # all", "make repro"], None)) == "make repro"


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[BlockRun]]:
    """The README's blocks run in order in a fresh copy of the project (its .venv the project's)."""
    root = copy_project(tmp_path_factory.mktemp("readme") / "project")
    use_project_venv(root, PROJECT_ROOT / ".venv")
    runs = []
    for block in readme_blocks(README.read_text()):
        if block.skip is None:
            script = runnable_script(block)
            completed = shell(script, root)
            runs.append(
                BlockRun(block, script, completed.returncode, completed.stdout + completed.stderr)
            )
    return root, runs


@pytest.mark.slow
def test_the_readmes_commands_succeed_as_written(readme_run: tuple[Path, list[BlockRun]]) -> None:
    root, runs = readme_run
    for block_run in runs:
        assert block_run.returncode == 0, (
            f"README.md line {block_run.block.line}:\n{block_run.script}\n"
            f"exited {block_run.returncode}:\n{block_run.output[-4000:]}"
        )
    assert (root / "models" / "package").is_dir()
    assert (root / "dvc_plots" / "index.html").is_file()


def test_without_the_virtualenv_dvc_is_not_found(tmp_path: Path) -> None:
    """The check above can fail: in a plain shell, dvc is found only once .venv is activated."""
    if shell("command -v dvc", tmp_path).returncode == 0:
        pytest.skip("a dvc is installed on this machine's PATH")
    assert shell("dvc --version", tmp_path).returncode == 127


def csv_header(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()[0].split(",")


def leaves(value: object, prefix: str = "") -> set[str]:
    """The dotted names DVC gives the values of a nested mapping (a list is one value)."""
    if isinstance(value, dict):
        return {name for key, item in value.items() for name in leaves(item, f"{prefix}{key}.")}
    return {prefix.rstrip(".")}


@pytest.mark.slow
def test_dvc_exp_show_lists_only_the_key_metrics(readme_run: tuple[Path, list[BlockRun]]) -> None:
    """The data profile and the stages' summaries are outputs, not metrics to compare."""
    root, _ = readme_run
    header = csv_header(shell("source .venv/bin/activate; dvc exp show --csv", root))
    declared = json.loads(shell("source .venv/bin/activate; dvc metrics show --json", root).stdout)
    files = {path for revision in declared.values() for path in revision["data"]}
    assert files == {
        "reports/train/best_params.json",
        "reports/evaluate/metrics.json",
        "reports/accept/verdict.json",
    }
    params = leaves(yaml.safe_load((root / "params.yaml").read_text()))
    bookkeeping = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    dependencies = [name for name in header if "/" in name and ":" not in name]
    metrics = set(header) - params - bookkeeping - set(dependencies)
    assert not [name for name in metrics if name.startswith("columns.")], "the data profile"
    # the tuning summary, the validation metrics and the acceptance test (its test-split metrics,
    # baseline and champion): 290 with the data profile and the stages' summaries as metrics
    assert len(metrics) <= 65, sorted(metrics)


@pytest.mark.slow
def test_make_experiments_prints_a_readable_table(readme_run: tuple[Path, list[BlockRun]]) -> None:
    root, _ = readme_run
    result = shell("make -s experiments", root)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout, result.stdout  # rich squeezes what does not fit
    assert max(map(len, lines)) <= WIDE_TERMINAL, result.stdout
    header = " ".join(lines[:4])
    for changed in ("train.model", "train.search", "train.cv_folds"):
        assert changed in header, result.stdout
    evaluated = json.loads((root / "reports" / "evaluate" / "metrics.json").read_text())
    assert any(name in header for name, value in evaluated.items() if not isinstance(value, dict))
    csv = csv_header(shell("make -s experiments EXP_SHOW=--csv", root))
    assert len(csv) <= 15 and not [name for name in csv if "/" in name], csv
    rows = [line for line in result.stdout.splitlines() if "linear" in line]
    assert rows, result.stdout
