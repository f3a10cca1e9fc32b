from mlops.serve.model import Prediction
from mlops.serve.responses import (
    infer_body,
    model_metadata_body,
    model_parameters,
    predict_body,
    regression_predict_body,
)
from mlops.serve.validation import input_schema
from signatures import binary_signature, number, regression_signature, signature, string

SIGNATURE = signature(number("size", low=1.0, high=9.0), string("colour", ["red"]))
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
