from pathlib import Path
from typing import Any

import jsonschema
import pytest
from starlette.routing import Route

from mlops.serve.app import create_app
from mlops.serve.model import load_scorer
from mlops.serve.openapi import openapi_document
from mlops.serve.predlog import PredictionLogWriter
from mlops.serve.settings import ServeSettings
from mlops.serve.validation import example_record, input_schema
from signatures import number, signature, string

SIGNATURE = signature(
    number("size", low=1.0, high=10.0), string("colour", ["blue", "red"], nullable=False)
)


def document(unknown: Any = "score", auth: bool = False) -> dict[str, Any]:
    schema = input_schema(SIGNATURE, unknown, "flag")
    return openapi_document(schema, ["a", "b"], "tiny", "v1", max_records=5, auth=auth)


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


def test_the_document_describes_every_route_and_method_the_app_serves(
    packaged_model: Path, tmp_path: Path
) -> None:
    log = PredictionLogWriter(tmp_path / "p.jsonl", 1 << 20, 1)
    try:
        app = create_app(ServeSettings(), load_scorer(packaged_model, 1), log)
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


@pytest.mark.parametrize(
    "name",
    ["PredictResponse", "Error", "V2InferenceRequest", "V2InferenceResponse", "V2ModelMetadata"],
)
def test_component_schemas_are_valid_json_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(document()["components"]["schemas"][name])
