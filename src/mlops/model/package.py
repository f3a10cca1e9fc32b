"""Package the accepted pipeline: ONNX model, signature, reference profile, model card, manifest.

Refuses a model whose acceptance verdict failed. The ONNX model must reproduce scikit-learn on the
test set (identical labels, probabilities within ``package.parity_tolerance``) before anything is
written to the package directory. The whole package is built in a temporary sibling directory,
verified against its manifest, and only then swapped in, so a failing run leaves the previous
package untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlops import artifacts
from mlops.model import onnx_export
from mlops.model.features import TrainedModel, load_model, model_input, model_target
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
)
from mlops.profile import profile_table
from mlops.progress import ANNOUNCE_ROWS, step
from mlops.stage import StageError, parser, read_json, run, write_json
from mlops.tables import read_table

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
    model: TrainedModel, train: pd.DataFrame, model_name: str
) -> artifacts.Signature:
    """Features with their type, the categories and numeric ranges seen in training, the classes.

    Every feature is nullable: the pipeline imputes a missing number and treats a missing category
    as a category of its own (``MISSING_CATEGORY``), in training and serving alike.
    """
    features: list[artifacts.Feature] = []
    for name in model.spec.features:
        column = train[name]
        if name in model.spec.numeric:
            values = column.astype("float64").dropna()
            low = float(values.min()) if len(values) else None
            high = float(values.max()) if len(values) else None
            features.append(_feature(name, "number", None, low, high))
        else:
            categories = sorted(column.dropna().map(str).unique())
            features.append(_feature(name, "string", categories, None, None))
    return {
        "model_name": model_name,
        "target": model.target,
        "features": features,
        "classes": list(model.classes),
    }


def _feature(
    name: str,
    kind: Literal["number", "string"],
    categories: list[str] | None,
    low: float | None,
    high: float | None,
) -> artifacts.Feature:
    return {
        "name": name,
        "type": kind,
        "nullable": True,
        "categories": categories,
        "min": low,
        "max": high,
    }


def reference_profile(model: TrainedModel, train: pd.DataFrame) -> dict[str, Any]:
    """The training features' profile (as the validate stage computes it) and the class shares."""
    profile = profile_table(train[list(model.spec.features)])
    shares = model_target(train, model.target, "training table").value_counts(normalize=True)
    profile["classes"] = {label: float(shares.get(label, 0.0)) for label in model.classes}
    return profile


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


def model_version(created: datetime, data_hash: str, params_hash: str, model_hash: str) -> str:
    """``<UTC date>-<8 hex>``: the date orders releases; the hash names data, params and model."""
    identity = hashlib.sha256(f"{data_hash}:{params_hash}:{model_hash}".encode()).hexdigest()
    return f"{created:%Y%m%d}-{identity[:8]}"


def onnx_metadata(
    model_name: str, version: str, lineage: artifacts.Lineage, metrics: Mapping[str, Any]
) -> dict[str, str]:
    return {
        "model_name": model_name,
        "model_version": version,
        "git_commit": lineage["git_commit"],
        "data_hash": lineage["data_hash"],
        "params_hash": lineage["params_hash"],
        "created": lineage["created"],
        "metrics": json.dumps(metrics, sort_keys=True),
    }


def export_onnx(model: TrainedModel, params: PackageParams, metadata: Mapping[str, str]) -> bytes:
    converted = onnx_export.convert(model.pipeline, model.spec, model.classes, params.target_opset)
    onnx_export.set_metadata(converted, metadata)
    return bytes(converted.SerializeToString())


def check_parity(
    model: TrainedModel, onnx_model: bytes, test: pd.DataFrame, tolerance: float
) -> dict[str, Any]:
    """Score ``test`` with scikit-learn and with onnxruntime and compare (see ``parity_report``)."""
    features = model_input(test, model.spec, "test table")
    expected = (
        np.asarray(model.pipeline.predict(features)).astype(str),
        np.asarray(model.pipeline.predict_proba(features), dtype=np.float64),
    )
    session = onnx_export.open_session(onnx_model)
    actual = onnx_export.score(session, onnx_export.onnx_feed(test, model.spec, "test table"))
    shown = test[list(model.spec.features)]
    return onnx_export.parity_report(shown, model.classes, expected, actual, tolerance)


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
    return {
        "validation": dict(evaluation),
        "test": verdict["metrics"],
        "acceptance_passed": verdict["passed"],
        "parity_max_abs_diff": parity["max_abs_diff"],
    }


