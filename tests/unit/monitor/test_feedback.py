import json

import pytest

from mlops.monitor.feedback import (
    ClassFeedback,
    FeedbackError,
    LabelledWindow,
    LabelledWindows,
    PerformanceRules,
    PredictionMemory,
    ValueFeedback,
    accuracy,
    assess_performance,
    feedback_schema,
    join_feedback,
    macro_f1,
    mean_absolute_error,
    parse_feedback_body,
    parse_feedback_line,
    root_mean_squared_error,
)
from mlops.monitor.labels import LabelBuffer
from mlops.monitor.reference import Reference
from mlops.monitor.window import Label, LoggedPrediction, parse_prediction
from monitor_fixtures import REGRESSION_PERFORMANCE

REFERENCE = Reference(
    "toy", "1", (), {"a": 0.5, "b": 0.5}, validation={"accuracy": 0.9, "macro_f1": 0.88}
)
REGRESSOR = Reference("toy", "1", (), {}, validation={"mae": 2.0, "rmse": 2.5}, task="regression")
RULES = PerformanceRules(tolerance=0.05, rmse_tolerance=0.2, min_labelled=50)
Feedback = ClassFeedback


def logged(request_id: str, index: int, prediction: Label) -> LoggedPrediction:
    return LoggedPrediction(0.0, request_id, index, {}, prediction)


def test_a_single_object_or_a_list_is_accepted_and_index_defaults_to_zero() -> None:
    assert parse_feedback_body(b'{"request_id": "r1", "label": "a"}') == [
        Feedback(request_id="r1", label="a", index=0)
    ]
    body = json.dumps([{"request_id": "r1", "label": "a", "index": 2}] * 2).encode()
    assert [item.index for item in parse_feedback_body(body)] == [2, 2]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"label": "a"}', "request_id"),
        (b'{"request_id": "r1", "label": 3}', "label"),
        (b'{"request_id": "r1", "label": "a", "index": -1}', "index"),
        (b'{"request_id": "r1", "label": "a", "index": "2"}', "index"),
        (b'{"request_id": "r1", "lable": "a"}', "lable"),
        (b'[{"request_id": "r1", "label": "a"}, {"request_id": ""}]', "[1].request_id"),
        (b"[1]", "[0]"),
        (b"not json", "body"),
    ],
)
def test_invalid_feedback_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(FeedbackError) as raised:
        parse_feedback_body(body)
    assert field in [problem["field"] for problem in raised.value.problems]


def test_a_bad_feedback_line_is_none_not_an_error() -> None:
    assert parse_feedback_line(b'{"request_id": "r1"}') is None
    assert parse_feedback_line(b"{") is None
    assert parse_feedback_line(b'{"request_id": "r1", "label": "b"}') == Feedback(
        request_id="r1", label="b"
    )


def test_feedback_joins_on_request_id_and_index_once() -> None:
    memory, labelled, waiting = PredictionMemory(10), LabelledWindows(10), LabelBuffer(10, 60)
    for index, prediction in enumerate(["a", "b"]):
        memory.remember(logged("r1", index, prediction))
    feedback = [
        Feedback(request_id="r1", label="b", index=1),  # right
        Feedback(request_id="r1", label="b"),  # index 0 predicted a: wrong
        Feedback(request_id="r1", label="a", index=1),  # a second label: waits, then expires
        Feedback(request_id="unknown", label="a"),  # waits for its prediction
    ]
    outcomes = join_feedback(feedback, memory, labelled, waiting, now=0.0)
    assert (outcomes["matched"], outcomes["pending"]) == (2, 2)
    assert labelled.answered.pairs() == [("b", "b"), ("b", "a")]
    assert len(waiting) == 2


def test_the_memory_forgets_the_oldest_predictions_first() -> None:
    memory, labelled, waiting = PredictionMemory(2), LabelledWindows(10), LabelBuffer(10, 60)
    for request_id in ("r1", "r2", "r3"):
        memory.remember(logged(request_id, 0, "a"))
    feedback = [Feedback(request_id=r, label="a") for r in ("r1", "r2", "r3")]
    outcomes = join_feedback(feedback, memory, labelled, waiting, now=0.0)
    assert (outcomes["matched"], outcomes["pending"]) == (2, 1)


def test_accuracy_and_macro_f1_match_a_hand_computed_example() -> None:
    truth = ["a", "a", "a", "b", "b", "c", "c"]
    predicted = ["a", "a", "b", "b", "c", "c", "d"]  # d: predicted only, F1 0 (as scikit-learn)
    pairs = list(zip(truth, predicted, strict=True))
    # F1 = 2TP / (2TP + FP + FN): a 4/5, b 2/4, c 2/4, d 0
    assert accuracy(pairs) == pytest.approx(4 / 7)
    assert macro_f1(pairs) == pytest.approx((0.8 + 0.5 + 0.5 + 0.0) / 4)


def test_performance_degrades_only_with_enough_labels_below_the_tolerance() -> None:
    good = [("a", "a")] * 48 + [("b", "b")] * 47 + [("a", "b")] * 3 + [("b", "a")] * 2
    bad = [("a", "a")] * 35 + [("b", "b")] * 35 + [("a", "b")] * 15 + [("b", "a")] * 15
    assert not assess_performance(good, REFERENCE, RULES).degraded
    assert assess_performance(bad, REFERENCE, RULES).degraded
    assert not assess_performance(bad[:40], REFERENCE, RULES).degraded
    empty = assess_performance([], REFERENCE, RULES)
    assert (empty.labelled, empty.live["accuracy"], empty.degraded) == (0, None, False)
    assert empty.as_json() == {
        "labelled": 0,
        "accuracy": None,
        "macro_f1": None,
        "reference_accuracy": 0.9,
        "reference_macro_f1": 0.88,
        "degraded": False,
    }


