"""Drift of a window of live records against the training reference: per feature, and predictions.

Numeric features: PSI on the reference's quantile bins, the missing rate, and the share of values
outside the training range. Categorical features: PSI over the category shares, where categories
never seen in training are pooled in one ``UNSEEN`` bucket (so they count as drift), the missing
rate, and the unseen rate. Predictions: against the model's own predictions on the test split at
packaging — a classifier's class mix (PSI over the classes), a regressor's numbers (PSI on their
quantile bins: the numeric feature rule). Nothing is flagged until the
window holds ``min_window_size`` records: PSI on a handful of records is noise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops.core.artifacts import MISSING_CATEGORY
from mlops.core.drift import OTHER_CATEGORY, bin_shares, category_psi, psi
from mlops.monitor.reference import FeatureKind, FeatureReference, Reference
from mlops.monitor.window import Label, LoggedPrediction

UNSEEN = "__unseen__"


@dataclass(frozen=True)
class Thresholds:
    psi: float
    prediction_psi: float
    missing_rate: float  # allowed rise of the missing rate above the training one
    out_of_range: float
    min_window_size: int
    feature_psi: Mapping[str, float] = field(default_factory=dict)

    def psi_for(self, feature: str) -> float:
        return self.feature_psi.get(feature, self.psi)


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: FeatureKind
    psi: float
    threshold: float
    missing_rate: float
    reference_missing_rate: float
    out_of_range_rate: float  # numeric: outside the training range; categorical: unseen category
    reasons: tuple[str, ...]  # which checks failed: "psi", "missing_rate", "out_of_range"

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "score": self.psi,
            "drifted": self.drifted,
            "kind": self.kind,
            "threshold": self.threshold,
            "missing_rate": self.missing_rate,
            "reference_missing_rate": self.reference_missing_rate,
            "reasons": list(self.reasons),
        }
        if self.kind == "numeric":
            body["out_of_range_rate"] = self.out_of_range_rate
        elif self.kind == "categorical":
            body["unseen_rate"] = self.out_of_range_rate
        return body


@dataclass(frozen=True)
class PredictionDrift:
    psi: float
    threshold: float
    drifted: bool
    class_shares: Mapping[str, float]  # a classifier's predicted class mix; empty for a regressor
    numeric: bool = False  # a regressor's: then the means below
    mean: float | None = None  # of the predictions in the window (None: no record)
    reference_mean: float | None = None  # of the predictions on the test split

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"score": self.psi, "drifted": self.drifted}
        if self.numeric:
            body |= {"mean": self.mean, "reference_mean": self.reference_mean}
        return body


@dataclass(frozen=True)
class DriftReport:
    window_size: int
    features: tuple[FeatureDrift, ...]
    prediction: PredictionDrift

    @property
    def alert(self) -> bool:
        return self.prediction.drifted or any(feature.drifted for feature in self.features)

    @property
    def drifted_features(self) -> list[FeatureDrift]:
        return [feature for feature in self.features if feature.drifted]

    def as_json(self) -> dict[str, Any]:
        """The ``GET /drift`` body (shape fixed by the architecture contract)."""
        return {
            "window_size": self.window_size,
            "alert": self.alert,
            "features": {feature.name: feature.as_json() for feature in self.features},
            "prediction": self.prediction.as_json(),
        }


def assess(
    records: Sequence[LoggedPrediction], reference: Reference, thresholds: Thresholds
) -> DriftReport:
    eligible = len(records) >= thresholds.min_window_size
    features = tuple(
        feature_drift(
            feature, [r.features.get(feature.name) for r in records], thresholds, eligible
        )
        for feature in reference.features
    )
    prediction = prediction_drift(reference, [r.prediction for r in records], thresholds, eligible)
    return DriftReport(len(records), features, prediction)


def prediction_drift(
    reference: Reference, predictions: Sequence[Label], thresholds: Thresholds, eligible: bool
) -> PredictionDrift:
    """The predictions against training: the class mix, or the numbers on the reference bins."""
    threshold = thresholds.prediction_psi
    numeric = reference.prediction
    if numeric is None:
        shares = _shares(Counter(str(prediction) for prediction in predictions))
        score = category_psi(reference.class_shares, shares) if shares else 0.0
        return PredictionDrift(score, threshold, eligible and score > threshold, shares)
    score = numeric_statistics(numeric, predictions)[0]
    return PredictionDrift(
        psi=score,
        threshold=threshold,
        drifted=eligible and score > threshold,
        class_shares={},
        numeric=True,
        mean=sum(map(float, predictions)) / len(predictions) if predictions else None,
        reference_mean=numeric.mean,
    )


def feature_drift(
    feature: FeatureReference, values: Sequence[Any], thresholds: Thresholds, eligible: bool
) -> FeatureDrift:
    if feature.kind == "numeric":
        score, missing_rate, outside_rate = numeric_statistics(feature, values)
    elif feature.kind == "categorical":
        score, missing_rate, outside_rate = categorical_statistics(feature, values)
    else:
        score, outside_rate = 0.0, 0.0
        missing_rate = _rate(sum(value is None for value in values), len(values))
    threshold = thresholds.psi_for(feature.name)
    checks = {
        "psi": score > threshold,
        "missing_rate": missing_rate - feature.missing_rate > thresholds.missing_rate,
        "out_of_range": outside_rate > thresholds.out_of_range,
    }
    return FeatureDrift(
        name=feature.name,
        kind=feature.kind,
        psi=score,
        threshold=threshold,
        missing_rate=missing_rate,
        reference_missing_rate=feature.missing_rate,
        out_of_range_rate=outside_rate,
        reasons=tuple(name for name, failed in checks.items() if failed and eligible),
    )


def numeric_statistics(
    feature: FeatureReference, values: Sequence[Any]
) -> tuple[float, float, float]:
    """PSI, missing rate and out-of-range rate of live numeric values."""
    numbers = np.array([_as_number(value) for value in values], dtype=np.float64)
    present = numbers[np.isfinite(numbers)]
    missing_rate = _rate(len(numbers) - present.size, len(numbers))
    if present.size == 0:
        return 0.0, missing_rate, 0.0
    score = psi(feature.bin_shares, bin_shares(present, feature.edges))
    outside = np.zeros(present.size, dtype=bool)
    if feature.low is not None:
        outside |= present < feature.low
    if feature.high is not None:
        outside |= present > feature.high
    return score, missing_rate, float(outside.mean())


def categorical_statistics(
    feature: FeatureReference, values: Sequence[Any]
) -> tuple[float, float, float]:
    """PSI, missing rate and unseen-category rate of live categorical values."""
    present = [str(value) for value in values if value is not None and value != MISSING_CATEGORY]
    missing_rate = _rate(len(values) - len(present), len(values))
    if not present:
        return 0.0, missing_rate, 0.0
    counts = Counter(category_key(feature, value) for value in present)
    score = category_psi(feature.category_shares, _shares(counts))
    return score, missing_rate, _rate(counts[UNSEEN], len(present))


def category_key(feature: FeatureReference, value: str) -> str:
    """The reference bucket a live category falls in."""
    if value in feature.category_shares:
        return value
    if value not in feature.categories:
        return UNSEEN
    return OTHER_CATEGORY if OTHER_CATEGORY in feature.category_shares else value


def _as_number(value: Any) -> float:
    """A live value as a float; missing or unreadable values become NaN."""
    if value is None or isinstance(value, bool):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _shares(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {key: count / total for key, count in counts.items()} if total else {}


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
