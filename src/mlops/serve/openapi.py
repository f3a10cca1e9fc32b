"""The OpenAPI 3.1 document of the scorer, written from the served model's signature.

Built by hand rather than from handler annotations: the request schema depends on the model
(one property per feature, its type, its categories), which only the signature knows. It is one
module of over 400 lines because it is one document, mostly literal data (a schema per body the
scorer reads or writes, an operation per route); split, a reader would have to assemble it.
"""

from __future__ import annotations

from typing import Any

from mlops.core.artifacts import PREDICTION_OUTPUT, Signature, output_names
from mlops.serve.codecs.v2 import (
    BINARY_DATA,
    BINARY_DATA_OUTPUT,
    BINARY_DATA_SIZE,
    NUMERIC_V2_DATATYPES,
    STRING_V2_DATATYPE,
)
from mlops.serve.schema import FLOAT32_MAX, ExtraFieldsPolicy, FieldSpec, InputSchema

JSON = "application/json"
BINARY = "application/octet-stream"
PROMETHEUS_TEXT = "text/plain"
REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "the request's id, as the prediction log records it",
        "schema": {"type": "string"},
    },
    "X-Model-Role": {
        "description": "which model answered: the champion, or the challenger served beside it "
        "(SCORER_CHALLENGER_DIR)",
        "schema": {"type": "string", "enum": ["champion", "challenger"]},
    },
}
ROLLOUT_KEY = {
    "name": "X-Rollout-Key",
    "in": "header",
    "required": False,
    "description": "with a canary challenger: the same key is always answered by the same "
    "model (a customer or session id); without one, each request is routed at random",
    "schema": {"type": "string"},
}
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(
    schema: InputSchema,
    signature: Signature,
    model_name: str,
    model_version: str,
    max_records: int,
    auth: bool,
    extra_fields: ExtraFieldsPolicy = "reject",
) -> dict[str, Any]:
    """The document for the served model: its features (a V2 input per feature with its
    datatypes and shape), its task's answers (a label and class probabilities, or a number) and
    every status each route answers."""
    security: list[dict[str, list[str]]] | None = [{"bearerAuth": []}] if auth else None
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{model_name} scorer",
            "version": model_version,
            "description": (
                "Scores records with the packaged ONNX model. /predict is the simple REST route; "
                "/v2/... is the Open Inference Protocol V2 (KServe, Triton, MLServer clients)."
            ),
        },
        "paths": _paths(security, signature),
        "components": {
            "schemas": {
                **_rest_schemas(schema, signature, max_records, extra_fields),
                **_v2_schemas(schema, signature, max_records),
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def _feature_schema(spec: FieldSpec, schema: InputSchema) -> Schema:
    kind = "number" if spec.is_number else "string"
    result: Schema = {"type": [kind, "null"] if spec.nullable else kind}
    if spec.is_number:  # what float32 (the model's input) holds, or the range the policy keeps
        rejects = schema.out_of_range == "reject" and None not in (spec.minimum, spec.maximum)
        result["minimum"] = spec.minimum if rejects else -FLOAT32_MAX
        result["maximum"] = spec.maximum if rejects else FLOAT32_MAX
    if spec.is_number and spec.minimum is not None:
        result["description"] = f"training range [{spec.minimum}, {spec.maximum}]"
    if spec.categories is not None:
        values: list[Any] = sorted(spec.categories)
        if schema.unknown_category == "reject":
            result["enum"] = values + ([None] if spec.nullable else [])
        else:
            result["examples"] = values
            result["description"] = "unknown categories are scored as unknown and flagged"
    return result


def _prediction_schema(signature: Signature) -> Schema:
    warnings = {"type": "array", "items": ref("FieldWarning")}
    if signature["task"] == "regression":
        value = {"type": "number", "description": f"the predicted {signature['target']}"}
        properties: dict[str, Schema] = {PREDICTION_OUTPUT: value, "warnings": warnings}
        required = [PREDICTION_OUTPUT]
    else:
        classes = signature["classes"]
        probability = {"type": "number", "minimum": 0, "maximum": 1}
        properties = {
            "label": {"type": "string", "enum": classes},
            "probabilities": _object({name: probability for name in classes}),
            "warnings": warnings,
        }
        required = ["label", "probabilities"]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _rest_schemas(
    schema: InputSchema, signature: Signature, max_records: int, extra_fields: ExtraFieldsPolicy
) -> dict[str, Schema]:
    return {
        "Record": {
            "type": "object",
            "properties": {spec.name: _feature_schema(spec, schema) for spec in schema.fields},
            "required": schema.order,
            # SCORER_EXTRA_FIELDS=ignore: other fields (ids, timestamps) are logged, not scored
            "additionalProperties": extra_fields == "ignore",
        },
        "PredictRequest": {
            "type": "object",
            "properties": {
                "records": {
                    "type": "array",
                    "items": ref("Record"),
                    "minItems": 1,
                    "maxItems": max_records,
                }
            },
            "required": ["records"],
            "additionalProperties": False,
        },
        "FieldWarning": _object({"field": {"type": "string"}, "message": {"type": "string"}}),
        "Prediction": _prediction_schema(signature),
        "PredictResponse": _object(
            {
                "request_id": {"type": "string"},
                "model_version": {"type": "string"},
                "predictions": {"type": "array", "items": ref("Prediction")},
            }
        ),
        "Issue": _object(
            {
                "index": {"type": ["integer", "null"]},
                "field": {"type": ["string", "null"]},
                "message": {"type": "string"},
            }
        ),
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "details": {"type": "array", "items": ref("Issue")},
                "issue_count": {"type": "integer"},
            },
            "required": ["error"],
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
            "required": ["status"],
        },
        "Metadata": _object(
            {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "task": {"type": "string", "enum": ["classification", "regression"]},
                "lineage": {"type": "object"},
                "metrics": {"type": "object"},
                "signature": {"type": "object"},
            }
        ),
    }


