"""The bodies the scorer answers with, as plain data for orjson (REST and Open Inference V2).

A classifier answers a label and the probability of every class per record; a regressor one
number per record (``prediction``). The V2 outputs are named after the ONNX model's outputs.
"""

from __future__ import annotations

from typing import Any

from mlops.core.artifacts import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT, Signature
from mlops.serve.model import Prediction
from mlops.serve.validation import (
    NUMBER_V2_DATATYPE,
    STRING_V2_DATATYPE,
    FieldWarning,
    InputSchema,
)


def predict_body(
    request_id: str,
    model_version: str,
    labels: list[str],
    probability_maps: list[dict[str, float]],
    warnings: dict[int, list[FieldWarning]],
) -> dict[str, Any]:
    """``/predict`` of a classifier: one prediction per record, in order; ``warnings`` only where
    there are some."""
    predictions: list[dict[str, Any]] = [
        {"label": label, "probabilities": probabilities}
        for label, probabilities in zip(labels, probability_maps, strict=True)
    ]
    return _predict_body(request_id, model_version, predictions, warnings)


def regression_predict_body(
    request_id: str,
    model_version: str,
    values: list[float],
    warnings: dict[int, list[FieldWarning]],
) -> dict[str, Any]:
    """``/predict`` of a regressor: ``{"prediction": <number>}`` per record, in order."""
    predictions: list[dict[str, Any]] = [{PREDICTION_OUTPUT: value} for value in values]
    return _predict_body(request_id, model_version, predictions, warnings)


def _predict_body(
    request_id: str,
    model_version: str,
    predictions: list[dict[str, Any]],
    warnings: dict[int, list[FieldWarning]],
) -> dict[str, Any]:
    for index, record_warnings in warnings.items():
        predictions[index]["warnings"] = record_warnings
    return {"request_id": request_id, "model_version": model_version, "predictions": predictions}


def infer_body(
    model_name: str, model_version: str, request_id: str, prediction: Prediction, wanted: list[str]
) -> dict[str, Any]:
    """V2 inference response: a classifier's ``label`` ``[n]`` and ``probabilities`` ``[n, k]``
    (row-major), or a regressor's ``prediction`` ``[n, 1]``; only the ``wanted`` outputs."""
    outputs = {name: _output(name, prediction) for name in wanted}
    return {
        "model_name": model_name,
        "model_version": model_version,
        "id": request_id,
        "outputs": [outputs[name] for name in wanted],
    }


def _output(name: str, prediction: Prediction) -> dict[str, Any]:
    if name == PREDICTION_OUTPUT:
        values = prediction.values
        return _tensor(name, NUMBER_V2_DATATYPE, [len(values), 1], values)
    if name == LABEL_OUTPUT:
        return _tensor(name, STRING_V2_DATATYPE, [len(prediction.labels)], prediction.labels)
    rows = prediction.probabilities
    width = len(rows[0]) if rows else 0
    flat = [p for row in rows for p in row]
    return _tensor(PROBABILITIES_OUTPUT, NUMBER_V2_DATATYPE, [len(rows), width], flat)


def _tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def model_parameters(signature: Signature) -> dict[str, Any]:
    """What a client needs to read the outputs: the task and the target; for a classifier with a
    decision threshold, the positive class and the threshold."""
    parameters: dict[str, Any] = {"task": signature["task"], "target": signature["target"]}
    if signature["positive_class"] is not None:
        parameters["positive_class"] = signature["positive_class"]
    if signature["threshold"] is not None:
        parameters["threshold"] = signature["threshold"]
    return parameters


def model_metadata_body(
    model_name: str,
    model_version: str,
    schema: InputSchema,
    classes: list[str],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """V2 model metadata: one ``[-1, 1]`` input per feature (the user's column names), the
    task's outputs, and ``parameters`` (the task; for a binary classifier the positive class and
    the decision threshold)."""
    inputs = [
        {
            "name": spec.name,
            "datatype": NUMBER_V2_DATATYPE if spec.is_number else STRING_V2_DATATYPE,
            "shape": [-1, 1],
        }
        for spec in schema.fields
    ]
    if parameters.get("task") == "regression":
        outputs = [{"name": PREDICTION_OUTPUT, "datatype": NUMBER_V2_DATATYPE, "shape": [-1, 1]}]
    else:
        outputs = [
            {"name": LABEL_OUTPUT, "datatype": STRING_V2_DATATYPE, "shape": [-1]},
            {
                "name": PROBABILITIES_OUTPUT,
                "datatype": NUMBER_V2_DATATYPE,
                "shape": [-1, len(classes)],
            },
        ]
    return {
        "name": model_name,
        "versions": [model_version],
        "platform": "onnx",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    }
