"""The Open Inference Protocol V2 codec over gRPC: a ``ModelInferRequest`` into the batch the data
plane checks, a scored ``Result`` into a ``ModelInferResponse``.

A tensor's values come either all in ``raw_input_contents`` (bytes as ``codecs.v2_binary`` reads
them: what tritonclient sends) or each in its typed ``contents`` field (``fp32_contents``,
``bytes_contents``, ...: what KServe's and MLServer's clients may send). The answer uses the
same form: raw outputs for raw inputs, typed contents otherwise, as KServe and MLServer answer.
The tensor checks (names, datatypes, shapes, parameters) are the REST codec's, so an input is
named the same way whichever protocol brought it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from mlops.serve.batches import Columns, NumberArray, Result
from mlops.serve.codecs.v2 import (
    STRING_V2_DATATYPE,
    assemble_columns,
    check_datatype,
    check_parameters,
    check_shape,
    checked_client_id,
    feature_of,
    output_shape,
    output_tensor,
)
from mlops.serve.codecs.v2_binary import (
    EncodedStrings,
    decode_tensor,
    output_bytes,
    tensor_numbers,
    text_value,
)
from mlops.serve.errors import InputError
from mlops.serve.grpc import open_inference_pb2 as pb
from mlops.serve.schema import InputSchema

# The typed field of InferTensorContents that holds each datatype's values.
CONTENTS_FIELD = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "BYTES": "bytes_contents",
}


class GrpcRequested(NamedTuple):
    """What the response depends on besides the scores."""

    client_id: str  # empty: none
    outputs: list[str]
    raw: bool  # answer in raw_output_contents


class GrpcCodec:
    batch_name = "the batch"

    def __init__(self, schema: InputSchema, outputs: Sequence[str]) -> None:
        self.schema = schema
        self.outputs = outputs  # the model's, in the order V2 answers them
        self.encoded_labels = EncodedStrings()

    def decode(self, body: object) -> tuple[Columns, GrpcRequested]:
        if not isinstance(body, pb.ModelInferRequest):
            raise TypeError(f"expected a ModelInferRequest, got {type(body).__name__}")
        check_parameters("the request", parameters_of(body.parameters))
        raw = body.raw_input_contents
        if not body.inputs:
            raise InputError("'inputs' must be a non-empty list of tensors, one per feature")
        if raw and len(raw) != len(body.inputs):
            raise InputError(
                f"raw_input_contents holds {len(raw)} tensor(s) for {len(body.inputs)} input(s); "
                "send every input's data there, in the order of inputs, or none"
            )
        both = [tensor.name for tensor in body.inputs if raw and tensor.HasField("contents")]
        if both:
            raise InputError(
                f"input '{both[0]}' has contents and raw_input_contents; send its data in one"
            )
        named = [
            (tensor.name, self.tensor_values(tensor, raw[position] if raw else None))
            for position, tensor in enumerate(body.inputs)
        ]
        columns = assemble_columns(named, self.schema)
        columns.client_id = checked_client_id(body.id or None)
        return columns, GrpcRequested(body.id, self.requested_outputs(body), bool(raw))

    def tensor_values(
        self, tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None
    ) -> list[Any] | NumberArray:
        name = tensor.name
        spec = feature_of(name, self.schema)
        check_parameters(f"input '{name}'", parameters_of(tensor.parameters))
        datatype = check_datatype(spec, tensor.datatype)
        count = check_shape(name, list(tensor.shape))[0]
        if raw is not None:
            return decode_tensor(name, datatype, raw, count, spec.categories)
        return contents_values(name, datatype, tensor.contents, count)

    def requested_outputs(self, body: pb.ModelInferRequest) -> list[str]:
        if not body.outputs:
            return list(self.outputs)
        names = []
        for output in body.outputs:
            if output.name not in self.outputs:
                raise InputError(
                    f"output {output.name!r} is not an output of the model; "
                    f"it has {list(self.outputs)}"
                )
            check_parameters(f"output '{output.name}'", parameters_of(output.parameters))
            names.append(output.name)
        return names

    def encode(self, result: Result, context: GrpcRequested) -> pb.ModelInferResponse:
        response = pb.ModelInferResponse(
            model_name=result.model_name,
            model_version=result.model_version,
            id=context.client_id or result.request_id,
        )
        prediction = result.prediction
        for name in context.outputs:
            if context.raw:  # as tritonclient reads them
                datatype, shape = output_shape(name, prediction)
                response.outputs.add(name=name, datatype=datatype, shape=shape)
                response.raw_output_contents.append(
                    output_bytes(name, prediction, self.encoded_labels)
                )
                continue
            datatype, shape, values = output_tensor(name, prediction)
            tensor = response.outputs.add(name=name, datatype=datatype, shape=shape)
            if datatype == STRING_V2_DATATYPE:
                tensor.contents.bytes_contents.extend(value.encode() for value in values)
            else:
                tensor.contents.fp32_contents.extend(values)
        return response

    def error_body(self, error: InputError) -> tuple[int, dict[str, Any]]:
        return error.status if error.status == 413 else 400, {"error": error.one_line()}


def parameters_of(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A protobuf parameter map as the REST codec checks it (an unset value is None)."""
    return {
        key: None
        if (kind := value.WhichOneof("parameter_choice")) is None
        else getattr(value, kind)
        for key, value in parameters.items()
    }


def contents_values(
    name: str, datatype: str, contents: pb.InferTensorContents, count: int
) -> list[Any] | NumberArray:
    """A tensor's typed values, as ``decode_tensor`` gives raw ones."""
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InputError(
            f"input '{name}': {datatype} has no typed contents field; send it in "
            "raw_input_contents or as FP32"
        )
    values = getattr(contents, field)
    if len(values) != count:
        raise InputError(
            f"input '{name}' has shape [{count}, ...] but {len(values)} element(s) in {field}"
        )
    if datatype == STRING_V2_DATATYPE:
        return [text_value(name, index, value) for index, value in enumerate(values)]
    return tensor_numbers(datatype, values)  # as from raw bytes: NaN is a missing value
