"""The scorer over real HTTP on the other tasks: a regressor and a binary classifier with a
decision threshold, each packaged by the package stage from a table with headers as people write
them (spaces, brackets, a leading digit, dots, slashes, currency signs, non-ASCII letters)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlops.core.artifacts import PredictionRecord
from mlops.core.decision import apply_threshold
from mlops.gitops.smoke import check_predictions
from mlops.stage import StageError
from package_fixtures import REGRESSION_RENAMES, binary_package, regression_package
from serve_fixtures import (
    Scorer,
    conforms,
    onnx_outputs,
    post_json,
    running_scorer,
    signature_of,
    table_records,
    v2_request,
)


class Served:
    """A running scorer of one package, a client, its OpenAPI document and signature."""

    def __init__(self, package: Path, scorer: Scorer, client: httpx.Client) -> None:
        self.package = package
        self.scorer = scorer
        self.client = client
        self.signature = signature_of(package)
        self.openapi: dict[str, Any] = client.get("/openapi.json").json()
        self.records = table_records(package)
        self.infer = f"/v2/models/{self.signature['model_name']}/infer"

    def logged(self, request_id: str, count: int) -> list[dict[str, Any]]:
        """The prediction log lines of one request, once all ``count`` are written."""
        deadline = time.monotonic() + 15
        while True:
            lines = [json.loads(line) for line in self.scorer.log_lines()]
            mine = [line for line in lines if line["request_id"] == request_id]
            if len(mine) >= count or time.monotonic() > deadline:
                return mine
            time.sleep(0.05)


def serve(package: Path, workdir: Path) -> Iterator[Served]:
    with (
        running_scorer(package, workdir) as scorer,
        httpx.Client(base_url=scorer.url, timeout=30) as client,
    ):
        yield Served(package, scorer, client)


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    package = regression_package(tmp_path_factory.mktemp("regression"))
    yield from serve(package, tmp_path_factory.mktemp("regression-scorer"))


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    package = binary_package(tmp_path_factory.mktemp("binary"), threshold=0.3)
    yield from serve(package, tmp_path_factory.mktemp("binary-scorer"))


# --- regression -----------------------------------------------------------------------------------


def test_the_user_names_reach_the_regressor_unchanged(regressor: Served) -> None:
    names = [feature["name"] for feature in regressor.signature["features"]]
    assert {"Monthly Charge ($)", "plan/type", *REGRESSION_RENAMES.values()} <= set(names)
    assert all(set(record) == set(names) for record in regressor.records)
    assert any(value is None for record in regressor.records for value in record.values())


def test_a_regressor_answers_one_number_per_record_as_onnxruntime_computes_it(
    regressor: Served,
) -> None:
    batch = regressor.records[:50]
    response = post_json(regressor.client, "/predict", {"records": batch})

    assert response.status_code == 200, response.text
    body = response.json()
    conforms(regressor.openapi, "PredictResponse", body)
    predictions = body["predictions"]
    assert all(set(p) == {"prediction"} and type(p["prediction"]) is float for p in predictions)
    expected = onnx_outputs(regressor.package, regressor.signature, batch)["prediction"][:, 0]
    served = np.array([p["prediction"] for p in predictions])
    assert np.allclose(served, expected, rtol=1e-6, atol=0)
    check_predictions(body, [], len(batch), "regression")  # what the deploy smoke test accepts
    for wrong in ({"prediction": "23.4"}, {"prediction": None}, {"label": "a"}):
        with pytest.raises(StageError, match="is not a finite number"):
            check_predictions({"predictions": [wrong]}, [], 1, "regression")


def test_a_regressors_prediction_log_holds_numbers_under_the_users_names(
    regressor: Served,
) -> None:
    batch = regressor.records[50:53]
    response = post_json(regressor.client, "/predict", {"records": batch})
    predictions = [p["prediction"] for p in response.json()["predictions"]]

    lines = regressor.logged(response.headers["x-request-id"], len(batch))

    assert [line["index"] for line in lines] == [0, 1, 2]
    for line, record, value in zip(lines, batch, predictions, strict=True):
        assert set(line) == PredictionRecord.__required_keys__
        assert line["features"] == record
        assert line["prediction"] == value and line["probabilities"] is None


@pytest.mark.parametrize("nested", [False, True])
def test_v2_inference_of_a_regressor_matches_predict(regressor: Served, nested: bool) -> None:
    batch = regressor.records[:9]
    request = v2_request(regressor.signature, batch, nested, outputs=("prediction",))
    conforms(regressor.openapi, "V2InferenceRequest", request)

    response = post_json(regressor.client, regressor.infer, request)

    assert response.status_code == 200, response.text
    body = response.json()
    conforms(regressor.openapi, "V2InferenceResponse", body)
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("prediction", "FP32", [9, 1])
    rest = post_json(regressor.client, "/predict", {"records": batch}).json()["predictions"]
    assert output["data"] == [p["prediction"] for p in rest]
    everything = {key: value for key, value in request.items() if key != "outputs"}
    assert post_json(regressor.client, regressor.infer, everything).json()["outputs"] == [output]


def test_a_regressor_describes_its_task_and_its_one_output(regressor: Served) -> None:
    name = regressor.signature["model_name"]
    metadata = regressor.client.get("/metadata").json()
    conforms(regressor.openapi, "Metadata", metadata)
    assert metadata["task"] == "regression" and metadata["signature"]["task"] == "regression"
    v2 = regressor.client.get(f"/v2/models/{name}").json()
    conforms(regressor.openapi, "V2ModelMetadata", v2)
    assert v2["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}]
    assert v2["parameters"] == {"task": "regression", "target": regressor.signature["target"]}
    assert [tensor["name"] for tensor in v2["inputs"]] == [
        feature["name"] for feature in regressor.signature["features"]
    ]
    schemas = regressor.openapi["components"]["schemas"]
    assert set(schemas["Record"]["properties"]) == {
        f["name"] for f in metadata["signature"]["features"]
    }
    assert schemas["Prediction"]["required"] == ["prediction"]


def test_a_regressor_refuses_what_it_cannot_score_naming_the_field(regressor: Served) -> None:
    record = regressor.records[0]
    by_input_name = {
        feature["input_name"]: record[feature["name"]]
        for feature in regressor.signature["features"]
    }
    renamed = post_json(regressor.client, "/predict", {"records": [by_input_name]})
    assert renamed.status_code == 422
    fields = {issue["field"] for issue in renamed.json()["details"]}
    assert "Monthly Charge ($)" in fields and "Monthly_Charge____" in fields
    wrong = {**record, "2nd.line calls/month": "three"}
    answer = post_json(regressor.client, "/predict", {"records": [wrong]})
    assert answer.status_code == 422
    assert answer.json()["details"][0]["field"] == "2nd.line calls/month"
    request = v2_request(regressor.signature, [record], outputs=("label",))
    refused = post_json(regressor.client, regressor.infer, request)
    assert refused.status_code == 400 and "naming ['prediction']" in refused.json()["error"]


def test_out_of_range_values_are_scored_with_a_warning_by_the_regressor(
    regressor: Served,
) -> None:
    number = next(f for f in regressor.signature["features"] if f["type"] == "number")
    odd = {**regressor.records[0], number["name"]: number["max"] * 10}
    response = post_json(regressor.client, "/predict", {"records": [odd]})
    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    assert math.isfinite(prediction["prediction"])
    assert [w["field"] for w in prediction["warnings"]] == [number["name"]]


# --- binary classification with a decision threshold ------------------------------------------


def test_a_binary_scorer_labels_by_its_decision_threshold_in_rest_v2_and_the_log(
    binary: Served,
) -> None:
    batch = binary.records
    response = post_json(binary.client, "/predict", {"records": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    conforms(binary.openapi, "PredictResponse", body)

    outputs = onnx_outputs(binary.package, binary.signature, batch)
    expected = apply_threshold(outputs["probabilities"], ["no", "yes"], "yes", 0.3).tolist()
    labels = [p["label"] for p in body["predictions"]]
    assert labels == expected
    assert labels != outputs["label"].tolist()  # the threshold, not the model's argmax
    v2 = post_json(binary.client, binary.infer, v2_request(binary.signature, batch[:20]))
    assert v2.json()["outputs"][0]["data"] == labels[:20]
    lines = binary.logged(response.headers["x-request-id"], len(batch))
    assert [line["prediction"] for line in lines] == labels
    assert lines[0]["probabilities"] == body["predictions"][0]["probabilities"]


def test_a_binary_scorer_shows_its_positive_class_and_threshold(binary: Served) -> None:
    v2 = binary.client.get(f"/v2/models/{binary.signature['model_name']}").json()
    conforms(binary.openapi, "V2ModelMetadata", v2)
    assert v2["parameters"] == {
        "task": "classification",
        "target": binary.signature["target"],
        "positive_class": "yes",
        "threshold": 0.3,
    }
    assert binary.client.get("/metadata").json()["task"] == "classification"
