"""Loading the report's inputs: workspace files, files of the base revision, DVC status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mlops.report.inputs import PLOTS_DIR, STAGE_FILES, Document, Outputs, Plot
from mlops.stage import StageError

Reader = Callable[[str], str | None]
# Plots first in this order, then any other PNG the evaluate stage writes, by name.
PLOT_TITLES = {
    "predicted_actual.png": "Predicted against actual",
    "residuals.png": "Residuals against predicted",
    "confusion_matrix.png": "Confusion matrix",
    "roc.png": "ROC curves (one class against the rest)",
    "precision_recall.png": "Precision and recall",
    "calibration.png": "Calibration",
    "importance.png": "Permutation importance",
}


def workspace_reader(root: Path) -> Reader:
    def read(path: str) -> str | None:
        file = root / path
        return file.read_text() if file.is_file() else None

    return read


def committed_reader(root: Path, commit: str) -> Reader:
    """Files as committed on ``commit`` (``git show``); None for a file the commit lacks."""

    def read(path: str) -> str | None:
        result = git(root, "show", f"{commit}:{path}")
        return result.stdout if result.returncode == 0 else None

    return read


def git(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *arguments], cwd=root, capture_output=True, text=True, check=False
    )


def resolve_commit(root: Path, revision: str) -> str | None:
    """The commit ``revision`` names, trying ``origin/<revision>`` too (CI checks out no main)."""
    for candidate in (revision, f"origin/{revision}"):
        result = git(root, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def load_outputs(read: Reader, params_path: str) -> Outputs:
    params = _parse(read(params_path), params_path, yaml.safe_load)
    files = {name: _parse(read(path), path, json.loads) for name, (_, path) in STAGE_FILES.items()}
    return Outputs(params=params, files=files)


def _parse(text: str | None, path: str, parse: Callable[[str], Any]) -> Document | None:
    if text is None:
        return None
    try:
        value = parse(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise StageError(f"{path}: cannot be parsed ({error})") from None
    return value if isinstance(value, dict) else None


def stale_stages(root: Path) -> tuple[str, ...]:
    """The stages ``dvc status`` reports as changed, in the pipeline's order."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StageError(f"dvc status failed: {result.stderr.strip()}")
    changed = json.loads(result.stdout or "{}")
    order = list((yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {}))
    names = {key.split(":")[-1] for key in changed}
    return tuple(stage for stage in order if stage in names)


def find_plots(root: Path, report_dir: Path) -> tuple[Plot, ...]:
    directory = root / PLOTS_DIR
    if not directory.is_dir():
        return ()
    files = sorted(directory.glob("*.png"), key=lambda p: (p.name not in PLOT_TITLES, _rank(p)))
    return tuple(
        Plot(PLOT_TITLES.get(path.name, path.stem.replace("_", " ")), _link(path, report_dir))
        for path in files
    )


def _rank(path: Path) -> int | str:
    names = list(PLOT_TITLES)
    return names.index(path.name) if path.name in PLOT_TITLES else path.name


def _link(path: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix()


def read_raw_table(path: Path) -> Any:
    """The raw table for the distribution comparison, or None when ingest has not run."""
    if not path.is_file():
        return None
    from mlops.tables import read_table

    return read_table(path)


def read_optional_json(path: Path) -> Document | None:
    return _parse(path.read_text(), str(path), json.loads) if path.is_file() else None


def retrain_trigger(payload: str | None) -> Document | None:
    """The ``repository_dispatch`` payload the retrain workflow passes on, if any."""
    if not payload or payload.strip() in ("", "null"):
        return None
    try:
        value = json.loads(payload)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and value else None
