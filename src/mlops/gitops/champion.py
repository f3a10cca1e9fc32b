"""The champion: the packaged model of the version in production, fetched for the acceptance test.

``dvc get`` fetches the package at the version's commit into ``accept.champion``; without a
registered version, or without its files in a cache or remote, acceptance runs without one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlops.gitops.tags import champion_version, git
from mlops.gitops.versions import RegisteredVersion

CHAMPION_README = "README.md"


def champion_status(
    repo: Path, name: str, package: str, out: Path, rev: str | None
) -> dict[str, Any]:
    if rev is not None:
        champion: RegisteredVersion | None = RegisteredVersion(rev, git(repo, "rev-parse", rev), "")
    else:
        champion = champion_version(repo, name)
    if champion is None:
        kept = " (the existing directory is kept)" if out.exists() else ""
        return {
            "status": "none",
            "summary": f"no version of {name} is registered yet: first-run acceptance{kept}",
        }
    failure = fetch_package(repo, package, champion.commit, out)
    where = f"{champion.version} ({champion.commit[:12]})"
    if failure is not None:
        return {
            "status": "unavailable",
            "version": champion.version,
            "commit": champion.commit,
            "summary": f"{where} is registered but its files are not available ({failure}): "
            "set up the DVC remote (docs/gitops.md); acceptance ran without a champion",
        }
    return {
        "status": "fetched",
        "version": champion.version,
        "commit": champion.commit,
        "summary": f"{where} fetched into {out}",
    }


def fetch_package(repo: Path, package: str, commit: str, out: Path) -> str | None:
    """``dvc get`` the package at ``commit`` into ``out``; the reason on failure, else None.

    DVC finds the files in the local cache (CI restores it) or the configured remote. ``out`` keeps
    its committed README (the acceptance stage depends on the directory); the rest is replaced.
    """
    incoming = out.parent / f".{out.name}.incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    command = [sys.executable, "-m", "dvc", "get", ".", package, "--rev", commit]
    command += ["--out", str(incoming)]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    clear_champion(out)
    if result.returncode != 0:
        shutil.rmtree(incoming, ignore_errors=True)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return lines[0] if lines else f"dvc get exited {result.returncode}"
    for item in incoming.iterdir():
        item.replace(out / item.name)
    incoming.rmdir()
    return None


def clear_champion(out: Path) -> None:
    """Empty the champion directory but for its README."""
    out.mkdir(parents=True, exist_ok=True)
    for item in out.iterdir():
        if item.name == CHAMPION_README:
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
