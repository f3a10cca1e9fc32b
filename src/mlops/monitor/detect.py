"""Drift of a window of live records against the training reference: per feature, and predictions.

Each feature has three checks, each a two-sample significance test (``mlops.core.significance``)
that counts the noise of the window and of the reference (its size is in the package):

- ``psi``: the distribution of the present values: numeric values on the reference's quantile
  bins, categories over the reference's category shares (Pearson's chi-square test); its size is
  the PSI, the ``score``;
- ``missing_rate``: a rise of the share of missing values (Fisher's exact test) over the raw
  data's (before imputation; packages without it: the training set's);
- ``out_of_range``: values outside the raw range (numeric), or of categories never seen (pooled in
  one ``UNSEEN`` bucket: they count as drift), against what a reference of that size leaves out.

The predictions have one: a classifier's class mix, a regressor's numbers on their quantile bins
(the numeric rule), against the model's own predictions on the test split at packaging.

A check fails when its p-value is below ``false_alarm_rate / checks`` (Bonferroni: every check of
every feature and the predictions together raise a false alarm in at most that share of windows
of unchanged traffic, whatever the window size) and its size is at least its floor (a change too
small to matter is not reported, however sure). Nothing is flagged until the window holds
``min_window_size`` records.

One module (about 500 lines) on purpose: the checks share the one false-alarm budget and its
Bonferroni split, and a reader checking the guarantee reads every test that spends it in one place;
the statistics themselves live in ``mlops.core.significance``.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops.core.artifacts import MISSING_CATEGORY
from mlops.core.drift import OTHER_CATEGORY, category_psi, psi
from mlops.core.significance import (
    homogeneity_test,
    hypergeometric_sf,
    outside_range_sf,
    unseen_category_sf,
)
from mlops.monitor.reference import FeatureKind, FeatureReference, Reference
from mlops.monitor.window import Label, LoggedPrediction

UNSEEN = "__unseen__"
CHECKS = ("psi", "missing_rate", "out_of_range")
# Checks per feature kind; the predictions add one.
KIND_CHECKS: dict[FeatureKind, tuple[str, ...]] = {
    "numeric": CHECKS,
    "categorical": CHECKS,
    "other": ("missing_rate",),
}
# A package from before the raw statistics knows only the missing rate after imputation (often
# 0 %): a rise is then flagged only from this size, the former rule, whatever the floor.
LEGACY_MISSING_RISE = 0.1


@dataclass(frozen=True)
class Thresholds:
    """The floors (the smallest change worth reporting) and the false-alarm rate."""

    psi: float  # the smallest PSI reported as drift
    prediction_psi: float
    missing_rate: float  # the smallest rise of the missing rate above the reference's
    out_of_range: float  # the smallest share outside the range, or of unseen categories
    min_window_size: int
    feature_psi: Mapping[str, float] = field(default_factory=dict)
    false_alarm_rate: float = 0.005  # of windows of unchanged traffic, over all checks together

    def psi_for(self, feature: str) -> float:
        return self.feature_psi.get(feature, self.psi)


@dataclass(frozen=True)
class Bin:
    """One bin (numeric) or category: its label and share in the reference and in the window."""

    label: str
    reference: float
    live: float

    def as_json(self) -> dict[str, Any]:
        return {"bin": self.label, "reference": self.reference, "live": self.live}


@dataclass(frozen=True)
class Measured:
    """What a window shows of one column against its reference."""

    psi: float
    distribution_p: float
    missing_rate: float
    missing_p: float
    outside_rate: float  # numeric: outside the reference's range; categorical: unseen category
    outside_p: float
    bins: tuple[Bin, ...]


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: FeatureKind
    psi: float
    threshold: float  # the PSI floor
    missing_rate: float
    reference_missing_rate: float
    out_of_range_rate: float  # numeric: outside the training range; categorical: unseen category
    reasons: tuple[str, ...]  # which checks failed: "psi", "missing_rate", "out_of_range"
    p_values: Mapping[str, float] = field(default_factory=dict)  # per check
    level: float = 0.0  # a check's p-value must be below this (the false-alarm rate / checks)
    bins: tuple[Bin, ...] = ()
    edges: tuple[float, ...] = ()  # a numeric feature's: where its bins meet

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)

    @property
    def p_value(self) -> float:
        """The smallest p-value of the feature's checks."""
        return min(self.p_values.values(), default=1.0)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "score": self.psi,
            "drifted": self.drifted,
            "kind": self.kind,
            "threshold": self.threshold,
            "missing_rate": self.missing_rate,
            "reference_missing_rate": self.reference_missing_rate,
            "reasons": list(self.reasons),
            "p_values": dict(self.p_values),
            "level": self.level,
        }
        if self.kind == "numeric":
            body["out_of_range_rate"] = self.out_of_range_rate
        elif self.kind == "categorical":
            body["unseen_rate"] = self.out_of_range_rate
        body["bins"] = [item.as_json() for item in self.bins]
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
    p_value: float = 1.0
    level: float = 0.0
    bins: tuple[Bin, ...] = ()
    edges: tuple[float, ...] = ()  # a regressor's: where the bins of its predictions meet

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "score": self.psi,
            "drifted": self.drifted,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "level": self.level,
        }
        if self.numeric:
            body |= {"mean": self.mean, "reference_mean": self.reference_mean}
        body["bins"] = [item.as_json() for item in self.bins]
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


