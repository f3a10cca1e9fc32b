"""Every model family in params.yaml converts to ONNX that reproduces scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from mlops import artifacts
from mlops.model import onnx_export, package
from mlops.model.features import MODEL_NAMES, model_input
from mlops.params import PackageParams, TrainParams, load_section
from model_fixtures import penguins, split, trained

PARAMS = PROJECT_ROOT / "params.yaml"
FAMILIES = sorted(load_section(PARAMS, "train", TrainParams).search_spaces)
TOLERANCE = load_section(PARAMS, "package", PackageParams).parity_tolerance


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return split(penguins())


def test_params_offer_every_model_family() -> None:
    assert set(FAMILIES) == set(MODEL_NAMES)


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_reproduces_sklearn_for_every_family(
    family: str, data: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = data
    model = trained(train, family)
    onnx_model = package.export_onnx(model, PackageParams(), {"model_version": "test"})

    report = package.check_parity(model, onnx_model, test, TOLERANCE)

    assert report["passed"], onnx_export.parity_failure(report)
    assert report["rows"] == len(test)
    assert report["label_mismatches"] == 0
    assert report["max_abs_diff"] <= TOLERANCE


def test_onnx_has_one_typed_input_per_feature_and_the_contract_outputs(
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = data
    model = trained(train, "random_forest")
    session = onnx_export.open_session(package.export_onnx(model, PackageParams(), {}))

    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert list(inputs) == list(model.spec.features)
    for name in model.spec.numeric:
        assert inputs[name] == ("tensor(float)", [None, 1])
    for name in model.spec.categorical:
        assert inputs[name] == ("tensor(string)", [None, 1])
    outputs = {o.name: o.type for o in session.get_outputs()}
    assert outputs == {
        artifacts.LABEL_OUTPUT: "tensor(string)",
        artifacts.PROBABILITIES_OUTPUT: "tensor(float)",
    }
    labels, probabilities = onnx_export.score(session, onnx_export.onnx_feed(test, model.spec))
    assert probabilities.shape == (len(test), len(model.classes))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert set(labels) <= set(model.classes)


def test_missing_values_are_fed_as_nan_and_the_missing_category(
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, _ = data
    model = trained(train, "hist_gradient_boosting")
    row = pd.DataFrame([{name: None for name in model.spec.features}])

    feed = onnx_export.onnx_feed(row, model.spec)

    assert all(np.isnan(feed[name][0, 0]) for name in model.spec.numeric)
    assert all(feed[name][0, 0] == artifacts.MISSING_CATEGORY for name in model.spec.categorical)
    onnx_model = package.export_onnx(model, PackageParams(), {})
    assert package.check_parity(model, onnx_model, row, TOLERANCE)["passed"]


def test_a_model_that_disagrees_with_sklearn_fails_parity_with_the_worst_rows(
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = data
    model = trained(train, "logistic_regression")
    shuffled = pd.Series(np.random.default_rng(0).permutation(train["species"]), index=train.index)
    other = package.export_onnx(
        trained(train, "logistic_regression", shuffled), PackageParams(), {}
    )

    report = package.check_parity(model, other, test, TOLERANCE)

    assert not report["passed"]
    assert report["label_mismatches"] > 0
    assert report["max_abs_diff"] > TOLERANCE
    worst = report["worst_rows"]
    assert 0 < len(worst) <= onnx_export.WORST_ROWS
    assert worst[0]["sklearn"]["label"] != worst[0]["onnx"]["label"]
    assert set(worst[0]["features"]) == set(model.spec.features)
    assert worst[0]["row"] in set(test.index)
    message = onnx_export.parity_failure(report)
    assert f"{report['label_mismatches']} label mismatch(es)" in message
    assert f"row {worst[0]['row']}:" in message


def test_a_zero_tolerance_fails_on_float32_rounding(
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = data
    model = trained(train, "logistic_regression")
    onnx_model = package.export_onnx(model, PackageParams(), {})

    report = package.check_parity(model, onnx_model, test, 0.0)

    assert report["label_mismatches"] == 0
    assert 0 < report["max_abs_diff"] < TOLERANCE
    assert not report["passed"]


@pytest.mark.parametrize("family", ["random_forest", "gradient_boosting", "hist_gradient_boosting"])
def test_a_value_on_a_split_midpoint_takes_the_same_branch_as_in_sklearn(family: str) -> None:
    # Trained on 45.8 and 46.0 only, every tree splits at their midpoint: 45.89999961853027 as a
    # double, which float32 rounds up to 45.900001525878906, the float32 value of 45.9 itself.
    train = pd.DataFrame({"x": [45.8, 46.0] * 30, "species": ["low", "high"] * 30})
    model = trained(train, family)
    midpoint = pd.DataFrame({"x": [45.9, 45.8, 46.0]})
    onnx_model = package.export_onnx(model, PackageParams(), {})

    report = package.check_parity(model, onnx_model, midpoint, TOLERANCE)

    assert list(model.pipeline.predict(midpoint)) == ["high", "low", "high"]
    assert report["passed"], onnx_export.parity_failure(report)


def test_float32_thresholds_leave_sklearn_predictions_unchanged(
    data: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = data
    model = trained(train, "hist_gradient_boosting")
    features = model_input(test, model.spec)

    snapped = onnx_export.with_float32_thresholds(model.pipeline)

    assert snapped is not model.pipeline
    assert np.array_equal(snapped.predict_proba(features), model.pipeline.predict_proba(features))
