"""Every model family of either task converts to ONNX that reproduces scikit-learn, under the
user's column names (the graph's inputs named by ``artifacts.input_names``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from mlops.core import artifacts
from mlops.core.decision import DecisionError, apply_threshold
from mlops.model import onnx_export, package
from mlops.model import parity as parity_gate
from mlops.model.features import MODEL_NAMES, TrainedModel, model_input
from mlops.params import PackageParams, TrainParams, load_section
from mlops.stage import StageError
from model_fixtures import (
    BINARY_TARGET,
    POSITIVE,
    REGRESSION_TARGET,
    binary_table,
    penguins,
    regression_table,
    split,
    trained_on,
)

PARAMS = PROJECT_ROOT / "params.yaml"
SEARCH_SPACES = load_section(PARAMS, "train", TrainParams).search_spaces
TOLERANCE = load_section(PARAMS, "package", PackageParams).parity_tolerance


def onnx_bytes(model: TrainedModel) -> bytes:
    return package.serialized(package.export_onnx(model, PackageParams()))


def parity(
    model: TrainedModel,
    onnx_model: bytes,
    test: pd.DataFrame,
    train: pd.DataFrame,
    tolerance: float = TOLERANCE,
    threshold: float | None = None,
) -> dict[str, Any]:
    return parity_gate.check_parity(model, onnx_model, test, train, tolerance, threshold)


@pytest.fixture(scope="module")
def species() -> tuple[pd.DataFrame, pd.DataFrame]:
    return split(penguins())


@pytest.fixture(scope="module")
def spending() -> tuple[pd.DataFrame, pd.DataFrame]:
    return split(regression_table(), target=REGRESSION_TARGET)


def fitted(frame: pd.DataFrame, target: str, family: str = "random_forest") -> TrainedModel:
    return trained_on(frame, target, family)


def test_params_offer_every_model_family_for_both_tasks() -> None:
    assert set(SEARCH_SPACES) == {"classification", "regression"}
    for families in SEARCH_SPACES.values():
        assert set(families) == set(MODEL_NAMES)


@pytest.mark.parametrize("family", MODEL_NAMES)
def test_onnx_reproduces_sklearn_for_every_classifier_family(
    family: str, species: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = species
    model = fitted(train, "species", family)

    report = parity(model, onnx_bytes(model), test, train)

    assert report["passed"], parity_gate.parity_failure(report)
    assert report["rows"] == len(test)
    assert report["label_mismatches"] == 0
    assert report["max_abs_diff"] <= TOLERANCE


@pytest.mark.parametrize("family", MODEL_NAMES)
def test_onnx_reproduces_sklearn_for_every_regressor_family(
    family: str, spending: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = spending
    model = fitted(train, REGRESSION_TARGET, family)

    report = parity(model, onnx_bytes(model), test, train)

    assert report["passed"], parity_gate.parity_failure(report)
    assert report["task"] == "regression" and report["rows"] == len(test)
    scale = float(train[REGRESSION_TARGET].std(ddof=0))
    assert report["scale"] == pytest.approx(scale)
    assert report["max_relative_diff"] == pytest.approx(report["max_abs_diff"] / scale)
    assert 0 <= report["max_relative_diff"] <= TOLERANCE


def test_inputs_are_named_for_onnx_and_fed_by_those_names(
    spending: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = spending
    model = fitted(train, REGRESSION_TARGET)
    session = onnx_export.open_session(onnx_bytes(model))

    names = artifacts.input_names(model.spec.features)
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    assert [name for name, _, _ in inputs] == list(names.values())
    assert names["Monthly Charge ($)"] == "Monthly_Charge____"
    assert names["support calls (#)"] == "support_calls____"
    assert names["Größe"] == "Größe" and names["plan/type"] == "plan_type"
    for column, (_, kind, shape) in zip(model.spec.features, inputs, strict=True):
        assert kind == ("tensor(float)" if column in model.spec.numeric else "tensor(string)")
        assert shape == [None, 1]
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [
        (artifacts.PREDICTION_OUTPUT, "tensor(float)", [None, 1])
    ]
    feed = onnx_export.onnx_feed(test, model.spec)
    assert list(feed) == list(names.values())
    predictions = onnx_export.score_regressor(session, feed)
    assert predictions.shape == (len(test),) and predictions.dtype == np.float64


def test_features_named_like_the_outputs_or_internal_values_convert() -> None:
    # "label" and "prediction" are output names, "variable" a name skl2onnx uses inside graphs.
    renamed = {
        "Monthly Charge ($)": "label",
        "Größe": "prediction",
        "support calls (#)": "variable",
    }
    for table, target in ((regression_table(), REGRESSION_TARGET), (binary_table(), BINARY_TARGET)):
        train, test = split(table.rename(columns=renamed), target=target)
        model = fitted(train, target)
        converted = package.export_onnx(model, PackageParams())
        onnx.checker.check_model(converted, full_check=True)
        inputs = [value.name for value in converted.graph.input]
        assert inputs[:3] == ["label_", "prediction_", "plan_type"], inputs
        report = parity(model, package.serialized(converted), test, train)
        assert report["passed"], parity_gate.parity_failure(report)


def test_classifier_outputs_are_labels_and_probabilities_in_class_order(
    species: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = species
    model = fitted(train, "species")
    session = onnx_export.open_session(onnx_bytes(model))

    outputs = {o.name: o.type for o in session.get_outputs()}
    assert outputs == {
        artifacts.LABEL_OUTPUT: "tensor(string)",
        artifacts.PROBABILITIES_OUTPUT: "tensor(float)",
    }
    feed = onnx_export.onnx_feed(test, model.spec)
    labels, probabilities = onnx_export.score_classifier(session, feed)
    assert probabilities.shape == (len(test), len(model.classes))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert list(labels) == [model.classes[i] for i in probabilities.argmax(axis=1)]


def test_missing_values_are_fed_as_nan_and_the_missing_category(
    spending: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, _ = spending
    model = fitted(train, REGRESSION_TARGET, "hist_gradient_boosting")
    row = pd.DataFrame([{name: None for name in model.spec.features}])
    names = artifacts.input_names(model.spec.features)

    feed = onnx_export.onnx_feed(row, model.spec)

    assert all(np.isnan(feed[names[name]][0, 0]) for name in model.spec.numeric)
    missing = artifacts.MISSING_CATEGORY
    assert all(feed[names[name]][0, 0] == missing for name in model.spec.categorical)
    assert parity(model, onnx_bytes(model), row, train)["passed"]


def test_a_classifier_that_disagrees_with_sklearn_fails_parity_with_the_worst_rows(
    species: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = species
    model = fitted(train, "species", "linear")
    shuffled = train.assign(species=np.random.default_rng(0).permutation(train["species"]))
    other = onnx_bytes(fitted(shuffled, "species", "linear"))

    report = parity(model, other, test, train)

    assert not report["passed"]
    assert report["label_mismatches"] > 0
    assert report["max_abs_diff"] > TOLERANCE
    worst = report["worst_rows"]
    assert 0 < len(worst) <= parity_gate.WORST_ROWS
    assert worst[0]["sklearn"]["label"] != worst[0]["onnx"]["label"]
    assert set(worst[0]["features"]) == set(model.spec.features)
    assert worst[0]["row"] in set(test.index)
    message = parity_gate.parity_failure(report)
    assert f"{report['label_mismatches']} label mismatch(es)" in message
    assert f"row {worst[0]['row']}:" in message


def test_a_regressor_that_disagrees_with_sklearn_fails_parity_with_the_worst_rows(
    spending: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = spending
    model = fitted(train, REGRESSION_TARGET)
    shuffled = np.random.default_rng(0).permutation(train[REGRESSION_TARGET])
    other = onnx_bytes(fitted(train.assign(**{REGRESSION_TARGET: shuffled}), REGRESSION_TARGET))

    report = parity(model, other, test, train)

    assert not report["passed"]
    assert report["max_relative_diff"] > TOLERANCE
    worst = report["worst_rows"]
    assert len(worst) == parity_gate.WORST_ROWS
    differences = [row["abs_diff"] for row in worst]
    assert differences == sorted(differences, reverse=True)
    assert differences[0] == pytest.approx(report["max_abs_diff"])
    first = worst[0]
    assert first["abs_diff"] == pytest.approx(
        abs(first["sklearn"]["prediction"] - first["onnx"]["prediction"])
    )
    assert set(first["features"]) == set(model.spec.features)
    message = parity_gate.parity_failure(report)
    assert "of the training target's standard deviation" in message
    assert f"row {first['row']}: sklearn {first['sklearn']['prediction']}" in message


def test_regression_parity_is_judged_relative_to_the_target_scale(
    spending: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    # The same target in euros and in micro-euros: float32 rounds both alike, relative to the
    # target's spread, so the gate passes in either unit.
    train, test = spending
    for factor in (1.0, 1_000_000.0):
        scaled = train.assign(**{REGRESSION_TARGET: train[REGRESSION_TARGET] * factor})
        model = fitted(scaled, REGRESSION_TARGET, "gradient_boosting")
        report = parity(model, onnx_bytes(model), test, scaled)
        assert report["passed"], parity_gate.parity_failure(report)
    assert parity_gate.target_scale(pd.Series([5.0, 5.0, 5.0])) == 5.0  # constant: magnitude
    assert parity_gate.target_scale(pd.Series([0.0, 0.0])) == 1.0


def test_a_zero_tolerance_fails_on_float32_rounding(
    species: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = species
    model = fitted(train, "species", "linear")

    report = parity(model, onnx_bytes(model), test, train, tolerance=0.0)

    assert report["label_mismatches"] == 0
    assert 0 < report["max_abs_diff"] < TOLERANCE
    assert not report["passed"]


def test_the_decision_threshold_labels_both_sides_of_the_parity_gate() -> None:
    train, test = split(binary_table(), target=BINARY_TARGET)
    model = trained_on(train, BINARY_TARGET, positive_class=POSITIVE)
    onnx_model = onnx_bytes(model)
    session = onnx_export.open_session(onnx_model)
    feed = onnx_export.onnx_feed(test, model.spec)

    plain, probabilities = onnx_export.score_classifier(session, feed)
    low, _ = onnx_export.score_classifier(session, feed, model.classes, "yes", 0.2)

    positive = probabilities[:, model.classes.index("yes")]
    expected = np.where(positive.astype(np.float32) >= np.float32(0.2), "yes", "no")
    assert list(low) == list(expected)
    assert (low == "yes").sum() > (plain == "yes").sum()  # a lower threshold: more positives
    report = parity(model, onnx_model, test, train, threshold=0.2)
    assert report["passed"] and report["threshold"] == 0.2
    # scikit-learn's own labels against thresholded ONNX labels: the gate sees the difference
    mismatched = parity_gate.parity_report(
        test[list(model.spec.features)],
        model.classes,
        (plain, probabilities),
        (low, probabilities),
        TOLERANCE,
        0.2,
    )
    assert mismatched["label_mismatches"] == int((plain != low).sum()) > 0
    assert not mismatched["passed"]


def test_apply_threshold_compares_in_float32_and_refuses_what_is_not_binary() -> None:
    probabilities = np.array([[0.7, 0.3], [0.69999999, 0.30000001], [0.8, 0.2]])
    labels = apply_threshold(probabilities, ("no", "yes"), "yes", 0.3)
    assert labels.tolist() == ["yes", "yes", "no"]
    assert apply_threshold(probabilities, ("yes", "no"), "yes", 0.75).tolist() == [
        "no",
        "no",
        "yes",
    ]
    with pytest.raises(DecisionError, match="exactly two classes"):
        apply_threshold(np.ones((1, 3)) / 3, ("a", "b", "c"), "a", 0.5)
    with pytest.raises(DecisionError, match="'maybe' is not one of the classes"):
        apply_threshold(probabilities, ("no", "yes"), "maybe", 0.5)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("family", ["random_forest", "gradient_boosting", "hist_gradient_boosting"])
def test_a_value_on_a_split_midpoint_takes_the_same_branch_as_in_sklearn(
    family: str, task: str
) -> None:
    # Trained on 45.8 and 46.0 only, every tree splits at their midpoint: 45.89999961853027 as a
    # double, which float32 rounds up to 45.900001525878906, the float32 value of 45.9 itself.
    target = ["low", "high"] * 30 if task == "classification" else [1.0, 100.0] * 30
    train = pd.DataFrame({"x": [45.8, 46.0] * 30, "y": target})
    model = fitted(train, "y", family)
    midpoint = pd.DataFrame({"x": [45.9, 45.8, 46.0]})

    report = parity(model, onnx_bytes(model), midpoint, train)

    assert report["passed"], parity_gate.parity_failure(report)
    if task == "classification":
        assert list(model.pipeline.predict(midpoint)) == ["high", "low", "high"]


def test_float32_thresholds_leave_sklearn_predictions_unchanged(
    spending: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = spending
    model = fitted(train, REGRESSION_TARGET, "hist_gradient_boosting")
    features = model_input(test, model.spec)

    snapped = onnx_export.with_float32_thresholds(model.pipeline)

    assert snapped is not model.pipeline
    assert np.array_equal(snapped.predict(features), model.pipeline.predict(features))


def test_renaming_moves_a_clashing_inner_value_out_of_the_way() -> None:
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    final = onnx.helper.make_node("Identity", ["y"], ["z"])
    graph = onnx.helper.make_graph(
        [node, final],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 1])],
        [onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [None, 1])],
    )

    onnx_export.rename_values(graph, {"x": "y", "z": "out"})

    assert [value.name for value in graph.input] == ["y"]
    assert [(list(n.input), list(n.output)) for n in graph.node] == [
        (["y"], ["y_1"]),
        (["y_1"], ["out"]),
    ]
    onnx.checker.check_model(onnx.helper.make_model(graph), full_check=True)


def test_two_columns_one_onnx_name_stop_the_export_naming_both() -> None:
    train, _ = split(regression_table(), target=REGRESSION_TARGET)
    clashing = train.assign(**{"Monthly Charge [$]": train["Monthly Charge ($)"] * 2})
    model = fitted(clashing, REGRESSION_TARGET)

    with pytest.raises(StageError) as caught:
        package.export_onnx(model, PackageParams())

    assert str(caught.value) == (
        "the model's features cannot be ONNX inputs: columns 'Monthly Charge ($)' and "
        "'Monthly Charge [$]' both become the model input name 'Monthly_Charge____' (characters "
        "other than letters, digits and _ become _); rename one of them at the source or drop "
        "one (data.drop_columns)"
    )
