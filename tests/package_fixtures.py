"""Real packages of models of either task, built by the package stage from the small tables of
``model_fixtures`` (headers as people write them, an id and a date column, missing values).

A regression or a binary package builds in a second or two, so the package, parity and serving
tests cover every task (over real HTTP too) without running the whole pipeline.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mlops.core.artifacts import Task, sha256_of
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


# --- challengers: packages of a champion's signature under another version ---------------


def manifest_of(package: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((package / "manifest.json").read_text())
    return manifest


def version_of(package: Path) -> str:
    return str(manifest_of(package)["model_version"])


def shuffled_regressor(directory: Path) -> Path:
    """A regressor of the champion's table and signature trained on shuffled targets: worse."""
    table = regression_table().rename(columns=REGRESSION_RENAMES)
    train, test = split(table, target=REGRESSION_TARGET)
    labels = train[REGRESSION_TARGET].sample(frac=1, random_state=7).set_axis(train.index)
    model = trained_on(train, REGRESSION_TARGET, labels=labels)
    return build_package(directory, model, train, test)["out"]


def shuffled_classifier(directory: Path) -> Path:
    """``binary_package``'s classifier trained on shuffled labels, same threshold."""
    train, test = split(binary_table(), target=BINARY_TARGET)
    labels = train[BINARY_TARGET].sample(frac=1, random_state=7).set_axis(train.index)
    model = trained_on(train, BINARY_TARGET, labels=labels, positive_class=POSITIVE)
    return build_package(directory, model, train, test, 0.3)["out"]


def rewired(package: Path, target: Path, version: str, nodes: Callable[[str], list[Any]]) -> Path:
    """A copy of the regressor ``package`` whose ``prediction`` is the original plus a zero
    computed by ``nodes`` (given the name of the first input, they write ``zero``), under
    another model version."""
    copy = Path(shutil.copytree(package, target))
    model = onnx.load(str(copy / "model.onnx"))
    graph = model.graph
    for node in graph.node:
        for position, name in enumerate(node.output):
            if name == "prediction":
                node.output[position] = "original_prediction"
    graph.node.extend(nodes(graph.input[0].name))
    graph.node.append(helper.make_node("Add", ["original_prediction", "zero"], ["prediction"]))
    onnx.save(model, str(copy / "model.onnx"))
    manifest = manifest_of(copy)
    manifest["model_version"] = version
    manifest["files"]["model.onnx"] = sha256_of(copy / "model.onnx")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def constant(name: str, value: Any, kind: int = TensorProto.INT64) -> Any:
    dtype = np.int64 if kind == TensorProto.INT64 else np.float32
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype), name)
    )
