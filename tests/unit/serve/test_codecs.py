"""The codecs (``mlops.serve.codecs``): each protocol's request shape decoded into the batch the
data plane checks, its answers and its input errors encoded; and the order in which a request's
problems are named (the envelope, the size limit, then the values)."""

import json
from typing import Any

import pytest

from mlops.serve.batches import Columns, Records, Result
from mlops.serve.codecs.rest import (
    RestCodec,
    predict_body,
    regression_predict_body,
)
from mlops.serve.codecs.v2 import (
    Requested,
    V2Codec,
    check_inference_request,
    infer_body,
    model_metadata_body,
    model_parameters,
    tensors_to_columns,
)
from mlops.serve.dataplane import checked
from mlops.serve.errors import InputError
from mlops.serve.model import Prediction
from mlops.serve.schema import InputSchema, input_schema
from signatures import (
    MIXED,
    MIXED_RECORD,
    USER_FEATURES,
    USER_RECORD,
    binary_signature,
    number,
    regression_signature,
    signature,
    string,
)

VALID = MIXED_RECORD
OUTPUTS = ("label", "probabilities")


def schema(unknown: Any = "score") -> InputSchema:
    return input_schema(MIXED, unknown, "flag")


# --- REST: {"records": [...]} ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([VALID], 422, "expected a JSON object"),
        ({"rows": [VALID]}, 422, "unknown key(s) ['rows']"),
        ({}, 422, "'records' is missing"),
        ({"records": {"a": 1}}, 422, "'records' must be a list of objects, got an object"),
        ({"records": []}, 422, "'records' is empty"),
        ({"records": [VALID] * 4}, 413, "holds 4 records; the limit is 3"),
        ({"records": [VALID] * 4 + [{}]}, 413, "holds 5 records; the limit is 3"),
    ],
)
def test_the_body_envelope_is_checked_before_any_record(
    body: Any, status: int, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        checked(RestCodec(), body, schema(), max_records=3)
    assert caught.value.status == status
    assert message in caught.value.message


def test_the_records_reach_the_data_plane_and_the_log_as_received() -> None:
    records = [VALID, {"shape": "round", "colour": None, "count": 1, "size": 2}]
    inputs, context = RestCodec().decode({"records": records})
    assert isinstance(inputs, Records) and inputs.size == 2 and context is None
    assert inputs.records() is records  # the log keeps the client's own objects and key order
    batch, decoded, _ = checked(RestCodec(), {"records": records}, schema(), 10)
    assert decoded.records() == records and batch.size == 2


def test_rest_input_errors_are_the_error_object_with_its_details() -> None:
    with pytest.raises(InputError) as caught:
        checked(RestCodec(), {"records": [{**VALID, "size": "x"}]}, schema(), 10)
    assert RestCodec().error_body(caught.value) == (
        422,
        {
            "error": "1 invalid value(s) in 1 record(s)",
            "details": [
                {"index": 0, "field": "size", "message": "expected a number or null, got a string"}
            ],
            "issue_count": 1,
        },
    )


PREDICTION = Prediction(["a", "b"], [[0.75, 0.25], [0.1, 0.9]])
REGRESSION = Prediction([], [], [23.4, 7.0])


def test_predict_body_keeps_record_order_and_adds_warnings_only_where_due() -> None:
    maps = PREDICTION.probability_maps(["a", "b"])
    warning = {"field": "size", "message": "12 is outside the training range [1.0, 9.0]"}
    body = predict_body("r1", "v1", PREDICTION.labels, maps, {1: [warning]})
    assert body == {
        "request_id": "r1",
        "model_version": "v1",
        "predictions": [
            {"label": "a", "probabilities": {"a": 0.75, "b": 0.25}},
            {"label": "b", "probabilities": {"a": 0.1, "b": 0.9}, "warnings": [warning]},
        ],
    }


def test_a_regressors_predict_body_is_one_number_per_record() -> None:
    warning = {"field": "Distance (km)", "message": "41 is outside the training range"}
    body = regression_predict_body("r1", "v1", REGRESSION.values, {0: [warning]})
    assert body == {
        "request_id": "r1",
        "model_version": "v1",
        "predictions": [{"prediction": 23.4, "warnings": [warning]}, {"prediction": 7.0}],
    }


def test_the_rest_codec_encodes_the_tasks_body() -> None:
    warning = {"field": "size", "message": "m"}
    maps = PREDICTION.probability_maps(["a", "b"])
    classified = Result("r1", "tiny", "v1", PREDICTION, ["a", "b"], {0: [warning]})
    assert json.loads(RestCodec().encode(classified, None)) == predict_body(
        "r1", "v1", PREDICTION.labels, maps, {0: [warning]}
    )
    regressed = Result("r2", "tiny", "v1", REGRESSION, None, {})
    assert json.loads(RestCodec().encode(regressed, None)) == regression_predict_body(
        "r2", "v1", REGRESSION.values, {}
    )


# --- Open Inference Protocol V2 ----------------------------------------------------------------


def tensor(name: str, data: Any, datatype: str = "FP32", shape: Any = None) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape if shape is not None else [len(data), 1],
        "data": data,
    }