def test_the_labelled_window_keeps_the_last_n() -> None:
    window = LabelledWindow(size=3)
    for number in range(5):
        window.add(str(number), "x")
    assert [truth for truth, _ in window.pairs()] == ["2", "3", "4"]


# -- a regressor: the label is the true value, a JSON number ---------------------------------


def test_a_regressors_feedback_is_a_json_number() -> None:
    body = b'[{"request_id": "r1", "label": 3}, {"request_id": "r1", "index": 1, "label": -0.25}]'
    parsed = parse_feedback_body(body, "regression")
    assert parsed == [
        ValueFeedback(request_id="r1", label=3.0),
        ValueFeedback(request_id="r1", index=1, label=-0.25),
    ]
    assert isinstance(parsed[0].label, float)
    line = b'{"request_id": "r2", "label": 12.5}'
    assert parse_feedback_line(line, "regression") == ValueFeedback(request_id="r2", label=12.5)


@pytest.mark.parametrize(
    "label", [b'"3.5"', b"true", b"null", b"NaN", b"Infinity", b'{"value": 3}', b"[3]"]
)
def test_a_regressors_label_that_is_not_a_finite_number_is_refused_naming_it(label: bytes) -> None:
    with pytest.raises(FeedbackError) as raised:
        parse_feedback_body(b'{"request_id": "r1", "label": ' + label + b"}", "regression")
    (problem,) = raised.value.problems
    assert problem["field"] == "label"
    if label in (b'"3.5"', b"true", b"null"):
        assert (
            "the model is a regressor: label is the true value, a JSON number" in problem["message"]
        )
    assert (
        parse_feedback_line(b'{"request_id": "r1", "label": ' + label + b"}", "regression") is None
    )


def test_a_classifiers_label_that_is_a_number_is_refused_naming_it() -> None:
    with pytest.raises(FeedbackError) as raised:
        parse_feedback_body(
            b'[{"request_id": "r1", "label": "a"}, {"request_id": "r1", "label": 1}]'
        )
    (problem,) = raised.value.problems
    assert problem["field"] == "[1].label"
    assert "the model is a classifier: label is the true class, a string" in problem["message"]


def test_the_feedback_schema_follows_the_task() -> None:
    def label_type(task: str) -> str:
        schema = feedback_schema(task)  # type: ignore[arg-type]
        item = schema["oneOf"][0]
        assert schema["oneOf"][1] == {"type": "array", "items": item}
        return str(item["properties"]["label"]["type"])

    assert (label_type("classification"), label_type("regression")) == ("string", "number")


def test_a_regressors_log_line_holds_a_number_and_a_class_is_not_a_valid_record() -> None:
    line = b'{"ts": "2027-01-01T00:00:00Z", "request_id": "r", "features": {}, "prediction": %s}'
    assert parse_prediction(line % b"7", "regression").prediction == 7.0  # type: ignore[union-attr]
    assert parse_prediction(line % b'"7"', "regression") is None
    assert parse_prediction(line % b"NaN", "regression") is None
    assert parse_prediction(line % b"true", "regression") is None
    assert parse_prediction(line % b"7", "classification") is None
    assert parse_prediction(line % b'"7"', "classification").prediction == "7"  # type: ignore[union-attr]


def test_mae_and_rmse_match_a_hand_computed_example() -> None:
    pairs: list[tuple[Label, Label]] = [(10.0, 12.0), (5.0, 4.0), (0.0, 0.0), (-3.0, 1.0)]
    # errors -2, 1, 0, -4: MAE 7/4, RMSE sqrt(21/4)
    assert mean_absolute_error(pairs) == pytest.approx(1.75)
    assert root_mean_squared_error(pairs) == pytest.approx((21 / 4) ** 0.5)


def test_a_regressor_degrades_when_rmse_exceeds_validation_by_the_tolerance() -> None:
    # validation RMSE 2.5, tolerance 0.2: degraded above 3.0
    within = [(float(n), n + 2.9) for n in range(60)]  # RMSE 2.9
    above = [(float(n), n - 3.1) for n in range(60)]  # RMSE 3.1 (in either direction)
    report = assess_performance(within, REGRESSOR, RULES)
    assert report.live == {"mae": pytest.approx(2.9), "rmse": pytest.approx(2.9)}
    assert not report.degraded
    assert assess_performance(above, REGRESSOR, RULES).degraded
    assert not assess_performance(above[:49], REGRESSOR, RULES).degraded  # too few labels yet
    assert set(assess_performance(above, REGRESSOR, RULES).as_json()) == REGRESSION_PERFORMANCE
    # a package without a validation RMSE is never degraded: nothing to compare with
    unknown = Reference("toy", "1", (), {}, validation={}, task="regression")
    report = assess_performance(above, unknown, RULES)
    assert not report.degraded and report.as_json()["reference_rmse"] is None


def test_a_regressors_feedback_joins_its_numeric_prediction() -> None:
    memory, labelled, waiting = PredictionMemory(10), LabelledWindows(10), LabelBuffer(10, 60)
    memory.remember(logged("r1", 0, 4.5))
    feedback = [
        ValueFeedback(request_id="r1", label=5.0),
        ValueFeedback(request_id="r1", label=5.0),
    ]
    outcomes = join_feedback(feedback, memory, labelled, waiting, now=0.0)
    assert (outcomes["matched"], outcomes["pending"]) == (1, 1)
    assert labelled.answered.pairs() == [(5.0, 4.5)]
