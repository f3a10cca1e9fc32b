"""Ground truth arriving later, joined to the logged predictions: rolling accuracy and macro F1.

Feedback is ``{"request_id", "label", "index"}`` (``index`` defaults to 0: the first record of the
request) and is joined to the logged prediction with the same ``(request_id, index)``. The sidecar
remembers the most recent predictions only (``MONITOR_PREDICTION_MEMORY``); feedback for a
prediction it does not remember, or a second label for the same prediction, counts as unmatched.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.monitor.reference import Reference
from mlops.monitor.window import LoggedPrediction, load_json

MAX_FEEDBACK_PER_REQUEST = 10_000


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    request_id: str = Field(min_length=1, max_length=256)
    label: str = Field(min_length=1, max_length=1024)
    index: int = Field(0, ge=0)


class FeedbackError(ValueError):
    """Invalid feedback; ``problems`` lists ``{"field", "message"}`` for every offending field."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


def parse_feedback_body(body: bytes) -> list[Feedback]:
    """One feedback object or a list of them, as sent to ``POST /feedback``."""
    try:
        raw = load_json(body)
    except ValueError:
        raise FeedbackError([{"field": "body", "message": "not valid JSON"}]) from None
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_FEEDBACK_PER_REQUEST:
        message = f"at most {MAX_FEEDBACK_PER_REQUEST} items per request"
        raise FeedbackError([{"field": "body", "message": message}])
    feedback, problems = [], []
    for position, item in enumerate(items):
        where = f"[{position}]" if isinstance(raw, list) else ""
        try:
            feedback.append(Feedback.model_validate(item))
        except ValidationError as error:
            problems += [
                {"field": _field_name(where, detail["loc"]), "message": detail["msg"]}
                for detail in error.errors()
            ]
    if problems:
        raise FeedbackError(problems)
    return feedback


def _field_name(where: str, location: tuple[int | str, ...]) -> str:
    """``label``, ``[2].label``, or ``body`` / ``[2]`` when the item itself is not an object."""
    field = ".".join(map(str, location))
    if where and field:
        return f"{where}.{field}"
    return where or field or "body"


def parse_feedback_line(line: bytes) -> Feedback | None:
    """The feedback on one line of the feedback file, or None if the line is not valid feedback."""
    try:
        return Feedback.model_validate(load_json(line))
    except (ValueError, ValidationError):
        return None


class PredictionMemory:
    """The most recent predictions by ``(request_id, index)``, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._predictions: OrderedDict[tuple[str, int], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._predictions)

    def remember(self, record: LoggedPrediction) -> None:
        key = (record.request_id, record.index)
        self._predictions[key] = record.prediction
        self._predictions.move_to_end(key)
        while len(self._predictions) > self.capacity:
            self._predictions.popitem(last=False)

    def take(self, feedback: Feedback) -> str | None:
        """The prediction this feedback labels, once: a second label for it finds nothing."""
        return self._predictions.pop((feedback.request_id, feedback.index), None)


@dataclass(frozen=True)
class PerformanceReport:
    labelled: int
    accuracy: float | None
    macro_f1: float | None
    reference_accuracy: float | None
    reference_macro_f1: float | None
    degraded: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "labelled": self.labelled,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "reference_accuracy": self.reference_accuracy,
            "reference_macro_f1": self.reference_macro_f1,
            "degraded": self.degraded,
        }


class LabelledWindow:
    """The last ``size`` (true label, predicted label) pairs."""

    def __init__(self, size: int) -> None:
        self._pairs: deque[tuple[str, str]] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._pairs)

    def add(self, truth: str, predicted: str) -> None:
        self._pairs.append((truth, predicted))

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)


def accuracy(pairs: Sequence[tuple[str, str]]) -> float:
    return sum(truth == predicted for truth, predicted in pairs) / len(pairs)


def macro_f1(pairs: Sequence[tuple[str, str]]) -> float:
    """Mean F1 over the classes occurring as a true or a predicted label (as scikit-learn does)."""
    true_positives: Counter[str] = Counter()
    false_positives: Counter[str] = Counter()
    false_negatives: Counter[str] = Counter()
    for truth, predicted in pairs:
        if truth == predicted:
            true_positives[truth] += 1
        else:
            false_positives[predicted] += 1
            false_negatives[truth] += 1
    classes = {label for pair in pairs for label in pair}
    scores = [
        2 * true_positives[c] / (2 * true_positives[c] + false_positives[c] + false_negatives[c])
        for c in classes
    ]
    return sum(scores) / len(scores)


def assess_performance(
    pairs: Sequence[tuple[str, str]], reference: Reference, tolerance: float, min_labelled: int
) -> PerformanceReport:
    """Rolling accuracy and macro F1; degraded when either trails the validation value by more
    than ``tolerance``, once at least ``min_labelled`` predictions are labelled."""
    if not pairs:
        return PerformanceReport(0, None, None, reference.accuracy, reference.macro_f1, False)
    live_accuracy, live_f1 = accuracy(pairs), macro_f1(pairs)
    below = _below(live_accuracy, reference.accuracy, tolerance) or _below(
        live_f1, reference.macro_f1, tolerance
    )
    return PerformanceReport(
        labelled=len(pairs),
        accuracy=live_accuracy,
        macro_f1=live_f1,
        reference_accuracy=reference.accuracy,
        reference_macro_f1=reference.macro_f1,
        degraded=below and len(pairs) >= min_labelled,
    )


def _below(live: float, reference: float | None, tolerance: float) -> bool:
    return reference is not None and live < reference - tolerance


def join_feedback(
    feedback: Iterable[Feedback], memory: PredictionMemory, labelled: LabelledWindow
) -> tuple[int, int]:
    """Add each joinable feedback to the labelled window; ``(matched, unmatched)`` counts."""
    matched = unmatched = 0
    for item in feedback:
        predicted = memory.take(item)
        if predicted is None:
            unmatched += 1
        else:
            labelled.add(item.label, predicted)
            matched += 1
    return matched, unmatched
