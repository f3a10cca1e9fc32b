"""Prediction log records and the sliding window of the most recent ones."""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import orjson

from mlops.core.artifacts import CHALLENGER, CHAMPION, ROLES, Role, Task

# The value a prediction or a ground-truth label holds: a class, or a regressor's number.
Label = str | float


@dataclass(frozen=True)
class LoggedPrediction:
    """The part of an ``mlops.core.artifacts.PredictionRecord`` the sidecar uses."""

    timestamp: float  # seconds since the epoch
    request_id: str
    index: int
    features: Mapping[str, Any]
    prediction: Label  # a class for a classifier, a finite number for a regressor
    role: Role = "champion"  # a line without one is from a scorer before the rollout: champion
    shadow: bool = False  # a challenger's copy of a request the champion answered
    model_version: str = ""
    latency_seconds: float | None = None

    @property
    def answered(self) -> bool:
        """The client got this prediction (not a shadow copy): what drift and the harvest see."""
        return not self.shadow


def parse_prediction(line: bytes, task: Task = "classification") -> LoggedPrediction | None:
    """The record on one log line, or None if the line is not a valid prediction record of a
    model of ``task``."""
    try:
        raw = load_json(line)
        prediction = raw["prediction"]
        latency = raw.get("latency_seconds")
        record = LoggedPrediction(
            timestamp=parse_timestamp(raw["ts"]),
            request_id=raw["request_id"],
            index=raw.get("index", 0),
            features=raw["features"],
            # an integral JSON number arrives as an int
            prediction=float(prediction) if is_label(prediction, "regression") else prediction,
            role=raw.get("role", CHAMPION),
            shadow=raw.get("shadow", False),
            model_version=raw.get("model_version", ""),
            latency_seconds=float(latency) if is_label(latency, "regression") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    valid = (
        isinstance(record.request_id, str)
        and type(record.index) is int
        and isinstance(record.features, dict)
        and is_label(record.prediction, task)
        and record.role in ROLES
        and type(record.shadow) is bool
        and not (record.shadow and record.role != CHALLENGER)
        and isinstance(record.model_version, str)
    )
    return record if valid else None


def is_label(value: Any, task: Task) -> bool:
    """A class (text) for a classifier; a finite number (not a boolean) for a regressor."""
    if task == "classification":
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_json(line: bytes) -> Any:
    """One JSON value; NaN and Infinity, which Python's ``json`` writes by default, are accepted."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time; one without a zone is taken as UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_timestamp(moment: float | None) -> str | None:
    """ISO 8601 UTC to the second, e.g. ``2026-11-21T06:00:00Z`` (None stays None)."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Timed(Protocol):
    @property
    def timestamp(self) -> float: ...


TimedRecord = TypeVar("TimedRecord", bound=Timed)


class SlidingWindow(Generic[TimedRecord]):
    """The last ``max_records`` records; of those, the ones younger than ``max_age_seconds``.
    The drift check's window holds the answered predictions; the rollout's, both roles' lines."""

    def __init__(self, max_records: int, max_age_seconds: float | None = None) -> None:
        self.max_age_seconds = max_age_seconds
        self._records: deque[TimedRecord] = deque(maxlen=max_records)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[TimedRecord]:
        return iter(self._records)

    def add(self, record: TimedRecord) -> None:
        self._records.append(record)

    def evict(self, now: float) -> None:
        """Drop records older than the time span (records arrive in time order, oldest first)."""
        if self.max_age_seconds is None:
            return
        oldest_kept = now - self.max_age_seconds
        while self._records and self._records[0].timestamp < oldest_kept:
            self._records.popleft()
