"""What live traffic is compared with: the packaged signature, reference profile and manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlops.core import artifacts
from mlops.core.artifacts import Task
from mlops.core.drift import OTHER_CATEGORY
from mlops.core.errors import StageError

FeatureKind = Literal["numeric", "categorical", "other"]
# The validation metrics in the manifest: under "validation" (the package stage puts the evaluate
# stage's metrics.json there) or at the top level; the first key found wins.
VALIDATION_SECTION = "validation"
# Per task, the metrics computed on labelled traffic, each with the names it may have in the
# manifest's validation metrics.
PERFORMANCE_METRICS: dict[Task, dict[str, tuple[str, ...]]] = {
    "classification": {"accuracy": ("accuracy",), "macro_f1": ("macro_f1", "f1_macro")},
    "regression": {"mae": ("mae",), "rmse": ("rmse",)},
}
# A regressor's reference profile holds the profile of its predictions on the test split here.
PREDICTION = "prediction"
# The raw table's statistics of the features (the validate stage's profile, before cleaning), and
# the number of rows the model predicted for the prediction reference (packages since the raw
# statistics; older ones have neither).
RAW = "raw"
PREDICTED_ROWS = "predicted_rows"
# The profile's column kind that goes with each signature type.
PROFILE_KIND = {"number": "numeric", "string": "categorical"}


@dataclass(frozen=True)
class FeatureReference:
    """Training statistics of a feature; the ``other`` kind (no bins, no shares): missing rate.

    The sizes are what the significance tests need: a reference of 240 rows knows a share only to
    a few points, one of 100,000 rows to a fraction of a point.
    """

    name: str
    kind: FeatureKind
    missing_rate: float
    edges: tuple[float, ...] = ()
    bin_shares: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None  # a regressor's predictions: the scale the roles' differences use
    category_shares: Mapping[str, float] = field(default_factory=dict)
    categories: frozenset[str] = frozenset()  # every category seen in training
    rows: int = 0  # rows of the reference, present or missing
    present: int = 0  # values present in the reference: the sample its bins and shares come from
    singletons: int = 0  # categories seen once in the reference (an unseen category is likelier)
    raw: bool = (
        False  # statistics of the raw data (before cleaning), not of the cleaned training set
    )

    @property
    def missing(self) -> int:
        """Missing values in the reference."""
        return max(0, self.rows - self.present)


@dataclass(frozen=True)
class Reference:
    model_name: str
    model_version: str
    features: tuple[FeatureReference, ...]
    # a classifier's class mix as predicted on the test split at packaging; empty for a regressor
    class_shares: Mapping[str, float]
    # The packaged validation metrics that the same metrics on labelled traffic are compared with
    # (PERFORMANCE_METRICS of the task); a metric the manifest lacks is absent.
    validation: Mapping[str, float] = field(default_factory=dict)
    task: Task = "classification"
    # A regressor's predictions on the test split, as a numeric feature (the same drift rule).
    prediction: FeatureReference | None = None
    predicted_rows: int = 0  # rows of the test split the prediction reference comes from

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]


def load_reference(directory: Path) -> Reference:
    """Read and check the three files the sidecar needs from the packaged model directory."""
    try:
        manifest = artifacts.load_manifest(directory)
        for name in (artifacts.SIGNATURE_FILE, artifacts.PROFILE_FILE):
            _check_digest(directory, name, manifest)
        signature = artifacts.load_signature(directory)
        profile = artifacts.load_reference_profile(directory)
    except artifacts.ArtifactError as error:
        raise StageError(str(error)) from None
    return build_reference(signature, profile, manifest, directory)


def build_reference(
    signature: artifacts.Signature,
    profile: Mapping[str, Any],
    manifest: artifacts.Manifest,
    directory: Path = Path(),
) -> Reference:
    where = directory / artifacts.PROFILE_FILE
    columns = profile.get("columns", {})
    missing = [f["name"] for f in signature["features"] if f["name"] not in columns]
    if missing:
        raise StageError(f"{where}: no statistics for the signature's feature(s) {missing}")
    task: Task = signature.get("task", "classification")
    if task not in PERFORMANCE_METRICS:
        raise StageError(
            f"{directory / artifacts.SIGNATURE_FILE}: task {task!r} is neither "
            "'classification' nor 'regression'"
        )
    rows = _count(profile.get("rows"))
    return Reference(
        model_name=manifest["model_name"],
        model_version=manifest["model_version"],
        features=tuple(
            _feature(f, columns[f["name"]], rows, _raw_column(profile, f))
            for f in signature["features"]
        ),
        class_shares=_class_shares(profile, where) if task == "classification" else {},
        validation=validation_metrics(manifest.get("metrics", {}), task),
        task=task,
        prediction=_prediction(profile, where) if task == "regression" else None,
        predicted_rows=_count(profile.get(PREDICTED_ROWS)) or rows,
    )


def _raw_column(profile: Mapping[str, Any], feature: artifacts.Feature) -> Mapping[str, Any] | None:
    """The raw data's statistics of ``feature`` with its rows, if the package has them and they
    are of the feature's kind (a number column read as text in the raw table is not)."""
    raw = profile.get(RAW)
    if not isinstance(raw, Mapping):
        return None
    column = raw.get("columns", {}).get(feature["name"])
    if not isinstance(column, Mapping) or column.get("kind") != PROFILE_KIND.get(feature["type"]):
        return None
    if not (column.get("bins") or column.get("shares")):
        return None
    return {**column, "rows": _count(raw.get("rows"))}


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _class_shares(profile: Mapping[str, Any], where: Path) -> dict[str, float]:
    classes = profile.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise StageError(
            f"{where}: expected a 'classes' mapping of class -> training share (the model is a "
            "classifier)"
        )
    return {str(k): float(v) for k, v in classes.items()}


