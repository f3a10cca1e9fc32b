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
PROMOTION = [str(BIN / "python"), "-m", "mlops.gitops.promotion"]
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


def registry(
    root: Path, *arguments: str, check: bool = True, command: list[str] = REGISTRY, **env: str
) -> dict[str, str]:
    output = root.parent / "github_output"
    output.write_text("")
    environment = {"GITHUB_OUTPUT": str(output), **env}
    result = run([*command, *arguments], root, check=check, env=environment)
    return {"stdout": result.stdout + result.stderr, **parse_output_file(output.read_text())}


def promotion(root: Path, *arguments: str, check: bool = True, **env: str) -> dict[str, str]:
    return registry(root, *arguments, check=check, command=PROMOTION, **env)


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
    promoted = promotion(
        repo, "promote", "--version", "v1.0.0", "--stage", "prod", "--reason", "first", "--push"
    )
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
    promotion(repo, "promote", "--version", "v1.0.0", "--reason", "first")
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


# --- promotion and rollback: stage tags that say who and why --------------------------------


def register_versions(repo: Path, *versions: str) -> None:
    """Each version a model of its own, on a commit of its own, registered."""
    for index, version in enumerate(versions):
        if index:
            write_package(repo / "models" / "package", version.encode(), ["Adelie", "Gentoo"])
            run(["dvc", "add", "-q", "models/package"], repo)
            run(["git", "commit", "-q", "-am", f"model {version}"], repo)
        sha = artifacts.sha256_of(repo / "models" / "package" / "model.onnx")
        registry(repo, "register", "--version", version, "--model-sha256", sha, "--push")


def gto_stage(repo: Path, stage: str) -> str | None:
    """The version GTO itself sees in the stage (what `make champion` and `gto show` use)."""
    shown = json.loads(run(["gto", "show", "penguins", "--json"], repo).stdout)
    versions = [v["version"] for v in shown if stage in {s["stage"] for s in v["stages"]}]
    return versions[0] if versions else None


def fields_of(repo: Path, tag: str) -> dict[str, str]:
    from mlops.gitops.records import parse_record

    message = run(["git", "tag", "-l", "--format=%(contents)", tag], repo).stdout
    return parse_record(message)[1]


def test_promotions_rollbacks_and_withdrawals_are_pushed_tags_saying_who_and_why(
    repo: Path,
) -> None:
    register_versions(repo, "v1.0.0", "v1.1.0", "v1.2.0")
    by_hand = {"ROLLOUT_ACTOR": ""}
    for version, stage in (("v1.0.0", "prod"), ("v1.1.0", "prod"), ("v1.2.0", "canary")):
        promotion(
            repo,
            "promote",
            "--version",
            version,
            "--stage",
            stage,
            "--reason",
            f"try {version}",
            "--push",
            **by_hand,
        )
    assert (gto_stage(repo, "prod"), gto_stage(repo, "canary")) == ("v1.1.0", "v1.2.0")

    withdrawn = promotion(
        repo, "rollback", "--reason", "canary 5xx at 4 %", "--actor", "dave", "--push"
    )
    assert withdrawn["tag"] == "penguins#canary!#4"
    assert withdrawn["release-ref"] == "penguins#prod#2"  # the champion, redeployed alone
    assert gto_stage(repo, "canary") is None and gto_stage(repo, "prod") == "v1.1.0"

    rolled = promotion(repo, "rollback", "--reason", "v1.1.0 misses the night shift", "--push")
    assert rolled["tag"] == rolled["release-ref"] == "penguins#prod#5"
    # all within seconds: the tags' times still order them as they were made, so GTO agrees
    assert gto_stage(repo, "prod") == "v1.0.0"
    state = promotion(repo, "state")
    assert (state["champion"], state["challenger"]) == ("v1.0.0", "")

    on_origin = remote_tags(repo)
    assert {"penguins#canary!#4", "penguins#prod#5"} <= set(on_origin)
    rollback = fields_of(repo, "penguins#prod#5")
    assert rollback["Action"] == "rollback" and rollback["Previous"] == "v1.1.0"
    assert rollback["Reason"] == "v1.1.0 misses the night shift"
    assert rollback["Actor"] == "test <test@example.com>"  # nobody said: the git identity
    assert rollback["Trigger"] == "make"
    assert fields_of(repo, "penguins#canary!#4")["Actor"] == "dave"

    nothing_left = promotion(repo, "rollback", "--reason", "again", check=False)
    assert "no earlier prod version of 'penguins' to roll back to" in nothing_left["stdout"]
    assert "Traceback" not in nothing_left["stdout"]


