"""Ground truth arriving later, joined to the logged predictions: rolling performance.

Feedback is ``{"request_id", "label", "index"}`` (``index`` defaults to 0: the first record of the
request) and is joined to the logged predictions with the same ``(request_id, index)``: the
answered one (the service's performance) and, with a challenger, each role's (a shadow copy
shares its request's key), for the rollout comparison. ``label`` is
the true class (a string) for a classifier and the true value (a JSON number) for a regressor. The
sidecar remembers the most recent predictions only (``MONITOR_PREDICTION_MEMORY``); a label for a
prediction it does not remember waits for it in a ``mlops.monitor.labels.LabelBuffer`` (it may
not have been read yet) until it is read or the label expires.

Performance over the last labelled predictions: accuracy and macro F1 for a classifier, MAE and
RMSE for a regressor, each compared with the packaged model's validation value.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.core.artifacts import ROLES, Role, Task
from mlops.monitor.labels import LabelBuffer
from mlops.monitor.reference import PERFORMANCE_METRICS, Reference
from mlops.monitor.window import Label, LoggedPrediction, load_json

MAX_FEEDBACK_PER_REQUEST = 10_000
Pair = tuple[Label, Label]  # (true label, predicted label)


class _Joined(BaseModel):
    """What joins a label to its prediction."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    request_id: str = Field(min_length=1, max_length=256)
    index: int = Field(0, ge=0)


class ClassFeedback(_Joined):
    """A classifier's ground truth: the true class."""

    label: str = Field(min_length=1, max_length=1024)


class ValueFeedback(_Joined):
    """A regressor's ground truth: the true value, a JSON number (not a string)."""

    label: float = Field(allow_inf_nan=False)


Feedback = ClassFeedback | ValueFeedback
FEEDBACK_MODELS: dict[Task, type[ClassFeedback] | type[ValueFeedback]] = {
    "classification": ClassFeedback,
    "regression": ValueFeedback,
}
LABEL_EXPECTED: dict[Task, str] = {
    "classification": "the model is a classifier: label is the true class, a string",
    "regression": "the model is a regressor: label is the true value, a JSON number",
}


class FeedbackError(ValueError):
    """Invalid feedback; ``problems`` lists ``{"field", "message"}`` for every offending field."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


def parse_feedback_body(body: bytes, task: Task = "classification") -> list[Feedback]:
    """One feedback object or a list of them, as sent to ``POST /feedback``."""
    try:
        raw = load_json(body)
    except ValueError:
        raise FeedbackError([{"field": "body", "message": "not valid JSON"}]) from None
    items = raw if isinstance(raw, list) else [raw]
    if len(items) > MAX_FEEDBACK_PER_REQUEST:
        message = f"at most {MAX_FEEDBACK_PER_REQUEST} items per request"
        raise FeedbackError([{"field": "body", "message": message}])
    model = FEEDBACK_MODELS[task]
    feedback: list[Feedback] = []
    problems = []
    for position, item in enumerate(items):
        where = f"[{position}]" if isinstance(raw, list) else ""
        try:
            feedback.append(model.model_validate(item))
        except ValidationError as error:
            problems += [
                {"field": _field_name(where, detail["loc"]), "message": _message(detail, task)}
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


def _message(detail: Any, task: Task) -> str:
    """pydantic's message; for a label of the wrong type, also what this model expects."""
    message = str(detail["msg"])
    if tuple(detail["loc"]) == ("label",) and detail["type"] in ("string_type", "float_type"):
        return f"{message}: {LABEL_EXPECTED[task]}"
    return message


def parse_feedback_line(line: bytes, task: Task = "classification") -> Feedback | None:
    """The feedback on one line of the feedback file, or None if the line is not valid feedback."""
    try:
        return FEEDBACK_MODELS[task].model_validate(load_json(line))
    except (ValueError, ValidationError):
        return None


def feedback_schema(task: Task) -> dict[str, Any]:
    """The JSON schema of ``POST /feedback``'s body for a model of ``task``."""
    item = FEEDBACK_MODELS[task].model_json_schema()
    return {"oneOf": [item, {"type": "array", "items": item}]}


@dataclass
class Remembered:
    """What is known of one ``(request_id, index)``: the prediction the client got, every role's
    (a shadow copy shares the answered line's key), and its label once it arrived."""

    answered: Label | None = None
    by_role: dict[Role, Label] = field(default_factory=dict)
    label: Label | None = None


class PredictionMemory:
    """The most recent predictions by ``(request_id, index)``, oldest forgotten first. A labelled
    one stays until forgotten: a shadow line written after its label arrived still joins it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._predictions: OrderedDict[tuple[str, int], Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._predictions)

    def remember(self, record: LoggedPrediction) -> Remembered:
        key = (record.request_id, record.index)
        entry = self._predictions.get(key) or Remembered()
        entry.by_role[record.role] = record.prediction
        if record.answered:
            entry.answered = record.prediction
        self._predictions[key] = entry
        self._predictions.move_to_end(key)
        while len(self._predictions) > self.capacity:
            self._predictions.popitem(last=False)
        return entry

    def unlabelled(self, feedback: Feedback) -> Remembered | None:
        """The predictions this feedback labels, once: a second label for them finds nothing."""
        entry = self._predictions.get((feedback.request_id, feedback.index))
        return entry if entry is not None and entry.label is None else None


class LabelledWindow:
    """The last ``size`` (true label, predicted label) pairs."""

    def __init__(self, size: int) -> None:
        self._pairs: deque[Pair] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._pairs)

    def add(self, truth: Label, predicted: Label) -> None:
        self._pairs.append((truth, predicted))

    def pairs(self) -> list[Pair]:
        return list(self._pairs)


class LabelledWindows:
    """The labelled pairs of the answered predictions (the service's performance: what clients
    got, from either role in a canary) and of each role's (shadow copies included)."""

    def __init__(self, size: int) -> None:
        self.answered = LabelledWindow(size)
        self.by_role = {role: LabelledWindow(size) for role in ROLES}

    def add(self, truth: Label, entry: Remembered, record: LoggedPrediction | None = None) -> None:
        """The pairs of ``entry`` just labelled, or (``record``) of one line read after it was."""
        if record is not None:
            if record.answered:
                self.answered.add(truth, record.prediction)
            self.by_role[record.role].add(truth, record.prediction)
            return
        if entry.answered is not None:
            self.answered.add(truth, entry.answered)
        for role, predicted in entry.by_role.items():
            self.by_role[role].add(truth, predicted)

    def role_pairs(self) -> dict[Role, list[Pair]]:
        return {role: window.pairs() for role, window in self.by_role.items()}


