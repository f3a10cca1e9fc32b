"""ONNX conversion of the fitted pipeline, and scoring the ONNX model the way the scorer does.

The ONNX model takes one ``[n, 1]`` tensor per feature column (float32 with NaN for a missing
number, string with ``MISSING_CATEGORY`` for a missing category), named by the signature's
``input_name`` (``artifacts.input_names`` of the column names), and answers ``label`` and
``probabilities`` (a classifier) or ``prediction`` (a regressor). ``onnx_feed`` builds exactly that
feed from a table with ``features.model_input``, and ``score_classifier`` / ``score_regressor``
read it, so the parity gate, the champion comparison and the resource profile all score the model
as production does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops.core import artifacts
from mlops.core.artifacts import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT, Signature
from mlops.core.decision import apply_threshold
from mlops.model.features import FeatureSpec, TrainedModel, model_input
from mlops.stage import StageError

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    from sklearn.pipeline import Pipeline

Feed = dict[str, np.ndarray]
GRAPH_NAME = "pipeline"  # skl2onnx would name the graph with a random UUID: not reproducible


def spec_of(signature: Signature) -> FeatureSpec:
    """The feature spec a packaged model's signature describes (to score a champion package)."""
    features = tuple(feature["name"] for feature in signature["features"])
    numeric = tuple(f["name"] for f in signature["features"] if f["type"] == "number")
    categorical = tuple(f["name"] for f in signature["features"] if f["type"] == "string")
    return FeatureSpec(numeric=numeric, categorical=categorical, features=features)


def input_names_of(signature: Signature) -> dict[str, str]:
    """Column name -> ONNX input name as the package recorded it (old packages: the column)."""
    return {feature["name"]: feature["input_name"] for feature in signature["features"]}


def convert(model: TrainedModel, target_opset: int) -> onnx.ModelProto:
    """The pipeline in ONNX: a ``[None, 1]`` input per feature named by ``artifacts.input_names``,
    and the task's outputs (``label`` and ``probabilities``, or ``prediction``).

    skl2onnx finds a column transformer's columns by the names it is given, so it converts with
    the user's column names (and placeholder output names, as a feature may be called ``label``);
    its own renaming of those names may differ from ours, so the graph's inputs and outputs are
    renamed afterwards (``rename_values``).
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    spec = model.spec
    try:
        input_names = artifacts.input_names(spec.features)
    except artifacts.ArtifactError as error:
        raise StageError(f"the model's features cannot be ONNX inputs: {error}") from None
    inputs = [
        (name, FloatTensorType([None, 1]) if name in spec.numeric else StringTensorType([None, 1]))
        for name in spec.features
    ]
    outputs = _output_types(model, _placeholder(spec.features))
    options = {} if model.task == "regression" else {"zipmap": False}
    try:
        converted = convert_sklearn(
            with_float32_thresholds(model.pipeline),
            name=GRAPH_NAME,
            initial_types=inputs,
            final_types=outputs,
            target_opset=target_opset,
            options=options,
        )
    except Exception as error:  # skl2onnx raises many types for an unsupported model or opset
        raise StageError(
            f"skl2onnx cannot convert this pipeline at opset {target_opset} "
            f"({type(error).__name__}: {error})"
        ) from None
    graph = converted.graph
    renames = dict(
        zip(
            [value.name for value in graph.input],
            input_names.values(),
            strict=True,
        )
    )
    renames.update(
        zip([value.name for value in graph.output], artifacts.output_names(model.task), strict=True)
    )
    rename_values(graph, renames)
    _sort_opsets(converted)
    return converted


def _sort_opsets(model: onnx.ModelProto) -> None:
    """skl2onnx lists the operator sets it used in set order, which follows Python's per-process
    string hashing: sorted by domain, the same model always serialises to the same bytes."""
    opsets = sorted(model.opset_import, key=lambda opset: opset.domain)
    copies = [type(opset)(domain=opset.domain, version=opset.version) for opset in opsets]
    del model.opset_import[:]
    model.opset_import.extend(copies)


def _placeholder(features: Sequence[str]) -> str:
    """A prefix for the conversion's output names that no feature name starts with."""
    prefix = "mlops_output_"
    while any(name.startswith(prefix) for name in features):
        prefix = f"_{prefix}"
    return prefix


def _output_types(model: TrainedModel, prefix: str) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if model.task == "regression":
        return [(prefix + PREDICTION_OUTPUT, FloatTensorType([None, 1]))]
    return [
        (prefix + LABEL_OUTPUT, StringTensorType([None])),
        (prefix + PROBABILITIES_OUTPUT, FloatTensorType([None, len(model.classes)])),
    ]


