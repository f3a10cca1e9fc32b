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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from mlops.core import artifacts
from mlops.core.decision import apply_threshold
from mlops.model import onnx_export
from mlops.model.features import TrainedModel, load_model, model_input
from mlops.model.model_card import model_card
from mlops.params import (
    AcceptParams,
    CleanParams,
    DataParams,
    EvaluateParams,
    LabelParams,
    PackageParams,
    SplitParams,
    TrainParams,
    load_section,
    project_model_name,
)
from mlops.profile import profile_column, profile_table, raw_statistics
from mlops.progress import ANNOUNCE_ROWS, step
from mlops.stage import StageError, parser, read_json, run, write_json
from mlops.tables import read_table

if TYPE_CHECKING:
    import onnx

RESOURCES_FILE = artifacts.RESOURCES_FILE
# The params hash covers every section the pipeline reads; dvc.yaml lists them all for this stage.
PIPELINE_SECTIONS: dict[str, type] = {
    "data": DataParams,
    "clean": CleanParams,
    "label": LabelParams,
    "split": SplitParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "accept": AcceptParams,
    "package": PackageParams,
}
# Bounds of the latency measurement: runs per batch size, and seconds per batch size at most.
LATENCY_RUNS = {1: 500, 1000: 50}
LATENCY_SECONDS = 10.0
MEMORY_PROBE_ROWS = 1000
# How requests and limits follow from the measurements (see docs/model-accept-package.md).
SERVER_OVERHEAD_MIB = 64  # the web server, prediction log and metrics around the model
MEMORY_HEADROOM = 1.25
TARGET_REQUESTS_PER_SECOND = 50
MIN_CPU_MILLICORES = 100
CPU_LIMIT_MILLICORES = 1000
MIB = 1 << 20


def require_accepted(verdict: Mapping[str, Any], path: Path) -> None:
    if verdict.get("passed") is not True:
        failed = [c.get("name") for c in verdict.get("checks", []) if not c.get("passed")]
        raise StageError(
            f"{path}: the acceptance test did not pass (failed checks: {failed}); refusing to "
            "package a rejected model, the previous package stays in place"
        )


def build_signature(
    model: TrainedModel, train: pd.DataFrame, model_name: str, threshold: float | None
) -> artifacts.Signature:
    """Features with their type, ONNX input name, the categories and numeric ranges seen in
    training; the task, the classes, the positive class and the decision threshold.

    Every feature is nullable: the pipeline imputes a missing number and treats a missing category
    as a category of its own (``MISSING_CATEGORY``), in training and serving alike.
    """
    input_names = artifacts.input_names(model.spec.features)
    features: list[artifacts.Feature] = []
    for name in model.spec.features:
        column = train[name]
        if name in model.spec.numeric:
            values = column.astype("float64").dropna()
            low = float(values.min()) if len(values) else None
            high = float(values.max()) if len(values) else None
            features.append(_feature(name, input_names[name], "number", None, low, high))
        else:
            categories = sorted(column.dropna().map(str).unique())
            features.append(_feature(name, input_names[name], "string", categories, None, None))
    return {
        "model_name": model_name,
        "target": model.target,
        "task": model.task,
        "features": features,
        "classes": list(model.classes),
        "positive_class": model.positive_class,
        "threshold": threshold,
    }


def _feature(
    name: str,
    input_name: str,
    kind: Literal["number", "string"],
    categories: list[str] | None,
    low: float | None,
    high: float | None,
) -> artifacts.Feature:
    return {
        "name": name,
        "input_name": input_name,
        "type": kind,
        "nullable": True,
        "categories": categories,
        "min": low,
        "max": high,
    }


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


def predict(model: TrainedModel, frame: pd.DataFrame, threshold: float | None) -> np.ndarray:
    """scikit-learn's predictions of ``frame`` as the scorer makes them with the ONNX model: the
    numbers of a regressor, the labels of a classifier after its decision threshold."""
    features = model_input(frame, model.spec, "test table")
    if model.task == "regression":
        return np.asarray(model.pipeline.predict(features), dtype=np.float64).reshape(-1)
    if threshold is None:
        return np.asarray(model.pipeline.predict(features)).astype(str)
    assert model.positive_class is not None  # checked by decision_threshold
    probabilities = np.asarray(model.pipeline.predict_proba(features), dtype=np.float64)
    return apply_threshold(probabilities, model.classes, model.positive_class, threshold)


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


