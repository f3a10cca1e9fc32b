"""No test writes into the files of the Actions step that runs the suite (CI's `make test`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT, RUNNER_FILES

# What any step-like code does when it runs under Actions: append to every runner file it is given.
LEAKY_TEST = """
import subprocess

def test_writes_to_the_runner_files_like_a_workflow_step():
    script = (
        'for name in {names}; do [ -n "${{!name:-}}" ] && echo leaked >> "${{!name}}"; done; true'
    )
    subprocess.run(["bash", "-c", script], check=True)
"""


def test_the_tests_see_no_runner_files() -> None:
    assert not [name for name in RUNNER_FILES if name in os.environ]


def test_a_suite_run_inside_a_workflow_step_leaves_the_runners_files_alone(tmp_path: Path) -> None:
    runner_files = {name: tmp_path / name.lower() for name in RUNNER_FILES}
    for path in runner_files.values():
        path.write_text("")
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(LEAKY_TEST.format(names=" ".join(RUNNER_FILES)))
    env = {**os.environ, **{name: str(path) for name, path in runner_files.items()}}
    env["PYTHONPATH"] = str(PROJECT_ROOT / "tests")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider"]
    command += ["--rootdir", str(tmp_path), str(test_file)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert {name: path.read_text() for name, path in runner_files.items()} == dict.fromkeys(
        RUNNER_FILES, ""
    )


def test_without_the_fixture_the_same_test_would_write_to_them(tmp_path: Path) -> None:
    """The check above can fail: the same test, run without the project's conftest, leaks."""
    output = tmp_path / "output"
    output.write_text("")
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(LEAKY_TEST.format(names="GITHUB_OUTPUT"))
    env = {**os.environ, "GITHUB_OUTPUT": str(output)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["--rootdir", str(tmp_path), str(test_file)]
    subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert output.read_text() == "leaked\n"