def _v2_schemas(schema: InputSchema, signature: Signature, max_records: int) -> dict[str, Schema]:
    tensor_data: Schema = {"type": "array"}
    shape = {"type": "array", "items": {"type": "integer"}}
    input_names = schema.order
    return {
        "V2Error": _object({"error": {"type": "string"}}),
        "V2ServerMetadata": _object(
            {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array"},
            }
        ),
        "V2ServerLive": _object({"live": {"type": "boolean"}}),
        "V2ServerReady": _object({"ready": {"type": "boolean"}}),
        "V2ModelReady": _object({"name": {"type": "string"}, "ready": {"type": "boolean"}}),
        "V2MetadataTensor": _object(
            {"name": {"type": "string"}, "datatype": {"type": "string"}, "shape": shape}
        ),
        "V2ModelMetadata": _object(
            {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": ref("V2MetadataTensor")},
                "outputs": {"type": "array", "items": ref("V2MetadataTensor")},
                "parameters": _object(_parameter_properties(signature)),
            }
        ),
        # one schema per feature (V2Input0, V2Input1, ... in the signature's order)
        "V2RequestInput": {"oneOf": [ref(f"V2Input{i}") for i in range(len(schema.fields))]},
        **{
            f"V2Input{i}": _v2_input_schema(spec, schema, max_records)
            for i, spec in enumerate(schema.fields)
        },
        "V2RequestOutput": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": list(output_names(signature["task"]))},
                "parameters": {
                    "type": "object",
                    "properties": {BINARY_DATA: {"type": "boolean"}},
                    "additionalProperties": _PARAMETER,
                },
            },
            "required": ["name"],
        },
        "V2InferenceRequest": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {BINARY_DATA_OUTPUT: {"type": "boolean"}},
                    "additionalProperties": _PARAMETER,
                },
                "inputs": {
                    "type": "array",
                    "items": ref("V2RequestInput"),
                    "minItems": len(input_names),
                    "maxItems": len(input_names),
                },
                "outputs": {"type": "array", "items": ref("V2RequestOutput")},
            },
            "required": ["inputs"],
            "additionalProperties": False,
        },
        "V2ResponseOutput": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "shape": shape,
                "datatype": {"type": "string"},
                "data": tensor_data,
                "parameters": _object({BINARY_DATA_SIZE: {"type": "integer", "minimum": 0}}),
            },
            "required": ["name", "shape", "datatype"],
            "additionalProperties": False,
        },
        "V2InferenceResponse": _object(
            {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": ref("V2ResponseOutput")},
            }
        ),
    }