def test_a_promotion_without_a_reason_or_of_an_unknown_version_is_refused(repo: Path) -> None:
    register_versions(repo, "v1.0.0")
    silent = promotion(repo, "promote", "--version", "v1.0.0", check=False)
    assert silent["stdout"].startswith("promote penguins v1.0.0 to prod\nerror: say why: --reason")
    unknown = promotion(repo, "promote", "--version", "v3.0.0", "--reason", "x", check=False)
    assert (
        "v3.0.0 is not a registered version of 'penguins' (registered: v1.0.0)"
        in (unknown["stdout"])
    )
    assert run(["git", "tag", "-l", "penguins#*"], repo).stdout == ""


def verdict_payload(verdict: str, champion: str = "v1.0.0") -> str:
    return json.dumps(
        {
            "model_name": "penguins",
            "champion_version": champion,
            "challenger_version": "v1.1.0",
            "verdict": verdict,
            "reasons": ["accuracy 0.94 vs 0.91 on 1,200 labelled records"],
            "window": {"records": 1200},
        }
    )


def test_the_sidecars_promote_verdict_makes_the_challenger_the_champion(repo: Path) -> None:
    register_versions(repo, "v1.0.0", "v1.1.0")
    promotion(repo, "promote", "--version", "v1.0.0", "--reason", "first", "--push")
    promotion(
        repo, "promote", "--version", "v1.1.0", "--stage", "canary", "--reason", "x", "--push"
    )
    context = ["--actor", "mlops-monitor", "--trigger", "repository_dispatch", "--push"]
    promoted = promotion(repo, "verdict", *context, ROLLOUT_PAYLOAD=verdict_payload("promote"))
    assert promoted["tag"].splitlines() == ["penguins#prod#3", "penguins#canary!#4"]
    assert promoted["release-ref"] == "penguins#prod#3"
    assert promoted["reason"].startswith("the monitoring sidecar's verdict: promote (accuracy")
    assert (gto_stage(repo, "prod"), gto_stage(repo, "canary")) == ("v1.1.0", None)
    recorded = fields_of(repo, "penguins#prod#3")
    assert recorded["Actor"] == "mlops-monitor" and recorded["Trigger"] == "repository_dispatch"
    assert json.loads(recorded["Verdict"])["window"] == {"records": 1200}

    # the same verdict again (a retry): the versions it names are no longer the deployed pair
    again = promotion(repo, "verdict", *context, ROLLOUT_PAYLOAD=verdict_payload("promote"))
    assert again["tag"] == again["release-ref"] == ""
    assert again["stdout"].startswith("ignored: a promote verdict on champion v1.0.0")
    broken = promotion(repo, "verdict", *context, check=False, ROLLOUT_PAYLOAD='{"verdict": 1}')
    assert "error: client_payload.verdict: expected a non-empty string, got 1" in broken["stdout"]


def test_a_push_that_loses_a_race_leaves_no_tag_behind(repo: Path, tmp_path: Path) -> None:
    """Two promotions at once: the second push finds its tag name taken, and stops whole."""
    register_versions(repo, "v1.0.0", "v1.1.0")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(other)], tmp_path)
    for key, value in (("user.email", "o@example.com"), ("user.name", "other")):
        run(["git", "config", key, value], other)
    run(["git", "tag", "-a", "penguins#prod#1", "-m", "taken", "penguins@v1.1.0^{}"], other)
    run(["git", "push", "-q", "origin", "penguins#prod#1"], other)
    lost = promotion(repo, "promote", "--version", "v1.0.0", "--reason", "x", "--push", check=False)
    assert "error: git push --atomic origin refs/tags/penguins#prod#1" in lost["stdout"]
    assert run(["git", "tag", "-l", "penguins#*"], repo).stdout == ""
