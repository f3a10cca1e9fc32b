"""The challenger variant (deploy/k8s-challenger) and the overlays a release applies.

The variant renders with kustomize and validates against the Kubernetes API schemas; its pod keeps
the base's lock-down with the challenger's init container in it; the model it copies reaches the
scorer read-only where SCORER_CHALLENGER_DIR says; the sidecar gets the scorer's address, the
thresholds the image holds and the registry versions. The overlay writer
(``python -m mlops.gitops.k8s_overlay``, standard library only, as the deploy job runs it) picks
the base or the variant and sets both images, by digest or by tag.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import PROJECT_ROOT, run
from infra.test_k8s_validate import validate
from infra.tools import load_yaml_documents

VARIANT = PROJECT_ROOT / "deploy" / "k8s-challenger"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
CHAMPION = "ghcr.io/owner/project@sha256:" + "a" * 64
CHALLENGER = "ghcr.io/owner/project@sha256:" + "b" * 64


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomize cannot render the variant")
    rendered = run([kubectl, "kustomize", str(directory)], PROJECT_ROOT, check=False)
    assert rendered.returncode == 0, rendered.stderr
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {document["kind"]: document for document in documents}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """Each variable's value, or its source (``valueFrom``)."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def containers_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod.get("initContainers", []) + pod["containers"]}


def config_values(documents: dict[str, dict[str, Any]], source: dict[str, Any]) -> str:
    """The value a ``configMapKeyRef`` gives, from the rendered ConfigMap it names."""
    reference = source["configMapKeyRef"]
    config_map = documents["ConfigMap"]
    assert reference["name"] == config_map["metadata"]["name"]  # kustomize's hashed name
    value: str = config_map["data"][reference["key"]]
    return value


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    documents = kustomize(VARIANT)
    output = tmp_path_factory.mktemp("variant") / "rendered.yaml"
    output.write_text(yaml.safe_dump_all(documents))
    return {"documents": by_kind(documents), "path": output}


