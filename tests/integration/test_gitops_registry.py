"""The model registry in a real git + DVC repository with a remote: GTO tags, champion, plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import BIN, run
from mlops.core import artifacts
from workflows import filters_match, load_workflow, parse_output_file

REGISTRY = [str(BIN / "python"), "-m", "mlops.gitops.registry"]
PARAMS = "package:\n  model_name: penguins\naccept:\n  champion: models/champion\n"


def write_package(directory: Path, model: bytes, classes: list[str]) -> str:
    """A packaged model directory that passes ``artifacts.verify``; returns the model's sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    signature = {
        "model_name": "penguins",
        "target": "species",
        "features": [{"name": "bill_length_mm", "type": "number", "min": 30.0, "max": 60.0}],
        "classes": classes,
    }
    files = {
        artifacts.MODEL_FILE: model,
        artifacts.SIGNATURE_FILE: json.dumps(signature).encode(),
        artifacts.PROFILE_FILE: b'{"rows": 1, "columns": {}}',
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    manifest = {
        "model_name": "penguins",
        "model_version": "20261121-00000000",
        "lineage": {},
        "metrics": {},
        "files": {name: artifacts.sha256_of(directory / name) for name in files},
    }
    (directory / artifacts.MANIFEST_FILE).write_text(json.dumps(manifest))
    return str(manifest["files"][artifacts.MODEL_FILE])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of a bare origin, with DVC and a DVC-tracked package at models/package."""
    base = tmp_path_factory.mktemp("registry")
    origin = base / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], base)
    root = base / "work"
    run(["git", "clone", "-q", str(origin), str(root)], base)
    for key, value in (("user.email", "test@example.com"), ("user.name", "test")):
        run(["git", "config", key, value], root)
    run(["dvc", "init", "-q"], root)
    (root / "params.yaml").write_text(PARAMS)
    write_package(root / "models" / "package", b"model one", ["Adelie", "Gentoo"])
    run(["dvc", "add", "-q", "models/package"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "first model"], root)
    run(["git", "push", "-q", "origin", "main"], root)
    return base


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template repository and its origin for one test."""
    shutil.copytree(template / "origin.git", tmp_path / "origin.git")
    root = tmp_path / "work"
    shutil.copytree(template / "work", root, symlinks=True)
    run(["git", "remote", "set-url", "origin", str(tmp_path / "origin.git")], root)
    return root


def registry(root: Path, *arguments: str, check: bool = True) -> dict[str, str]:
    output = root.parent / "github_output"
    output.write_text("")
    result = run([*REGISTRY, *arguments], root, check=check, env={"GITHUB_OUTPUT": str(output)})
    return {"stdout": result.stdout + result.stderr, **parse_output_file(output.read_text())}


def remote_tags(root: Path) -> dict[str, str]:
    listing = run(["git", "ls-remote", "--tags", "origin"], root).stdout.splitlines()
    return {
        line.split()[1].removeprefix("refs/tags/").removesuffix("^{}"): line.split()[0]
        for line in listing
    }


def release_tag_filters() -> list[str]:
    release: dict[str, Any] = load_workflow("release.yml")
    return list(release["on"]["push"]["tags"])


def test_register_and_promote_push_tags_that_start_a_release(repo: Path) -> None:
    sha = artifacts.sha256_of(repo / "models" / "package" / "model.onnx")
    registered = registry(repo, "register", "--version", "v1.0.0", "--model-sha256", sha, "--push")
    assert registered["tag"] == "penguins@v1.0.0"
    promoted = registry(repo, "promote", "--version", "v1.0.0", "--stage", "prod", "--push")
    assert promoted["tag"] == "penguins#prod#1"

    tags = remote_tags(repo)
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert {"penguins@v1.0.0", "penguins#prod#1"} <= set(tags)
    assert all(filters_match(release_tag_filters(), tag) for tag in tags)
    shown = run(["gto", "show", "penguins", "--json"], repo).stdout
    assert json.loads(shown)[0]["commit_hexsha"] == head
    message = run(["git", "tag", "-l", "--format=%(contents)", "penguins@v1.0.0"], repo).stdout
    assert f"model.onnx sha256={sha}" in message


def test_registering_an_existing_version_fails_with_one_line(repo: Path) -> None:
    sha = "0" * 64
    registry(repo, "register", "--version", "v1.0.0", "--model-sha256", sha)
    again = registry(repo, "register", "--version", "v1.0.0", "--model-sha256", sha, check=False)
    assert again["stdout"].startswith("error: gto register penguins v1.0.0")
    assert "Traceback" not in again["stdout"]
    bad = registry(repo, "register", "--version", "1.0", "--model-sha256", sha, check=False)
    assert "expected vMAJOR.MINOR.PATCH" in bad["stdout"]


def write_verdict(root: Path, passed: bool) -> None:
    verdict = root / "reports" / "accept" / "verdict.json"
    verdict.parent.mkdir(parents=True, exist_ok=True)
    verdict.write_text(json.dumps({"passed": passed, "checks": []}))


def test_plan_registers_new_accepted_models_and_skips_unchanged_ones(repo: Path) -> None:
    write_verdict(repo, passed=False)
    assert registry(repo, "plan")["register"] == "false"

    write_verdict(repo, passed=True)
    first = registry(repo, "plan")
    assert (first["register"], first["version"]) == ("true", "v1.0.0")
    registry(repo, "register", "--version", "v1.0.0", "--model-sha256", first["model-sha256"])
    unchanged = registry(repo, "plan")
    assert unchanged["register"] == "false"
    assert "unchanged since v1.0.0" in unchanged["stdout"]

    write_package(repo / "models" / "package", b"model two", ["Adelie", "Gentoo"])
    assert registry(repo, "plan")["version"] == "v1.1.0"
    shutil.copytree(repo / "models" / "package", repo / "models" / "champion")
    write_package(repo / "models" / "package", b"model three", ["Adelie", "Chinstrap", "Gentoo"])
    assert registry(repo, "plan")["version"] == "v2.0.0"


def test_plan_refuses_a_package_that_does_not_match_its_manifest(repo: Path) -> None:
    write_verdict(repo, passed=True)
    (repo / "models" / "package" / "model.onnx").write_bytes(b"tampered")
    result = registry(repo, "plan", check=False)
    assert "does not match the manifest" in result["stdout"]


def test_champion_is_the_production_version_fetched_through_dvc(repo: Path) -> None:
    status_file = repo / "reports" / "pr" / "champion.json"
    none = registry(repo, "champion")
    assert "no version of penguins is registered" in none["stdout"]
    assert json.loads(status_file.read_text())["status"] == "none"

    sha = artifacts.sha256_of(repo / "models" / "package" / "model.onnx")
    registry(repo, "register", "--version", "v1.0.0", "--model-sha256", sha)
    # main moves on to a model that is not registered: the champion stays v1.0.0
    write_package(repo / "models" / "package", b"model two", ["Adelie", "Gentoo"])
    run(["dvc", "add", "-q", "models/package"], repo)
    run(["git", "commit", "-q", "-am", "second model"], repo)

    fetched = registry(repo, "champion")
    status = json.loads(status_file.read_text())
    assert (status["status"], status["version"]) == ("fetched", "v1.0.0")
    champion = repo / "models" / "champion"
    assert (champion / "model.onnx").read_bytes() == b"model one"
    assert artifacts.verify(champion)["files"]["model.onnx"] == sha
    assert "v1.0.0" in fetched["stdout"]


def test_champion_without_its_files_falls_back_to_first_run_acceptance(repo: Path) -> None:
    sha = artifacts.sha256_of(repo / "models" / "package" / "model.onnx")
    registry(repo, "register", "--version", "v1.0.0", "--model-sha256", sha)
    shutil.rmtree(repo / ".dvc" / "cache")  # no cache, and no remote configured
    result = registry(repo, "champion")
    status = json.loads((repo / "reports" / "pr" / "champion.json").read_text())
    assert status["status"] == "unavailable"
    assert "not available" in result["stdout"]
    champion = repo / "models" / "champion"
    assert {item.name for item in champion.iterdir()} <= {"README.md"}  # no half-fetched model


def test_release_info_resolves_a_stage_tag_to_its_version(repo: Path) -> None:
    sha = artifacts.sha256_of(repo / "models" / "package" / "model.onnx")
    registry(repo, "register", "--version", "v1.0.0", "--model-sha256", sha)
    registry(repo, "promote", "--version", "v1.0.0")
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    common = ["--ref-type", "tag", "--commit", head, "--repository", "ghcr.io/Owner/Repo"]
    info = registry(
        repo, "release-info", "--ref-name", "penguins#prod#1", *common, "--kubeconfig-set", "true"
    )
    assert (info["version"], info["stage"], info["deploy"]) == ("v1.0.0", "prod", "true")
    assert "ghcr.io/owner/repo:penguins-prod" in info["tags"].splitlines()
    assert f"MODEL_SHA256={sha}" in info["build-args"].splitlines()
    version = registry(repo, "release-info", "--ref-name", "penguins@v1.0.0", *common)
    assert (version["version"], version["deploy"]) == ("v1.0.0", "false")