def join_feedback(
    feedback: Iterable[Feedback],
    memory: PredictionMemory,
    labelled: LabelledWindows,
    waiting: LabelBuffer,
    now: float,
) -> Counter[str]:
    """Add each label whose prediction is remembered to the labelled windows (``matched``); the
    others wait for their prediction (``pending``; ``duplicate``, ``dropped``: labels they
    replaced or pushed out of the buffer)."""
    outcomes: Counter[str] = Counter()
    for item in feedback:
        entry = memory.unlabelled(item)
        if entry is None:
            outcomes.update(waiting.hold(item, now))
        else:
            entry.label = item.label
            labelled.add(item.label, entry)
            outcomes["matched"] += 1
    return outcomes


def remember_predictions(
    records: Iterable[LoggedPrediction],
    memory: PredictionMemory,
    labelled: LabelledWindows,
    waiting: LabelBuffer,
) -> int:
    """Predictions just read: one whose label arrived first is labelled now, the others are
    remembered for their label (a line of a prediction labelled already joins that label). How
    many labels were matched."""
    matched = 0
    for record in records:
        entry = memory.remember(record)
        if entry.label is not None:
            labelled.add(entry.label, entry, record)
            continue
        label = waiting.take(record.request_id, record.index)
        if label is not None:
            entry.label = label
            labelled.add(label, entry)
            matched += 1
    return matched


def accuracy(pairs: Sequence[Pair]) -> float:
    return sum(truth == predicted for truth, predicted in pairs) / len(pairs)


def macro_f1(pairs: Sequence[Pair]) -> float:
    """Mean F1 over the classes occurring as a true or a predicted label (as scikit-learn does)."""
    true_positives: Counter[Label] = Counter()
    false_positives: Counter[Label] = Counter()
    false_negatives: Counter[Label] = Counter()
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


def mean_absolute_error(pairs: Sequence[Pair]) -> float:
    return sum(abs(float(truth) - float(predicted)) for truth, predicted in pairs) / len(pairs)


def root_mean_squared_error(pairs: Sequence[Pair]) -> float:
    squares = sum((float(truth) - float(predicted)) ** 2 for truth, predicted in pairs)
    return math.sqrt(squares / len(pairs))


METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "mae": mean_absolute_error,
    "rmse": root_mean_squared_error,
}


@dataclass(frozen=True)
class PerformanceRules:
    """When labelled traffic counts as degraded."""

    tolerance: float  # classification: allowed drop of accuracy / macro F1 below validation
    rmse_tolerance: float  # regression: allowed rise of RMSE over validation, a share of it
    min_labelled: int  # labelled predictions needed before anything counts as degraded


@dataclass(frozen=True)
class PerformanceReport:
    labelled: int
    live: Mapping[str, float | None]  # the task's metrics on labelled traffic (None: no label)
    reference: Mapping[str, float]  # the same metrics on the validation set, where packaged
    degraded: bool

    def as_json(self) -> dict[str, Any]:
        """``GET /performance``: ``labelled``, each metric, ``reference_<metric>``, ``degraded``."""
        return {
            "labelled": self.labelled,
            **self.live,
            **{f"reference_{name}": self.reference.get(name) for name in self.live},
            "degraded": self.degraded,
        }


def assess_performance(
    pairs: Sequence[Pair], reference: Reference, rules: PerformanceRules
) -> PerformanceReport:
    """The task's metrics on the labelled pairs. Degraded, once at least ``min_labelled`` are in:
    a classifier's accuracy or macro F1 below its validation value minus ``tolerance``; a
    regressor's RMSE above its validation RMSE times ``1 + rmse_tolerance``."""
    names = PERFORMANCE_METRICS[reference.task]
    if not pairs:
        return PerformanceReport(0, dict.fromkeys(names), reference.validation, False)
    live = {name: METRIC_FUNCTIONS[name](pairs) for name in names}
    return PerformanceReport(
        labelled=len(pairs),
        live=live,
        reference=reference.validation,
        degraded=len(pairs) >= rules.min_labelled and _trails(live, reference, rules),
    )


def _trails(live: Mapping[str, float], reference: Reference, rules: PerformanceRules) -> bool:
    validation = reference.validation
    if reference.task == "regression":
        limit = validation.get("rmse")
        return limit is not None and live["rmse"] > limit * (1 + rules.rmse_tolerance)
    return any(
        live[name] < validation[name] - rules.tolerance for name in live if name in validation
    )
