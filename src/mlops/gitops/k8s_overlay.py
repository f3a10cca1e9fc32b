"""The kustomize overlay a release applies: the base, or the challenger variant, with its images.

    python3 -m mlops.gitops.k8s_overlay --out DIR/kustomization.yaml --image REF
        [--namespace mlops] [--replicas 2] [--role champion|challenger]
        [--companion-image REF --champion vX.Y.Z --challenger vX.Y.Z --challenger-mode canary]

Production serves what the registry's stages say: the champion alone (``deploy/k8s``), or the
champion with a challenger in the same pod (``deploy/k8s-challenger``: the scorer routes canary
requests or shadows each one, the sidecar compares the two). The release built one of the two
images (``--image``, in ``--role``); the other, its companion, is an earlier release's. The
registry versions reach the pod through the variant's ConfigMap ``mlops-rollout``: the sidecar's
verdict names them, and the rollout workflow acts on a verdict only when they are the versions in
the stages.

Standard library only: ``scripts/ci/k8s-release.sh`` runs it with the runner's ``python3``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlops.core.atomic import write_text
from mlops.core.errors import StageError, run
from mlops.gitops.deployments import ROLES, pod_images
from mlops.gitops.rollout import CHALLENGER_STAGES
from mlops.gitops.versions import VERSION_PATTERN

BASE = Path("deploy/k8s")
VARIANT = Path("deploy/k8s-challenger")
DEPLOYMENT = "mlops-scorer"
CHAMPION_IMAGE = "mlops"  # the image names the base and the variant leave to an overlay
CHALLENGER_IMAGE = "mlops-challenger"
ROLLOUT_CONFIG = "mlops-rollout"  # the variant's ConfigMap: the mode and the registry versions
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
IMAGE_REFERENCE = re.compile(r"^[a-z0-9][\w./:-]*(@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class Challenger:
    """The challenger beside the champion, and the registry versions the pod is told."""

    version: str
    mode: str
    image: str
    champion_version: str


def image_entry(name: str, reference: str) -> list[str]:
    """The ``images:`` entry pointing the manifests' image ``name`` at ``reference``."""
    if not IMAGE_REFERENCE.match(reference):
        raise StageError(
            f"image '{reference}': expected <repository>[:<tag>] or <repository>@sha256:<digest>"
        )
    repository, digest = reference.partition("@")[::2]
    lines = [f"  - name: {name}"]
    if digest:
        return [*lines, f"    newName: {json.dumps(repository)}", f"    digest: {digest}"]
    if ":" not in repository[repository.rfind("/") :]:  # no tag (a registry's port is no tag)
        return [*lines, f"    newName: {json.dumps(repository)}"]
    repository, _, tag = repository.rpartition(":")
    return [*lines, f"    newName: {json.dumps(repository)}", f"    newTag: {json.dumps(tag)}"]


def challenger_of(
    role: str, image: str, companion: str, champion: str, version: str, mode: str
) -> tuple[str, Challenger | None]:
    """(the champion's image, the challenger or None), checked: a challenger needs its image,
    its mode and both registry versions."""
    champion_image, challenger_image = pod_images(role, image, companion)
    if not version:
        if role == "challenger":
            raise StageError("--role challenger: the challenger's version (--challenger) is empty")
        return champion_image, None
    for flag, value in (("--champion", champion), ("--challenger", version)):
        if not VERSION_PATTERN.match(value):
            raise StageError(f"{flag} '{value}': expected the registry version vMAJOR.MINOR.PATCH")
    if mode not in CHALLENGER_STAGES:
        raise StageError(f"--challenger-mode '{mode}': expected one of {CHALLENGER_STAGES}")
    if not (champion_image and challenger_image):
        raise StageError(
            "a challenger is deployed beside the champion: both images are needed "
            f"(champion: '{champion_image}', challenger: '{challenger_image}')"
        )
    return champion_image, Challenger(version, mode, challenger_image, champion)


def overlay(
    base: str, namespace: str, replicas: int, champion: str, challenger: Challenger | None
) -> str:
    """The kustomization: ``base`` (a path relative to the overlay) with the images, the
    namespace, the replica count, and with a challenger the rollout's settings."""
    if not NAMESPACE.match(namespace):
        raise StageError(f"namespace '{namespace}': expected a DNS label (a-z, 0-9, '-')")
    if replicas < 1:
        raise StageError(f"replicas {replicas}: expected at least 1")
    lines = [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        f"namespace: {namespace}",
        "resources:",
        f"  - {json.dumps(base)}",
        "images:",
        *image_entry(CHAMPION_IMAGE, champion),
    ]
    if challenger is not None:
        lines += image_entry(CHALLENGER_IMAGE, challenger.image)
        settings = {
            "challenger-mode": challenger.mode,
            "champion-registry-version": challenger.champion_version,
            "challenger-registry-version": challenger.version,
        }
        lines += [
            "configMapGenerator:",
            f"  - name: {ROLLOUT_CONFIG}",
            "    behavior: merge",
            "    literals:",
            *(f"      - {json.dumps(f'{key}={value}')}" for key, value in settings.items()),
        ]
    lines += [
        "patches:",
        "  - target:",
        "      kind: Deployment",
        f"      name: {DEPLOYMENT}",
        "    patch: |-",
        "      - op: replace",
        "        path: /spec/replicas",
        f"        value: {replicas}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the overlay's kustomization.yaml")
    parser.add_argument("--image", required=True, help="the image this release built")
    parser.add_argument("--role", default="champion", choices=ROLES, help="its role")
    parser.add_argument("--companion-image", default="", help="the other role's image")
    parser.add_argument("--champion", default="", help="the champion's registry version")
    parser.add_argument("--challenger", default="", help="the challenger's; empty: none")
    parser.add_argument("--challenger-mode", default="", help="canary or shadow")
    parser.add_argument("--namespace", default="mlops")
    parser.add_argument("--replicas", type=int, default=2)
    options = parser.parse_args(argv)
    champion, challenger = challenger_of(
        options.role,
        options.image,
        options.companion_image,
        options.champion,
        options.challenger,
        options.challenger_mode,
    )
    source = VARIANT if challenger else BASE
    base = os.path.relpath(source.resolve(), options.out.parent.resolve())
    write_text(
        options.out, overlay(base, options.namespace, options.replicas, champion, challenger)
    )
    serving = f" with the {challenger.mode} challenger {challenger.version}" if challenger else ""
    print(f"wrote {options.out}: {source}, the champion {options.champion or champion}{serving}")


if __name__ == "__main__":
    raise SystemExit(run(main))
