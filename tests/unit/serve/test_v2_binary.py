"""The binary tensor data extension (REST) and the gRPC codec, on bodies built by hand from the
specifications: little-endian, row-major, a BYTES element a 4-byte length then its bytes; the
JSON header's length in ``Inference-Header-Content-Length``; raw or typed gRPC contents."""

import json
import math
import struct
from typing import Any

import numpy as np
import pytest

from mlops.serve.batches import VECTOR_MIN_VALUES, Result
from mlops.serve.codecs.v2 import Requested, V2Codec, V2Request, check_inference_request
from mlops.serve.codecs.v2_binary import (
    EncodedStrings,
    decode_strings,
    decode_tensor,
    encode_strings,
)
from mlops.serve.codecs.v2_grpc import GrpcCodec, GrpcRequested, parameters_of
from mlops.serve.dataplane import checked
from mlops.serve.errors import InputError
from mlops.serve.grpc import open_inference_pb2 as pb
from mlops.serve.model import Prediction
from mlops.serve.predlog import COLUMN_WISE_MIN_RECORDS, ScoredBatch, log_lines
from mlops.serve.schema import InputSchema, input_schema
from signatures import MIXED, number, signature, string

OUTPUTS = ("label", "probabilities")
PREDICTION = Prediction(["a", "b"], [[0.75, 0.25], [0.1, 0.9]])


def listed(values: dict[str, Any]) -> dict[str, list[Any]]:
    """Columns as lists: a tensor's numbers arrive as an array, NaN (missing) as None."""
    return {
        name: [None if value != value else value for value in column]  # NaN != NaN
        for name, column in values.items()
        for column in [column.tolist() if isinstance(column, np.ndarray) else column]
    }


def schema() -> InputSchema:
    return input_schema(MIXED)  # size (nullable number), count, colour (nullable), shape


def strings(*values: str) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def binary_request(tensors: list[tuple[str, str, bytes]], **extra: Any) -> V2Request:
    """A request whose every input is binary data after the JSON header, in the inputs' order."""
    inputs = [
        {
            "name": name,
            "shape": [2, 1],
            "datatype": datatype,
            "parameters": {"binary_data_size": len(raw)},
        }
        for name, datatype, raw in tensors
    ]
    header = {"inputs": inputs, **extra}
    return V2Request(header, b"".join(raw for _, _, raw in tensors))


GOOD = [
    ("size", "FP32", struct.pack("<2f", 2.5, math.nan)),
    ("count", "INT64", struct.pack("<2q", 3, 4)),
    ("colour", "BYTES", strings("red", "blue")),
    ("shape", "BYTES", strings("round", "round")),
]


def test_binary_inputs_decode_to_the_columns_json_would_give() -> None:
    codec = V2Codec(schema(), OUTPUTS)
    columns, requested = codec.decode(binary_request(GOOD, id="7"))
    assert listed(columns.values) == {
        "size": [2.5, None],  # NaN: a missing value, which the signature allows here
        "count": [3, 4],
        "colour": ["red", "blue"],
        "shape": ["round", "round"],
    }
    assert requested == Requested("7", list(OUTPUTS)) and columns.client_id == "7"
    batch, _, _ = checked(codec, binary_request(GOOD), schema(), 10)
    assert batch.feed["count"][:, 0].tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    ("datatype", "raw", "expected"),
    [
        ("FP16", np.array([1.5, np.nan], "<f2").tobytes(), [1.5, None]),
        ("FP64", struct.pack("<2d", 1e-3, 7.0), [1e-3, 7.0]),
        ("UINT32", struct.pack("<2I", 0, 4_000_000_000), [0, 4_000_000_000]),
        ("INT8", struct.pack("<2b", -3, 3), [-3, 3]),
    ],
)
def test_every_numeric_datatype_reads_little_endian(
    datatype: str, raw: bytes, expected: list[Any]
) -> None:
    assert listed({"size": decode_tensor("size", datatype, raw, 2)}) == {"size": expected}


