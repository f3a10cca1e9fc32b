"""The kustomize base validates against the Kubernetes API schemas and holds together."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import PROJECT_ROOT, run
from infra.tools import load_yaml_documents, require_tool

BASE = PROJECT_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest release that still gets patches; the HPA needs >= 1.30
RESOURCES_MODULE = "mlops.gitops.k8s_resources"  # `make deploy-resources`


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return loaded


def base_objects() -> dict[str, dict[str, Any]]:
    """The base's resources by kind."""
    objects = {}
    for name in kustomization()["resources"]:
        for document in load_yaml_documents(BASE / name):
            objects[document["kind"]] = document
    return objects


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    validator = require_tool("kubernetes-validate")
    command = [validator, "--strict", "-k", KUBERNETES_VERSION, *map(str, paths)]
    return run(command, PROJECT_ROOT, check=False)


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    return base_objects()


@pytest.fixture(scope="module")
def pod(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]
    return spec


def test_every_manifest_validates() -> None:
    files = [BASE / name for name in kustomization()["resources"]]
    result = validate(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(files)


def test_the_validator_rejects_a_misspelled_field(tmp_path: Path) -> None:
    broken = tmp_path / "deployment.yaml"
    broken.write_text(
        (BASE / "deployment.yaml").read_text().replace("readinessProbe", "readynessProbe")
    )
    result = validate(broken)
    assert result.returncode != 0
    assert "readynessProbe" in result.stdout + result.stderr


def test_kustomization_lists_existing_files_and_the_resources_patch() -> None:
    listed = kustomization()
    for name in listed["resources"] + [patch["path"] for patch in listed["patches"]]:
        assert (BASE / name).is_file(), name
    assert {patch["path"] for patch in listed["patches"]} == {"resources.yaml"}


def test_scorer_and_sidecar_share_an_empty_dir_for_the_log(pod: dict[str, Any]) -> None:
    containers = {container["name"]: container for container in pod["containers"]}
    assert set(containers) == {"scorer", "sidecar"}
    assert containers["scorer"]["image"] == containers["sidecar"]["image"]
    empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
    mounts = [
        {(mount["name"], mount["mountPath"]) for mount in container["volumeMounts"]}
        for container in containers.values()
    ]
    shared = mounts[0] & mounts[1]
    assert len(shared) == 1
    ((volume, path),) = shared
    assert volume in empty_dirs
    logs = [
        {variable["name"]: variable.get("value") for variable in container["env"]}["PREDICTION_LOG"]
        for container in containers.values()
    ]
    assert logs[0] == logs[1]
    assert logs[0].startswith(path + "/")


def test_pod_and_containers_are_locked_down(pod: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]


def grpc_port(container: dict[str, Any]) -> int | None:
    """The container's gRPC port (its SCORER_GRPC_PORT), if it serves gRPC."""
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    port = env.get("SCORER_GRPC_PORT")
    return int(port) if port else None


def test_every_container_has_probes_on_its_own_port(pod: dict[str, Any]) -> None:
    for container in pod["containers"]:
        ports = {port["name"] for port in container["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if "grpc" in container[probe]:  # gRPC's health service, on the gRPC port
                assert container[probe]["grpc"]["port"] == grpc_port(container), probe
                continue
            assert container[probe]["httpGet"]["port"] in ports, (container["name"], probe)
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        readiness = container["readinessProbe"]
        assert "grpc" in readiness or readiness["httpGet"]["path"] == "/health/ready"


def test_the_scorer_serves_grpc_on_the_service_and_is_probed_through_it(
    pod: dict[str, Any], objects: dict[str, dict[str, Any]]
) -> None:
    scorer = next(container for container in pod["containers"] if container["name"] == "scorer")
    port = grpc_port(scorer)
    assert port == 8081
    assert scorer["readinessProbe"]["grpc"] == {"port": port}
    # not a declared container port: the prometheus.io annotations scrape every declared one
    assert port not in {declared["containerPort"] for declared in scorer["ports"]}
    (service_port,) = [p for p in objects["Service"]["spec"]["ports"] if p["name"] == "grpc"]
    assert service_port["targetPort"] == port
    assert service_port["appProtocol"] == "kubernetes.io/h2c"


def test_service_hpa_and_pdb_point_at_the_deployment(objects: dict[str, dict[str, Any]]) -> None:
    deployment = objects["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    pod = deployment["spec"]["template"]["spec"]
    container_ports = {port["name"] for c in pod["containers"] for port in c["ports"]}
    service = objects["Service"]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    grpc_ports = {grpc_port(container) for container in pod["containers"]} - {None}
    assert {port["targetPort"] for port in service["ports"]} == container_ports | grpc_ports
    assert (
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items()
        <= pod_labels.items()
    )
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    scaled_on = {metric["containerResource"]["container"] for metric in hpa["metrics"]}
    assert scaled_on == {"scorer"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert "prometheus.io/port" not in annotations  # so both containers' ports are scraped


def test_resources_patch_targets_the_scorer_container(objects: dict[str, dict[str, Any]]) -> None:
    (patch,) = load_yaml_documents(BASE / "resources.yaml")
    assert patch["metadata"]["name"] == objects["Deployment"]["metadata"]["name"]
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "scorer"
    assert set(container["resources"]) == {"requests", "limits"}


def run_resources_script(profile: Path, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", RESOURCES_MODULE, "--profile", str(profile), "--out", str(out)]
    return run(command, PROJECT_ROOT, check=False)


def test_resources_patch_is_written_from_the_packaged_profile(
    packaged_model: Path, tmp_path: Path
) -> None:
    profile = json.loads((packaged_model / "resources.json").read_text())
    out = tmp_path / "resources.yaml"
    result = run_resources_script(packaged_model / "resources.json", out)
    assert result.returncode == 0, result.stderr
    (patch,) = load_yaml_documents(out)
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == profile["kubernetes"]
    deployment = tmp_path / "deployment.yaml"
    merged = yaml.safe_load((BASE / "deployment.yaml").read_text())
    for target in merged["spec"]["template"]["spec"]["containers"]:
        if target["name"] == "scorer":
            target["resources"] = container["resources"]
    deployment.write_text(yaml.safe_dump(merged))
    assert validate(deployment).returncode == 0


def test_resources_script_names_a_bad_quantity(tmp_path: Path) -> None:
    profile = tmp_path / "resources.json"
    profile.write_text(
        json.dumps(
            {
                "kubernetes": {
                    "requests": {"cpu": "250m", "memory": "lots"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                }
            }
        )
    )
    result = run_resources_script(profile, tmp_path / "out.yaml")
    assert result.returncode == 1
    assert "kubernetes.requests.memory" in result.stderr
    assert "'lots'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_kustomize_renders_a_valid_base(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the base is checked file by file only")
    rendered = run([kubectl, "kustomize", str(BASE)], PROJECT_ROOT, check=False)
    if rendered.returncode != 0 and "unknown field" in rendered.stderr:
        pytest.skip(f"this kubectl's kustomize is too old: {rendered.stderr.strip()}")
    assert rendered.returncode == 0, rendered.stderr
    output = tmp_path / "rendered.yaml"
    output.write_text(rendered.stdout)
    documents = {document["kind"]: document for document in yaml.safe_load_all(rendered.stdout)}
    assert set(documents) == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    (patch,) = load_yaml_documents(BASE / "resources.yaml")
    patched = patch["spec"]["template"]["spec"]["containers"][0]["resources"]
    containers = documents["Deployment"]["spec"]["template"]["spec"]["containers"]
    resources = {container["name"]: container["resources"] for container in containers}
    assert resources["scorer"] == patched
    assert set(resources["sidecar"]) == {"requests", "limits"}
    result = validate(output)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_scrapes_both_service_ports(objects: dict[str, dict[str, Any]]) -> None:
    (monitor,) = load_yaml_documents(BASE / "servicemonitor.yaml")
    assert monitor["kind"] == "ServiceMonitor"
    service = objects["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    scraped = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    metrics_ports = {port["name"] for port in service["spec"]["ports"]} - {"grpc"}  # no /metrics
    assert scraped == metrics_ports