# A V2 parameter's value: a boolean, a number or a string (the protocol's ``$parameter``).
_PARAMETER: Schema = {"type": ["boolean", "number", "string"]}


def _v2_input_schema(spec: FieldSpec, schema: InputSchema, max_records: int) -> Schema:
    """One feature's V2 input tensor: its name (the column's), the datatypes it may have, a
    shape of ``[n, 1]`` or ``[n]``, and its values in JSON, flat or one per row."""
    value = _feature_schema(spec, schema)
    datatypes = sorted(NUMERIC_V2_DATATYPES) if spec.is_number else [STRING_V2_DATATYPE]
    rows = {"type": "integer", "minimum": 1, "maximum": max_records}
    return {
        "type": "object",
        "description": f"the feature {spec.name!r}; n values, one per record (every input as many)",
        "properties": {
            "name": {"const": spec.name},
            "datatype": {"enum": datatypes},
            "shape": {
                "oneOf": [
                    {"type": "array", "prefixItems": [rows], "minItems": 1, "maxItems": 1},
                    {
                        "type": "array",
                        "prefixItems": [rows, {"const": 1}],
                        "minItems": 2,
                        "maxItems": 2,
                    },
                ]
            },
            "data": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_records,
                "items": {
                    "oneOf": [
                        value,
                        {"type": "array", "items": value, "minItems": 1, "maxItems": 1},
                    ]
                },
            },
            "parameters": {"type": "object", "additionalProperties": _PARAMETER},
        },
        "required": ["name", "datatype", "shape", "data"],
        "additionalProperties": False,
    }


def _parameter_properties(signature: Signature) -> dict[str, Schema]:
    """The V2 model metadata's ``parameters`` (``codecs.v2.model_parameters``)."""
    properties: dict[str, Schema] = {
        "task": {"type": "string", "enum": [signature["task"]]},
        "target": {"type": "string"},
    }
    if signature["positive_class"] is not None:
        properties["positive_class"] = {"type": "string"}
    if signature["threshold"] is not None:
        properties["threshold"] = {"type": "number"}
    return properties