def test_bytes_elements_are_utf8_and_missing_markers_are_missing() -> None:
    assert decode_strings("colour", strings("Größe", "", "nan", "None", "NA "), 5) == [
        "Größe",
        None,
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (strings("red"), 2, "BYTES data ends after 1 of 2 element(s)"),
        (strings("red") + b"\x09\x00\x00\x00ab", 2, "element 1 declares 9 byte(s), but only 2"),
        (strings("red", "blue") + b"x", 2, "1 byte(s) left after its 2 BYTES element(s)"),
        (struct.pack("<I", 2) + b"\xff\xfe" + strings("a"), 2, "element 0 is not UTF-8 text"),
    ],
)
def test_bytes_that_do_not_add_up_are_named(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_strings("colour", raw, count)
    assert message in caught.value.message and "input 'colour'" in caught.value.message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.__setitem__(0, ("size", "FP32", b"\x00" * 4)),
            "input 'size': 4 byte(s) of FP32 data, but its shape holds 2 element(s) of 4 byte(s)",
        ),
        (lambda t: t.__setitem__(1, ("count", "BOOL", b"\x01\x00")), "input 'count' is numeric"),
        (
            lambda t: t.__setitem__(2, ("colour", "FP32", b"\x00" * 8)),
            "input 'colour' is categorical",
        ),
    ],
)
def test_binary_inputs_of_the_wrong_size_or_type_are_named(change: Any, message: str) -> None:
    tensors = list(GOOD)
    change(tensors)
    with pytest.raises(InputError) as caught:
        V2Codec(schema(), OUTPUTS).decode(binary_request(tensors))
    assert message in caught.value.message


def test_declared_sizes_must_cover_the_bytes_after_the_header_exactly() -> None:
    codec = V2Codec(schema(), OUTPUTS)
    request = binary_request(GOOD)
    with pytest.raises(InputError, match="3 byte\\(s\\) of binary data after the JSON header"):
        codec.decode(V2Request(request.header, bytes(request.binary) + b"abc"))
    with pytest.raises(InputError, match="input 'shape' declares 18 byte\\(s\\)"):
        codec.decode(V2Request(request.header, bytes(request.binary)[:-2]))


def test_json_and_binary_inputs_mix_in_one_request() -> None:
    tensors = [GOOD[0], GOOD[2]]
    request = binary_request(tensors)
    header: dict[str, Any] = dict(request.header)  # type: ignore[arg-type]
    header["inputs"] = [
        *header["inputs"],
        {"name": "count", "shape": [2], "datatype": "INT64", "data": [1, 2]},
        {"name": "shape", "shape": [2, 1], "datatype": "BYTES", "data": [["round"], ["round"]]},
    ]
    columns, _ = V2Codec(schema(), OUTPUTS).decode(V2Request(header, request.binary))
    assert listed(columns.values)["count"] == [1, 2] and columns.values["colour"] == ["red", "blue"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"binary_data_size": -1}, "'binary_data_size' of input 'size' must be a whole number"),
        ({"binary_data_size": True}, "must be a whole number"),
        ({"shared_memory_region": "r"}, "does not offer the shared memory extension"),
        ({"content_type": ["str"]}, "must be a boolean, a number or a string, got an array"),
    ],
)
def test_tensor_parameters_are_checked(parameters: dict[str, Any], message: str) -> None:
    tensor = {
        "name": "size",
        "shape": [1],
        "datatype": "FP32",
        "data": [1.0],
        "parameters": parameters,
    }
    with pytest.raises(InputError) as caught:
        V2Codec(schema(), OUTPUTS).decode({"inputs": [tensor]})
    assert message in caught.value.message


def test_an_input_with_data_and_binary_data_is_refused() -> None:
    tensor = {
        "name": "size",
        "shape": [1],
        "datatype": "FP32",
        "data": [1.0],
        "parameters": {"binary_data_size": 4},
    }
    with pytest.raises(InputError, match="has both 'data' and binary data"):
        V2Codec(schema(), OUTPUTS).decode(V2Request({"inputs": [tensor]}, b"\x00" * 4))


@pytest.mark.parametrize(
    ("body", "binary"),
    [
        ({"parameters": {"binary_data_output": True}}, {"label", "probabilities"}),
        (
            {
                "parameters": {"binary_data_output": True},
                "outputs": [
                    {"name": "label", "parameters": {"binary_data": False}},
                    {"name": "probabilities"},
                ],
            },
            {"probabilities"},
        ),
        ({"outputs": [{"name": "label", "parameters": {"binary_data": True}}]}, {"label"}),
        ({}, set()),
    ],
)
def test_which_outputs_are_binary_follows_the_request_and_each_output(
    body: dict[str, Any], binary: set[str]
) -> None:
    assert check_inference_request({"inputs": [], **body}, OUTPUTS).binary == binary