def check_count(reference: Reference) -> int:
    """The checks of one window: every feature's, and the predictions'."""
    return 1 + sum(len(KIND_CHECKS[feature.kind]) for feature in reference.features)


def assess(
    records: Sequence[LoggedPrediction], reference: Reference, thresholds: Thresholds
) -> DriftReport:
    eligible = len(records) >= thresholds.min_window_size
    level = thresholds.false_alarm_rate / check_count(reference)
    features = tuple(
        feature_drift(
            feature, [r.features.get(feature.name) for r in records], thresholds, eligible, level
        )
        for feature in reference.features
    )
    prediction = prediction_drift(
        reference, [r.prediction for r in records], thresholds, eligible, level
    )
    return DriftReport(len(records), features, prediction)


def prediction_drift(
    reference: Reference,
    predictions: Sequence[Label],
    thresholds: Thresholds,
    eligible: bool,
    level: float = 0.0,
) -> PredictionDrift:
    """The predictions against the test split's: the class mix, or the numbers on its bins."""
    floor = thresholds.prediction_psi
    numeric = reference.prediction
    if numeric is None:
        measured = measure_classes(reference, predictions)
        counts = Counter(str(prediction) for prediction in predictions)
        shares = {label: count / len(predictions) for label, count in counts.items()}
    else:
        measured = measure_numeric(numeric, predictions)
        shares = {}
    failed = eligible and measured.psi >= floor and measured.distribution_p < level
    return PredictionDrift(
        psi=measured.psi,
        threshold=floor,
        drifted=failed,
        class_shares=shares,
        numeric=numeric is not None,
        mean=_mean(predictions) if numeric is not None else None,
        reference_mean=numeric.mean if numeric is not None else None,
        p_value=measured.distribution_p,
        level=level,
        bins=measured.bins,
        edges=numeric.edges if numeric is not None else (),
    )


def feature_drift(
    feature: FeatureReference,
    values: Sequence[Any],
    thresholds: Thresholds,
    eligible: bool,
    level: float = 0.0,
) -> FeatureDrift:
    if feature.kind == "numeric":
        measured = measure_numeric(feature, values)
    elif feature.kind == "categorical":
        measured = measure_categorical(feature, values)
    else:
        measured = measure_missing(feature, values)
    p_values = {
        "psi": measured.distribution_p,
        "missing_rate": measured.missing_p,
        "out_of_range": measured.outside_p,
    }
    checked = {name: p_values[name] for name in KIND_CHECKS[feature.kind]}
    large = large_enough(feature, measured, thresholds)
    return FeatureDrift(
        name=feature.name,
        kind=feature.kind,
        psi=measured.psi,
        threshold=thresholds.psi_for(feature.name),
        missing_rate=measured.missing_rate,
        reference_missing_rate=feature.missing_rate,
        out_of_range_rate=measured.outside_rate,
        reasons=tuple(
            name for name, p in checked.items() if eligible and large[name] and p < level
        ),
        p_values=checked,
        level=level,
        bins=measured.bins,
        edges=feature.edges,
    )


