"""The bodies the scorer answers with, as plain data for orjson (REST and Open Inference V2)."""

from __future__ import annotations

from typing import Any

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
    """``/predict``: one prediction per record, in order; ``warnings`` only where there are some."""
    predictions: list[dict[str, Any]] = [
        {"label": label, "probabilities": probabilities}
        for label, probabilities in zip(labels, probability_maps, strict=True)
    ]
    for index, record_warnings in warnings.items():
        predictions[index]["warnings"] = record_warnings
    return {"request_id": request_id, "model_version": model_version, "predictions": predictions}


def infer_body(
    model_name: str, model_version: str, request_id: str, prediction: Prediction, wanted: list[str]
) -> dict[str, Any]:
    """V2 inference response: ``label`` ``[n]`` and ``probabilities`` ``[n, k]`` (row-major)."""
    size = len(prediction.labels)
    width = len(prediction.probabilities[0]) if size else 0
    outputs = {
        "label": {
            "name": "label",
            "datatype": STRING_V2_DATATYPE,
            "shape": [size],
            "data": prediction.labels,
        },
        "probabilities": {
            "name": "probabilities",
            "datatype": NUMBER_V2_DATATYPE,
            "shape": [size, width],
            "data": [p for row in prediction.probabilities for p in row],
        },
    }
    return {
        "model_name": model_name,
        "model_version": model_version,
        "id": request_id,
        "outputs": [outputs[name] for name in wanted],
    }


def model_metadata_body(
    model_name: str, model_version: str, schema: InputSchema, classes: list[str]
) -> dict[str, Any]:
    """V2 model metadata: one ``[-1, 1]`` input per feature, the two outputs."""
    inputs = [
        {
            "name": spec.name,
            "datatype": NUMBER_V2_DATATYPE if spec.is_number else STRING_V2_DATATYPE,
            "shape": [-1, 1],
        }
        for spec in schema.fields
    ]
    outputs = [
        {"name": "label", "datatype": STRING_V2_DATATYPE, "shape": [-1]},
        {"name": "probabilities", "datatype": NUMBER_V2_DATATYPE, "shape": [-1, len(classes)]},
    ]
    return {
        "name": model_name,
        "versions": [model_version],
        "platform": "onnx",
        "inputs": inputs,
        "outputs": outputs,
    }
