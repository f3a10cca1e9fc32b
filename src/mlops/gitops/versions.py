"""Model versions: their numbers, when a new model breaks clients, and when to register one.

A version is an annotated GTO tag ``<model>@v1.2.0`` whose message records the sha256 of
``model.onnx``; a stage is a tag ``<model>#prod#3`` pointing a stage at a version. Pure rules,
no git: ``tags`` reads and writes the tags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops.core import artifacts
from mlops.core.errors import StageError

PRODUCTION_STAGE = "prod"
FIRST_VERSION = "v1.0.0"
VERSION_PATTERN = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
RECORDED_SHA256 = re.compile(r"model\.onnx sha256=([0-9a-f]{64})")


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    commit: str
    message: str


@dataclass(frozen=True)
class Plan:
    register: bool
    reason: str
    version: str = ""
    model_sha256: str = ""


def parse_version(version: str) -> tuple[int, int, int]:
    match = VERSION_PATTERN.match(version)
    if match is None:
        raise StageError(f"model version '{version}': expected vMAJOR.MINOR.PATCH, e.g. v1.2.0")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def next_version(latest: str | None, breaking: bool) -> str:
    """The first version is v1.0.0; a changed signature bumps the major, anything else the minor."""
    if latest is None:
        return FIRST_VERSION
    major, minor, _ = parse_version(latest)
    return f"v{major + 1}.0.0" if breaking else f"v{major}.{minor + 1}.0"


def signature_changed(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """A client of the old model breaks when a feature, its type, the target or a class changes.

    New categories or wider numeric ranges are not breaking: old requests stay valid.
    """

    def interface(signature: Mapping[str, Any]) -> tuple[object, ...]:
        features = tuple((f["name"], f["type"]) for f in signature["features"])
        return signature["target"], features, tuple(signature["classes"])

    return interface(new) != interface(old)


def tag_message(model_name: str, version: str, sha256: str) -> str:
    """The version tag's message; ``plan`` reads the sha256 back to skip an unchanged model."""
    return f"Register {model_name} {version}: model.onnx sha256={sha256}"


def recorded_sha256(message: str) -> str | None:
    match = RECORDED_SHA256.search(message)
    return match.group(1) if match else None


def model_sha256(manifest: Mapping[str, Any]) -> str:
    try:
        return str(manifest["files"][artifacts.MODEL_FILE])
    except (KeyError, TypeError):
        raise StageError(
            f"the manifest does not list the sha256 of {artifacts.MODEL_FILE}"
        ) from None


def registration_plan(
    verdict: Mapping[str, Any] | None,
    manifest: Mapping[str, Any] | None,
    latest: RegisteredVersion | None,
    breaking: bool,
) -> Plan:
    """Register when the model passed acceptance and differs from the latest version's model."""
    if verdict is None or verdict.get("passed") is not True:
        return Plan(False, "the acceptance test did not pass: nothing to register")
    if manifest is None:
        return Plan(False, "no packaged model: nothing to register")
    sha256 = model_sha256(manifest)
    if latest is not None and recorded_sha256(latest.message) == sha256:
        return Plan(False, f"the packaged model is unchanged since {latest.version}", "", sha256)
    version = next_version(latest.version if latest else None, breaking)
    why = "the signature changed" if breaking else "accepted"
    return Plan(True, f"{why}: register {version}", version, sha256)
