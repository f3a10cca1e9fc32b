"""What live traffic is compared with: the packaged signature, reference profile and manifest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlops import artifacts
from mlops.errors import StageError

FeatureKind = Literal["numeric", "categorical", "other"]
# The validation metrics in the manifest: under "validation" (as the package stage writes them)
# or at the top level; the first key found wins.
VALIDATION_SECTION = "validation"
ACCURACY_KEYS = ("accuracy",)
MACRO_F1_KEYS = ("macro_f1", "f1_macro")


@dataclass(frozen=True)
class FeatureReference:
    """Training statistics of a feature; the ``other`` kind (no bins, no shares): missing rate."""

    name: str
    kind: FeatureKind
    missing_rate: float
    edges: tuple[float, ...] = ()
    bin_shares: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    category_shares: Mapping[str, float] = field(default_factory=dict)
    categories: frozenset[str] = frozenset()  # every category seen in training


@dataclass(frozen=True)
class Reference:
    model_name: str
    model_version: str
    features: tuple[FeatureReference, ...]
    class_shares: Mapping[str, float]
    accuracy: float | None
    macro_f1: float | None

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
    classes = profile.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise StageError(f"{where}: expected a 'classes' mapping of class -> training share")
    metrics = manifest.get("metrics", {})
    return Reference(
        model_name=manifest["model_name"],
        model_version=manifest["model_version"],
        features=tuple(_feature(f, columns[f["name"]]) for f in signature["features"]),
        class_shares={str(k): float(v) for k, v in classes.items()},
        accuracy=_metric(metrics, ACCURACY_KEYS),
        macro_f1=_metric(metrics, MACRO_F1_KEYS),
    )


def _feature(feature: artifacts.Feature, column: Mapping[str, Any]) -> FeatureReference:
    missing_rate = float(column.get("missing_rate", 0.0))
    bins = column.get("bins")
    if feature["type"] == "number" and bins:
        return FeatureReference(
            name=feature["name"],
            kind="numeric",
            missing_rate=missing_rate,
            edges=tuple(float(edge) for edge in bins["edges"]),
            bin_shares=tuple(float(share) for share in bins["shares"]),
            low=_first_number(feature.get("min"), column.get("min")),
            high=_first_number(feature.get("max"), column.get("max")),
        )
    shares = column.get("shares")
    if feature["type"] == "string" and shares:
        seen = feature.get("categories") or list(shares)
        return FeatureReference(
            name=feature["name"],
            kind="categorical",
            missing_rate=missing_rate,
            category_shares={str(k): float(v) for k, v in shares.items()},
            categories=frozenset(str(category) for category in seen),
        )
    return FeatureReference(name=feature["name"], kind="other", missing_rate=missing_rate)


def _first_number(*candidates: Any) -> float | None:
    return next((float(value) for value in candidates if value is not None), None)


def _metric(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    validation = metrics.get(VALIDATION_SECTION)
    for section in (validation if isinstance(validation, Mapping) else {}, metrics):
        for key in keys:
            if isinstance(section.get(key), int | float):
                return float(section[key])
    return None


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