def model_card(
    signature: artifacts.Signature,
    manifest: Mapping[str, Any],
    profile: Mapping[str, Any],
    verdict: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    parity: Mapping[str, Any],
    resources: Mapping[str, Any],
) -> str:
    sections = [
        _card_header(signature, manifest),
        _card_data(signature, profile),
        _card_features(signature),
        _card_metrics(evaluation, verdict),
        _card_acceptance(verdict),
        _card_serving(parity, resources),
        _card_limitations(signature, profile),
        _card_lineage(manifest),
    ]
    return "\n\n".join(sections) + "\n"


def _card_header(signature: artifacts.Signature, manifest: Mapping[str, Any]) -> str:
    classes = ", ".join(signature["classes"])
    return "\n".join(
        [
            f"# Model card: {signature['model_name']} {manifest['model_version']}",
            "",
            "## Intended use",
            "",
            f"Predicts `{signature['target']}` (one of: {classes}) from the "
            f"{len(signature['features'])} features below, one record at a time or in batches, "
            "through the scoring service. It returns the most likely class and the probability "
            "of every class. It is meant for data like the training data described here; it is "
            "not meant for records from another population or for decisions the metrics below "
            "do not support.",
        ]
    )


def _card_data(signature: artifacts.Signature, profile: Mapping[str, Any]) -> str:
    lines = [
        "## Training data",
        "",
        f"{profile['rows']} labelled rows. Class shares:",
        "",
        "| class | share |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {share:.1%} |" for label, share in profile["classes"].items()]
    return "\n".join(lines)


def _card_features(signature: artifacts.Signature) -> str:
    lines = ["## Features", "", "| feature | type | seen in training |", "|---|---|---|"]
    for feature in signature["features"]:
        if feature["type"] == "number":
            seen = f"{_number(feature['min'])} to {_number(feature['max'])}"
        else:
            seen = ", ".join(feature["categories"] or [])
        lines.append(f"| {feature['name']} | {feature['type']} | {seen} |")
    lines += [
        "",
        "Every feature may be missing: numbers are imputed, a missing category is its own.",
    ]
    return "\n".join(lines)