def v2_inputs(**overrides: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = {
        "size": tensor("size", [2.5, 7]),
        "count": tensor("count", [[1], [2]], "INT64"),
        "colour": tensor("colour", ["red", "blue"], "BYTES", [2]),
        "shape": tensor("shape", ["round", "round"], "BYTES"),
    }
    inputs.update(overrides)
    return list(inputs.values())


def test_v2_tensors_flat_or_nested_become_the_same_columns() -> None:
    columns = tensors_to_columns(v2_inputs(), schema())
    assert columns.size == 2
    assert columns.values == {
        "size": [2.5, 7],
        "count": [1, 2],
        "colour": ["red", "blue"],
        "shape": ["round", "round"],
    }
    batch, _, _ = checked(V2Codec(schema(), OUTPUTS), {"inputs": v2_inputs()}, schema(), 10)
    assert batch.feed["count"][:, 0].tolist() == [1.0, 2.0]


def test_v2_columns_follow_the_schema_and_make_the_logs_records() -> None:
    shuffled = list(reversed(v2_inputs()))
    columns = tensors_to_columns(shuffled, schema())
    assert list(columns.values) == ["size", "count", "colour", "shape"]
    assert columns.records() == [
        {"size": 2.5, "count": 1, "colour": "red", "shape": "round"},
        {"size": 7, "count": 2, "colour": "blue", "shape": "round"},
    ]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "'inputs' must be a non-empty list"),
        (
            v2_inputs(size=tensor("size", [1.0, 2.0], "BYTES")),
            "input 'size' is numeric: datatype must be FP32",
        ),
        (
            v2_inputs(colour=tensor("colour", ["red", "red"], "FP32")),
            "input 'colour' is categorical: datatype must be BYTES",
        ),
        (
            v2_inputs(size=tensor("size", [1.0, 2.0], shape=[3, 1])),
            "has shape [3, 1] but 2 element(s)",
        ),
        (v2_inputs(size=tensor("size", [1.0, 2.0], shape=[1, 2])), "must have shape [n, 1] or [n]"),
        (v2_inputs(size=tensor("size", [1.0], shape=[1, 1])), "different numbers of elements"),
        (
            v2_inputs(size=tensor("size", [[1.0, 2.0]], shape=[2, 1])),
            "flat or a list of one-element rows",
        ),
        (v2_inputs()[:3], "missing input(s) ['shape']"),
        ([*v2_inputs(), tensor("size", [1.0, 2.0])], "input 'size' is given twice"),
        ([*v2_inputs(), tensor("weight", [1.0, 2.0])], "input 'weight' is not a feature"),
        ([{"name": "size", "datatype": "FP32"}], "input 'size' is missing ['shape', 'data']"),
        (["size"], "inputs[0] must be an object"),
    ],
)
def test_v2_tensor_problems_are_named(inputs: Any, message: str) -> None:
    with pytest.raises(InputError) as caught:
        tensors_to_columns(inputs, schema())
    assert message in caught.value.message


def test_v2_element_problems_name_the_input_and_element() -> None:
    body = {"inputs": v2_inputs(size=tensor("size", [2.5, "x"]))}
    codec = V2Codec(schema(), OUTPUTS)
    with pytest.raises(InputError) as caught:
        checked(codec, body, schema(), 10)
    assert caught.value.one_line() == (
        "1 invalid value(s) in 1 record(s): [1] size: expected a number or null, got a string"
    )
    assert codec.error_body(caught.value) == (400, {"error": caught.value.one_line()})


def test_v2_batch_over_the_limit_is_413() -> None:
    codec = V2Codec(schema(), OUTPUTS)
    with pytest.raises(InputError) as caught:
        checked(codec, {"inputs": v2_inputs()}, schema(), 1)
    assert caught.value.status == 413
    assert "the batch holds 2 records; the limit is 1" in caught.value.message
    assert codec.error_body(caught.value)[0] == 413


def test_the_onnx_input_names_are_not_v2_input_names() -> None:
    user_schema = input_schema(regression_signature())
    renamed = {feature["input_name"]: USER_RECORD[feature["name"]] for feature in USER_FEATURES}
    tensors = [tensor(name, [value], "FP32") for name, value in renamed.items()]
    with pytest.raises(InputError, match=r"input 'Distance__km_' is not a feature"):
        tensors_to_columns(tensors, user_schema)


