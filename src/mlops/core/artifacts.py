"""The packaged model directory: what the package stage writes and the scorer and sidecar read.

Standard library only, so the production images can import it without the training stack.

A packaged model directory holds:

- ``model.onnx``: one input per feature column, shape ``[None, 1]``, float32 for numeric and string
  for categorical features, named ``Feature.input_name`` (the column's name made safe for ONNX
  tools by ``input_names``; clients never see it). Outputs: a classifier has ``label`` (string,
  ``[None]``) and ``probabilities`` (float32, ``[None, n_classes]``, columns in
  ``signature.classes`` order); a regressor has ``prediction`` (float32, ``[None, 1]``).
- ``signature.json``: see ``Signature``.
- ``reference_profile.json``: ``mlops.profile.profile_table`` of the training features; under
  ``"raw"`` the raw data's statistics of the features (the validate stage's profile, before
  cleaning: what the sidecar compares live traffic with; absent in older packages); and what live
  predictions are compared with, the model's own predictions on the ``"predicted_rows"`` rows of
  the test split: for a classifier ``"classes": {class: share}`` (after its decision threshold),
  for a regressor ``"prediction"``: the ``profile_column`` of its numbers.
- ``model_card.md``: for people.
- ``resources.json``: latency and peak memory measured at packaging, and the Kubernetes requests
  and limits derived from them.
- ``manifest.json``: see ``Manifest``; ``files`` holds the sha256 of every other file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
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
PREDICTION_OUTPUT = "prediction"  # a regressor's one output
OUTPUT_NAMES = frozenset({LABEL_OUTPUT, PROBABILITIES_OUTPUT, PREDICTION_OUTPUT})
Task = Literal["classification", "regression"]
# How a missing value reaches the model, in training and in serving alike: a missing number is NaN
# (the model's imputer fills it), a missing category is this sentinel (a category of its own).
MISSING_CATEGORY = "__missing__"
# Who scored a prediction log line: the model answering by default, or the one on trial beside it
# (a canary share of the answers, or shadow copies of the requests). A line without ``role`` (a
# log from before roles) is the champion's.
Role = Literal["champion", "challenger"]
CHAMPION: Role = "champion"
CHALLENGER: Role = "challenger"
ROLES: tuple[Role, ...] = (CHAMPION, CHALLENGER)


class Feature(TypedDict):
    name: str  # the column's name as in the data: REST, V2, the prediction log, reports
    input_name: str  # the ONNX graph's input for it (``input_names``)
    type: Literal["number", "string"]
    nullable: bool
    categories: list[str] | None  # allowed values of a string feature (seen in training)
    min: float | None  # range of a number feature seen in training
    max: float | None


class Signature(TypedDict):
    model_name: str
    target: str
    task: Task
    features: list[Feature]
    classes: list[str]  # a classifier's labels, in the order of its probabilities; [] otherwise
    # Binary classification: the class of interest, and the probability of it from which it is
    # predicted (None: the ONNX model's own label, i.e. the more probable class).
    positive_class: str | None
    threshold: float | None


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


class _PredictionFields(TypedDict):
    ts: str  # ISO 8601 UTC with milliseconds, e.g. "2026-11-21T06:00:00.123Z"
    request_id: str  # the HTTP request's id; records of one batch share it
    index: int  # position of the record in its request; (request_id, index) is unique
    model_version: str
    role: Role  # who scored it; a line written before roles has none (``record_role``)
    features: dict[str, Any]  # as received (null for missing), by the data's column names
    prediction: str | float  # the class label, or a regressor's number
    probabilities: dict[str, float] | None  # None for a regressor
    latency_seconds: float  # of the whole request


class PredictionRecord(_PredictionFields, total=False):
    """One line of the prediction log (JSON Lines), written by the scorer per scored record.

    The fields below are there only when there is something to keep: the id the client gave its
    request (V2 ``id``), and a /predict record's fields beside the features
    (``SCORER_EXTRA_FIELDS=ignore``), e.g. an id of its own to join labels to later.

    A challenger's shadow copy of an answered record is a line of its own with the
    answered line's ``request_id``, ``index``, ``features`` (and ``client_request_id``,
    ``extra``), the challenger's ``model_version``, prediction and latency, and ``shadow: true``;
    the key is absent on answered lines."""

    shadow: bool
    client_request_id: str
    extra: dict[str, Any]


def record_role(record: Mapping[str, Any]) -> Role:
    """The role of a prediction log line: its ``role``, or the champion for a line written before
    the scorer served two models."""
    return CHALLENGER if record.get("role") == CHALLENGER else CHAMPION


def iso_timestamp(unix_time: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-21T06:00:00.123Z``."""
    second = int(unix_time)
    return f"{_iso_second(second)}.{int((unix_time - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    """Formatting a time costs more than the rest of a log line; requests share their second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def output_names(task: Task) -> tuple[str, ...]:
    """The ONNX model's outputs for a task: ``label`` and ``probabilities``, or ``prediction``."""
    if task == "regression":
        return (PREDICTION_OUTPUT,)
    return (LABEL_OUTPUT, PROBABILITIES_OUTPUT)


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
    """The signature, with the keys a package from before the task switch lacks filled in (such a
    package is a classifier whose ONNX inputs are named as its columns): a champion packaged by
    an older version of this project stays comparable."""
    signature: Signature = read_json_file(directory / SIGNATURE_FILE)
    signature.setdefault("task", "classification")
    signature.setdefault("positive_class", None)
    signature.setdefault("threshold", None)
    for feature in signature["features"]:
        feature.setdefault("input_name", feature["name"])
    return signature


def input_names(columns: Sequence[str]) -> dict[str, str]:
    """Column name -> ONNX input name: every character that is not a letter, digit or underscore
    becomes ``_``, and a leading digit gets a ``_`` before it (``"Malic Acid"`` -> ``Malic_Acid``,
    ``"1st dose (mg)"`` -> ``_1st_dose__mg_``); a name the model's outputs use gets a ``_`` after
    it (a feature ``label`` is the input ``label_``: one ONNX graph cannot hold two values of one
    name). Two columns that would get the same input name are an error naming both: the model
    could not tell them apart."""
    names: dict[str, str] = {}
    taken: dict[str, str] = {}
    for column in columns:
        name = re.sub(r"\W", "_", column)
        if not name or name[0].isdigit():
            name = f"_{name}"
        if name in OUTPUT_NAMES:
            name = f"{name}_"
        if name in taken:
            raise ArtifactError(
                f"columns {taken[name]!r} and {column!r} both become the model input name "
                f"{name!r} (characters other than letters, digits and _ become _); rename one of "
                "them at the source or drop one (data.drop_columns)"
            )
        taken[name] = column
        names[column] = name
    return names


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