def test_binary_outputs_follow_the_json_header_in_its_order() -> None:
    codec = V2Codec(schema(), OUTPUTS)
    result = Result("r1", "tiny", "v1", PREDICTION, None, {})
    answer = codec.encode(result, Requested("9", ["probabilities", "label"], frozenset(OUTPUTS)))
    assert answer.header_length is not None
    header = json.loads(answer.content[: answer.header_length])
    probabilities, label = header["outputs"]
    assert probabilities == {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [2, 2],
        "parameters": {"binary_data_size": 16},
    }
    assert label["parameters"] == {"binary_data_size": 2 * (4 + 1)} and "data" not in label
    tail = answer.content[answer.header_length :]
    assert np.frombuffer(tail[:16], "<f4").tolist() == pytest.approx([0.75, 0.25, 0.1, 0.9])
    assert tail[16:] == strings("a", "b")
    assert codec.encode(result, Requested("9", ["label"])).header_length is None


def test_labels_are_encoded_once_per_class() -> None:
    cache = EncodedStrings()
    assert encode_strings(["yes", "no", "yes"], cache) == strings("yes", "no", "yes")
    assert set(cache) == {"yes", "no"}


# --- gRPC ---------------------------------------------------------------------------------------


def grpc_request(raw: bool, **overrides: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="tiny", id=overrides.pop("id", ""))
    for name, datatype, data in GOOD:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[2, 1])
        if raw:
            request.raw_input_contents.append(data)
        elif datatype == "FP32":
            tensor.contents.fp32_contents.extend([2.5, math.nan])
        elif datatype == "INT64":
            tensor.contents.int64_contents.extend([3, 4])
        else:
            texts = decode_strings(name, data, 2)
            tensor.contents.bytes_contents.extend(text.encode() for text in texts)
    return request


@pytest.mark.parametrize("raw", [True, False])
def test_grpc_raw_and_typed_contents_decode_alike_and_answer_alike(raw: bool) -> None:
    codec = GrpcCodec(schema(), OUTPUTS)
    columns, requested = codec.decode(grpc_request(raw, id="order-1"))
    assert listed(columns.values) == {
        "size": [2.5, None],
        "count": [3, 4],
        "colour": ["red", "blue"],
        "shape": ["round", "round"],
    }
    assert requested == GrpcRequested("order-1", list(OUTPUTS), raw)
    response = codec.encode(Result("r1", "tiny", "v1", PREDICTION, None, {}), requested)
    assert response.id == "order-1" and [o.name for o in response.outputs] == list(OUTPUTS)
    assert list(response.outputs[1].shape) == [2, 2]
    if raw:
        assert response.raw_output_contents[0] == strings("a", "b")
        probabilities = np.frombuffer(response.raw_output_contents[1], "<f4")
    else:
        assert list(response.outputs[0].contents.bytes_contents) == [b"a", b"b"]
        probabilities = np.array(response.outputs[1].contents.fp32_contents)
    assert probabilities.tolist() == pytest.approx([0.75, 0.25, 0.1, 0.9])


def test_grpc_input_problems_are_named() -> None:
    codec = GrpcCodec(schema(), OUTPUTS)
    short = grpc_request(True)
    del short.raw_input_contents[-1]
    with pytest.raises(InputError, match="raw_input_contents holds 3 tensor\\(s\\) for 4 input"):
        codec.decode(short)
    twice = grpc_request(True)
    twice.inputs[2].contents.bytes_contents.append(b"red")
    with pytest.raises(InputError, match="input 'colour' has contents and raw_input_contents"):
        codec.decode(twice)
    typed = grpc_request(False)
    typed.inputs[1].contents.int64_contents.append(5)
    with pytest.raises(InputError, match=r"input 'count' has shape \[2, \.\.\.\] but 3 element"):
        codec.decode(typed)
    half = grpc_request(False)
    half.inputs[0].datatype = "FP16"
    with pytest.raises(InputError, match="input 'size': FP16 has no typed contents field"):
        codec.decode(half)
    unknown = grpc_request(True)
    unknown.outputs.add(name="logits")
    with pytest.raises(InputError, match="output 'logits' is not an output of the model"):
        codec.decode(unknown)
    with pytest.raises(InputError, match="'inputs' must be a non-empty list"):
        codec.decode(pb.ModelInferRequest(model_name="tiny"))


def test_grpc_parameters_are_read_from_their_oneof() -> None:
    request = pb.ModelInferRequest()
    request.parameters["priority"].uint64_param = 2
    request.parameters["binary_data_output"].bool_param = True
    request.parameters["unset"].CopyFrom(pb.InferParameter())
    assert parameters_of(request.parameters) == {
        "priority": 2,
        "binary_data_output": True,
        "unset": None,
    }


