"""The smoke test runs on any python3: `make smoke` calls it without the project's venv."""

import sys

from conftest import PROJECT_ROOT, run
from serve_fixtures import free_port

# -S: no site-packages at all (neither the venv's nor the system's), only the standard library
# and src/ on the path, as `PYTHONPATH=src python3 -m mlops.gitops.smoke` on a bare runner.
STANDARD_LIBRARY_ONLY = [sys.executable, "-S", "-m"]


def test_the_smoke_test_needs_only_the_standard_library() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    command = [*STANDARD_LIBRARY_ONLY, "mlops.gitops.smoke", "--timeout", "1"]
    command += ["--scorer", closed, "--sidecar", closed]
    result = run(command, PROJECT_ROOT, check=False, env={"PYTHONPATH": str(PROJECT_ROOT / "src")})
    assert "ModuleNotFoundError" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: scorer: not after 1s")
    assert "Connection refused" in result.stderr


def test_without_site_packages_the_venv_is_out_of_reach() -> None:
    """So the check above can fail: PyYAML, in the venv and on most systems, cannot be imported."""
    result = run([sys.executable, "-S", "-c", "import yaml"], PROJECT_ROOT, check=False)
    assert result.returncode != 0
    assert "No module named 'yaml'" in result.stderr
