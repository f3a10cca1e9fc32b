from pathlib import Path
from typing import Any

import jsonschema
import pytest
from starlette.routing import Route

from mlops.core.artifacts import Signature
from mlops.serve.app import create_app
from mlops.serve.model import load_scorer
from mlops.serve.openapi import openapi_document
from mlops.serve.predlog import PredictionLogWriter
from mlops.serve.schema import input_schema
from mlops.serve.settings import ServeSettings
from mlops.serve.warmup import example_record
from package_fixtures import regression_package
from signatures import binary_signature, number, regression_signature, signature, string

SIGNATURE = signature(
    number("size", low=1.0, high=10.0), string("colour", ["blue", "red"], nullable=False)
)


def document(
    unknown: Any = "score", auth: bool = False, served: Signature = SIGNATURE
) -> dict[str, Any]:
    schema = input_schema(served, unknown, "flag")
    return openapi_document(schema, served, "tiny", "v1", max_records=5, auth=auth)


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


def test_the_record_schema_follows_the_signature() -> None:
    doc = document()
    record = validator(doc, "Record")
    record.validate(example_record(input_schema(SIGNATURE)))
    record.validate({"size": None, "colour": "green"})  # unknown categories are scored, so allowed
    for bad in (
        {"size": "1", "colour": "red"},
        {"size": 1},
        {"size": 1, "colour": "red", "extra": 1},
    ):
        assert not record.is_valid(bad)
    request = validator(doc, "PredictRequest")
    assert not request.is_valid({"records": []})
    assert not request.is_valid({"records": [{"size": 1, "colour": "red"}] * 6})


def test_categories_become_an_enum_only_when_unknown_ones_are_rejected() -> None:
    record = validator(document(unknown="reject"), "Record")
    assert record.is_valid({"size": 1, "colour": "red"})
    assert not record.is_valid({"size": 1, "colour": "green"})


def test_scoring_routes_declare_bearer_auth_only_when_a_token_is_set() -> None:
    assert "security" not in document()["paths"]["/predict"]["post"]
    secured = document(auth=True)["paths"]
    assert secured["/predict"]["post"]["security"] == [{"bearerAuth": []}]
    assert secured["/v2/models/{model_name}/infer"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in secured["/health/ready"]["get"]


def test_the_document_describes_every_route_and_method_the_app_serves(tmp_path: Path) -> None:
    package = regression_package(tmp_path / "regression")
    log = PredictionLogWriter(tmp_path / "p.jsonl", 1 << 20, 1)
    try:
        app = create_app(ServeSettings(), load_scorer(package, 1), log)
    finally:
        log.close()
    paths = document()["paths"]
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, operations in paths.items() for method in operations}
    assert served == documented


def test_a_regressors_answer_is_a_number_per_record() -> None:
    doc = document(served=regression_signature())
    prediction = validator(doc, "Prediction")
    prediction.validate({"prediction": 23.4})
    prediction.validate({"prediction": -1, "warnings": [{"field": "x", "message": "m"}]})
    for wrong in ({"label": "a", "probabilities": {"a": 1.0}}, {"prediction": "23.4"}, {}):
        assert not prediction.is_valid(wrong)
    record = validator(doc, "Record")
    record.validate(example_record(input_schema(regression_signature())))
    assert "Distance (km)" in doc["components"]["schemas"]["Record"]["properties"]
    summary = doc["paths"]["/predict"]["post"]["summary"]
    assert summary == "Score records: a predicted Delivery Time [min] for each"
    outputs = doc["components"]["schemas"]["V2RequestOutput"]["properties"]["name"]
    assert outputs["enum"] == ["prediction"]


def test_a_classifiers_answer_is_a_label_and_probabilities() -> None:
    prediction = validator(document(served=binary_signature()), "Prediction")
    prediction.validate({"label": "yes", "probabilities": {"no": 0.4, "yes": 0.6}})
    assert not prediction.is_valid({"label": "maybe", "probabilities": {"no": 0.4, "yes": 0.6}})
    assert not prediction.is_valid({"prediction": 1.0})
    parameters = validator(document(served=binary_signature()), "V2ModelMetadata")
    body = {
        "name": "tiny",
        "versions": ["v1"],
        "platform": "onnx",
        "inputs": [],
        "outputs": [],
        "parameters": {"task": "classification", "target": "Churned?"},
    }
    assert not parameters.is_valid(body)  # the positive class and the threshold are promised
    body["parameters"].update(positive_class="yes", threshold=0.3)
    parameters.validate(body)


@pytest.mark.parametrize(
    "name",
    ["PredictResponse", "Error", "V2InferenceRequest", "V2InferenceResponse", "V2ModelMetadata"],
)
@pytest.mark.parametrize("served", [SIGNATURE, regression_signature(), binary_signature()])
def test_component_schemas_are_valid_json_schema(name: str, served: Signature) -> None:
    schemas = document(served=served)["components"]["schemas"]
    jsonschema.Draft202012Validator.check_schema(schemas[name])


def test_each_v2_input_is_described_with_its_datatypes_and_shape() -> None:
    doc = document()
    request = validator(doc, "V2InferenceRequest")
    size = {"name": "size", "datatype": "FP32", "shape": [2, 1], "data": [1.5, None]}
    colour = {"name": "colour", "datatype": "BYTES", "shape": [2], "data": [["red"], ["blue"]]}
    request.validate({"inputs": [size, colour]})
    for wrong in (
        {**size, "datatype": "BYTES"},
        {**colour, "datatype": "FP32"},
        {**colour, "data": ["red", None]},  # colour may not be missing
        {**size, "shape": [2, 3]},
        {**size, "data": [1e39]},  # beyond float32
        {**size, "name": "weight"},
    ):
        assert not request.is_valid({"inputs": [wrong, colour]}), wrong
    assert not request.is_valid({"inputs": [size]})  # one input per feature


def test_every_status_a_route_answers_is_documented() -> None:
    paths = document()["paths"]
    infer = paths["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["responses"]) == {"200", "400", "401", "404", "413", "415", "503"}
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert "Inference-Header-Content-Length" in infer["responses"]["200"]["headers"]
    predict = paths["/predict"]["post"]["responses"]
    assert set(predict) == {"200", "400", "401", "413", "415", "422", "503"}
    assert "X-Request-ID" in predict["200"]["headers"]


def test_extra_fields_are_documented_as_the_setting_says() -> None:
    schema = input_schema(SIGNATURE)
    record = {"size": 1, "colour": "red", "order id": "A-1"}
    strict = openapi_document(schema, SIGNATURE, "tiny", "v1", 5, False, "reject")
    lenient = openapi_document(schema, SIGNATURE, "tiny", "v1", 5, False, "ignore")
    assert not validator(strict, "Record").is_valid(record)
    validator(lenient, "Record").validate(record)