def test_the_variant_renders_and_validates(rendered: dict[str, Any]) -> None:
    assert set(rendered["documents"]) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    result = validate(rendered["path"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 5


def test_the_validator_rejects_a_broken_init_container(tmp_path: Path) -> None:
    shutil.copytree(VARIANT.parent / "k8s", tmp_path / "k8s")
    broken = tmp_path / VARIANT.name
    shutil.copytree(VARIANT, broken)
    patch = broken / "challenger.yaml"
    patch.write_text(patch.read_text().replace("readOnly: true", "readOnly: sure"))
    output = tmp_path / "rendered.yaml"
    output.write_text(yaml.safe_dump_all(kustomize(broken)))
    result = validate(output)
    assert result.returncode != 0
    assert "readOnly" in result.stdout + result.stderr


def test_the_challengers_model_reaches_the_scorer_read_only(rendered: dict[str, Any]) -> None:
    """The init container copies its image's /app/model (where the Dockerfile puts every
    release's model) into an emptyDir; the scorer mounts it read-only at SCORER_CHALLENGER_DIR,
    the sidecar at MONITOR_CHALLENGER_MODEL_DIR."""
    deployment = rendered["documents"]["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    containers = containers_of(deployment)
    (init,) = pod["initContainers"]
    assert init["image"] == "mlops-challenger"  # the overlay's second image
    assert {containers["scorer"]["image"], containers["sidecar"]["image"]} == {"mlops"}
    assert "COPY models/package /app/model" in DOCKERFILE.read_text()
    source, target = init["command"][-2:]
    assert init["command"][:2] == ["cp", "-R"] and source == "/app/model/."
    (written,) = init["volumeMounts"]
    assert target.rstrip("/") == written["mountPath"] and not written.get("readOnly")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[written["name"]]
    scorer = containers["scorer"]
    (read,) = [m for m in scorer["volumeMounts"] if m["name"] == written["name"]]
    assert read["readOnly"] is True
    assert env_of(scorer)["SCORER_CHALLENGER_DIR"] == read["mountPath"]
    # the sidecar reads the same package (its own reference for the challenger's drift)
    sidecar = containers["sidecar"]
    (shared,) = [m for m in sidecar["volumeMounts"] if m["name"] == written["name"]]
    assert shared["readOnly"] is True
    assert env_of(sidecar)["MONITOR_CHALLENGER_MODEL_DIR"] == shared["mountPath"]


def test_every_container_of_the_pod_is_locked_down_and_sized(rendered: dict[str, Any]) -> None:
    deployment = rendered["documents"]["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    for name, container in containers_of(deployment).items():
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert set(container["resources"]) == {"requests", "limits"}, name


def test_the_rollout_settings_reach_the_scorer_and_the_sidecar(rendered: dict[str, Any]) -> None:
    documents = rendered["documents"]
    containers = containers_of(documents["Deployment"])
    scorer, sidecar = env_of(containers["scorer"]), env_of(containers["sidecar"])
    assert config_values(documents, scorer["SCORER_CHALLENGER_MODE"]) == "shadow"
    assert config_values(documents, scorer["SCORER_CANARY_PERCENT"]) == "10"
    assert sidecar["MONITOR_SCORER_URL"] == f"http://127.0.0.1:{scorer['SCORER_PORT']}"
    # the thresholds: the file the image holds, at the path its ENV names
    dockerfile = DOCKERFILE.read_text()
    copied = re.search(r"^COPY deploy/rollout\.yaml (\S+)$", dockerfile, re.MULTILINE)
    assert copied is not None
    assert sidecar["MONITOR_ROLLOUT_SETTINGS"] == copied.group(1)
    assert f"MONITOR_ROLLOUT_SETTINGS={copied.group(1)}" in dockerfile
    for role in ("CHAMPION", "CHALLENGER"):  # empty until an overlay says: no verdict is sent
        assert config_values(documents, sidecar[f"MONITOR_{role}_REGISTRY_VERSION"]) == ""


def write_overlay(out: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``python3 -S``: the standard library and src/ only, as the deploy job runs it."""
    command = [sys.executable, "-S", "-m", "mlops.gitops.k8s_overlay", "--out", str(out)]
    env = {"PYTHONPATH": str(PROJECT_ROOT / "src")}
    return run([*command, *arguments], PROJECT_ROOT, check=False, env=env)


def test_a_challengers_release_deploys_both_images_in_one_pod(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    result = write_overlay(
        overlay / "kustomization.yaml",
        *("--image", CHALLENGER, "--role", "challenger", "--companion-image", CHAMPION),
        *("--champion", "v1.2.0", "--challenger", "v1.3.0", "--challenger-mode", "canary"),
        *("--namespace", "production", "--replicas", "3"),
    )
    assert result.returncode == 0, result.stderr
    assert "deploy/k8s-challenger, the champion v1.2.0 with the canary challenger v1.3.0" in (
        result.stdout
    )
    documents = kustomize(overlay)
    assert {document["metadata"]["namespace"] for document in documents} == {"production"}
    kinds = by_kind(documents)
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    containers = containers_of(deployment)
    images = {name: container["image"] for name, container in containers.items()}
    assert images == {"challenger-model": CHALLENGER, "scorer": CHAMPION, "sidecar": CHAMPION}
    scorer, sidecar = env_of(containers["scorer"]), env_of(containers["sidecar"])
    assert config_values(kinds, scorer["SCORER_CHALLENGER_MODE"]) == "canary"
    assert config_values(kinds, scorer["SCORER_CANARY_PERCENT"]) == "10"  # the variant's
    assert config_values(kinds, sidecar["MONITOR_CHAMPION_REGISTRY_VERSION"]) == "v1.2.0"
    assert config_values(kinds, sidecar["MONITOR_CHALLENGER_REGISTRY_VERSION"]) == "v1.3.0"
    output = tmp_path / "rendered.yaml"
    output.write_text(yaml.safe_dump_all(documents))
    assert validate(output).returncode == 0


def test_a_champions_release_alone_deploys_the_base(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay" / "kustomization.yaml"
    result = write_overlay(overlay, "--image", "registry.local:5000/mlops:penguins-v1.2.0")
    assert result.returncode == 0, result.stderr
    (kustomization,) = load_yaml_documents(overlay)
    assert (overlay.parent / kustomization["resources"][0]).resolve() == PROJECT_ROOT / "deploy/k8s"
    assert kustomization["images"] == [
        {"name": "mlops", "newName": "registry.local:5000/mlops", "newTag": "penguins-v1.2.0"}
    ]
    documents = by_kind(kustomize(overlay.parent))
    assert "ConfigMap" not in documents
    containers = containers_of(documents["Deployment"])
    assert set(containers) == {"scorer", "sidecar"}
    assert {c["image"] for c in containers.values()} == {
        "registry.local:5000/mlops:penguins-v1.2.0"
    }
    assert "SCORER_CHALLENGER_DIR" not in env_of(containers["scorer"])


def test_a_champions_release_keeps_the_challenger_beside_it(tmp_path: Path) -> None:
    """A new champion (or a redeployment) while a challenger holds its stage: the challenger's
    image is the companion, an earlier release's."""
    overlay = tmp_path / "overlay"
    result = write_overlay(
        overlay / "kustomization.yaml",
        *("--image", CHAMPION, "--companion-image", "ghcr.io/owner/project:penguins-v1.3.0"),
        *("--champion", "v1.2.0", "--challenger", "v1.3.0", "--challenger-mode", "shadow"),
    )
    assert result.returncode == 0, result.stderr
    containers = containers_of(by_kind(kustomize(overlay))["Deployment"])
    assert containers["challenger-model"]["image"] == "ghcr.io/owner/project:penguins-v1.3.0"
    assert containers["scorer"]["image"] == CHAMPION


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            [
                "--role",
                "challenger",
                "--champion",
                "v1.2.0",
                "--challenger",
                "v1.3.0",
                "--challenger-mode",
                "canary",
            ],
            "both images are needed (champion: '', challenger: '" + CHAMPION + "')",
        ),
        (
            [
                "--companion-image",
                CHALLENGER,
                "--champion",
                "v1.2.0",
                "--challenger",
                "v1.3.0",
                "--challenger-mode",
                "blue-green",
            ],
            "--challenger-mode 'blue-green': expected one of ('canary', 'shadow')",
        ),
        (
            [
                "--companion-image",
                CHALLENGER,
                "--champion",
                "20261121-0123abcd",
                "--challenger",
                "v1.3.0",
                "--challenger-mode",
                "shadow",
            ],
            "--champion '20261121-0123abcd': expected the registry version vMAJOR.MINOR.PATCH",
        ),
        (["--role", "challenger"], "--role challenger: the challenger's version"),
        (["--namespace", "Production"], "namespace 'Production': expected a DNS label"),
    ],
)
def test_a_wrong_overlay_setting_is_named_and_nothing_is_written(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    out = tmp_path / "kustomization.yaml"
    result = write_overlay(out, "--image", CHAMPION, *arguments)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_an_image_reference_that_is_no_reference_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "kustomization.yaml"
    result = write_overlay(out, "--image", "ghcr.io/o/r:v1\n  - name: injected")
    assert result.returncode == 1 and "expected <repository>[:<tag>]" in result.stderr
    assert not out.exists()