def _object(properties: dict[str, Schema]) -> Schema:
    """A closed object whose every property is required."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _json(schema_name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(schema_name)}}}


def _scored(schema_name: str, description: str, binary: bool = False) -> dict[str, Any]:
    """A scoring answer: JSON (or, asked for binary outputs, the JSON header and the bytes) with
    the request id header."""
    response = _json(schema_name, description)
    response["headers"] = REQUEST_ID_HEADER
    if binary:
        response["content"][BINARY] = {"schema": {"type": "string", "format": "binary"}}
        response["headers"] = {
            **REQUEST_ID_HEADER,
            "Inference-Header-Content-Length": {
                "description": "with binary outputs: the length of the JSON header before them",
                "schema": {"type": "integer"},
            },
        }
    return response


def _rest_errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "malformed JSON, a Content-Length that is not a number, or a compressed body that "
        "does not inflate",
        401: "missing or invalid bearer token (only when SCORER_API_TOKEN is set)",
        404: "no such model or version",
        413: "body larger than SCORER_MAX_BODY_BYTES or more records than SCORER_MAX_RECORDS",
        415: "Content-Type is not application/json, or a Content-Encoding other than gzip or "
        "deflate",
        422: "the records do not match the model's signature; details name each record and field",
        503: "the model is not ready or the prediction log is failing",
    }
    return {str(status): _json("Error", reasons[status]) for status in statuses}


def _v2_errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): _json("V2Error", description)
        for status, description in {
            400: "the request does not match the protocol or the model's inputs; the message "
            "names the input",
            401: "missing or invalid bearer token (only when SCORER_API_TOKEN is set)",
            404: "no such model or version",
            413: "body larger than SCORER_MAX_BODY_BYTES or more records than SCORER_MAX_RECORDS",
            415: "Content-Type other than application/json, application/octet-stream or none; "
            "or a Content-Encoding other than gzip or deflate",
            503: "not ready",
        }.items()
        if status in statuses
    }


def _operation(
    summary: str,
    responses: dict[str, Any],
    security: list[dict[str, list[str]]] | None = None,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(body)}}}
    if security:
        operation["security"] = security
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_parameters(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]


def _paths(security: list[dict[str, list[str]]] | None, signature: Signature) -> dict[str, Any]:
    model = _path_parameters("model_name")
    versioned = _path_parameters("model_name", "model_version")
    regression = signature["task"] == "regression"
    answers = (
        f"the predicted {signature['target']} (output 'prediction', FP32 [n, 1])"
        if regression
        else "labels and class probabilities"
    )
    v2_infer = _operation(
        "Open Inference Protocol V2 inference: one [n, 1] input tensor per feature",
        {
            "200": _scored("V2InferenceResponse", answers, binary=True),
            **_v2_errors(400, 401, 404, 413, 415, 503),
        },
        security,
        body="V2InferenceRequest",
    )
    v2_infer["requestBody"]["content"][BINARY] = {
        "schema": {"type": "string", "format": "binary"},
        "description": "binary tensor data: the JSON inference request, then each input's "
        "bytes, with its length in Inference-Header-Content-Length",
    }
    v2_metadata = _operation(
        "Open Inference Protocol V2 model metadata",
        {"200": _json("V2ModelMetadata", "inputs and outputs"), **_v2_errors(401, 404)},
        security,
    )
    v2_ready = _operation(
        "Open Inference Protocol V2 model readiness",
        {
            "200": _json("V2ModelReady", "ready"),
            **_v2_errors(404),
            "503": _json("V2ModelReady", "not ready"),
        },
    )
    return {
        "/predict": {
            "post": _operation(
                f"Score records: a predicted {signature['target']} for each"
                if regression
                else "Score records: a label and class probabilities for each",
                {
                    "200": _scored("PredictResponse", "one prediction per record, in order"),
                    **_rest_errors(400, 401, 413, 415, 422, 503),
                },
                security,
                body="PredictRequest",
                parameters=[ROLLOUT_KEY],
            )
        },
        "/metadata": {
            "get": _operation(
                "Model version, lineage, metrics and signature",
                {
                    "200": _json("Metadata", "the packaged model's manifest and signature"),
                    **_rest_errors(401),
                },
                security,
            )
        },
        "/health/live": {
            "get": _operation("Liveness", {"200": _json("Health", "the process is up")})
        },
        "/health/ready": {
            "get": _operation(
                "Readiness: model verified and warm, prediction log writable",
                {
                    "200": _json("Health", "ready"),
                    "503": _json("Health", "not ready, with the reason"),
                },
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/openapi.json": {
            "get": _operation("This document", {"200": {"description": "OpenAPI 3.1"}})
        },
        "/v2": {
            "get": _operation(
                "V2 server metadata", {"200": _json("V2ServerMetadata", "server name and version")}
            )
        },
        "/v2/health/live": {
            "get": _operation("V2 server liveness", {"200": _json("V2ServerLive", "live")})
        },
        "/v2/health/ready": {
            "get": _operation(
                "V2 server readiness",
                {
                    "200": _json("V2ServerReady", "ready"),
                    "503": _json("V2ServerReady", "not ready"),
                },
            )
        },
        "/v2/models/{model_name}": {"get": {**v2_metadata, "parameters": model}},
        "/v2/models/{model_name}/versions/{model_version}": {
            "get": {**v2_metadata, "parameters": versioned}
        },
        "/v2/models/{model_name}/ready": {"get": {**v2_ready, "parameters": model}},
        "/v2/models/{model_name}/versions/{model_version}/ready": {
            "get": {**v2_ready, "parameters": versioned}
        },
        "/v2/models/{model_name}/infer": {
            "post": {**v2_infer, "parameters": [*model, ROLLOUT_KEY]}
        },
        "/v2/models/{model_name}/versions/{model_version}/infer": {
            "post": {**v2_infer, "parameters": [*versioned, ROLLOUT_KEY]}
        },
    }
