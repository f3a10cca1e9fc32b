"""Where a packaged model comes from (the manifest's ``lineage``): the commit, the training data
and the params it was built from, and when.

This is the package stage's only look outside its inputs (git, the params file, the clock), so it
runs in the stage's shell and the package is built from what it returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from datetime import datetime
from pathlib import Path

from mlops.core import artifacts
from mlops.params import SECTIONS, load_section

# The params hash covers every section the pipeline reads; dvc.yaml lists them all for this stage.
PIPELINE_SECTIONS: dict[str, type] = {
    name: SECTIONS[name]
    for name in ("data", "clean", "label", "split", "train", "evaluate", "accept", "package")
}


def params_hash(params_path: Path) -> str:
    """sha256 of the canonical JSON of every pipeline section (defaults filled in, keys sorted)."""
    sections = {
        name: dataclasses.asdict(load_section(params_path, name, schema))
        for name, schema in PIPELINE_SECTIONS.items()
    }
    canonical = json.dumps(sections, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def md5_of(path: Path) -> str:
    """The file's md5, which is how DVC identifies it in dvc.lock and the cache."""
    return artifacts.file_digest(path, "md5")


def git_commit(directory: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def make_lineage(params_path: Path, train_path: Path, created: datetime) -> artifacts.Lineage:
    return {
        "git_commit": git_commit(Path.cwd()),
        "data_hash": md5_of(train_path),
        "params_hash": params_hash(params_path),
        "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
