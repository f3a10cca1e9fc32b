"""The Open Inference Protocol V2 codec over REST: one ``[n, 1]`` or ``[n]`` input tensor per
feature, named as the data's column; outputs named after the ONNX model's outputs.

A tensor's data is JSON (flat or nested) or, under the binary tensor data extension, bytes after
the JSON object (``codecs.v2_binary``); outputs are JSON unless the request asks for binary data
(``binary_data`` on an output, ``binary_data_output`` on the request, as tritonclient does by
default). A classifier answers ``label`` ``[n]`` and ``probabilities`` ``[n, k]`` (row-major), a
regressor ``prediction`` ``[n, 1]``; the request may pick among them. Input errors are the
protocol's ``{"error": "<message>"}``, with status 400 (413 for a batch over the limit). The model
metadata body (``/v2/models/<name>``) is written here too, and the checks of a tensor's name,
datatype and shape that the gRPC codec shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import orjson

from mlops.core.artifacts import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT, Signature
from mlops.serve.batches import MAX_CLIENT_ID_LENGTH, Columns, ColumnValues, Result
from mlops.serve.codecs.v2_binary import (
    BYTES_DATATYPE,
    NUMPY_DTYPES,
    EncodedStrings,
    TensorBytes,
    decode_tensor,
    output_bytes,
)
from mlops.serve.errors import MAX_SHOWN_NAME, InputError, json_type, shown
from mlops.serve.model import Prediction
from mlops.serve.schema import FieldSpec, InputSchema

NUMERIC_V2_DATATYPES = frozenset(NUMPY_DTYPES)
STRING_V2_DATATYPE = BYTES_DATATYPE
NUMBER_V2_DATATYPE = "FP32"
# The binary tensor data extension's parameters, and the extensions this scorer does not offer.
BINARY_DATA_SIZE = "binary_data_size"  # an input's (or output's) bytes after the JSON
BINARY_DATA = "binary_data"  # a requested output's: answer it as binary data
BINARY_DATA_OUTPUT = "binary_data_output"  # the request's: every output as binary data
SHARED_MEMORY = "shared_memory_"
CLASSIFICATION = "classification"


class V2Request(NamedTuple):
    """A V2 REST inference request as it arrived: its JSON object, and the bytes that followed
    it under the binary tensor data extension (``Inference-Header-Content-Length``; empty
    without)."""

    header: object
    binary: bytes | memoryview = b""


class V2Answer(NamedTuple):
    """The response body, and the length of its JSON object when binary outputs follow it (the
    ``Inference-Header-Content-Length`` header; None for a JSON-only body)."""

    content: bytes
    header_length: int | None = None


class Requested(NamedTuple):
    """What a V2 response depends on besides the scores: the client's id, the outputs, and which
    of them the client wants as binary data."""

    client_id: str | None
    outputs: list[str]
    binary: frozenset[str] = frozenset()


class V2Codec:
    """V2 over REST: JSON tensors, and binary tensor data in either direction."""

    batch_name = "the batch"

    def __init__(self, schema: InputSchema, outputs: Sequence[str]) -> None:
        self.schema = schema
        self.outputs = outputs  # the model's, in the order V2 answers them
        self.encoded_labels = EncodedStrings()  # each class's BYTES element, made once

    def decode(self, body: object) -> tuple[Columns, Requested]:
        request = body if isinstance(body, V2Request) else V2Request(body)
        requested = check_inference_request(request.header, self.outputs)
        inputs = cast(dict[str, Any], request.header)["inputs"]  # checked above
        columns = tensors_to_columns(inputs, self.schema, TensorBytes(request.binary))
        columns.client_id = requested.client_id
        return columns, requested

    def encode(self, result: Result, context: Requested) -> V2Answer:
        """The response; its ``id`` is the client's, or the request id when it sent none. Binary
        outputs follow the JSON, in its order, their data out of it (no list to build)."""
        client_id = context.client_id
        request_id = client_id if client_id is not None else result.request_id
        prediction = result.prediction
        if not context.binary:
            body = infer_body(
                result.model_name, result.model_version, request_id, prediction, context.outputs
            )
            return V2Answer(orjson.dumps(body))
        outputs, tails = [], []
        for name in context.outputs:
            if name not in context.binary:
                outputs.append(_output(name, prediction))
                continue
            datatype, shape = output_shape(name, prediction)
            tail = output_bytes(name, prediction, self.encoded_labels)
            parameters = {BINARY_DATA_SIZE: len(tail)}
            outputs.append(
                {"name": name, "datatype": datatype, "shape": shape, "parameters": parameters}
            )
            tails.append(tail)
        header = orjson.dumps(
            {
                "model_name": result.model_name,
                "model_version": result.model_version,
                "id": request_id,
                "outputs": outputs,
            }
        )
        return V2Answer(b"".join([header, *tails]), len(header))

    def error_body(self, error: InputError) -> tuple[int, dict[str, Any]]:
        return error.status if error.status == 413 else 400, {"error": error.one_line()}


def check_inference_request(body: object, outputs: Sequence[str]) -> Requested:
    """The V2 inference request object around its inputs: its id, which of the model's
    ``outputs`` it asks for (all of them when it names none) and which as binary data."""
    if not isinstance(body, dict):
        raise InputError("expected an inference request object with 'inputs'")
    unknown = sorted(set(body) - {"id", "parameters", "inputs", "outputs", "model_name"})
    if unknown:
        raise InputError(f"unknown key(s) {unknown} in the inference request")
    if "inputs" not in body:
        raise InputError("'inputs' is missing")
    client_id = checked_client_id(body.get("id"))
    parameters = check_parameters("the request", body.get("parameters"))
    all_binary = parameters.get(BINARY_DATA_OUTPUT, False)
    requested = body.get("outputs")
    if requested is None:
        return Requested(
            client_id, list(outputs), frozenset(outputs) if all_binary else frozenset()
        )
    if not isinstance(requested, list) or not all(
        isinstance(output, dict) and output.get("name") in outputs for output in requested
    ):
        raise InputError(f"'outputs' must be a list of {{'name': ...}} naming {list(outputs)}")
    names, binary = [], set()
    for output in requested:
        name = output["name"]
        wanted = check_parameters(f"output '{name}'", output.get("parameters"))
        if wanted.get(BINARY_DATA, all_binary):
            binary.add(name)
        names.append(name)
    return Requested(client_id, names, frozenset(binary))


def checked_client_id(client_id: object) -> str | None:
    """A request's ``id``: a string of at most ``MAX_CLIENT_ID_LENGTH`` characters (the log keeps
    it), or None."""
    if client_id is None:
        return None
    if not isinstance(client_id, str):
        raise InputError("'id' must be a string")
    if len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise InputError(
            f"'id' has {len(client_id)} characters; at most {MAX_CLIENT_ID_LENGTH} are accepted"
        )
    return client_id


def check_parameters(where: str, parameters: object) -> dict[str, Any]:
    """A ``parameters`` object: each value a boolean, a number or a string (the protocol's
    ``$parameter``), the binary tensor data extension's typed as it says; an extension this
    scorer does not serve (shared memory, classification) refused by name. Others are kept
    for whoever reads them and otherwise ignored (Triton's ``sequence_id``, ``priority``, ...)."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InputError(f"'parameters' of {where} must be an object")
    for key, value in parameters.items():
        if not isinstance(value, bool | int | float | str):
            raise InputError(
                f"parameter {key!r} of {where} must be a boolean, a number or a string, "
                f"got {json_type(value)}"
            )
        if key.startswith(SHARED_MEMORY) or key == CLASSIFICATION:
            raise InputError(
                f"parameter {key!r} of {where}: this server does not offer the "
                f"{'shared memory' if key != CLASSIFICATION else 'classification'} extension"
            )
        if key in (BINARY_DATA, BINARY_DATA_OUTPUT) and not isinstance(value, bool):
            raise InputError(f"parameter {key!r} of {where} must be true or false")
        if key == BINARY_DATA_SIZE and (type(value) is not int or value < 0):
            raise InputError(f"parameter {key!r} of {where} must be a whole number of bytes")
    return parameters


def tensors_to_columns(
    inputs: object, schema: InputSchema, binary: TensorBytes | None = None
) -> Columns:
    """V2 ``inputs`` (one ``[n, 1]`` or ``[n]`` tensor per feature, its data in JSON or in
    ``binary``) as one list of values per feature, in the schema's order."""
    if not isinstance(inputs, list) or not inputs:
        raise InputError("'inputs' must be a non-empty list of tensors, one per feature")
    binary = binary or TensorBytes(b"")
    named = [
        _tensor_values(position, tensor, schema, binary) for position, tensor in enumerate(inputs)
    ]
    binary.check_all_used()
    return assemble_columns(named, schema)


def assemble_columns(named: Sequence[tuple[str, ColumnValues]], schema: InputSchema) -> Columns:
    """Each feature's values, by name, as the batch of one request (every feature once, as many
    values each), in the schema's order."""
    columns: dict[str, ColumnValues] = {}
    for name, values in named:
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


def _tensor_values(
    position: int, tensor: object, schema: InputSchema, binary: TensorBytes
) -> tuple[str, ColumnValues]:
    if not isinstance(tensor, dict):
        raise InputError(f"inputs[{position}] must be an object, got {json_type(tensor)}")
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InputError(f"inputs[{position}].name must be a string")
    spec = feature_of(name, schema)
    parameters = check_parameters(f"input '{name}'", tensor.get("parameters"))
    size = parameters.get(BINARY_DATA_SIZE)
    missing = [key for key in ("shape", "datatype") if key not in tensor]
    if "data" not in tensor and size is None:
        missing.append("data")
    if missing:
        raise InputError(f"input '{name}' is missing {missing}")
    datatype = check_datatype(spec, tensor["datatype"])
    shape = check_shape(name, tensor["shape"])
    if size is not None:
        if "data" in tensor:
            raise InputError(f"input '{name}' has both 'data' and binary data ({BINARY_DATA_SIZE})")
        raw = binary.take(name, size)
        return name, decode_tensor(name, datatype, raw, shape[0], spec.categories)
    values = _flatten(name, tensor["data"], len(shape))
    if len(values) != shape[0]:
        raise InputError(f"input '{name}' has shape {shape} but {len(values)} element(s) of data")
    return name, values


def feature_of(name: str, schema: InputSchema) -> FieldSpec:
    spec = schema.by_name.get(name)
    if spec is None:
        raise InputError(
            f"input {shown(name, MAX_SHOWN_NAME)} is not a feature of the model; "
            f"expected {schema.order}"
        )
    return spec


def check_datatype(spec: FieldSpec, datatype: object) -> str:
    if not isinstance(datatype, str):
        raise InputError(
            f"input '{spec.name}': datatype must be a string, got {json_type(datatype)}"
        )
    if spec.is_number and datatype not in NUMERIC_V2_DATATYPES:
        raise InputError(
            f"input '{spec.name}' is numeric: datatype must be {NUMBER_V2_DATATYPE} (or another "
            f"of {sorted(NUMERIC_V2_DATATYPES)}), got {shown(datatype)}"
        )
    if not spec.is_number and datatype != STRING_V2_DATATYPE:
        raise InputError(
            f"input '{spec.name}' is categorical: datatype must be {STRING_V2_DATATYPE}, "
            f"got {shown(datatype)}"
        )
    return datatype


def check_shape(name: str, shape: object) -> list[int]:
    valid = (
        isinstance(shape, list | tuple)
        and len(shape) in (1, 2)
        and all(type(dimension) is int and dimension >= 0 for dimension in shape)
        and (len(shape) == 1 or shape[1] == 1)
    )
    if not valid:
        raise InputError(f"input '{name}' must have shape [n, 1] or [n], got {shown(shape)}")
    return list(cast(list[int], shape))


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
    datatype, shape, data = output_tensor(name, prediction)
    return _tensor(name, datatype, shape, data)


def output_tensor(name: str, prediction: Prediction) -> tuple[str, list[int], list[Any]]:
    """An output's datatype, shape and flat (row-major) values, whatever the protocol."""
    datatype, shape = output_shape(name, prediction)
    if name == PREDICTION_OUTPUT:
        return datatype, shape, prediction.values
    if name == LABEL_OUTPUT:
        return datatype, shape, prediction.labels
    return datatype, shape, prediction.flat_probabilities()


def output_shape(name: str, prediction: Prediction) -> tuple[str, list[int]]:
    """An output's datatype and shape: ``prediction`` ``[n, 1]``, ``label`` ``[n]``,
    ``probabilities`` ``[n, k]``."""
    if name == PREDICTION_OUTPUT:
        return NUMBER_V2_DATATYPE, [len(prediction.values), 1]
    if name == LABEL_OUTPUT:
        return STRING_V2_DATATYPE, [len(prediction.labels)]
    return NUMBER_V2_DATATYPE, prediction.probability_shape()


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