def rename_values(graph: onnx.GraphProto, renames: Mapping[str, str]) -> None:
    """Rename values of ``graph`` (inputs, outputs, initializers, every node's inputs and outputs,
    subgraphs included); a value already called by a new name is first given another name."""
    taken = set(_value_names(graph))
    wanted = set(renames.values())
    plan = dict(renames)
    for clashing in sorted((taken & wanted) - set(renames)):
        plan[clashing] = _fresh_name(clashing, taken | wanted | set(plan.values()))
    _apply_renames(graph, plan)


def _value_names(graph: onnx.GraphProto) -> Iterator[str]:
    yield from (value.name for value in (*graph.input, *graph.output, *graph.value_info))
    yield from (tensor.name for tensor in graph.initializer)
    for node in graph.node:
        yield from (*node.input, *node.output)
        for subgraph in _subgraphs(node):
            yield from _value_names(subgraph)


def _fresh_name(name: str, taken: set[str]) -> str:
    number = 1
    while f"{name}_{number}" in taken:
        number += 1
    return f"{name}_{number}"


def _apply_renames(graph: onnx.GraphProto, plan: Mapping[str, str]) -> None:
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = plan.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [plan.get(name, name) for name in node.input]
        node.output[:] = [plan.get(name, name) for name in node.output]
        for subgraph in _subgraphs(node):
            _apply_renames(subgraph, plan)


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def with_float32_thresholds(pipeline: Pipeline) -> Pipeline:
    """A copy whose tree split thresholds are the largest float32 not above the original ones.

    scikit-learn compares a float32 feature value, widened to double, with a double threshold;
    an ONNX tree ensemble holds float32 thresholds, and a threshold rounded up past a value flips
    the comparison (a test value of 45.9 between the training values 45.8 and 46.0 goes right in
    scikit-learn and left in ONNX). For float32 inputs, all the model ever sees, a threshold
    rounded down makes exactly the same decisions in both.
    """
    snapped = copy.deepcopy(pipeline)
    for thresholds in _tree_thresholds(snapped[-1]):
        rounded = thresholds.astype(np.float32)
        too_high = rounded.astype(np.float64) > thresholds
        rounded[too_high] = np.nextafter(rounded[too_high], np.float32(-np.inf))
        thresholds[:] = rounded
    return snapped


def _tree_thresholds(estimator: Any) -> Iterator[np.ndarray]:
    """Writable views of the split thresholds of every tree of a tree ensemble."""
    for tree in np.ravel(getattr(estimator, "estimators_", [])):  # forests, gradient boosting
        if hasattr(tree, "tree_"):
            yield tree.tree_.threshold
    for predictors in getattr(estimator, "_predictors", []):  # histogram gradient boosting
        for predictor in predictors:
            yield predictor.nodes["num_threshold"]


def set_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    """Store ``metadata`` in the model's ``metadata_props`` (visible to any ONNX runtime), in
    key order, replacing what was there."""
    import onnx

    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {key: metadata[key] for key in sorted(metadata)})


def open_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """An onnxruntime session as the scorer opens it: CPU, one intra-op and one inter-op thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_feed(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    where: str = "table",
    input_names: Mapping[str, str] | None = None,
) -> Feed:
    """One ``[n, 1]`` array per feature column, typed as the scorer types a request and keyed by
    the ONNX input name (``input_names``: column -> input name; by default
    ``artifacts.input_names``, what the package stage names the inputs)."""
    typed = model_input(frame, spec, where)
    names = artifacts.input_names(spec.features) if input_names is None else input_names
    return {
        names[name]: typed[name]
        .to_numpy(dtype=np.float32 if name in spec.numeric else object)
        .reshape(-1, 1)
        for name in spec.features
    }


def signature_feed(frame: pd.DataFrame, signature: Signature, where: str = "table") -> Feed:
    """``onnx_feed`` for a packaged model (a champion): its features, its input names."""
    return onnx_feed(frame, spec_of(signature), where, input_names_of(signature))


def score_classifier(
    session: onnxruntime.InferenceSession,
    feed: Feed,
    classes: Sequence[str] = (),
    positive_class: str | None = None,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, probabilities)`` of a classifier: string labels ``[n]`` and float64
    probabilities ``[n, len(classes)]``. With a ``threshold`` (binary models; pass the
    signature's ``classes``, ``positive_class`` and ``threshold``), the labels follow
    ``decision.apply_threshold`` as the scorer's do; without one, the model's own labels."""
    labels, probabilities = session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], feed)
    if threshold is not None:
        if positive_class is None:
            raise StageError("a decision threshold needs the positive class")
        labels = apply_threshold(probabilities, classes, positive_class, threshold)
    return np.asarray(labels).astype(str), np.asarray(probabilities, dtype=np.float64)


def score_regressor(session: onnxruntime.InferenceSession, feed: Feed) -> np.ndarray:
    """A regressor's predictions, float64 ``[n]`` (the model computes them in float32)."""
    (predictions,) = session.run([PREDICTION_OUTPUT], feed)
    return np.asarray(predictions, dtype=np.float64).reshape(-1)
