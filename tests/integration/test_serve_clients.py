"""The scorer driven by the clients its users run: NVIDIA's Triton Python clients over HTTP and
gRPC with their default settings (binary tensors in and out), the standard gRPC health check, and
hand-made bodies of the binary tensor data extension as its specification writes them. Their
answers are the ones ``/predict`` gives for the same records; bad input over gRPC is
``INVALID_ARGUMENT`` naming the input.

The packages are a regressor and a binary classifier with a decision threshold, whose features
carry the names people give columns (spaces, brackets, a slash, a dollar sign, non-ASCII letters).
"""

from __future__ import annotations

import gzip
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from package_fixtures import binary_package, regression_package
from serve_fixtures import (
    Scorer,
    post_json,
    running_scorer,
    signature_of,
    table_records,
    triton,
)

TOKEN = "client-test-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


class Served:
    def __init__(self, package: Path, scorer: Scorer, headers: dict[str, str]) -> None:
        self.package = package
        self.scorer = scorer
        self.headers = headers
        self.signature = signature_of(package)
        self.name = self.signature["model_name"]
        self.records = table_records(package)
        self.regression = self.signature["task"] == "regression"
        self.outputs = ["prediction"] if self.regression else ["label", "probabilities"]

    def target(self, protocol: str) -> str:
        return self.scorer.http_target if protocol == "http" else self.scorer.grpc_target

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.scorer.url, timeout=30, headers=self.headers) as client:
            response = post_json(client, "/predict", {"records": records})
        assert response.status_code == 200, response.text
        predictions: list[dict[str, Any]] = response.json()["predictions"]
        return predictions

    def columns(self, records: list[dict[str, Any]]) -> dict[str, list[Any]]:
        names = [feature["name"] for feature in self.signature["features"]]
        return {name: [record[name] for record in records] for name in names}

    def logged(self, client_request_id: str, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 15
        while True:
            lines = [json.loads(line) for line in self.scorer.log_lines()]
            mine = [line for line in lines if line.get("client_request_id") == client_request_id]
            if len(mine) >= count or time.monotonic() > deadline:
                return mine
            time.sleep(0.05)


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    package = regression_package(tmp_path_factory.mktemp("regression"))
    workdir = tmp_path_factory.mktemp("regression-scorer")
    with running_scorer(package, workdir, SCORER_EXTRA_FIELDS="ignore") as scorer:
        yield Served(package, scorer, {})


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Bearer auth, unknown categories refused, at most 40 records a request."""
    package = binary_package(tmp_path_factory.mktemp("binary"), threshold=0.3)
    workdir = tmp_path_factory.mktemp("binary-scorer")
    settings = {
        "SCORER_API_TOKEN": TOKEN,
        "SCORER_UNKNOWN_CATEGORY": "reject",
        "SCORER_MAX_RECORDS": "40",
    }
    with running_scorer(package, workdir, **settings) as scorer:
        yield Served(package, scorer, AUTH)


@pytest.fixture(params=["regressor", "classifier"])
def served(request: pytest.FixtureRequest) -> Served:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def assert_same_predictions(
    served: Served, outputs: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    if served.regression:
        column = np.array(outputs["prediction"])
        assert column.shape == (len(expected), 1)
        values = [prediction["prediction"] for prediction in expected]
        assert column[:, 0].tolist() == pytest.approx(values, rel=1e-6)  # float32 on the wire
        return
    assert outputs["label"] == [prediction["label"] for prediction in expected]
    classes = served.signature["classes"]
    rows = [[prediction["probabilities"][c] for c in classes] for prediction in expected]
    assert np.allclose(outputs["probabilities"], rows, atol=1e-6)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_triton_clients_with_their_defaults_score_as_predict_does(
    served: Served, protocol: str
) -> None:
    records = served.records[:40]  # its log lines are made column by column
    assert any(value is None for record in records for value in record.values())  # gaps: NaN
    call = {
        "call": "infer",
        "model": served.name,
        "columns": served.columns(records),
        "names": served.outputs,
        "headers": served.headers,
        "request_id": f"order-batch-{protocol}",
        "whole": True,
    }
    (answer,) = triton(protocol, served.target(protocol), [call])
    assert "error" not in answer, answer
    assert_same_predictions(served, answer["outputs"], served.predict(records))
    response = answer["response"]
    assert response["id"] == f"order-batch-{protocol}"
    if protocol == "http":  # the client's default: every output as binary data
        assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    else:  # tritonclient sends raw_input_contents, so the answer is raw too
        assert len(response["rawOutputContents"]) == len(served.outputs)
    lines = served.logged(f"order-batch-{protocol}", len(records))
    assert [line["index"] for line in lines] == list(range(len(records)))
    numbers = {f["name"] for f in served.signature["features"] if f["type"] == "number"}
    for line, record in zip(lines, records, strict=True):  # each number as the client's float32
        assert line["features"] == {
            name: float(str(np.float32(value))) if name in numbers and value is not None else value
            for name, value in record.items()
        }


def test_json_tensors_and_outputs_from_the_http_client_score_the_same(served: Served) -> None:
    records = served.records[30:40]
    calls = [
        {
            "call": "infer",
            "model": served.name,
            "columns": served.columns(records),
            "names": served.outputs,
            "headers": served.headers,
            "outputs": [[name, False] for name in served.outputs],  # as JSON
            "whole": True,
        },
        {  # the request body compressed, as the client's request_compression_algorithm does
            "call": "infer",
            "model": served.name,
            "columns": served.columns(records),
            "names": served.outputs,
            "headers": served.headers,
            "compression": "gzip",
        },
    ]
    version = json.loads((served.package / "manifest.json").read_text())["model_version"]
    calls.append(  # /v2/models/<name>/versions/<v>/infer, as the client writes it
        {
            "call": "infer",
            "model": served.name,
            "model_version": version,
            "columns": served.columns(records),
            "names": served.outputs,
            "headers": served.headers,
        }
    )
    as_json, compressed, versioned = triton("http", served.target("http"), calls)
    expected = served.predict(records)
    assert_same_predictions(served, as_json["outputs"], expected)
    assert all("data" in output for output in as_json["response"]["outputs"])
    assert_same_predictions(served, compressed["outputs"], expected)
    assert_same_predictions(served, versioned["outputs"], expected)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_health_and_metadata_through_the_clients(served: Served, protocol: str) -> None:
    calls = [
        {"call": "health", "model": served.name, "headers": served.headers},
        {"call": "server_metadata", "headers": served.headers},
        {"call": "model_metadata", "model": served.name, "headers": served.headers},
    ]
    health, server, model = triton(protocol, served.target(protocol), calls)
    assert health == {"live": True, "ready": True, "model_ready": True}
    assert server["extensions"] == ["binary_tensor_data"]
    names = [feature["name"] for feature in served.signature["features"]]
    assert [tensor["name"] for tensor in model["inputs"]] == names
    assert [tensor["name"] for tensor in model["outputs"]] == served.outputs


def test_the_grpc_health_service_follows_readiness(served: Served) -> None:
    with grpc.insecure_channel(served.scorer.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="other"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_bad_input_over_grpc_is_invalid_argument_naming_the_input(classifier: Served) -> None:
    records = classifier.records[:3]
    columns = classifier.columns(records)
    numeric = next(f["name"] for f in classifier.signature["features"] if f["type"] == "number")
    category = next(f["name"] for f in classifier.signature["features"] if f["type"] == "string")
    input_name = next(
        f["input_name"] for f in classifier.signature["features"] if f["name"] == numeric
    )

    def infer(changed: dict[str, Any], **options: Any) -> dict[str, Any]:
        return {
            "call": "infer",
            "model": classifier.name,
            "columns": changed,
            "names": classifier.outputs,
            "headers": AUTH,
            **options,
        }

    renamed = {(input_name if name == numeric else name): v for name, v in columns.items()}
    cases = [
        (infer({**columns, numeric: ["a", "b", "c"]}), "INVALID_ARGUMENT", f"input '{numeric}'"),
        (infer(renamed), "INVALID_ARGUMENT", f"input '{input_name}' is not a feature"),
        (
            infer({k: v for k, v in columns.items() if k != category}),
            "INVALID_ARGUMENT",
            f"missing input(s) ['{category}']",
        ),
        (
            infer({**columns, category: ["Atlantis", *columns[category][1:]]}),
            "INVALID_ARGUMENT",
            f"[0] {category}: 'Atlantis' is not a known category",
        ),
        (
            infer(classifier.columns(classifier.records[:41])),
            "RESOURCE_EXHAUSTED",
            "the limit is 40 (SCORER_MAX_RECORDS)",
        ),
        (infer(columns, model="other"), "NOT_FOUND", "unknown model 'other'"),
        (infer(columns, model_version="0"), "NOT_FOUND", "unknown version '0'"),
        (infer(columns, headers={}), "UNAUTHENTICATED", "missing or invalid bearer token"),
        (
            infer(columns, headers={"authorization": "Bearer wrong-token-wrong-token"}),
            "UNAUTHENTICATED",
            "bearer token",
        ),
    ]
    answers = triton("grpc", classifier.target("grpc"), [call for call, _, _ in cases])
    for (_, status, message), answer in zip(cases, answers, strict=True):
        assert answer["error"]["status"] == f"StatusCode.{status}", answer
        assert message in answer["error"]["message"], answer
    metrics = httpx.get(f"{classifier.scorer.url}/metrics", timeout=10).text
    route = 'route="/inference.GRPCInferenceService/ModelInfer"'
    assert f'scorer_requests_total{{method="GRPC",{route},status="400"}}' in metrics
    assert f'scorer_requests_total{{method="GRPC",{route},status="500"}}' not in metrics


# --- the binary tensor data extension, bodies as its specification writes them ---------------


def binary_body(
    served: Served, records: list[dict[str, Any]], outputs: list[dict[str, Any]] | None
) -> tuple[bytes, int]:
    """The JSON inference request with every input's data as bytes after it (FP32 little-endian,
    NaN for a gap; BYTES: a 4-byte length, then UTF-8), and the JSON's length."""
    tensors, blobs = [], []
    for feature in served.signature["features"]:
        values = [record[feature["name"]] for record in records]
        if feature["type"] == "number":
            numbers = [np.nan if value is None else value for value in values]
            blob, datatype = struct.pack(f"<{len(values)}f", *numbers), "FP32"
        else:
            encoded = [("" if value is None else value).encode() for value in values]
            blob = b"".join(struct.pack("<I", len(item)) + item for item in encoded)
            datatype = "BYTES"
        tensors.append(
            {
                "name": feature["name"],
                "shape": [len(values), 1],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    request: dict[str, Any] = {"inputs": tensors}
    if outputs is not None:
        request["outputs"] = outputs
    header = json.dumps(request).encode()
    return header + b"".join(blobs), len(header)


def read_binary_answer(response: httpx.Response) -> dict[str, Any]:
    """The outputs of a binary answer, read as the specification says: the JSON header of
    ``Inference-Header-Content-Length`` bytes, then each binary output's bytes in order."""
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    offset, outputs = length, {}
    for output in header["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            outputs[output["name"]] = output["data"]
            continue
        raw = response.content[offset : offset + size]
        offset += size
        if output["datatype"] == "FP32":
            outputs[output["name"]] = np.frombuffer(raw, "<f4").reshape(output["shape"]).tolist()
        else:
            labels, position = [], 0
            while position < len(raw):
                (count,) = struct.unpack_from("<I", raw, position)
                labels.append(raw[position + 4 : position + 4 + count].decode())
                position += 4 + count
            outputs[output["name"]] = labels
    assert offset == len(response.content)
    return outputs


def test_a_binary_request_from_the_specification_is_answered_in_binary(served: Served) -> None:
    records = served.records[:12]
    wanted = [{"name": name, "parameters": {"binary_data": True}} for name in served.outputs]
    body, length = binary_body(served, records, wanted)
    headers = {
        **served.headers,
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(length),
    }
    with httpx.Client(base_url=served.scorer.url, timeout=30) as client:
        response = client.post(f"/v2/models/{served.name}/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        assert_same_predictions(served, read_binary_answer(response), served.predict(records))
        mixed = [{"name": served.outputs[0], "parameters": {"binary_data": False}}]
        body, length = binary_body(served, records, mixed)
        headers["inference-header-content-length"] = str(length)
        as_json = client.post(f"/v2/models/{served.name}/infer", content=body, headers=headers)
        assert as_json.status_code == 200, as_json.text
        assert "inference-header-content-length" not in as_json.headers
        assert as_json.headers["content-type"] == "application/json"


def test_a_binary_request_that_does_not_add_up_is_a_400_naming_the_input(
    regressor: Served,
) -> None:
    records = regressor.records[:4]
    body, length = binary_body(regressor, records, None)
    first = regressor.signature["features"][0]["name"]
    infer = f"/v2/models/{regressor.name}/infer"
    cases = [
        (body[:-3], length, "byte(s) of binary data"),
        (body + b"\x00", length, "1 byte(s) of binary data after the JSON header belong to no"),
        (body, length + 5, "malformed JSON"),
        (body, len(body) + 1, "Inference-Header-Content-Length must be"),
        (body, 0, "Inference-Header-Content-Length must be"),
    ]
    header = json.loads(body[:length])
    header["inputs"][0]["parameters"]["binary_data_size"] -= 4
    shorter = json.dumps(header).encode()
    cases.append((shorter + body[length:], len(shorter), f"input '{first}': 12 byte(s) of FP32"))
    with httpx.Client(base_url=regressor.scorer.url, timeout=30) as client:
        for content, declared, message in cases:
            response = client.post(
                infer, content=content, headers={"inference-header-content-length": str(declared)}
            )
            assert response.status_code == 400, (message, response.text)
            assert list(response.json()) == ["error"]
            assert message in response.json()["error"], response.text


def test_v2_json_without_a_content_type_and_gzip_bodies_are_accepted(regressor: Served) -> None:
    records = regressor.records[:3]
    columns = regressor.columns(records)
    request = {
        "inputs": [
            {
                "name": name,
                "shape": [len(values), 1],
                "datatype": "BYTES" if isinstance(values[0], str) else "FP32",
                "data": values,
            }
            for name, values in columns.items()
        ]
    }
    body = json.dumps(request).encode()
    infer = f"{regressor.scorer.url}/v2/models/{regressor.name}/infer"
    plain = httpx.post(infer, content=body, timeout=30)  # no Content-Type, as tritonclient
    assert plain.status_code == 200, plain.text
    packed = httpx.post(
        infer, content=gzip.compress(body), headers={"content-encoding": "gzip"}, timeout=30
    )
    assert packed.json()["outputs"] == plain.json()["outputs"]
    for content_type, status in (("text/plain", 415), ("application/x-www-form-urlencoded", 415)):
        refused = httpx.post(infer, content=body, headers={"content-type": content_type})
        assert refused.status_code == status and "Content-Type must be" in refused.text
    bomb = gzip.compress(b" " * (9 << 20))  # inflates past SCORER_MAX_BODY_BYTES
    too_big = httpx.post(infer, content=bomb, headers={"content-encoding": "gzip"}, timeout=30)
    assert too_big.status_code == 413 and "inflated body over" in too_big.text
    brotli = httpx.post(infer, content=body, headers={"content-encoding": "br"}, timeout=30)
    assert brotli.status_code == 415 and "'br' is not supported" in brotli.text


def test_extra_fields_are_logged_apart_when_ignored(regressor: Served) -> None:
    records = regressor.records[:3]
    sent = [
        {**record, "order id": f"A-{n}", "sent at": "2026-12-01T10:00:00Z"}
        for n, record in enumerate(records)
    ]
    sent[1] = records[1]  # a record without extra fields among them
    with httpx.Client(base_url=regressor.scorer.url, timeout=30) as client:
        response = post_json(client, "/predict", {"records": sent})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == regressor.predict(records)
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 15
    lines: list[dict[str, Any]] = []
    while len(lines) < 3 and time.monotonic() < deadline:
        lines = [json.loads(line) for line in regressor.scorer.log_lines()]
        lines = [line for line in lines if line["request_id"] == request_id]
        time.sleep(0.05)
    assert [line["features"] for line in lines] == records
    assert lines[0]["extra"] == {"order id": "A-0", "sent at": "2026-12-01T10:00:00Z"}
    assert "extra" not in lines[1]
    assert lines[2]["extra"]["order id"] == "A-2"


def test_what_a_client_sends_beside_its_features_is_bounded_on_every_protocol(
    regressor: Served,
) -> None:
    """A log line's bound holds for the fields the log keeps beside the features: a record's
    extra fields over 4,096 bytes of JSON are a 422 naming the largest, a V2 ``id`` over 256
    characters is refused (400 over HTTP, INVALID_ARGUMENT over gRPC), and none is logged."""
    records = regressor.records[:2]
    padded = {**records[0], "note": "x" * 5000, "order id": "A-1"}
    before = len(regressor.scorer.log_lines())
    with httpx.Client(base_url=regressor.scorer.url, timeout=30) as client:
        response = post_json(client, "/predict", {"records": [records[1], padded]})
        assert response.status_code == 422, response.text
        (issue,) = response.json()["details"]
        assert (issue["index"], issue["field"]) == (1, "note")
        assert "at most 4096 are kept" in issue["message"]
        assert "xxxx" not in response.text  # the value is not echoed
    long_id = "é" * 257
    calls = [
        {
            "call": "infer",
            "model": regressor.name,
            "columns": regressor.columns(records),
            "names": regressor.outputs,
            "request_id": request_id,
        }
        for request_id in (long_id, "é" * 256)
    ]
    for protocol, refused in (("http", "400"), ("grpc", "StatusCode.INVALID_ARGUMENT")):
        too_long, longest = triton(protocol, regressor.target(protocol), calls)
        assert refused in str(too_long["error"]["status"]), too_long
        assert "'id' has 257 characters; at most 256" in too_long["error"]["message"]
        assert "error" not in longest, longest
    logged = [json.loads(line) for line in regressor.scorer.log_lines()[before:]]
    assert [line.get("client_request_id") for line in logged] == ["é" * 256] * 4
