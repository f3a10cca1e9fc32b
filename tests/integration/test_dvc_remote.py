"""scripts/ci/dvc-remote.sh, the CI steps `make dvc-pull` / `make dvc-push`, against S3 (moto)."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import PROJECT_ROOT, run

SCRIPT = "scripts/ci/dvc-remote.sh"


def dvc_repo(root: Path) -> Path:
    """A git + DVC repository holding the script and one DVC-tracked file."""
    root.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], root)
    run(["dvc", "init", "-q"], root)
    (root / "scripts" / "ci").mkdir(parents=True)
    shutil.copy2(PROJECT_ROOT / SCRIPT, root / SCRIPT)
    (root / "data.csv").write_text("a,b\n1,2\n")
    run(["dvc", "add", "-q", "data.csv"], root)
    return root


def test_without_a_remote_both_steps_skip_cleanly(tmp_path: Path) -> None:
    root = dvc_repo(tmp_path / "project")
    for action in ("pull", "push"):
        result = run([SCRIPT, action], root, env={"DVC_REMOTE_URL": ""})
        assert f"DVC_REMOTE_URL is not set: skipping dvc {action}" in result.stdout
    assert not (root / ".dvc" / "config.local").exists()


def test_push_then_pull_in_a_fresh_clone_through_s3(tmp_path: Path, s3: dict[str, str]) -> None:
    root = dvc_repo(tmp_path / "project")
    remote = {"DVC_REMOTE_URL": "s3://mlops/cache"}
    pushed = run([SCRIPT, "push"], root, env=remote)
    assert "1 file pushed" in pushed.stdout + pushed.stderr
    assert "s3://" not in pushed.stdout  # the remote's address is not echoed

    clone = tmp_path / "clone"
    clone.mkdir()
    for name in (".dvc/config", "data.csv.dvc", SCRIPT):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, clone / name)
    run(["git", "init", "-q", "-b", "main"], clone)
    run([SCRIPT, "pull"], clone, env=remote)
    assert (clone / "data.csv").read_text() == "a,b\n1,2\n"


def test_credentials_that_exist_must_work(tmp_path: Path, s3: dict[str, str]) -> None:
    root = dvc_repo(tmp_path / "project")
    result = run([SCRIPT, "push"], root, check=False, env={"DVC_REMOTE_URL": "s3://no-bucket/x"})
    assert result.returncode != 0


def test_an_unknown_action_is_refused(tmp_path: Path) -> None:
    result = run([str(PROJECT_ROOT / SCRIPT), "sync"], tmp_path, check=False)
    assert result.returncode == 2 and "usage:" in result.stderr