def test_binary_numbers_are_checked_as_json_ones_are() -> None:
    codec = V2Codec(schema(), OUTPUTS)
    gap = list(GOOD)
    gap[1] = ("count", "FP64", struct.pack("<2d", 3.0, math.nan))  # count may not be missing
    with pytest.raises(InputError) as caught:
        checked(codec, binary_request(gap), schema(), 10)
    assert "[1] count: is null, but the model was trained without missing values" in (
        caught.value.one_line()
    )
    huge = list(GOOD)
    huge[0] = ("size", "FP64", struct.pack("<2d", 1e300, math.inf))
    with pytest.raises(InputError) as caught:
        checked(codec, binary_request(huge), schema(), 10)
    assert "[0] size: 1e+300 is outside the float32 range" in caught.value.one_line()
    assert "[1] size: is infinite" in caught.value.one_line()
    outside = list(GOOD)
    outside[0] = ("size", "FP32", struct.pack("<2f", 50.0, 5.0))  # trained on [1, 10]
    batch, _, _ = checked(codec, binary_request(outside), schema(), 10)
    assert batch.warnings == {
        0: [{"field": "size", "message": "50.0 is outside the training range [1.0, 10.0]"}]
    }


@pytest.mark.parametrize("size", [2, 2 * COLUMN_WISE_MIN_RECORDS])  # line by line, by column
def test_fp32_numbers_stay_the_clients_float32_for_the_checks_and_the_log(size: int) -> None:
    """A client's FP32 10.3 is float32(10.3): in range of a training maximum of 10.3 (as a JSON
    10.3 is), and written to the log and the warnings as 10.3, not 10.300000190734863."""
    bounds = signature(number("size", low=0.1, high=10.3), string("shape", ["round"]))
    fields = input_schema(bounds)
    values = ([10.3, 55.32, math.nan, 0.1] * size)[:size]
    tensors = [("size", "FP32", struct.pack(f"<{size}f", *values))]
    tensors.append(("shape", "BYTES", strings(*["round"] * size)))

    def request_of(tensors: list[tuple[str, str, bytes]]) -> V2Request:
        request = binary_request(tensors)
        for tensor in request.header["inputs"]:
            tensor["shape"] = [size, 1]
        return request

    codec = V2Codec(fields, OUTPUTS)
    batch, inputs, _ = checked(codec, request_of(tensors), fields, 1000)
    column = inputs.values["size"]
    if size < VECTOR_MIN_VALUES:  # a short column is a list, as a JSON request's numbers are
        assert column == [10.3, 55.32]
    else:
        assert isinstance(column, np.ndarray) and column.dtype == np.float32
    outside = [{"field": "size", "message": "55.32 is outside the training range [0.1, 10.3]"}]
    assert batch.warnings == dict.fromkeys(range(1, size, 4), outside)
    prediction = Prediction(["a", "b"] * (size // 2), [[0.75, 0.25], [0.1, 0.9]] * (size // 2))
    scored = ScoredBatch(1.8e9, "r1", "v1", inputs, prediction, ["a", "b"], 0.001)
    lines = bytes(log_lines(scored)).splitlines()
    assert [line.split(b'"features":')[1].split(b"}")[0] for line in lines[:4]] == [
        b'{"size":10.3,"shape":"round"',
        b'{"size":55.32,"shape":"round"',
        b'{"size":null,"shape":"round"',
        b'{"size":0.1,"shape":"round"',
    ][:size]
    tensors[0] = ("size", "FP32", struct.pack(f"<{size}f", *[math.inf] * size))
    with pytest.raises(InputError) as caught:  # not taken for a missing value
        checked(codec, request_of(tensors), fields, 1000)
    assert "[0] size: is infinite; expected a finite number" in caught.value.one_line()


def test_a_column_of_known_categories_reads_as_the_element_walk_does() -> None:
    categories = frozenset({"red", "blue"})
    known = strings("red", "blue", "red")
    assert decode_tensor("colour", "BYTES", known, 3, categories) == ["red", "blue", "red"]
    mixed = strings("red", "green", "NA")  # an unknown category and a missing marker
    assert decode_tensor("colour", "BYTES", mixed, 3, categories) == ["red", "green", None]
    with pytest.raises(InputError, match="BYTES data ends after 2 of 3"):
        decode_tensor("colour", "BYTES", strings("red", "blue"), 3, categories)
