"""Package the accepted pipeline: ONNX model, signature, reference profile, model card, manifest.

Refuses a model whose acceptance verdict failed. The ONNX model must reproduce scikit-learn on the
test set (a classifier: identical labels, probabilities within ``package.parity_tolerance``; a
regressor: predictions within that share of the training target's standard deviation) before
anything is written to the package directory. The whole package is built in a temporary sibling
directory, verified against its manifest, and only then swapped in, so a failing run leaves the
previous package untouched.

The same model, data and params give the same bytes of ``model.onnx``, ``signature.json`` and
``reference_profile.json``, and so the same model version (a hash of the three): what varies from
run to run (the time, the commit, the measured latency and memory) lives in ``manifest.json``,
``resources.json`` and the model card only, which no version check hashes.

``build_package`` builds the package in memory from the loaded inputs; ``main`` reads them, takes
the lineage (git, the params file, the clock) and writes. The parts live apart: the signature
(``signature``), the parity gate (``parity``), the resource profile (``resources``), the model
card (``model_card``), the lineage (``lineage``) and the files' bytes and safe install
(``package_files``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops.core import artifacts
from mlops.model import onnx_export
from mlops.model.features import TrainedModel, load_model
from mlops.model.lineage import make_lineage
from mlops.model.model_card import CardReports, model_card
from mlops.model.package_files import finite, install_package, json_bytes
from mlops.model.parity import check_parity, parity_failure, predict
from mlops.model.resources import profile_resources
from mlops.model.signature import build_signature
from mlops.model.summaries import (
    ManifestMetrics,
    Metrics,
    PackageManifest,
    ParityReport,
    ResourceProfile,
    Verdict,
)
from mlops.params import PackageParams, load_section, project_model_name
from mlops.profile import profile_column, profile_table, raw_statistics
from mlops.progress import ANNOUNCE_ROWS, step
from mlops.stage import StageError, parser, read_json, run, write_json
from mlops.tables import read_table

if TYPE_CHECKING:
    import onnx

# Measures what serving the ONNX model costs, fed these rows (``resources.profile_resources``).
ResourceMeter = Callable[[bytes, onnx_export.Feed], ResourceProfile]
# Told the parity report as soon as it is known, whether it passed or not.
ParityListener = Callable[[ParityReport], None]


def require_accepted(verdict: Mapping[str, Any], path: Path) -> None:
    if verdict.get("passed") is not True:
        failed = [c.get("name") for c in verdict.get("checks", []) if not c.get("passed")]
        raise StageError(
            f"{path}: the acceptance test did not pass (failed checks: {failed}); refusing to "
            "package a rejected model, the previous package stays in place"
        )


def decision_threshold(
    evaluation: Mapping[str, Any], model: TrainedModel, path: Path
) -> float | None:
    """The decision threshold evaluate chose or was given (``threshold_method`` not null), for
    the signature; None when the model's own labels stand (``evaluate.decision_threshold: null``).
    """
    if evaluation.get("threshold_method") is None:
        return None
    threshold = evaluation.get("decision_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise StageError(
            f"{path}: 'decision_threshold' is {threshold!r}; expected a probability, since "
            f"'threshold_method' is {evaluation['threshold_method']!r}"
        )
    if not 0.0 < threshold < 1.0 or len(model.classes) != 2 or model.positive_class is None:
        raise StageError(
            f"{path}: a decision threshold of {threshold!r} needs a binary classifier with a "
            f"positive class and a threshold between 0 and 1; the model has classes "
            f"{list(model.classes)} and positive class {model.positive_class!r}"
        )
    return float(threshold)


def reference_profile(
    model: TrainedModel,
    train: pd.DataFrame,
    held_out: pd.DataFrame,
    threshold: float | None,
    raw_profile: Mapping[str, Any],
) -> dict[str, Any]:
    """The training features' profile (as the validate stage computes it), and what the live
    predictions are compared with: the model's predictions on ``held_out`` rows (the test split),
    as the scorer makes them — a classifier's class shares after its decision threshold, or the
    profile of a regressor's numbers. Predictions on the training rows would not do: a model
    fits those better than any it has not seen (a forest repeats their labels), so a weak or
    thresholded model would seem to drift on traffic like its own data. Beside, the raw data's
    statistics of the features (``raw_profile``, the validate stage's), which the sidecar
    compares live traffic with (``mlops.profile.raw_statistics``)."""
    profile = profile_table(train[list(model.spec.features)])
    profile |= {
        "raw": raw_statistics(raw_profile, model.spec.features),
        "predicted_rows": len(held_out),
    }
    predictions = pd.Series(predict(model, held_out, threshold), name="prediction")
    if model.task == "regression":
        profile["prediction"] = profile_column(predictions.astype(np.float64))
        return profile
    shares = predictions.value_counts(normalize=True)
    profile["classes"] = {label: float(shares.get(label, 0.0)) for label in model.classes}
    return profile


def target_summary(model: TrainedModel, train: pd.DataFrame) -> dict[str, float | None]:
    """A regressor's training target in a few numbers, for the model card ({} for classes)."""
    if model.task != "regression":
        return {}
    values = train[model.target].astype("float64").dropna()
    if values.empty:
        return {}
    return {
        "mean": float(values.mean()),
        "std": float(values.std()) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "median": float(values.median()),
        "max": float(values.max()),
    }


def model_version(model_graph: bytes, signature: bytes, profile: bytes) -> str:
    """12 hex digits of sha256 over the ONNX model (without its metadata), the signature and the
    reference profile: what the scorer and the sidecar act on, and nothing that changes from run
    to run. The same model packaged again (another day, another commit, another measurement) has
    the same version, and ``model.onnx``, which carries it, the same bytes."""
    identity = hashlib.sha256()
    for part in (model_graph, signature, profile):
        identity.update(hashlib.sha256(part).digest())
    return identity.hexdigest()[:12]


def onnx_metadata(signature: artifacts.Signature, version: str) -> dict[str, str]:
    """What the ONNX model says about itself to any ONNX tool: name, version, task, target.
    Lineage (time, commit, hashes) lives in the manifest: it would change the model's bytes."""
    return {
        "model_name": signature["model_name"],
        "model_version": version,
        "task": signature["task"],
        "target": signature["target"],
    }


def export_onnx(model: TrainedModel, params: PackageParams) -> onnx.ModelProto:
    """The model in ONNX, without metadata (``with_metadata`` adds it once the version is known)."""
    return onnx_export.convert(model, params.target_opset)


def serialized(model: onnx.ModelProto) -> bytes:
    return bytes(model.SerializeToString())


def with_metadata(model: onnx.ModelProto, metadata: Mapping[str, str]) -> bytes:
    onnx_export.set_metadata(model, metadata)
    return serialized(model)


def manifest_metrics(
    evaluation: Metrics, verdict: Verdict, parity: ParityReport
) -> ManifestMetrics:
    """The metrics the manifest carries; a metric that is not a number (NaN: a ROC AUC of a
    slice with one class) becomes null, as JSON has no NaN."""
    metrics: ManifestMetrics = finite(
        {
            "validation": dict(evaluation),
            "test": verdict["metrics"],
            "acceptance_passed": verdict["passed"],
            "parity_max_abs_diff": parity["max_abs_diff"],
        }
    )
    return metrics


@dataclass(frozen=True)
class Contents:
    """The reproducible part of a package: the same model, data and params give the same bytes."""

    signature: artifacts.Signature
    profile: dict[str, Any]
    model: bytes  # model.onnx, with its metadata
    version: str

    def files(self) -> dict[str, bytes]:
        return {
            artifacts.MODEL_FILE: self.model,
            artifacts.SIGNATURE_FILE: json_bytes(self.signature),
            artifacts.PROFILE_FILE: json_bytes(self.profile),
        }


def package_contents(
    model: TrainedModel,
    converted: onnx.ModelProto,
    train: pd.DataFrame,
    test: pd.DataFrame,
    model_name: str,
    threshold: float | None,
    raw_profile: Mapping[str, Any],
) -> Contents:
    """Signature, reference profile and the versioned ONNX model (``converted`` gets its
    metadata)."""
    signature = build_signature(model, train, model_name, threshold)
    profile = reference_profile(model, train, test, threshold, raw_profile)
    version = model_version(serialized(converted), json_bytes(signature), json_bytes(profile))
    onnx_model = with_metadata(converted, onnx_metadata(signature, version))
    return Contents(signature, profile, onnx_model, version)


@dataclass(frozen=True)
class Package:
    """A package built in memory: its files (``files``), its manifest without the files' hashes,
    and the reports the stage writes beside it."""

    contents: Contents
    parity: ParityReport
    resources: ResourceProfile
    manifest: PackageManifest
    card: str  # model_card.md

    @property
    def version(self) -> str:
        return self.contents.version

    def files(self) -> dict[str, bytes]:
        return {
            **self.contents.files(),
            artifacts.RESOURCES_FILE: json_bytes(self.resources),
            artifacts.MODEL_CARD_FILE: self.card.encode(),
        }


class ParityError(StageError):
    """The ONNX model does not reproduce scikit-learn: nothing may be packaged. ``report`` is the
    parity report, which the stage writes all the same."""

    def __init__(self, report: ParityReport) -> None:
        super().__init__(parity_failure(report))
        self.report = report


def build_package(
    model: TrainedModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    evaluation: Metrics,
    verdict: Verdict,
    name: str,
    params: PackageParams,
    threshold: float | None,
    lineage: artifacts.Lineage,
    raw_profile: Mapping[str, Any],
    measure: ResourceMeter = profile_resources,
    on_parity: ParityListener | None = None,
) -> Package:
    """The package of ``model``: converted to ONNX, checked for parity on ``test`` (raises
    ``ParityError``), versioned, profiled by ``measure`` and described (manifest, model card).

    ``evaluation`` is evaluate's metrics.json, ``verdict`` the passed acceptance verdict,
    ``threshold`` the binary decision threshold for the signature (None: the model's own labels),
    ``lineage`` where the model comes from, ``raw_profile`` the validate stage's profile of the
    raw table (the drift reference of live, raw traffic); ``on_parity`` hears the parity report
    before anything else can fail. Nothing is read or written here: the same arguments give the
    same files, but for the measured resources and what quotes them (``resources.json`` and the
    model card).
    """
    with step("package: ONNX conversion", None, announce=len(train) >= ANNOUNCE_ROWS):
        converted = export_onnx(model, params)
    with step("package: parity on the test set", len(test)):
        parity = check_parity(
            model, serialized(converted), test, train, params.parity_tolerance, threshold
        )
    if on_parity is not None:
        on_parity(parity)
    if not parity["passed"]:
        raise ParityError(parity)
    contents = package_contents(model, converted, train, test, name, threshold, raw_profile)
    resources = measure(contents.model, onnx_export.onnx_feed(test, model.spec))
    manifest: PackageManifest = {
        "model_name": name,
        "model_version": contents.version,
        "lineage": lineage,
        "metrics": manifest_metrics(evaluation, verdict, parity),
    }
    reports: CardReports = {
        "verdict": verdict,
        "evaluation": evaluation,
        "parity": parity,
        "resources": resources,
    }
    card = model_card(
        contents.signature, manifest, contents.profile, reports, target_summary(model, train)
    )
    return Package(contents, parity, resources, manifest, card)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.splitlines()[0])
    for option in ("--model", "--train", "--test", "--verdict", "--metrics", "--out", "--reports"):
        arguments.add_argument(option, type=Path, required=True)
    arguments.add_argument("--raw-profile", type=Path, required=True)  # the validate stage's
    options = arguments.parse_args(argv)
    params = load_section(options.params, "package", PackageParams)
    name = project_model_name(options.params)
    verdict = read_json(options.verdict)
    require_accepted(verdict, options.verdict)
    evaluation = read_json(options.metrics)
    model = load_model(options.model)
    threshold = decision_threshold(evaluation, model, options.metrics)
    train, test = read_table(options.train), read_table(options.test)
    lineage = make_lineage(options.params, options.train, datetime.now(UTC))
    package = build_package(
        model,
        train,
        test,
        evaluation=evaluation,
        verdict=verdict,
        name=name,
        params=params,
        threshold=threshold,
        lineage=lineage,
        raw_profile=read_json(options.raw_profile),
        on_parity=lambda report: write_json(options.reports / "parity.json", report),
    )
    write_json(options.reports / "resources.json", package.resources)
    install_package(options.out, package.files(), package.manifest)
    print(f"packaged {name} {package.version} into {options.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
