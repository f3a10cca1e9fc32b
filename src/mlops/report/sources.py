"""Loading the report's inputs: workspace files, files of the base revision, DVC status."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlops.report.inputs import (
    PLOT_TABLES,
    PLOTS_DIR,
    PREDICTIONS_FILE,
    PROBABILITY_PREFIX,
    STAGE_FILES,
    Document,
    Outputs,
    Plot,
)
from mlops.report.intervals import RowPredictions
from mlops.report.plots import PlotImage
from mlops.stage import StageError, atomic_write_bytes

Reader = Callable[[str], str | None]


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


def load_outputs(read: Reader, params_path: str, where: str = "") -> Outputs:
    """A revision's params, stage outputs, plot data and per-row predictions; ``where`` names
    the revision in errors (e.g. " on main")."""
    params = _parse(read(params_path), params_path, yaml.safe_load)
    files = {name: _parse(read(path), path, json.loads) for name, (_, path) in STAGE_FILES.items()}
    tables = {}
    for name, labels in PLOT_TABLES.items():
        path = f"reports/evaluate/{name}.csv"
        table = read_csv_text(read(path), f"{path}{where}", labels)
        if table is not None:
            tables[name] = table
    predictions = parse_predictions(
        read(PREDICTIONS_FILE), files.get("metrics"), f"{PREDICTIONS_FILE}{where}"
    )
    return Outputs(params=params, files=files, tables=tables, predictions=predictions)


def read_csv_text(text: str | None, path: str, labels: tuple[str, ...]) -> pd.DataFrame | None:
    """A CSV the evaluate stage wrote: the ``labels`` columns as text (a class "1" or "NA" stays
    as written), the others as numbers."""
    if text is None:
        return None
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise StageError(f"{path}: cannot be parsed as CSV ({error})") from None
    for column in table.columns:
        if column not in labels:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def parse_predictions(
    text: str | None, metrics: Mapping[str, Any] | None, path: str
) -> RowPredictions | None:
    """predictions.csv as the bootstrap reads it; None without the file or the metrics."""
    if metrics is None:
        return None
    table = read_csv_text(text, path, ("row", "actual", "predicted"))
    if table is None:
        return None
    missing = [name for name in ("row", "actual", "predicted") if name not in table.columns]
    if missing:
        raise StageError(f"{path}: no column {missing}; expected row, actual, predicted")
    probabilities = [name for name in table.columns if name.startswith(PROBABILITY_PREFIX)]
    classes = tuple(name.removeprefix(PROBABILITY_PREFIX) for name in probabilities)
    regression = metrics.get("task") == "regression"
    actual, predicted = table["actual"].to_numpy(), table["predicted"].to_numpy()
    if regression:
        actual, predicted = _numbers(actual, path), _numbers(predicted, path)
    else:
        unknown = sorted((set(actual) | set(predicted)) - set(classes))
        if unknown or not classes:
            raise StageError(
                f"{path}: labels {unknown} have no probability column "
                f"('{PROBABILITY_PREFIX}<class>'); columns {list(table.columns)}"
            )
    return RowPredictions(
        keys=table["row"].to_numpy(dtype=object),
        actual=actual,
        predicted=predicted,
        probabilities=None if regression else table[probabilities].to_numpy(dtype=np.float64),
        classes=() if regression else classes,
        positive_class=None
        if metrics.get("positive_class") is None
        else str(metrics["positive_class"]),
        total_rows=int(metrics.get("rows") or len(table)),
    )


def _numbers(values: np.ndarray, path: str) -> np.ndarray:
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(numbers).any():
        row = int(np.flatnonzero(np.isnan(numbers))[0])
        raise StageError(f"{path}: row {row + 2} holds {values[row]!r}, not a number")
    return numbers


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


def evaluate_images(root: Path) -> dict[str, bytes]:
    """The evaluate stage's PNG images, by file name."""
    directory = root / PLOTS_DIR
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.png"))}


def write_plot_images(directory: Path, images: list[PlotImage]) -> tuple[Plot, ...]:
    """The report's images in ``directory`` (next to the report: the report and its images are
    one folder, uploaded as one artifact), an earlier run's removed; links relative to the
    report."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    for image in images:
        atomic_write_bytes(directory / image.name, image.image)
    return tuple(
        Plot(image.title, f"{directory.name}/{image.name}", image.over_base) for image in images
    )


def run_url(environment: Mapping[str, str]) -> str | None:
    """The CI run's page, whose artifacts hold the report's images (GitHub Actions sets these)."""
    server, repository = environment.get("GITHUB_SERVER_URL"), environment.get("GITHUB_REPOSITORY")
    run_id = environment.get("GITHUB_RUN_ID")
    if not (server and repository and run_id):
        return None
    return f"{server}/{repository}/actions/runs/{run_id}"


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
