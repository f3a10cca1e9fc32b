import json

import pytest

from mlops.monitor.feedback import (
    Feedback,
    FeedbackError,
    LabelledWindow,
    PredictionMemory,
    accuracy,
    assess_performance,
    join_feedback,
    macro_f1,
    parse_feedback_body,
    parse_feedback_line,
)
from mlops.monitor.reference import Reference
from mlops.monitor.window import LoggedPrediction

REFERENCE = Reference("toy", "1", (), {"a": 0.5, "b": 0.5}, accuracy=0.9, macro_f1=0.88)


def logged(request_id: str, index: int, prediction: str) -> LoggedPrediction:
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
    memory, labelled = PredictionMemory(capacity=10), LabelledWindow(size=10)
    for index, prediction in enumerate(["a", "b"]):
        memory.remember(logged("r1", index, prediction))
    feedback = [
        Feedback(request_id="r1", label="b", index=1),  # right
        Feedback(request_id="r1", label="b"),  # index 0 predicted a: wrong
        Feedback(request_id="r1", label="a", index=1),  # a second label: unmatched
        Feedback(request_id="unknown", label="a"),
    ]
    assert join_feedback(feedback, memory, labelled) == (2, 2)
    assert labelled.pairs() == [("b", "b"), ("b", "a")]


def test_the_memory_forgets_the_oldest_predictions_first() -> None:
    memory, labelled = PredictionMemory(capacity=2), LabelledWindow(size=10)
    for request_id in ("r1", "r2", "r3"):
        memory.remember(logged(request_id, 0, "a"))
    feedback = [Feedback(request_id=r, label="a") for r in ("r1", "r2", "r3")]
    assert join_feedback(feedback, memory, labelled) == (2, 1)


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
    assert not assess_performance(good, REFERENCE, 0.05, min_labelled=50).degraded
    assert assess_performance(bad, REFERENCE, 0.05, min_labelled=50).degraded
    assert not assess_performance(bad[:40], REFERENCE, 0.05, min_labelled=50).degraded
    empty = assess_performance([], REFERENCE, 0.05, min_labelled=50)
    assert (empty.labelled, empty.accuracy, empty.degraded) == (0, None, False)


def test_the_labelled_window_keeps_the_last_n() -> None:
    window = LabelledWindow(size=3)
    for number in range(5):
        window.add(str(number), "x")
    assert [truth for truth, _ in window.pairs()] == ["2", "3", "4"]
