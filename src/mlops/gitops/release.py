"""A release, named by the git ref that started it: its version, image tags, labels, deployment."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlops.core.errors import StageError
from mlops.gitops.rollout import CHALLENGER_STAGES, State
from mlops.gitops.versions import PRODUCTION_STAGE, model_sha256, recorded_sha256

VERSION_TAG = re.compile(r"^(?P<name>[^@#]+)@(?P<version>v\d+\.\d+\.\d+)$")
STAGE_TAG = re.compile(r"^(?P<name>[^@#]+)#(?P<stage>[^#]+)(#\d+)?$")


def release_version(
    ref_name: str, ref_type: str, resolve_stage: Callable[[str], str]
) -> tuple[str | None, str]:
    """(registry version or None, stage or "") named by the git ref that started the release."""
    if ref_type != "tag":
        return None, ""
    if match := VERSION_TAG.match(ref_name):
        return match["version"], ""
    if match := STAGE_TAG.match(ref_name):
        return resolve_stage(ref_name), match["stage"]
    raise StageError(
        f"tag '{ref_name}' is neither a version (<model>@vX.Y.Z) nor a stage (<model>#<stage>#N)"
    )


def tag_model_name(ref_name: str) -> str | None:
    """The model a registry tag (``<model>@vX.Y.Z`` or ``<model>#<stage>#N``) is of."""
    match = VERSION_TAG.match(ref_name) or STAGE_TAG.match(ref_name)
    return match["name"] if match else None


def check_registered_model(
    manifest: Mapping[str, Any], name: str, version: str, message: str | None
) -> str:
    """The packaged model is the one the version tag ``<name>@<version>`` registered: the same
    model, and the sha256 of model.onnx its message records. Returns what was checked; stops
    the release otherwise (the image would ship a model nobody evaluated under that version)."""
    tag = f"{name}@{version}"
    if message is None:
        raise StageError(f"version tag '{tag}' not found: cannot check the packaged model")
    if manifest.get("model_name") != name:
        raise StageError(
            f"'{tag}' is a version of model '{name}', but the packaged model is "
            f"'{manifest.get('model_name')}' (package.model_name in params.yaml at this commit)"
        )
    registered, packaged = recorded_sha256(message), model_sha256(manifest)
    if registered is None:
        raise StageError(
            f"'{tag}' records no model.onnx sha256 (its message: {message.strip()!r}); "
            "register versions with `make register`, whose tags record it"
        )
    if registered != packaged:
        raise StageError(
            f"the packaged model.onnx (sha256 {packaged}) is not the model '{tag}' registered "
            f"(sha256 {registered}): this release would ship another model than the one "
            "evaluated. Release the registered model: set DVC_REMOTE_URL so that `make model` "
            "pulls it (dvc.lock names it) instead of rebuilding it"
        )
    return f"model.onnx sha256 {packaged} is the one '{tag}' registered"


def release_info(
    manifest: Mapping[str, Any],
    version: str | None,
    stage: str,
    repository: str,
    commit: str,
    source_url: str,
    created: datetime,
) -> dict[str, str]:
    """Image references, and the Dockerfile's build arguments that become its OCI labels.

    The image version is the registry version (an unregistered build: the manifest's version);
    the model version and sha256 are the manifest's, which the scorer reports and verifies.
    """
    name = manifest["model_name"]
    image_version = version or manifest["model_version"]
    image = repository.lower()
    tags = [f"{image}:{name}-{image_version}", f"{image}:sha-{commit[:12]}"]
    if stage:
        tags.append(f"{image}:{name}-{stage}")
    build_args = {
        "SOURCE": source_url,
        "REVISION": commit,
        "VERSION": image_version,
        "CREATED": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "MODEL_NAME": name,
        "MODEL_VERSION": manifest["model_version"],
        "MODEL_SHA256": model_sha256(manifest),
    }
    return {
        "model": name,
        "version": image_version,
        "stage": stage,
        "image": image,
        "image-tag": tags[0],
        "tags": "\n".join(tags),
        "build-args": "\n".join(f"{key}={value}" for key, value in build_args.items()),
    }


def should_deploy(stage: str, requested: bool, kubeconfig_set: bool) -> bool:
    """Deploy a promotion to production or to a challenger stage (canary, shadow: served beside
    the champion in production), or a manual release that asks for it, given a cluster."""
    return kubeconfig_set and (stage in (PRODUCTION_STAGE, *CHALLENGER_STAGES) or requested)


@dataclass(frozen=True)
class Roles:
    """What production serves after a release: the champion and, beside it in the same pod, the
    challenger (if any), with the registry versions the pod is told (the sidecar's verdict names
    them); ``role`` is the one the released version takes (its image is the one this run built)."""

    role: str  # champion | challenger
    champion: str
    challenger: str = ""
    mode: str = ""  # canary | shadow, with a challenger

    def describe(self) -> str:
        beside = f" with the {self.mode} challenger {self.challenger}" if self.challenger else ""
        return f"production: the champion {self.champion}{beside}"


def deployment_roles(version: str, stage: str, state: State) -> tuple[Roles | None, str]:
    """The roles production takes when the release of ``version`` (assigned to ``stage``, or
    none) deploys, and why; None when deploying it would put back what the registry no longer
    says. Production serves what the stages say now: a challenger's release deploys it beside
    the champion in ``prod``; any other release deploys its version as the champion, beside the
    challenger the registry has (none once it was withdrawn or promoted)."""
    if stage in CHALLENGER_STAGES:
        if (state.challenger, state.mode) != (version, stage):
            now = f"{state.challenger} in {state.mode}" if state.challenger else "none"
            return None, (
                f"{version} is no longer the {stage} challenger (the challenger now: {now}): "
                "a later stage tag changed production, nothing to deploy for this one"
            )
        if state.champion is None:
            return None, f"no version is in {PRODUCTION_STAGE}: a challenger needs a champion"
        roles = Roles("challenger", state.champion, version, stage)
        return roles, roles.describe()
    if state.challenger and state.challenger != version:
        roles = Roles("champion", version, state.challenger, state.mode or "")
    else:
        roles = Roles("champion", version)
    return roles, roles.describe()


def companion_image(roles: Roles, deployed: str | None, image: str, name: str) -> str:
    """The image of the role this release did not build: the one a deployment ran it from
    (pinned by digest), else the image its own release pushed (``<image>:<model>-vX.Y.Z``)."""
    other = roles.champion if roles.role == "challenger" else roles.challenger
    if not other:
        return ""
    return deployed or f"{image.lower()}:{name}-{other}"