def large_enough(
    feature: FeatureReference, measured: Measured, thresholds: Thresholds
) -> dict[str, bool]:
    """Per check, whether the change reaches its floor (a package without the raw statistics:
    a rise of missing values from ``LEGACY_MISSING_RISE`` only)."""
    missing_floor = thresholds.missing_rate
    if not feature.raw:
        missing_floor = max(missing_floor, LEGACY_MISSING_RISE)
    return {
        "psi": measured.psi >= thresholds.psi_for(feature.name),
        "missing_rate": measured.missing_rate - feature.missing_rate >= missing_floor,
        "out_of_range": measured.outside_rate >= thresholds.out_of_range,
    }


def measure_numeric(feature: FeatureReference, values: Sequence[Any]) -> Measured:
    """PSI and its test on the reference's bins, the missing rate, and the values outside the
    reference's range, of live numeric values."""
    numbers = as_numbers(values)
    present = numbers[np.isfinite(numbers)]
    missing_rate, missing_p = missing_test(feature, len(numbers) - present.size, len(numbers))
    counts = np.bincount(
        np.searchsorted(np.asarray(feature.edges, dtype=np.float64), present, side="left"),
        minlength=len(feature.edges) + 1,
    ).astype(np.float64)
    bins = _bins(numeric_labels(feature.edges), feature.bin_shares, counts)
    if present.size == 0:
        return Measured(0.0, 1.0, missing_rate, missing_p, 0.0, 1.0, bins)
    outside, sides = _outside(feature, present)
    return Measured(
        psi=psi(feature.bin_shares, (counts / present.size).tolist()),
        distribution_p=homogeneity_test(counts.tolist(), feature.bin_shares, feature.present),
        missing_rate=missing_rate,
        missing_p=missing_p,
        outside_rate=outside / present.size,
        outside_p=outside_range_sf(outside, present.size, feature.present, sides),
        bins=bins,
    )


def _outside(feature: FeatureReference, present: npt.NDArray[np.float64]) -> tuple[int, int]:
    """How many values lie outside the reference's range, and how many sides it has."""
    outside = np.zeros(present.size, dtype=bool)
    if feature.low is not None:
        outside |= present < feature.low
    if feature.high is not None:
        outside |= present > feature.high
    return int(outside.sum()), (feature.low is not None) + (feature.high is not None)


def measure_categorical(feature: FeatureReference, values: Sequence[Any]) -> Measured:
    """PSI over the category shares and its test, the missing rate, and the share of unseen
    categories, of live categorical values.

    Unseen categories form a bucket of their own (PSI counts them as drift), unless the reference
    pooled its rarest categories (past its most frequent ones) under ``OTHER_CATEGORY``: then a
    live value outside its listed categories joins that pool, seen in training or not. A column
    with a long tail keeps meeting new values, and the reference's pool stands for all of them
    (the values seen once in training overstate the share of the categories that were seen)."""
    texts = category_counts(values)
    missing = texts.pop(None, 0) + texts.pop(MISSING_CATEGORY, 0)
    present = len(values) - missing
    missing_rate, missing_p = missing_test(feature, missing, len(values))
    counts: Counter[str] = Counter()
    for value, count in texts.items():
        if value is not None:
            counts[category_key(feature, value)] += count
    unseen = counts.pop(UNSEEN, 0)
    labels = list(feature.category_shares)
    if OTHER_CATEGORY in feature.category_shares:
        counts[OTHER_CATEGORY] += unseen
    elif unseen:
        counts[UNSEEN] = unseen
        labels.append(UNSEEN)
    live = [float(counts[label]) for label in labels]
    shares = [feature.category_shares.get(label, 0.0) for label in labels]
    bins = _bins(labels, shares, np.asarray(live))
    if not present:
        return Measured(0.0, 1.0, missing_rate, missing_p, 0.0, 1.0, bins)
    seen = len(feature.category_shares)
    return Measured(
        psi=category_psi(feature.category_shares, _shares(counts)),
        distribution_p=homogeneity_test(live[:seen], shares[:seen], feature.present),
        missing_rate=missing_rate,
        missing_p=missing_p,
        outside_rate=unseen / present,
        outside_p=unseen_category_sf(unseen, present, feature.present, feature.singletons),
        bins=bins,
    )


