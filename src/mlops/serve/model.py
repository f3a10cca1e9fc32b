"""The packaged model in memory: verified against its manifest, checked against its signature."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from mlops.artifacts import (
    LABEL_OUTPUT,
    MODEL_FILE,
    PROBABILITIES_OUTPUT,
    ArtifactError,
    Manifest,
    Signature,
    load_signature,
    verify,
)

ONNX_TYPES = {"number": "tensor(float)", "string": "tensor(string)"}
PROBABILITY_DECIMALS = 6  # float32 holds about 7 significant digits; more would be noise


@dataclass(slots=True)
class Prediction:
    labels: list[str]
    probabilities: list[list[float]]  # [n, n_classes] in ``classes`` order

    def rows(self, start: int, stop: int) -> Prediction:
        return Prediction(self.labels[start:stop], self.probabilities[start:stop])

    def probability_maps(self, classes: list[str]) -> list[dict[str, float]]:
        """``{class: p}`` per record (rows are as wide as ``classes``: the model was checked)."""
        return list(map(dict, map(zip, repeat(classes), self.probabilities)))


class Scorer:
    """One ONNX Runtime session for the packaged model; ``predict`` is one ORT call per batch."""

    def __init__(
        self, session: ort.InferenceSession, signature: Signature, manifest: Manifest
    ) -> None:
        self.session = session
        self.signature = signature
        self.manifest = manifest
        self.classes = list(signature["classes"])
        self.model_name: str = manifest["model_name"]
        self.model_version: str = manifest["model_version"]

    def predict(self, feed: Mapping[str, npt.NDArray[Any]]) -> Prediction:
        labels, probabilities = self.session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], dict(feed))
        rounded = probabilities.astype(np.float64).round(PROBABILITY_DECIMALS)
        names = labels.tolist() if labels.dtype == object else labels.astype(str).tolist()
        return Prediction(names, rounded.tolist())


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle ORT threads must not spin: they would steal the CPU the event loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def load_scorer(directory: Path, threads: int) -> Scorer:
    """Verify every file against the manifest, then open the model (ArtifactError if not)."""
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no packaged model directory here (set MODEL_DIR)")
    manifest = verify(directory)
    signature = load_signature(directory)
    try:
        session = ort.InferenceSession(
            str(directory / MODEL_FILE),
            session_options(threads),
            providers=["CPUExecutionProvider"],
        )
    except Exception as error:  # ORT raises its own exception types for an unreadable model
        raise ArtifactError(
            f"{directory / MODEL_FILE}: ONNX Runtime cannot load it ({error})"
        ) from None
    check_interface(session, signature, directory)
    return Scorer(session, signature, manifest)


def check_interface(session: ort.InferenceSession, signature: Signature, directory: Path) -> None:
    """The model's inputs and outputs must be exactly what the signature promises."""
    expected = {feature["name"]: ONNX_TYPES[feature["type"]] for feature in signature["features"]}
    actual = {node.name: node.type for node in session.get_inputs()}
    if actual != expected:
        raise ArtifactError(
            f"{directory}: the model's inputs {actual} do not match "
            f"signature.json's features {expected}"
        )
    outputs = {node.name: node for node in session.get_outputs()}
    for name in (LABEL_OUTPUT, PROBABILITIES_OUTPUT):
        if name not in outputs:
            raise ArtifactError(
                f"{directory / MODEL_FILE}: has no output '{name}'; outputs are {sorted(outputs)}"
            )
    width = outputs[PROBABILITIES_OUTPUT].shape[-1]
    if isinstance(width, int) and width != len(signature["classes"]):
        raise ArtifactError(
            f"{directory / MODEL_FILE}: '{PROBABILITIES_OUTPUT}' has {width} columns but "
            f"signature.json lists {len(signature['classes'])} classes"
        )
