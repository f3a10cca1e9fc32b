"""Write the Kubernetes resources patch for the scorer from the packaged model's resource profile.

    python -m mlops.gitops.k8s_resources [--profile models/package/resources.json]
                                         [--out deploy/k8s/resources.yaml]

The package stage measures the model's latency and peak memory and suggests requests and limits
(``resources.json``, key ``kubernetes``); this turns them into the strategic-merge patch the
kustomize base applies, so the Deployment asks for what the model was measured to need.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mlops.core.atomic import write_text
from mlops.core.errors import StageError, run

CONTAINER = "scorer"
DEPLOYMENT = "mlops-scorer"
QUANTITY = {
    "cpu": re.compile(r"^\d+(\.\d+)?m?$"),
    "memory": re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"),
}
HEADER = (
    "# Written by `make deploy-resources` from the packaged model's resources.json: the scorer's\n"
    "# requests and limits as measured at packaging. Regenerate it after retraining.\n"
)


def container_resources(profile: Mapping[str, Any], source: str) -> dict[str, dict[str, str]]:
    """The ``requests`` and ``limits`` of the profile's ``kubernetes`` section, checked."""
    kubernetes = profile.get("kubernetes")
    if not isinstance(kubernetes, Mapping):
        raise StageError(f"{source}: no 'kubernetes' section with requests and limits")
    resources: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        values = kubernetes.get(kind)
        if not isinstance(values, Mapping):
            raise StageError(f"{source}: kubernetes.{kind} is missing")
        resources[kind] = {
            name: checked_quantity(values, name, f"{source}: kubernetes.{kind}.{name}")
            for name in QUANTITY
        }
    return resources


def checked_quantity(values: Mapping[str, Any], name: str, where: str) -> str:
    value = values.get(name)
    if not isinstance(value, str) or not QUANTITY[name].match(value):
        raise StageError(f"{where}: expected a Kubernetes {name} quantity, got {value!r}")
    return value


def resources_patch(resources: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """A strategic-merge patch of the Deployment setting the scorer container's resources."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": CONTAINER, "resources": dict(resources)}]}
            }
        },
    }


def render(patch: Mapping[str, Any]) -> str:
    return HEADER + yaml.safe_dump(dict(patch), sort_keys=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=Path("models/package/resources.json"))
    parser.add_argument("--out", type=Path, default=Path("deploy/k8s/resources.yaml"))
    options = parser.parse_args(argv)
    try:
        profile = json.loads(options.profile.read_text())
    except FileNotFoundError:
        missing = f"{options.profile}: no resource profile; run 'make repro' first"
        raise StageError(missing) from None
    except json.JSONDecodeError as error:
        raise StageError(f"{options.profile}: not valid JSON ({error})") from None
    if not isinstance(profile, Mapping):
        raise StageError(f"{options.profile}: expected a JSON object")
    patch = resources_patch(container_resources(profile, str(options.profile)))
    write_text(options.out, render(patch))
    print(f"wrote {options.out}")


if __name__ == "__main__":
    sys.exit(run(main))
