"""Property-based fuzzing of the real scorer over HTTP and gRPC: no input may cause a 5xx, a
traceback or a gRPC INTERNAL/UNKNOWN."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.serve.grpc import open_inference_pb2 as pb
from mlops.serve.grpc.open_inference_pb2_grpc import GRPCInferenceServiceStub
from serve_fixtures import Scorer, running_scorer, signature_of

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def signature(packaged_model: Path) -> dict[str, Any]:
    return signature_of(packaged_model)


@pytest.fixture(scope="module")
def scorer(packaged_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorer]:
    with running_scorer(
        packaged_model, tmp_path_factory.mktemp("fuzz"), SCORER_MAX_RECORDS="20"
    ) as process:
        yield process


@pytest.fixture(scope="module")
def client(scorer: Scorer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scorer.url, timeout=30) as session:
        yield session


def plausible(feature: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a real client might send for ``feature``, right or slightly wrong."""
    if feature["type"] == "number":
        low, high = feature["min"] or 0.0, feature["max"] or 1.0
        return (
            st.floats(low - 10 * abs(low), high + 10 * abs(high))
            | st.integers(-10, 10_000)
            | st.none()
        )
    return st.sampled_from([*(feature["categories"] or []), "", "unknown", "Biscoe "]) | st.none()


def records(signature: dict[str, Any]) -> st.SearchStrategy[Any]:
    features = signature["features"]
    record = st.fixed_dictionaries({f["name"]: plausible(f) | json_values for f in features})
    mangled = st.tuples(
        record,
        st.sets(st.sampled_from([f["name"] for f in features])),
        st.dictionaries(st.text(max_size=8), json_values, max_size=2),
    ).map(lambda parts: {**{k: v for k, v in parts[0].items() if k not in parts[1]}, **parts[2]})
    return st.lists(record | mangled | json_values, max_size=25)


def encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        payload = response.json()
        assert isinstance(payload["error"], str) and payload["error"]


@FUZZ
@given(data=st.data())
def test_predict_never_fails_on_any_records(
    client: httpx.Client, signature: dict[str, Any], data: st.DataObject
) -> None:
    sent = data.draw(records(signature))
    body = data.draw(st.sampled_from([{"records": sent}, sent, {"records": sent, "extra": 1}]))
    response = client.post(
        "/predict", content=encode(body), headers={"content-type": "application/json"}
    )
    check(response)
    if response.status_code == 200:
        assert len(response.json()["predictions"]) == len(sent)


@FUZZ
@given(
    body=st.binary(max_size=300) | json_values.map(encode),
    content_type=st.sampled_from(CONTENT_TYPES),
)
def test_predict_never_fails_on_any_bytes(
    client: httpx.Client, body: bytes, content_type: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    check(client.post("/predict", content=body, headers=headers))


def tensors(signature: dict[str, Any]) -> st.SearchStrategy[Any]:
    def tensor(feature: dict[str, Any]) -> st.SearchStrategy[Any]:
        return st.fixed_dictionaries(
            {
                "name": st.just(feature["name"]) | st.text(max_size=5),
                "shape": st.lists(st.integers(-1, 4), max_size=3) | json_values,
                "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "fp32"])
                | json_values,
                "data": st.lists(plausible(feature) | json_values, max_size=4)
                | st.lists(st.lists(plausible(feature), max_size=2), max_size=3)
                | json_values,
            }
        )

    return st.lists(st.one_of([tensor(f) for f in signature["features"]]), max_size=8)


@FUZZ
@given(data=st.data())
def test_v2_infer_never_fails(
    client: httpx.Client, signature: dict[str, Any], data: st.DataObject
) -> None:
    request: dict[str, Any] = {"inputs": data.draw(tensors(signature))}
    if data.draw(st.booleans()):
        request["id"] = data.draw(json_values)
    if data.draw(st.booleans()):
        request["outputs"] = data.draw(
            st.lists(
                st.fixed_dictionaries({"name": st.sampled_from(["label", "probabilities", "x"])}),
                max_size=3,
            )
            | json_values
        )
    name = data.draw(st.sampled_from([signature["model_name"], "other", "%2e%2e"]))
    response = client.post(
        f"/v2/models/{name}/infer",
        content=encode(request),
        headers={"content-type": "application/json"},
    )
    check(response)


DATATYPES = ["FP32", "FP64", "FP16", "INT64", "INT8", "UINT64", "BYTES", "BOOL", "fp32", ""]


def raw_tensor(feature: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A tensor's bytes: well formed for the feature's type (a few elements) or any bytes."""
    if feature["type"] == "number":
        numbers = st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), max_size=4)
        formed = numbers.map(lambda values: struct.pack(f"<{len(values)}f", *values))
    else:
        texts = st.lists(
            st.sampled_from([*(feature["categories"] or []), "", "nan", "Atlantis"]), max_size=4
        )
        formed = texts.map(
            lambda values: b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
        )
    return formed | st.binary(max_size=40)


@FUZZ
@given(data=st.data())
def test_grpc_infer_never_fails_internally(
    scorer: Scorer, signature: dict[str, Any], data: st.DataObject
) -> None:
    features = signature["features"]
    name = data.draw(st.sampled_from([signature["model_name"], "other"]))
    request = pb.ModelInferRequest(model_name=name, id=data.draw(st.text(max_size=8)))
    raw = data.draw(st.booleans())
    for feature in data.draw(st.lists(st.sampled_from(features), max_size=8)):
        tensor = request.inputs.add(
            name=data.draw(st.just(feature["name"]) | st.text(max_size=5)),
            datatype=data.draw(st.sampled_from(DATATYPES)),
            shape=data.draw(st.lists(st.integers(-2, 5), max_size=3)),
        )
        if raw:
            request.raw_input_contents.append(data.draw(raw_tensor(feature)))
        elif feature["type"] == "number":
            tensor.contents.fp32_contents.extend(
                data.draw(st.lists(st.floats(width=32), max_size=4))
            )
        else:
            tensor.contents.bytes_contents.extend(
                data.draw(st.lists(st.binary(max_size=6), max_size=4))
            )
        if data.draw(st.booleans()):
            tensor.parameters["binary_data_size"].int64_param = data.draw(st.integers(-3, 50))
    for output in data.draw(st.lists(st.sampled_from(["label", "probabilities", "x"]), max_size=3)):
        request.outputs.add(name=output)
    with grpc.insecure_channel(scorer.grpc_target) as channel:
        try:
            GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        except grpc.RpcError as error:
            assert error.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error
            assert error.details(), error


@FUZZ
@given(data=st.data())
def test_binary_v2_bodies_never_fail(
    client: httpx.Client, signature: dict[str, Any], data: st.DataObject
) -> None:
    tensors, blobs = [], []
    for feature in signature["features"]:
        blob = data.draw(raw_tensor(feature))
        size = data.draw(st.just(len(blob)) | st.integers(-1, 60))
        datatype = "FP32" if feature["type"] == "number" else "BYTES"
        tensors.append(
            {
                "name": feature["name"],
                "shape": [data.draw(st.integers(0, 4)), 1],
                "datatype": data.draw(st.just(datatype) | st.sampled_from(DATATYPES)),
                "parameters": {"binary_data_size": size},
            }
        )
        blobs.append(blob)
    header = json.dumps({"inputs": tensors, "parameters": {"binary_data_output": True}}).encode()
    body = header + b"".join(blobs)
    length = data.draw(st.just(len(header)) | st.integers(-1, len(body) + 2).map(str))
    response = client.post(
        f"/v2/models/{signature['model_name']}/infer",
        content=body,
        headers={"inference-header-content-length": str(length)},
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]
