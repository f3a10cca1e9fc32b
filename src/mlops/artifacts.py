"""The packaged model directory: what the package stage writes and the scorer and sidecar read.

Standard library only, so the production images can import it without the training stack.

A packaged model directory holds:

- ``model.onnx``: one input per feature column, named after it, shape ``[None, 1]``, float32 for
  numeric and string for categorical features; outputs ``label`` (string, ``[None]``) and
  ``probabilities`` (float32, ``[None, n_classes]``, columns in ``signature.classes`` order).
- ``signature.json``: see ``Signature``.
- ``reference_profile.json``: ``mlops.profile.profile_table`` of the training features (the drift
  reference), with ``"classes": {class: share}`` of the training labels added.
- ``model_card.md``: for people.
- ``resources.json``: latency and peak memory measured at packaging, and the Kubernetes requests
  and limits derived from them.
- ``manifest.json``: see ``Manifest``; ``files`` holds the sha256 of every other file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypedDict

MODEL_FILE = "model.onnx"
SIGNATURE_FILE = "signature.json"
PROFILE_FILE = "reference_profile.json"
MODEL_CARD_FILE = "model_card.md"
RESOURCES_FILE = "resources.json"  # the resource profile (latency, memory, Kubernetes sizing)
MANIFEST_FILE = "manifest.json"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
# How a missing value reaches the model, in training and in serving alike: a missing number is NaN
# (the model's imputer fills it), a missing category is this sentinel (a category of its own).
MISSING_CATEGORY = "__missing__"


class Feature(TypedDict):
    name: str
    type: Literal["number", "string"]
    nullable: bool
    categories: list[str] | None  # allowed values of a string feature (seen in training)
    min: float | None  # range of a number feature seen in training
    max: float | None


class Signature(TypedDict):
    model_name: str
    target: str
    features: list[Feature]
    classes: list[str]


class Lineage(TypedDict):
    git_commit: str
    data_hash: str  # md5 of the training table, as DVC computes it
    params_hash: str  # sha256 of the canonical JSON of the params the pipeline read
    created: str  # ISO 8601 UTC


class Manifest(TypedDict):
    model_name: str
    model_version: str
    lineage: Lineage
    metrics: dict[str, Any]
    files: dict[str, str]  # file name -> sha256


class PredictionRecord(TypedDict):
    """One line of the prediction log (JSON Lines), written by the scorer per scored record."""

    ts: str  # ISO 8601 UTC with milliseconds, e.g. "2026-11-21T06:00:00.123Z"
    request_id: str  # the HTTP request's id; records of one batch share it
    index: int  # position of the record in its request; (request_id, index) is unique
    model_version: str
    features: dict[str, Any]  # as received (null for missing)
    prediction: str
    probabilities: dict[str, float]
    latency_seconds: float  # of the whole request


class ArtifactError(Exception):
    """The packaged model directory is missing a file, or a file does not match its manifest."""


def sha256_of(path: Path) -> str:
    return file_digest(path, "sha256")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file (DVC names files by md5; the manifest holds sha256)."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, algorithm).hexdigest()


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing from the packaged model") from None
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path}: not valid JSON ({error})") from None


def load_manifest(directory: Path) -> Manifest:
    manifest: Manifest = read_json_file(directory / MANIFEST_FILE)
    return manifest


def load_signature(directory: Path) -> Signature:
    signature: Signature = read_json_file(directory / SIGNATURE_FILE)
    return signature


def load_reference_profile(directory: Path) -> dict[str, Any]:
    profile: dict[str, Any] = read_json_file(directory / PROFILE_FILE)
    return profile


def verify(directory: Path) -> Manifest:
    """Check each file in the manifest against its sha256; raise naming the first mismatch."""
    manifest = load_manifest(directory)
    for name in (MODEL_FILE, SIGNATURE_FILE, PROFILE_FILE):
        if name not in manifest["files"]:
            raise ArtifactError(f"{directory / MANIFEST_FILE}: does not list {name}")
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in the manifest but missing")
        actual = sha256_of(path)
        if actual != expected:
            raise ArtifactError(
                f"{path}: sha256 {actual} does not match the manifest's {expected}; "
                "the file was changed after packaging"
            )
    return manifest
