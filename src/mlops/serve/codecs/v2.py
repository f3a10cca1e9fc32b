"""The Open Inference Protocol V2 codec (JSON over REST): one ``[n, 1]`` or ``[n]`` input tensor
per feature, named as the data's column; outputs named after the ONNX model's outputs.

A classifier answers ``label`` ``[n]`` and ``probabilities`` ``[n, k]`` (row-major), a regressor
``prediction`` ``[n, 1]``; the request may pick among them. Input errors are the protocol's
``{"error": "<message>"}``, with status 400 (413 for a batch over the limit). The model metadata
body (``/v2/models/<name>``) is written here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import orjson

from mlops.core.artifacts import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT, Signature
from mlops.serve.batches import Columns, Result
from mlops.serve.errors import MAX_SHOWN_NAME, InputError, json_type, shown
from mlops.serve.model import Prediction
from mlops.serve.schema import FieldSpec, InputSchema

NUMERIC_V2_DATATYPES = frozenset(
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
)
STRING_V2_DATATYPE = "BYTES"
NUMBER_V2_DATATYPE = "FP32"


class Requested(NamedTuple):
    """What a V2 response depends on besides the scores: the client's id and the outputs."""

    client_id: str | None
    outputs: list[str]


class V2Codec:
    batch_name = "the batch"

    def __init__(self, schema: InputSchema, outputs: Sequence[str]) -> None:
        self.schema = schema
        self.outputs = outputs  # the model's, in the order V2 answers them

    def decode(self, body: object) -> tuple[Columns, Requested]:
        requested = check_inference_request(body, self.outputs)
        inputs = cast(dict[str, Any], body)["inputs"]  # a dict with 'inputs': checked above
        return tensors_to_columns(inputs, self.schema), requested

    def encode(self, result: Result, context: Requested) -> bytes:
        """The response; its ``id`` is the client's, or the request id when it sent none."""
        client_id = context.client_id
        return orjson.dumps(
            infer_body(
                result.model_name,
                result.model_version,
                client_id if client_id is not None else result.request_id,
                result.prediction,
                context.outputs,
            )
        )

    def error_body(self, error: InputError) -> tuple[int, dict[str, Any]]:
        return error.status if error.status == 413 else 400, {"error": error.one_line()}


def check_inference_request(body: object, outputs: Sequence[str]) -> Requested:
    """The V2 inference request object around its inputs: its id and which of the model's
    ``outputs`` it asks for (all of them when it names none)."""
    if not isinstance(body, dict):
        raise InputError("expected an inference request object with 'inputs'")
    unknown = sorted(set(body) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in the inference request")
    if "inputs" not in body:
        raise InputError("'inputs' is missing")
    client_id = body.get("id")
    if client_id is not None and not isinstance(client_id, str):
        raise InputError("'id' must be a string")
    if "parameters" in body and not isinstance(body["parameters"], dict):
        raise InputError("'parameters' must be an object")
    requested = body.get("outputs")
    if requested is None:
        return Requested(client_id, list(outputs))
    if not isinstance(requested, list) or not all(
        isinstance(output, dict) and output.get("name") in outputs for output in requested
    ):
        raise InputError(f"'outputs' must be a list of {{'name': ...}} naming {list(outputs)}")
    return Requested(client_id, [output["name"] for output in requested])


def tensors_to_columns(inputs: object, schema: InputSchema) -> Columns:
    """V2 ``inputs`` (one ``[n, 1]`` or ``[n]`` tensor per feature) as one list of values per
    feature, in the schema's order."""
    if not isinstance(inputs, list) or not inputs:
        raise InputError("'inputs' must be a non-empty list of tensors, one per feature")
    columns: dict[str, list[Any]] = {}
    for position, tensor in enumerate(inputs):
        name, values = _tensor_values(position, tensor, schema)
        if name in columns:
            raise InputError(f"input '{name}' is given twice")
        columns[name] = values
    missing = [name for name in schema.order if name not in columns]
    if missing:
        raise InputError(
            f"missing input(s) {missing}; the model takes one input per feature: {schema.order}"
        )
    sizes = {name: len(values) for name, values in columns.items()}
    if len(set(sizes.values())) > 1:
        raise InputError(f"inputs hold different numbers of elements: {sizes}")
    return Columns({name: columns[name] for name in schema.order}, next(iter(sizes.values())))


def _tensor_values(position: int, tensor: object, schema: InputSchema) -> tuple[str, list[Any]]:
    if not isinstance(tensor, dict):
        raise InputError(f"inputs[{position}] must be an object, got {json_type(tensor)}")
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InputError(f"inputs[{position}].name must be a string")
    spec = schema.by_name.get(name)
    if spec is None:
        raise InputError(
            f"input {shown(name, MAX_SHOWN_NAME)} is not a feature of the model; "
            f"expected {schema.order}"
        )
    missing = [key for key in ("shape", "datatype", "data") if key not in tensor]
    if missing:
        raise InputError(f"input '{name}' is missing {missing}")
    _check_datatype(spec, tensor["datatype"])
    shape = _check_shape(name, tensor["shape"])
    values = _flatten(name, tensor["data"], len(shape))
    if len(values) != shape[0]:
        raise InputError(f"input '{name}' has shape {shape} but {len(values)} element(s) of data")
    return name, values


def _check_datatype(spec: FieldSpec, datatype: object) -> None:
    if not isinstance(datatype, str):
        raise InputError(
            f"input '{spec.name}': datatype must be a string, got {json_type(datatype)}"
        )
    if spec.is_number and datatype not in NUMERIC_V2_DATATYPES:
        raise InputError(
            f"input '{spec.name}' is numeric: datatype must be {NUMBER_V2_DATATYPE}, "
            f"got {shown(datatype)}"
        )
    if not spec.is_number and datatype != STRING_V2_DATATYPE:
        raise InputError(
            f"input '{spec.name}' is categorical: datatype must be {STRING_V2_DATATYPE}, "
            f"got {shown(datatype)}"
        )


def _check_shape(name: str, shape: object) -> list[int]:
    valid = (
        isinstance(shape, list)
        and len(shape) in (1, 2)
        and all(type(dimension) is int and dimension >= 0 for dimension in shape)
        and (len(shape) == 1 or shape[1] == 1)
    )
    if not valid:
        raise InputError(f"input '{name}' must have shape [n, 1] or [n], got {shown(shape)}")
    return shape  # type: ignore[return-value]


def _flatten(name: str, data: object, rank: int) -> list[Any]:
    """Tensor data may be flat or nested as the shape (row-major); a nested row is ``[value]``."""
    if not isinstance(data, list):
        raise InputError(f"input '{name}'.data must be an array, got {json_type(data)}")
    if rank == 2 and data and type(data[0]) is list:
        if not all(type(row) is list and len(row) == 1 for row in data):
            raise InputError(f"input '{name}'.data must be flat or a list of one-element rows")
        return [row[0] for row in data]
    return data


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