def test_v2_inputs_are_named_as_the_users_columns() -> None:
    user_schema = input_schema(regression_signature())
    tensors = [
        tensor(f["name"], [USER_RECORD[f["name"]]], "FP32" if f["type"] == "number" else "BYTES")
        for f in USER_FEATURES
    ]
    codec = V2Codec(user_schema, ("prediction",))
    feed = checked(codec, {"inputs": tensors}, user_schema, 10)[0].feed
    assert feed["Weather_Condition"][0, 0] == "rain" and feed["_1st_order_"][0, 0] == 1.0


@pytest.mark.parametrize(
    ("outputs", "requested", "wanted"),
    [
        (("prediction",), None, ["prediction"]),
        (("label", "probabilities"), None, ["label", "probabilities"]),
        (("label", "probabilities"), [{"name": "probabilities"}], ["probabilities"]),
    ],
)
def test_a_v2_request_gets_the_models_outputs_or_those_it_names(
    outputs: tuple[str, ...], requested: Any, wanted: list[str]
) -> None:
    body = {"inputs": [], **({} if requested is None else {"outputs": requested})}
    assert check_inference_request(body, outputs) == Requested(None, wanted)


def test_a_v2_request_for_an_output_the_model_lacks_is_refused() -> None:
    body = {"inputs": [], "outputs": [{"name": "label"}]}
    with pytest.raises(InputError, match=r"naming \['prediction'\]"):
        check_inference_request(body, ("prediction",))


def test_infer_body_flattens_probabilities_row_major_and_returns_the_outputs_asked_for() -> None:
    body = infer_body("tiny", "v1", "42", PREDICTION, ["probabilities", "label"])
    assert body["id"] == "42" and body["model_name"] == "tiny" and body["model_version"] == "v1"
    probabilities, label = body["outputs"]
    assert probabilities == {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [2, 2],
        "data": [0.75, 0.25, 0.1, 0.9],
    }
    assert label == {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}
    assert [
        o["name"] for o in infer_body("tiny", "v1", "42", PREDICTION, ["label"])["outputs"]
    ] == ["label"]


def test_a_regressors_infer_body_has_one_fp32_prediction_output() -> None:
    body = infer_body("tiny", "v1", "7", REGRESSION, ["prediction"])
    assert body["outputs"] == [
        {"name": "prediction", "datatype": "FP32", "shape": [2, 1], "data": [23.4, 7.0]}
    ]


def test_the_v2_codec_answers_the_clients_id_or_else_the_request_id() -> None:
    codec = V2Codec(schema(), OUTPUTS)
    result = Result("r1", "tiny", "v1", PREDICTION, None, {})
    assert json.loads(codec.encode(result, Requested("42", ["label"])).content)["id"] == "42"
    answered = json.loads(codec.encode(result, Requested(None, ["label"])).content)
    assert answered == infer_body("tiny", "v1", "r1", PREDICTION, ["label"])


def test_a_v2_request_decodes_into_columns_and_what_it_asked_for() -> None:
    codec = V2Codec(schema(), OUTPUTS)
    body = {"id": "7", "inputs": v2_inputs(), "outputs": [{"name": "label"}]}
    columns, requested = codec.decode(body)
    assert isinstance(columns, Columns) and columns.size == 2
    assert requested == Requested("7", ["label"])


SIGNATURE = signature(number("size", low=1.0, high=9.0), string("colour", ["red"]))


def test_model_metadata_has_one_input_per_feature_and_the_tasks_outputs() -> None:
    body = model_metadata_body(
        "tiny", "v1", input_schema(SIGNATURE), ["a", "b"], model_parameters(SIGNATURE)
    )
    assert body["inputs"] == [
        {"name": "size", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "colour", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    assert body["outputs"][1] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}
    assert (body["name"], body["versions"], body["platform"]) == ("tiny", ["v1"], "onnx")
    assert body["parameters"] == {"task": "classification", "target": "kind"}


def test_a_regressors_model_metadata_names_the_users_columns_and_one_output() -> None:
    regression = regression_signature()
    body = model_metadata_body(
        "tiny", "v1", input_schema(regression), [], model_parameters(regression)
    )
    assert [tensor["name"] for tensor in body["inputs"]][:2] == ["Distance (km)", "1st order?"]
    assert body["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}]
    assert body["parameters"] == {"task": "regression", "target": "Delivery Time [min]"}


def test_a_binary_models_parameters_name_the_positive_class_and_the_threshold() -> None:
    assert model_parameters(binary_signature()) == {
        "task": "classification",
        "target": "Churned?",
        "positive_class": "yes",
        "threshold": 0.3,
    }