def params_hash(params_path: Path) -> str:
    """sha256 of the canonical JSON of every pipeline section (defaults filled in, keys sorted)."""
    sections = {
        name: dataclasses.asdict(load_section(params_path, name, schema))
        for name, schema in PIPELINE_SECTIONS.items()
    }
    canonical = json.dumps(sections, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def md5_of(path: Path) -> str:
    """The file's md5, which is how DVC identifies it in dvc.lock and the cache."""
    return artifacts.file_digest(path, "md5")


def git_commit(directory: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


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


def check_parity(
    model: TrainedModel,
    onnx_model: bytes,
    test: pd.DataFrame,
    train: pd.DataFrame,
    tolerance: float,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Score ``test`` with scikit-learn and with onnxruntime and compare (see
    ``onnx_export.parity_report`` and ``regression_parity_report``)."""
    session = onnx_export.open_session(onnx_model)
    feed = onnx_export.onnx_feed(test, model.spec, "test table")
    shown = test[list(model.spec.features)]
    expected = predict(model, test, threshold)
    if model.task == "regression":
        actual = onnx_export.score_regressor(session, feed)
        scale = onnx_export.target_scale(train[model.target])
        return onnx_export.regression_parity_report(shown, expected, actual, scale, tolerance)
    features = model_input(test, model.spec, "test table")
    probabilities = np.asarray(model.pipeline.predict_proba(features), dtype=np.float64)
    actual_scores = onnx_export.score_classifier(
        session, feed, model.classes, model.positive_class, threshold
    )
    return onnx_export.parity_report(
        shown, model.classes, (expected, probabilities), actual_scores, tolerance, threshold
    )


def profile_resources(onnx_model: bytes, feed: onnx_export.Feed) -> dict[str, Any]:
    """Latency with one intra-op thread, peak memory of a scoring process, Kubernetes sizing."""
    import onnxruntime

    session = onnx_export.open_session(onnx_model)
    latency = {
        f"rows_{rows}": onnx_export.measure_latency(session, feed, rows, runs, LATENCY_SECONDS)
        for rows, runs in LATENCY_RUNS.items()
    }
    memory = onnx_export.measure_scoring_memory(onnx_model, feed, MEMORY_PROBE_ROWS)
    return {
        "onnxruntime": onnxruntime.__version__,
        "intra_op_num_threads": 1,
        "model_bytes": len(onnx_model),
        "latency": latency,
        "memory": {
            "rows": memory["rows"],
            "runtime_rss_mib": memory["runtime_rss_bytes"] / MIB,
            "peak_rss_mib": memory["peak_rss_bytes"] / MIB,
            "model_rss_mib": (memory["peak_rss_bytes"] - memory["runtime_rss_bytes"]) / MIB,
        },
        "kubernetes": kubernetes_resources(
            latency["rows_1"]["median_ms"], memory["peak_rss_bytes"]
        ),
    }


def kubernetes_resources(single_row_median_ms: float, peak_rss_bytes: int) -> dict[str, Any]:
    """Requests and limits for the scorer container, derived from the measurements.

    Memory: peak RSS of the scoring process plus the server's overhead, with headroom, rounded up
    to 16 MiB; the limit is twice the request. CPU: enough to serve
    ``TARGET_REQUESTS_PER_SECOND`` single-row requests at the measured median latency, twice over,
    between ``MIN_CPU_MILLICORES`` and the limit, one core (the model uses one intra-op thread):
    past one core, add replicas instead.
    """
    memory_mib = (peak_rss_bytes / MIB + SERVER_OVERHEAD_MIB) * MEMORY_HEADROOM
    memory_request = int(-(-memory_mib // 16) * 16)
    cpu_millicores = single_row_median_ms * TARGET_REQUESTS_PER_SECOND * 2
    cpu_request = min(
        CPU_LIMIT_MILLICORES, max(MIN_CPU_MILLICORES, int(-(-cpu_millicores // 50) * 50))
    )
    return {
        "requests": {"cpu": f"{cpu_request}m", "memory": f"{memory_request}Mi"},
        "limits": {"cpu": f"{CPU_LIMIT_MILLICORES}m", "memory": f"{2 * memory_request}Mi"},
    }


def write_package(directory: Path, files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> None:
    """Write ``files`` and a manifest listing the sha256 of each into ``directory``."""
    for name, content in files.items():
        (directory / name).write_bytes(content)
    hashes = {name: artifacts.sha256_of(directory / name) for name in files}
    (directory / artifacts.MANIFEST_FILE).write_bytes(json_bytes({**manifest, "files": hashes}))


def install_package(out: Path, files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> None:
    """Build the package next to ``out``, verify it, then swap it in; on failure ``out`` is kept."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        staging.chmod(0o755)
        write_package(staging, files, manifest)
        artifacts.verify(staging)
        _swap_in(staging, out)
    except artifacts.ArtifactError as error:
        raise StageError(
            f"the new package failed verification ({error}); {out} is unchanged"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(new: Path, out: Path) -> None:
    """Replace ``out`` by ``new`` with two renames; if the second fails the old one is put back."""
    if not out.exists():
        new.rename(out)
        return
    retired = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(retired)
    try:
        new.rename(out)
    except BaseException:
        retired.rename(out)
        raise
    shutil.rmtree(retired)


def manifest_metrics(
    evaluation: Mapping[str, Any], verdict: Mapping[str, Any], parity: Mapping[str, Any]
) -> dict[str, Any]:
    """The metrics the manifest carries; a metric that is not a number (NaN: a ROC AUC of a
    slice with one class) becomes null, as JSON has no NaN."""
    return finite(
        {
            "validation": dict(evaluation),
            "test": verdict["metrics"],
            "acceptance_passed": verdict["passed"],
            "parity_max_abs_diff": parity["max_abs_diff"],
        }
    )


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float, however deep, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def json_bytes(value: Any) -> bytes:
    """Canonical JSON of a packaged file: keys in the order built, floats as Python writes them
    (shortest repr), UTF-8 kept as it is (the user's column names), one trailing newline. NaN and
    infinities are refused: they are not JSON, and the scorer and sidecar could not read them."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as error:
        raise StageError(
            f"a packaged file would hold a NaN or infinite number ({error}); the training "
            "data or the model gives a statistic that is not finite"
        ) from None
    return (text + "\n").encode()


def make_lineage(params_path: Path, train_path: Path, created: datetime) -> artifacts.Lineage:
    return {
        "git_commit": git_commit(Path.cwd()),
        "data_hash": md5_of(train_path),
        "params_hash": params_hash(params_path),
        "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


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

    with step("package: ONNX conversion", None, announce=len(train) >= ANNOUNCE_ROWS):
        converted = export_onnx(model, params)
    with step("package: parity on the test set", len(test)):
        parity = check_parity(
            model, serialized(converted), test, train, params.parity_tolerance, threshold
        )
    write_json(options.reports / "parity.json", parity)
    if not parity["passed"]:
        raise StageError(onnx_export.parity_failure(parity))
    raw_profile = read_json(options.raw_profile)
    contents = package_contents(model, converted, train, test, name, threshold, raw_profile)
    resources = profile_resources(contents.model, onnx_export.onnx_feed(test, model.spec))
    write_json(options.reports / "resources.json", resources)

    manifest = {
        "model_name": name,
        "model_version": contents.version,
        "lineage": make_lineage(options.params, options.train, datetime.now(UTC)),
        "metrics": manifest_metrics(evaluation, verdict, parity),
    }
    reports = {
        "verdict": verdict,
        "evaluation": evaluation,
        "parity": parity,
        "resources": resources,
    }
    card = model_card(
        contents.signature, manifest, contents.profile, reports, target_summary(model, train)
    )
    files = {
        **contents.files(),
        RESOURCES_FILE: json_bytes(resources),
        artifacts.MODEL_CARD_FILE: card.encode(),
    }
    install_package(options.out, files, manifest)
    print(f"packaged {name} {contents.version} into {options.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
