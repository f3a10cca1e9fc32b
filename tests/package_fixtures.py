"""Real packages of models of either task, built by the package stage from the small tables of
``model_fixtures`` (headers as people write them, an id and a date column, missing values).

A regression or a binary package builds in a second or two, so the package, parity and serving
tests cover every task (over real HTTP too) without running the whole pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops.core.artifacts import Task
from mlops.model import package
from mlops.model.features import TrainedModel
from model_fixtures import (
    BINARY_TARGET,
    POSITIVE,
    REGRESSION_TARGET,
    arguments,
    binary_table,
    package_inputs,
    regression_table,
    split,
    trained_on,
)


def verdict(task: Task) -> dict[str, Any]:
    """A passed acceptance verdict, as the accept stage writes it for ``task``."""
    metrics: dict[str, Any]
    if task == "classification":
        check = {"name": "roc_auc", "value": 0.8, "threshold": 0.7, "passed": True}
        metrics = {"rows": 72, "accuracy": 0.8, "macro_f1": 0.7, "roc_auc": 0.8}
    else:
        check = {"name": "r2", "value": 0.9, "threshold": 0.5, "passed": True}
        metrics = {"rows": 72, "mae": 4.2, "rmse": 5.3, "r2": 0.9, "slice_r2": {"plus": 0.8}}
    return {"passed": True, "metrics": metrics, "checks": [check], "champion": None}


def inputs(
    directory: Path,
    model: TrainedModel,
    train: Any,
    test: Any,
    threshold: float | None = None,
) -> dict[str, Path]:
    """The package stage's input files for ``model`` (evaluate's metrics computed on ``test``,
    with a fixed decision ``threshold`` if given; a verdict for its task)."""
    paths = package_inputs(directory, model, train, test, threshold)
    paths["verdict"].write_text(json.dumps(verdict(model.task)))
    return paths


def build_package(
    directory: Path, model: TrainedModel, train: Any, test: Any, threshold: float | None = None
) -> dict[str, Path]:
    """Run the package stage on ``model`` in ``directory``; the paths it read and wrote."""
    paths = inputs(directory, model, train, test, threshold)
    package.main(arguments(paths))
    return paths


# Headers with a leading digit, a dot and a slash too, beside model_fixtures' spaces, brackets,
# currency signs and non-ASCII letters.
REGRESSION_RENAMES = {"Größe": "Größe (cm)", "support calls (#)": "2nd.line calls/month"}


def regression_package(directory: Path) -> Path:
    """A packaged random-forest regressor of ``model_fixtures.regression_table`` (two columns
    renamed: ``REGRESSION_RENAMES``)."""
    table = regression_table().rename(columns=REGRESSION_RENAMES)
    train, test = split(table, target=REGRESSION_TARGET)
    model = trained_on(train, REGRESSION_TARGET)
    return build_package(directory, model, train, test)["out"]


def binary_package(directory: Path, threshold: float | None = 0.3) -> Path:
    """A packaged binary random forest of ``model_fixtures.binary_table`` (positive class
    ``yes``), with a decision threshold."""
    train, test = split(binary_table(), target=BINARY_TARGET)
    model = trained_on(train, BINARY_TARGET, positive_class=POSITIVE)
    return build_package(directory, model, train, test, threshold)["out"]
