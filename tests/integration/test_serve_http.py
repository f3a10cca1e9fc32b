"""The scorer over real HTTP: a real ``python -m mlops.serve`` process, the real packaged model."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlops.core.artifacts import PredictionRecord
from serve_fixtures import (
    JSON_HEADERS,
    SHUTDOWN_ERRORS,
    BackgroundTraffic,
    Scorer,
    bundled_records,
    conforms,
    copy_package,
    launch_to_refusal,
    onnx_reference,
    post_json,
    running_scorer,
    signature_of,
    v2_request,
)

TOKEN = "integration-test-token-0123456789"


@pytest.fixture(scope="module")
def signature(packaged_model: Path) -> dict[str, Any]:
    return signature_of(packaged_model)


@pytest.fixture(scope="module")
def records(signature: dict[str, Any]) -> list[dict[str, Any]]:
    return bundled_records(signature)


@pytest.fixture(scope="module")
def scorer(packaged_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorer]:
    with running_scorer(packaged_model, tmp_path_factory.mktemp("scorer")) as process:
        yield process


@pytest.fixture(scope="module")
def strict(packaged_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorer]:
    """Bearer auth, small limits, unknown categories and out-of-range values rejected."""
    with running_scorer(
        packaged_model,
        tmp_path_factory.mktemp("strict"),
        SCORER_API_TOKEN=TOKEN,
        SCORER_MAX_RECORDS="5",
        SCORER_MAX_BODY_BYTES="4096",
        SCORER_UNKNOWN_CATEGORY="reject",
        SCORER_OUT_OF_RANGE="reject",
    ) as process:
        yield process


@pytest.fixture(scope="module")
def client(scorer: Scorer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scorer.url, timeout=30) as session:
        yield session


@pytest.fixture(scope="module")
def openapi(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_health_routes(
    client: httpx.Client, openapi: dict[str, Any], signature: dict[str, Any]
) -> None:
    name = signature["model_name"]
    checks = {
        "/health/live": ("Health", {"status": "live"}),
        "/health/ready": ("Health", {"status": "ready"}),
        "/v2/health/live": ("V2ServerLive", {"live": True}),
        "/v2/health/ready": ("V2ServerReady", {"ready": True}),
        f"/v2/models/{name}/ready": ("V2ModelReady", {"name": name, "ready": True}),
    }
    for path, (schema_name, expected) in checks.items():
        response = client.get(path)
        assert (response.status_code, response.json()) == (200, expected), path
        conforms(openapi, schema_name, response.json())
    server = client.get("/v2").json()
    conforms(openapi, "V2ServerMetadata", server)


def test_predict_returns_what_onnxruntime_computes_for_the_same_records(
    client: httpx.Client,
    openapi: dict[str, Any],
    packaged_model: Path,
    signature: dict[str, Any],
    records: list[dict[str, Any]],
) -> None:
    batch = records[:60]  # includes rows with missing values
    assert any(value is None for record in batch for value in record.values())
    response = post_json(client, "/predict", {"records": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    conforms(openapi, "PredictResponse", body)
    assert body["request_id"] == response.headers["x-request-id"]
    labels, probabilities = onnx_reference(packaged_model, signature, batch)
    assert [p["label"] for p in body["predictions"]] == labels
    served = np.array(
        [[p["probabilities"][c] for c in signature["classes"]] for p in body["predictions"]]
    )
    assert np.allclose(served, probabilities, atol=1e-6)


def test_out_of_range_values_and_unseen_categories_are_scored_and_flagged(
    client: httpx.Client,
    openapi: dict[str, Any],
    signature: dict[str, Any],
    records: list[dict[str, Any]],
) -> None:
    number = next(f for f in signature["features"] if f["type"] == "number")
    category = next(f for f in signature["features"] if f["type"] == "string")
    odd = {**records[0], number["name"]: number["max"] * 10, category["name"]: "Atlantis"}
    response = post_json(client, "/predict", {"records": [records[0], odd]})
    assert response.status_code == 200
    conforms(openapi, "PredictResponse", response.json())
    first, second = response.json()["predictions"]
    assert "warnings" not in first
    assert {w["field"] for w in second["warnings"]} == {number["name"], category["name"]}


def test_metadata_shows_version_lineage_and_signature(
    client: httpx.Client, openapi: dict[str, Any], packaged_model: Path, signature: dict[str, Any]
) -> None:
    body = client.get("/metadata").json()
    conforms(openapi, "Metadata", body)
    manifest = json.loads((packaged_model / "manifest.json").read_text())
    assert body["model_version"] == manifest["model_version"]
    assert body["lineage"] == manifest["lineage"]
    assert body["signature"] == signature


NAN_RECORD = b'{"records": [{"island": "Biscoe", "bill_length_mm": NaN, "bill_depth_mm": 18, '
NAN_RECORD += b'"flipper_length_mm": 190, "body_mass_g": 4000, "sex": "male"}]}'


@pytest.mark.parametrize(
    ("body", "content_type", "status", "expected"),
    [
        (b'{"records": [', "application/json", 400, "malformed JSON"),
        (b"\xff\xfe{}", "application/json", 400, "malformed JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "malformed JSON"),
        (NAN_RECORD, "application/json", 422, "bill_length_mm: is NaN"),
        (NAN_RECORD.replace(b"NaN", b"-Infinity"), "application/json", 422, "is infinite"),
        (NAN_RECORD.replace(b"NaN", b"1e400"), "application/json", 422, "is infinite"),
        (NAN_RECORD.replace(b"NaN", b"1" + b"0" * 400), "application/json", 400, "malformed JSON"),
        (NAN_RECORD.replace(b"NaN", b'"40"'), "application/json", 422, "got a string"),
        (NAN_RECORD.replace(b"NaN", b"true"), "application/json", 422, "got a boolean"),
        (NAN_RECORD.replace(b"NaN", b"[40]"), "application/json", 422, "got an array"),
        (
            NAN_RECORD.replace(b'"sex": "male"', b'"sex": 1'),
            "application/json",
            422,
            "sex: expected one of",
        ),
        (NAN_RECORD.replace(b', "sex": "male"', b""), "application/json", 422, "sex: missing"),
        (
            NAN_RECORD.replace(b'"sex"', b'"colour": 1, "sex"'),
            "application/json",
            422,
            "colour: not a feature",
        ),
        (b'{"records": []}', "application/json", 422, "'records' is empty"),
        (b'{"records": {}}', "application/json", 422, "'records' must be a list"),
        (
            b'{"records": [1, "a"]}',
            "application/json",
            422,
            "[0] None: expected an object, got a number",
        ),
        (b'{"rows": []}', "application/json", 422, "unknown key(s) ['rows']"),
        (b"[]", "application/json", 422, "expected a JSON object"),
        (b'"records"', "application/json", 422, "expected a JSON object"),
        (b'{"records": []}', "text/plain", 415, "Content-Type must be application/json"),
        (b'{"records": []}', "", 415, "Content-Type must be application/json"),
        (b"records=1", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(
    client: httpx.Client,
    openapi: dict[str, Any],
    body: bytes,
    content_type: str,
    status: int,
    expected: str,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status, response.text
    payload = response.json()
    conforms(openapi, "Error", payload)
    details = " ".join(
        f"[{d['index']}] {d['field']}: {d['message']}" for d in payload.get("details", [])
    )
    assert expected in f"{payload['error']} {details}"
    assert "Traceback" not in response.text


def test_unknown_routes_and_methods_answer_json(client: httpx.Client) -> None:
    missing = client.get("/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
    assert "POST" in wrong.headers["allow"]


def test_v2_model_metadata_describes_one_input_per_feature(
    client: httpx.Client, openapi: dict[str, Any], signature: dict[str, Any]
) -> None:
    name = signature["model_name"]
    body = client.get(f"/v2/models/{name}").json()
    conforms(openapi, "V2ModelMetadata", body)
    assert body["name"] == name and body["platform"] == "onnx"
    assert body["inputs"] == [
        {
            "name": f["name"],
            "datatype": "FP32" if f["type"] == "number" else "BYTES",
            "shape": [-1, 1],
        }
        for f in signature["features"]
    ]
    assert body["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(signature["classes"])]},
    ]
    versioned = client.get(f"/v2/models/{name}/versions/{body['versions'][0]}")
    assert versioned.json() == body


@pytest.mark.parametrize("nested", [False, True])
def test_v2_infer_matches_predict(
    client: httpx.Client,
    openapi: dict[str, Any],
    signature: dict[str, Any],
    records: list[dict[str, Any]],
    nested: bool,
) -> None:
    batch = records[:7]
    request = v2_request(signature, batch, nested)
    conforms(openapi, "V2InferenceRequest", request)
    response = post_json(client, f"/v2/models/{signature['model_name']}/infer", request)
    assert response.status_code == 200, response.text
    body = response.json()
    conforms(openapi, "V2InferenceResponse", body)
    assert body["id"] == "42" and body["model_name"] == signature["model_name"]
    label, probabilities = body["outputs"]
    assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [7])
    classes = signature["classes"]
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [7, len(classes)])
    predicted = post_json(client, "/predict", {"records": batch}).json()["predictions"]
    assert label["data"] == [p["label"] for p in predicted]
    assert probabilities["data"] == [p["probabilities"][c] for p in predicted for c in classes]


def test_v2_infer_returns_only_the_outputs_asked_for(
    client: httpx.Client, signature: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    request = {**v2_request(signature, records[:2]), "outputs": [{"name": "probabilities"}]}
    request.pop("id")
    body = post_json(client, f"/v2/models/{signature['model_name']}/infer", request).json()
    assert [output["name"] for output in body["outputs"]] == ["probabilities"]
    assert isinstance(body["id"], str) and body["id"]


def test_v2_errors_are_the_protocol_error_object(
    client: httpx.Client, signature: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    name = signature["model_name"]
    good = v2_request(signature, records[:2])
    wrong_type = json.loads(json.dumps(good))
    wrong_type["inputs"][0]["datatype"] = (
        "INT8" if wrong_type["inputs"][0]["datatype"] == "BYTES" else "BYTES"
    )
    bad_shape = json.loads(json.dumps(good))
    bad_shape["inputs"][1]["shape"] = [3, 1]
    bad_value = json.loads(json.dumps(good))
    bad_value["inputs"][1]["data"][1] = {"not": "a value"}
    cases = [
        (f"/v2/models/{name}/infer", wrong_type, 400, "datatype must be"),
        (f"/v2/models/{name}/infer", bad_shape, 400, "has shape [3, 1] but 2 element(s)"),
        (f"/v2/models/{name}/infer", bad_value, 400, f"[1] {bad_value['inputs'][1]['name']}:"),
        (
            f"/v2/models/{name}/infer",
            {"inputs": good["inputs"], "extra": 1},
            400,
            "unknown key(s) ['extra']",
        ),
        (
            f"/v2/models/{name}/infer",
            {**good, "outputs": [{"name": "logits"}]},
            400,
            "'outputs' must be",
        ),
        (f"/v2/models/{name}/infer", {**good, "id": 42}, 400, "'id' must be a string"),
        (f"/v2/models/{name}/infer", {"inputs": []}, 400, "'inputs' must be a non-empty list"),
        (f"/v2/models/{name}/infer", [], 400, "expected an inference request object"),
        ("/v2/models/other/infer", good, 404, "unknown model 'other'"),
        (f"/v2/models/{name}/versions/0/infer", good, 404, "unknown version '0'"),
    ]
    for path, body, status, expected in cases:
        response = post_json(client, path, body)
        assert response.status_code == status, (expected, response.text)
        payload = response.json()
        assert list(payload) == ["error"] and expected in payload["error"], payload
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/v2/models/other/ready").json() == {
        "error": f"unknown model 'other'; this server serves '{name}'"
    }


def test_metrics_count_requests_latency_records_and_model(
    client: httpx.Client, signature: dict[str, Any], records: list[dict[str, Any]]
) -> None:
    def value(text: str, line_start: str, *labels: str) -> float:
        """The sum of the samples whose line starts so and holds every one of ``labels``."""
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(line_start) and all(label in line for label in labels)
        )

    ok = 'scorer_requests_total{method="POST",route="/predict",status="200"}'
    bad = 'scorer_requests_total{method="POST",route="/predict",status="422"}'
    scored = ("scorer_records_scored_total{", 'role="champion"', 'route="/predict"')
    before = client.get("/metrics").text
    assert post_json(client, "/predict", {"records": records[:3]}).status_code == 200
    assert post_json(client, "/predict", {"records": [{}]}).status_code == 422
    after = client.get("/metrics").text
    assert value(after, ok) == value(before, ok) + 1
    assert value(after, bad) == value(before, bad) + 1
    assert value(after, *scored) == value(before, *scored) + 3
    assert 'scorer_request_duration_seconds_bucket{le="0.005",route="/predict"}' in after
    version = client.get("/metadata").json()["model_version"]
    assert f'model_name="{signature["model_name"]}",model_version="{version}"' in after


def test_every_scored_record_is_one_log_line_under_concurrent_load(
    client: httpx.Client, scorer: Scorer, records: list[dict[str, Any]]
) -> None:
    sizes = [1 + (number * 7) % 40 for number in range(60)]

    def send(number: int) -> tuple[int, str | None, list[dict[str, Any]]]:
        batch = records[number : number + sizes[number]]
        if number % 10 == 3:
            batch = [*batch, {"island": "Biscoe"}]  # invalid: nothing of this request is scored
        with httpx.Client(base_url=scorer.url, timeout=30) as own:
            response = post_json(own, "/predict", {"records": batch})
        return response.status_code, response.headers.get("x-request-id"), batch

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(len(sizes))))
    sent = {
        request_id: batch for status, request_id, batch in results if status == 200 and request_id
    }
    assert {status for status, _, _ in results} == {200, 422}
    expected = sum(len(batch) for batch in sent.values())

    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in scorer.log_lines()]
        return [line for line in lines if line["request_id"] in sent]

    deadline = time.monotonic() + 15
    while len(logged()) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = logged()
    assert len(lines) == expected
    assert len({(line["request_id"], line["index"]) for line in lines}) == expected
    for line in lines:
        assert set(line) == PredictionRecord.__required_keys__
        assert line["features"] == sent[line["request_id"]][line["index"]]


def test_bearer_token_guards_scoring_and_metadata_but_not_health_or_metrics(
    strict: Scorer, records: list[dict[str, Any]], signature: dict[str, Any]
) -> None:
    body = {"records": records[:1]}
    name = signature["model_name"]
    with httpx.Client(base_url=strict.url, timeout=30) as client:
        for headers in (
            {},
            {"authorization": "Bearer wrong-token-wrong-token"},
            {"authorization": TOKEN},
        ):
            response = post_json(client, "/predict", body, **headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer realm="scorer"'
            assert response.json() == {"error": "missing or invalid bearer token"}
        for path in ("/metadata", f"/v2/models/{name}"):
            assert client.get(path).status_code == 401
        assert (
            post_json(
                client, f"/v2/models/{name}/infer", v2_request(signature, records[:1])
            ).status_code
            == 401
        )
        for path in (
            "/health/live",
            "/health/ready",
            "/v2/health/ready",
            "/metrics",
            "/openapi.json",
        ):
            assert client.get(path).status_code == 200, path
        authorized = {"authorization": f"Bearer {TOKEN}"}
        assert post_json(client, "/predict", body, **authorized).status_code == 200
        assert client.get("/metadata", headers=authorized).status_code == 200
        infer = post_json(
            client, f"/v2/models/{name}/infer", v2_request(signature, records[:1]), **authorized
        )
        assert infer.status_code == 200
        assert TOKEN not in client.get("/openapi.json").text + client.get("/metrics").text


def test_limits_and_reject_policies(
    strict: Scorer, records: list[dict[str, Any]], signature: dict[str, Any]
) -> None:
    authorized = {"authorization": f"Bearer {TOKEN}"}
    number = next(f for f in signature["features"] if f["type"] == "number")
    category = next(f for f in signature["features"] if f["type"] == "string")
    with httpx.Client(base_url=strict.url, timeout=30, headers=authorized) as client:
        too_many = post_json(client, "/predict", {"records": records[:6]})
        assert too_many.status_code == 413 and "limit is 5" in too_many.json()["error"]
        padded = {"records": [{**records[0], category["name"]: "x" * 5000}]}
        too_big = post_json(client, "/predict", padded)
        assert too_big.status_code == 413 and "SCORER_MAX_BODY_BYTES" in too_big.json()["error"]

        def chunks() -> Iterator[bytes]:
            yield json.dumps(padded).encode()

        chunked = client.post("/predict", content=chunks(), headers=JSON_HEADERS)
        assert chunked.status_code == 413
        unknown = post_json(
            client, "/predict", {"records": [{**records[0], category["name"]: "Atlantis"}]}
        )
        assert unknown.status_code == 422 and "is not a known category" in unknown.text
        outside = post_json(
            client, "/predict", {"records": [{**records[0], number["name"]: number["max"] + 1}]}
        )
        assert outside.status_code == 422 and "outside the training range" in outside.text


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_in_flight_requests_finish_and_logs_every_answered_record(
    packaged_model: Path, tmp_path: Path, records: list[dict[str, Any]], workers: int
) -> None:
    with running_scorer(packaged_model, tmp_path / "scorer", SCORER_WORKERS=str(workers)) as scorer:
        batches = [(records * 3)[worker * 40 : worker * 40 + 300] for worker in range(6)]
        traffic = BackgroundTraffic(scorer.url, batches)
        traffic.start()
        time.sleep(0.5)
        terminated_at = time.monotonic()
        exit_code = scorer.stop()
        traffic.join()
    # One process: uvicorn re-raises the signal once its graceful shutdown is complete, so the
    # status says SIGTERM. Workers: the parent exits normally once every worker has.
    assert exit_code == (-signal.SIGTERM if workers == 1 else 0), scorer.output()
    assert scorer.output().count("Application shutdown complete") == workers
    assert set(traffic.failures) <= SHUTDOWN_ERRORS, traffic.failures
    lines = [json.loads(line) for line in scorer.log_lines()]
    assert any(answer.at > terminated_at for answer in traffic.answered), "none in flight"
    assert len(lines) == traffic.records()
    assert {line["request_id"] for line in lines} == {a.request_id for a in traffic.answered}


@pytest.mark.parametrize(("changed", "workers"), [("model.onnx", 1), ("signature.json", 2)])
def test_a_tampered_package_is_never_served(
    packaged_model: Path, tmp_path: Path, changed: str, workers: int
) -> None:
    package = copy_package(packaged_model, tmp_path / "package")
    with (package / changed).open("ab") as file:
        file.write(b" ")
    scorer, exit_code = launch_to_refusal(package, tmp_path / "scorer", SCORER_WORKERS=str(workers))
    output = scorer.output()
    assert exit_code == 1
    assert f"refusing to serve: {package / changed}: sha256" in output
    assert "does not match the manifest" in output
    assert "Traceback" not in output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{scorer.url}/health/ready", timeout=2)