def _prediction(profile: Mapping[str, Any], where: Path) -> FeatureReference:
    column = profile.get(PREDICTION)
    if not isinstance(column, dict) or not column.get("bins"):
        raise StageError(
            f"{where}: expected a '{PREDICTION}' numeric profile with bins: the model's "
            "predictions on the test split (the model is a regressor)"
        )
    return _numeric(PREDICTION, column)


def _feature(
    feature: artifacts.Feature,
    column: Mapping[str, Any],
    rows: int,
    raw: Mapping[str, Any] | None = None,
) -> FeatureReference:
    """A feature's reference: the raw data's statistics when the package has them (live traffic is
    raw too: its gaps are not filled, its outliers not clipped), else the training set's."""
    if raw is not None:
        return _column_reference(feature, raw, _count(raw.get("rows")), is_raw=True)
    return _column_reference(feature, column, rows, is_raw=False)


def _column_reference(
    feature: artifacts.Feature, column: Mapping[str, Any], rows: int, is_raw: bool
) -> FeatureReference:
    name, missing_rate = feature["name"], float(column.get("missing_rate", 0.0))
    present = _count(column.get("count"))
    rows = max(rows, present)
    if feature["type"] == "number" and column.get("bins"):
        # the range of the raw values, not of the clipped training values (the signature's)
        low, high = (None, None) if is_raw else (feature.get("min"), feature.get("max"))
        return _numeric(name, column, low, high, rows=rows, present=present, raw=is_raw)
    shares = column.get("shares")
    if feature["type"] == "string" and shares:
        seen = set(feature.get("categories") or []) | set(shares)
        return FeatureReference(
            name=name,
            kind="categorical",
            missing_rate=missing_rate,
            category_shares={str(k): float(v) for k, v in shares.items()},
            categories=frozenset(str(category) for category in seen),
            rows=rows,
            present=present,
            singletons=_singletons(column, shares, present),
            raw=is_raw,
        )
    return FeatureReference(
        name=name, kind="other", missing_rate=missing_rate, rows=rows, present=present, raw=is_raw
    )


def _singletons(column: Mapping[str, Any], shares: Mapping[str, float], present: int) -> int:
    """Categories seen once: those whose share is one value's, and at most every value pooled
    under ``OTHER_CATEGORY`` (the rarest categories, which the profile does not list)."""
    listed = [k for k in shares if k != OTHER_CATEGORY]
    once = sum(1 for k in listed if round(float(shares[k]) * present) == 1)
    pooled = round(float(shares.get(OTHER_CATEGORY, 0.0)) * present)
    unlisted = max(0, _count(column.get("distinct")) - len(listed))
    return once + min(pooled, unlisted)


def _numeric(
    name: str,
    column: Mapping[str, Any],
    low: float | None = None,
    high: float | None = None,
    *,
    rows: int = 0,
    present: int = 0,
    raw: bool = False,
) -> FeatureReference:
    """A numeric column's reference; its range from the signature if given, else the profile's."""
    bins = column["bins"]
    present = present or _count(column.get("count"))
    return FeatureReference(
        name=name,
        kind="numeric",
        missing_rate=float(column.get("missing_rate", 0.0)),
        edges=tuple(float(edge) for edge in bins["edges"]),
        bin_shares=tuple(float(share) for share in bins["shares"]),
        low=_first_number(low, column.get("min")),
        high=_first_number(high, column.get("max")),
        mean=_first_number(column.get("mean")),
        std=_first_number(column.get("std")),
        rows=max(rows, present),
        present=present,
        raw=raw,
    )


def _first_number(*candidates: Any) -> float | None:
    """The first candidate that is a number (not None, not a boolean or text), as a float."""
    return next(
        (
            float(value)
            for value in candidates
            if isinstance(value, int | float) and not isinstance(value, bool)
        ),
        None,
    )


def validation_metrics(metrics: Mapping[str, Any], task: Task) -> dict[str, float]:
    """The task's performance metrics as the manifest records them for the validation set."""
    validation = metrics.get(VALIDATION_SECTION)
    sections = (validation if isinstance(validation, Mapping) else {}, metrics)
    found = {
        name: _first_number(*(section.get(key) for section in sections for key in keys))
        for name, keys in PERFORMANCE_METRICS[task].items()
    }
    return {name: value for name, value in found.items() if value is not None}


def _check_digest(directory: Path, name: str, manifest: artifacts.Manifest) -> None:
    expected = manifest.get("files", {}).get(name)
    path = directory / name
    if expected is None:
        raise artifacts.ArtifactError(
            f"{directory / artifacts.MANIFEST_FILE}: does not list {name}"
        )
    if not path.is_file():
        raise artifacts.ArtifactError(f"{path}: listed in the manifest but missing")
    if artifacts.sha256_of(path) != expected:
        raise artifacts.ArtifactError(
            f"{path}: sha256 does not match the manifest; the file was changed after packaging"
        )


def check_feature_names(reference: Reference, names: Mapping[str, Any], setting: str) -> None:
    """A threshold for a feature the model does not have is a typo: refuse it."""
    unknown = sorted(set(names) - set(reference.feature_names))
    if unknown:
        raise StageError(
            f"{setting}: unknown feature(s) {unknown}; the model's features are "
            f"{reference.feature_names}"
        )