def measure_missing(feature: FeatureReference, values: Sequence[Any]) -> Measured:
    """The missing rate only (a feature with neither bins nor category shares)."""
    missing_rate, missing_p = missing_test(
        feature, sum(value is None for value in values), len(values)
    )
    return Measured(0.0, 1.0, missing_rate, missing_p, 0.0, 1.0, ())


def measure_classes(reference: Reference, predictions: Sequence[Label]) -> Measured:
    """A classifier's predicted class mix against the test split's: PSI and its test (a label the
    model does not have counts against the mix, in a cell the reference never filled)."""
    counts = Counter(str(prediction) for prediction in predictions)
    labels = list(reference.class_shares) + sorted(set(counts) - set(reference.class_shares))
    live = np.array([counts[label] for label in labels], dtype=np.float64)
    shares = [reference.class_shares.get(label, 0.0) for label in labels]
    bins = _bins(labels, shares, live)
    if not predictions:
        return Measured(0.0, 1.0, 0.0, 1.0, 0.0, 1.0, bins)
    return Measured(
        category_psi(reference.class_shares, _shares(counts)),
        homogeneity_test(live.tolist(), shares, reference.predicted_rows),
        0.0,
        1.0,
        0.0,
        1.0,
        bins,
    )


def missing_test(feature: FeatureReference, missing: int, total: int) -> tuple[float, float]:
    """The window's missing rate, and the p-value of so many missing values or more if the
    window and the reference share one missing rate (Fisher's exact test, one-sided)."""
    rate = _rate(missing, total)
    if total == 0:
        return rate, 1.0
    p_value = hypergeometric_sf(missing, total + feature.rows, missing + feature.missing, total)
    return rate, p_value


def category_key(feature: FeatureReference, value: str) -> str:
    """The reference bucket a live category falls in."""
    if value in feature.category_shares:
        return value
    if value not in feature.categories:
        return UNSEEN
    return OTHER_CATEGORY if OTHER_CATEGORY in feature.category_shares else value


@functools.lru_cache(maxsize=256)
def numeric_labels(edges: tuple[float, ...]) -> list[str]:
    """Labels of the bins cut at ``edges`` (right-closed): ≤ a, a to b, ..., > z."""
    if not edges:
        return ["all"]
    shown = [f"{edge:.4g}" for edge in edges]
    middle = [f"{low} to {high}" for low, high in itertools.pairwise(shown)]
    return [f"≤ {shown[0]}", *middle, f"> {shown[-1]}"]


def _bins(
    labels: Sequence[str], reference: Sequence[float], live_counts: npt.NDArray[np.float64]
) -> tuple[Bin, ...]:
    total = float(live_counts.sum())
    return tuple(
        Bin(label, float(share), float(count) / total if total else 0.0)
        for label, share, count in zip(labels, reference, live_counts, strict=True)
    )


def as_numbers(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Live values as floats; missing or unreadable ones (and booleans) become NaN. NumPy reads a
    list of numbers, nulls and numeric text at once; anything else takes the slow path."""
    if not any(isinstance(value, bool) for value in values):
        try:
            return np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            pass
    return np.array([_as_number(value) for value in values], dtype=np.float64)


def category_counts(values: Sequence[Any]) -> Counter[str | None]:
    """How often each live value occurs, as text (None: missing, whether null or NaN)."""
    try:
        counted: Counter[Any] = Counter(values)
    except TypeError:  # an unhashable value (a list in a bad log line) is text like any other
        counted = Counter(
            value if value is None or isinstance(value, float) else str(value) for value in values
        )
    texts: Counter[str | None] = Counter()
    for value, count in counted.items():
        missing = value is None or (isinstance(value, float) and value != value)  # null, NaN
        texts[None if missing else str(value)] += count
    return texts


def _as_number(value: Any) -> float:
    """A live value as a float; missing or unreadable values become NaN."""
    if value is None or isinstance(value, bool):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _mean(values: Sequence[Label]) -> float | None:
    return sum(map(float, values)) / len(values) if values else None


def _shares(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {key: count / total for key, count in counts.items()} if total else {}


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