def _card_metrics(evaluation: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    test = verdict["metrics"]
    validation = {k: v for k, v in evaluation.items() if isinstance(v, int | float)}
    lines = ["## Metrics", "", "| metric | validation set | test set |", "|---|---:|---:|"]
    for name in sorted(set(validation) | {k for k, v in test.items() if isinstance(v, float)}):
        lines.append(f"| {name} | {_number(validation.get(name))} | {_number(test.get(name))} |")
    slices = test.get("slice_macro_f1", {})
    if slices:
        lines += ["", "Macro F1 per slice (test set):", "", "| slice | macro F1 |", "|---|---:|"]
        lines += [f"| {name} | {_number(value)} |" for name, value in slices.items()]
    return "\n".join(lines)


def _card_acceptance(verdict: Mapping[str, Any]) -> str:
    lines = [
        "## Acceptance test",
        "",
        f"Verdict: {'passed' if verdict['passed'] else 'failed'}.",
        "",
        "| check | value | threshold | passed |",
        "|---|---:|---:|---|",
    ]
    for check in verdict["checks"]:
        lines.append(
            f"| {check['name']} | {_number(check['value'])} | {_number(check['threshold'])} "
            f"| {'yes' if check['passed'] else 'no'} |"
        )
    champion = verdict.get("champion")
    lines += [
        "",
        f"Champion: {champion.get('model_version', 'invalid')} at {champion['path']}."
        if champion
        else "Champion: none (first accepted model).",
    ]
    return "\n".join(lines)


def _card_serving(parity: Mapping[str, Any], resources: Mapping[str, Any]) -> str:
    latency = resources["latency"]
    requests = resources["kubernetes"]["requests"]
    limits = resources["kubernetes"]["limits"]
    return "\n".join(
        [
            "## Serving",
            "",
            f"ONNX parity on {parity['rows']} test rows: {parity['label_mismatches']} label "
            f"mismatches, max probability difference {parity['max_abs_diff']:.2g} "
            f"(tolerance {parity['tolerance']:.2g}).",
            "",
            f"Latency with one thread: one row {latency['rows_1']['median_ms']:.3f} ms median, "
            f"{latency['rows_1']['p99_ms']:.3f} ms p99; 1,000 rows "
            f"{latency['rows_1000']['median_ms']:.2f} ms median, "
            f"{latency['rows_1000']['p99_ms']:.2f} ms p99. Peak memory of a scoring process: "
            f"{resources['memory']['peak_rss_mib']:.0f} MiB. Suggested Kubernetes requests "
            f"{requests['cpu']} CPU / {requests['memory']}, limits {limits['cpu']} / "
            f"{limits['memory']}.",
        ]
    )


def _card_limitations(signature: artifacts.Signature, profile: Mapping[str, Any]) -> str:
    return "\n".join(
        [
            "## Limitations",
            "",
            f"- Trained on {profile['rows']} rows; metrics on small slices are noisy.",
            "- A category not seen in training is accepted but carries no information "
            "(its one-hot columns are all zero); the monitoring sidecar reports it as drift.",
            "- Numbers outside the training range are accepted; the model extrapolates "
            "(tree models flatten out at the range's edge).",
            "- Probabilities are not calibrated beyond what the model family provides; read the "
            "calibration plot of the evaluate stage before using them as risks.",
            f"- It knows only the classes {', '.join(signature['classes'])}.",
        ]
    )


def _card_lineage(manifest: Mapping[str, Any]) -> str:
    lineage = manifest["lineage"]
    return "\n".join(
        [
            "## Lineage",
            "",
            f"- model version: {manifest['model_version']}",
            f"- created: {lineage['created']}",
            f"- git commit: {lineage['git_commit']}",
            f"- training data md5 (DVC): {lineage['data_hash']}",
            f"- params sha256: {lineage['params_hash']}",
            "- every packaged file's sha256: manifest.json",
        ]
    )


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else ""


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def make_lineage(params_path: Path, train_path: Path, created: datetime) -> artifacts.Lineage:
    return {
        "git_commit": git_commit(Path.cwd()),
        "data_hash": md5_of(train_path),
        "params_hash": params_hash(params_path),
        "created": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def package_files(
    model: TrainedModel,
    train: pd.DataFrame,
    onnx_model: bytes,
    manifest: Mapping[str, Any],
    reports: Mapping[str, Mapping[str, Any]],
) -> dict[str, bytes]:
    """Every file of the package but the manifest; ``reports`` holds the verdict, the evaluation
    metrics, the parity report and the resource profile."""
    signature = build_signature(model, train, manifest["model_name"])
    profile = reference_profile(model, train)
    card = model_card(
        signature,
        manifest,
        profile,
        reports["verdict"],
        reports["evaluation"],
        reports["parity"],
        reports["resources"],
    )
    return {
        artifacts.MODEL_FILE: onnx_model,
        artifacts.SIGNATURE_FILE: json_bytes(signature),
        artifacts.PROFILE_FILE: json_bytes(profile),
        RESOURCES_FILE: json_bytes(reports["resources"]),
        artifacts.MODEL_CARD_FILE: card.encode(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parser(__doc__.splitlines()[0])
    for option in ("--model", "--train", "--test", "--verdict", "--metrics", "--out", "--reports"):
        arguments.add_argument(option, type=Path, required=True)
    options = arguments.parse_args(argv)
    params = load_section(options.params, "package", PackageParams)
    verdict = read_json(options.verdict)
    require_accepted(verdict, options.verdict)
    evaluation = read_json(options.metrics)
    model = load_model(options.model)
    train, test = read_table(options.train), read_table(options.test)

    created = datetime.now(UTC)
    lineage = make_lineage(options.params, options.train, created)
    model_hash = artifacts.sha256_of(options.model)
    version = model_version(created, lineage["data_hash"], lineage["params_hash"], model_hash)
    metadata = onnx_metadata(params.model_name, version, lineage, verdict["metrics"])
    with step("package: ONNX conversion", None, announce=len(train) >= ANNOUNCE_ROWS):
        onnx_model = export_onnx(model, params, metadata)
    with step("package: parity on the test set", len(test)):
        parity = check_parity(model, onnx_model, test, params.parity_tolerance)
    write_json(options.reports / "parity.json", parity)
    if not parity["passed"]:
        raise StageError(onnx_export.parity_failure(parity))
    resources = profile_resources(onnx_model, onnx_export.onnx_feed(test, model.spec))
    write_json(options.reports / "resources.json", resources)

    manifest = {
        "model_name": params.model_name,
        "model_version": version,
        "lineage": lineage,
        "metrics": manifest_metrics(evaluation, verdict, parity),
    }
    reports = {
        "verdict": verdict,
        "evaluation": evaluation,
        "parity": parity,
        "resources": resources,
    }
    install_package(
        options.out, package_files(model, train, onnx_model, manifest, reports), manifest
    )
    print(f"packaged {params.model_name} {version} into {options.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
