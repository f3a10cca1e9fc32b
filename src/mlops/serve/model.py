"""The packaged model in memory: verified against its manifest, checked against its signature."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from mlops.core.artifacts import (
    LABEL_OUTPUT,
    MODEL_FILE,
    PREDICTION_OUTPUT,
    PROBABILITIES_OUTPUT,
    SIGNATURE_FILE,
    ArtifactError,
    Manifest,
    Signature,
    load_signature,
    output_names,
    verify,
)
from mlops.core.decision import apply_threshold

ONNX_TYPES = {"number": "tensor(float)", "string": "tensor(string)"}
PROBABILITY_DECIMALS = 6  # float32 holds about 7 significant digits; more would be noise
PREDICTION_DIGITS = 7  # significant digits of a regressor's float32 prediction


@dataclass(slots=True)
class Prediction:
    """What the model said about a batch: a classifier's labels and probabilities, or a
    regressor's values (the other task's lists stay empty).

    The scorer keeps a classifier's probabilities as the array they were rounded in
    (``probability_array``); as lists of rows (``probabilities``) they are made on first use:
    ``/predict`` answers need them, V2 answers (JSON or bytes) and the log's lines take the
    array (0.15 ms less of the GIL's time per 1,000 records)."""

    labels: list[str]
    probability_rows: list[list[float]] | None = None  # given as rows (no array)
    values: list[float] = field(default_factory=list)
    probability_array: npt.NDArray[np.float64] | None = None  # [n, n_classes], rounded
    _maps: list[dict[str, float]] | None = field(default=None, repr=False, compare=False)

    @property
    def probabilities(self) -> list[list[float]]:
        """[n, n_classes] in ``classes`` order (empty for a regressor)."""
        if self.probability_rows is None:
            array = self.probability_array
            self.probability_rows = [] if array is None else array.tolist()
        return self.probability_rows

    def flat_probabilities(self) -> list[float]:
        """The probabilities row after row, as one list."""
        array = self.probability_array
        if array is not None:
            flat: list[float] = array.ravel().tolist()
            return flat
        return [p for row in self.probabilities for p in row]

    def probability_shape(self) -> list[int]:
        """[n, n_classes]; [0, 0] for none."""
        array = self.probability_array
        if array is not None:
            return list(array.shape)
        rows = self.probabilities
        return [len(rows), len(rows[0]) if rows else 0]

    def rows(self, start: int, stop: int) -> Prediction:
        array, given = self.probability_array, self.probability_rows
        return Prediction(
            self.labels[start:stop],
            given[start:stop] if array is None and given is not None else None,
            self.values[start:stop],
            None if array is None else array[start:stop],
        )

    def probability_maps(self, classes: list[str]) -> list[dict[str, float]]:
        """``{class: p}`` per record (rows are as wide as ``classes``: the model was checked);
        made once, for the answer and the log."""
        if self._maps is None:
            self._maps = list(map(dict, map(zip, repeat(classes), self.probabilities)))
        return self._maps


def round_significant(values: npt.NDArray[Any], digits: int = PREDICTION_DIGITS) -> list[float]:
    """Each value rounded to ``digits`` significant digits (a float32 prediction of 3.2 is
    3.200000047683716 in float64: clients get 3.2). Vectorised; zero and non-finite values pass
    unchanged. Dividing by an exact power of ten gives the double nearest the decimal."""
    wide = np.asarray(values, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(np.abs(wide)))
    shift = np.where(np.isfinite(exponent), digits - 1 - exponent, 0.0)
    up = 10.0 ** np.maximum(shift, 0.0)  # exact powers of ten up to 1e22
    down = 10.0 ** np.maximum(-shift, 0.0)
    rounded = np.round(wide * up / down) * down / up
    kept: list[float] = np.where(np.isfinite(rounded), rounded, wide).tolist()
    return kept


class Scorer:
    """One ONNX Runtime session for the packaged model; ``predict`` is one ORT call per batch."""

    def __init__(
        self, session: ort.InferenceSession, signature: Signature, manifest: Manifest
    ) -> None:
        self.session = session
        self.signature = signature
        self.manifest = manifest
        self.task = signature["task"]
        self.regression = self.task == "regression"
        self.classes = list(signature["classes"])
        self.model_name: str = manifest["model_name"]
        self.model_version: str = manifest["model_version"]
        # the model's outputs, in the order V2 answers them
        self.outputs = output_names(self.task)
        threshold, positive = signature["threshold"], signature["positive_class"]
        self.decision = None if threshold is None or positive is None else (positive, threshold)

    def predict(self, feed: Mapping[str, npt.NDArray[Any]]) -> Prediction:
        if self.regression:
            (values,) = self.session.run([PREDICTION_OUTPUT], dict(feed))
            return Prediction([], None, round_significant(values))
        labels, probabilities = self.session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], dict(feed))
        if self.decision is not None:
            labels = apply_threshold(probabilities, self.classes, *self.decision)
        rounded = probabilities.astype(np.float64).round(PROBABILITY_DECIMALS)
        names = labels.tolist() if labels.dtype == object else labels.astype(str).tolist()
        return Prediction(names, probability_array=rounded)


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
    expected = {f["input_name"]: ONNX_TYPES[f["type"]] for f in signature["features"]}
    actual = {node.name: node.type for node in session.get_inputs()}
    if actual != expected:
        raise ArtifactError(
            f"{directory}: the model's inputs {actual} do not match "
            f"signature.json's features {expected}"
        )
    outputs = {node.name: node for node in session.get_outputs()}
    for name in output_names(signature["task"]):
        if name not in outputs:
            raise ArtifactError(
                f"{directory / MODEL_FILE}: has no output '{name}' (signature.json says the "
                f"task is {signature['task']}); outputs are {sorted(outputs)}"
            )
    if signature["task"] == "regression":
        return
    width = outputs[PROBABILITIES_OUTPUT].shape[-1]
    if isinstance(width, int) and width != len(signature["classes"]):
        raise ArtifactError(
            f"{directory / MODEL_FILE}: '{PROBABILITIES_OUTPUT}' has {width} columns but "
            f"signature.json lists {len(signature['classes'])} classes"
        )
    check_decision(signature, directory)


def check_decision(signature: Signature, directory: Path) -> None:
    """A decision threshold needs two classes, one of them the positive class, and 0 < t < 1."""
    threshold, positive = signature["threshold"], signature["positive_class"]
    if threshold is None:
        return
    if len(signature["classes"]) != 2 or positive not in signature["classes"]:
        raise ArtifactError(
            f"{directory / SIGNATURE_FILE}: a decision threshold needs two classes, one of them "
            f"the positive class; classes are {signature['classes']}, positive class {positive!r}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ArtifactError(f"{directory / SIGNATURE_FILE}: threshold {threshold!r} is no number")
    if not 0 < threshold < 1:
        raise ArtifactError(
            f"{directory / SIGNATURE_FILE}: threshold {threshold} is not between 0 and 1"
        )
