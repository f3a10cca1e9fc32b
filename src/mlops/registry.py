"""The model registry: versions and stages are GTO git tags, so git stays the only interface.

A version is an annotated tag ``<model>@v1.2.0`` on the commit whose pipeline produced the model
(its message records the sha256 of ``model.onnx``); a stage is a tag ``<model>#prod#3`` pointing a
stage at a version. ``package.model_name`` in params.yaml names the model.

Subcommands, each a step of the GitOps loop (see docs/gitops.md):

- ``champion``: fetch the packaged model of the version in production (stage ``prod``, else the
  latest version) into ``accept.champion`` for the acceptance test; nothing on a first run.
- ``plan``: decide whether this run's packaged model becomes a new version, and which.
- ``register`` / ``promote``: create (and push) the version or stage tag.
- ``release-info``: the version, image tags and OCI labels of a release, from the git ref.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops import artifacts
from mlops.params import AcceptParams, PackageParams, load_section
from mlops.stage import StageError, read_json, run, write_json

PRODUCTION_STAGE = "prod"
FIRST_VERSION = "v1.0.0"
CHAMPION_README = "README.md"
VERSION_PATTERN = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
RECORDED_SHA256 = re.compile(r"model\.onnx sha256=([0-9a-f]{64})")
VERSION_TAG = re.compile(r"^(?P<name>[^@#]+)@(?P<version>v\d+\.\d+\.\d+)$")
STAGE_TAG = re.compile(r"^(?P<name>[^@#]+)#(?P<stage>[^#]+)(#\d+)?$")


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


# --- versions -------------------------------------------------------------------------------


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


# --- GTO and git ----------------------------------------------------------------------------


def latest_version(repo: Path, name: str) -> RegisteredVersion | None:
    from gto import api
    from gto.exceptions import ArtifactNotFound

    try:
        found = api.find_latest_version(str(repo), name)
    except ArtifactNotFound:
        return None
    if found is None:
        return None
    return RegisteredVersion(found.version, found.commit_hexsha, _registration_message(found))


def champion_version(repo: Path, name: str) -> RegisteredVersion | None:
    """The version in the production stage, else the latest version, else None."""
    from gto import api
    from gto.exceptions import ArtifactNotFound

    try:
        in_production = api.find_versions_in_stage(str(repo), name, PRODUCTION_STAGE)
    except ArtifactNotFound:
        return None
    if in_production:
        stage = in_production[0]
        return RegisteredVersion(stage.version, stage.commit_hexsha, "")
    return latest_version(repo, name)


def _registration_message(version: Any) -> str:
    registrations = getattr(version, "registrations", None) or []
    return str(registrations[-1].message or "") if registrations else ""


def gto_register(repo: Path, name: str, ref: str, version: str, message: str, push: bool) -> str:
    """Create (and push) the annotated tag ``<name>@<version>``; return the tag."""
    from gto import api
    from gto.exceptions import GTOException

    try:
        event = api.register(str(repo), name, ref, version=version, message=message, push=push)
    except GTOException as error:
        raise StageError(f"gto register {name} {version}: {error}") from None
    return str(event.tag)


def gto_promote(repo: Path, name: str, version: str, stage: str, push: bool) -> str:
    """Create (and push) the stage tag ``<name>#<stage>#<n>``; return the tag."""
    from gto import api
    from gto.exceptions import GTOException

    try:
        event = api.assign(str(repo), name, stage, version=version, push=push)
    except GTOException as error:
        raise StageError(f"gto assign {name} {version} to {stage}: {error}") from None
    return str(event.tag)


def git(repo: Path, *arguments: str) -> str:
    result = subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StageError(f"git {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout.strip()


def fetch_package(repo: Path, package: str, commit: str, out: Path) -> str | None:
    """``dvc get`` the package at ``commit`` into ``out``; the reason on failure, else None.

    DVC finds the files in the local cache (CI restores it) or the configured remote. ``out`` keeps
    its committed README (the acceptance stage depends on the directory); the rest is replaced.
    """
    incoming = out.parent / f".{out.name}.incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    command = [sys.executable, "-m", "dvc", "get", ".", package, "--rev", commit]
    command += ["--out", str(incoming)]
    result = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    clear_champion(out)
    if result.returncode != 0:
        shutil.rmtree(incoming, ignore_errors=True)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return lines[0] if lines else f"dvc get exited {result.returncode}"
    for item in incoming.iterdir():
        item.replace(out / item.name)
    incoming.rmdir()
    return None


def clear_champion(out: Path) -> None:
    """Empty the champion directory but for its README."""
    out.mkdir(parents=True, exist_ok=True)
    for item in out.iterdir():
        if item.name == CHAMPION_README:
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()


# --- releases --------------------------------------------------------------------------------


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
        "version": image_version,
        "stage": stage,
        "image": image,
        "image-tag": tags[0],
        "tags": "\n".join(tags),
        "build-args": "\n".join(f"{key}={value}" for key, value in build_args.items()),
    }


def should_deploy(stage: str, requested: bool, kubeconfig_set: bool) -> bool:
    """Deploy a promotion to production, or a manual release that asks for it, given a cluster."""
    return kubeconfig_set and (stage == PRODUCTION_STAGE or requested)


# --- GitHub Actions outputs -------------------------------------------------------------------


def github_outputs(values: Mapping[str, str]) -> str:
    """``key=value`` lines for $GITHUB_OUTPUT; a multi-line value goes between delimiters."""
    lines = []
    for key, value in values.items():
        if "\n" in value:
            delimiter = f"EOF_{uuid.uuid4().hex}"
            lines += [f"{key}<<{delimiter}", value, delimiter]
        else:
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def publish(values: Mapping[str, str]) -> None:
    """Print the values, and append them to $GITHUB_OUTPUT when running in GitHub Actions."""
    text = github_outputs(values)
    print(text, end="")
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with Path(output).open("a") as file:
            file.write(text)


# --- commands --------------------------------------------------------------------------------


def model_name(params: Path) -> str:
    return load_section(params, "package", PackageParams).model_name


def read_optional_json(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def champion_command(options: argparse.Namespace) -> None:
    repo = Path.cwd()
    champion_dir = load_section(options.params, "accept", AcceptParams).champion
    if champion_dir is None:
        print("accept.champion is not set: the acceptance test compares with no champion")
        return
    out = Path(champion_dir)
    status = champion_status(repo, model_name(options.params), options.package, out, options.rev)
    write_json(options.status, status)
    print(f"champion: {status['summary']}")


def champion_status(
    repo: Path, name: str, package: str, out: Path, rev: str | None
) -> dict[str, Any]:
    if rev is not None:
        champion: RegisteredVersion | None = RegisteredVersion(rev, git(repo, "rev-parse", rev), "")
    else:
        champion = champion_version(repo, name)
    if champion is None:
        kept = " (the existing directory is kept)" if out.exists() else ""
        return {
            "status": "none",
            "summary": f"no version of {name} is registered yet: first-run acceptance{kept}",
        }
    failure = fetch_package(repo, package, champion.commit, out)
    where = f"{champion.version} ({champion.commit[:12]})"
    if failure is not None:
        return {
            "status": "unavailable",
            "version": champion.version,
            "commit": champion.commit,
            "summary": f"{where} is registered but its files are not available ({failure}): "
            "set up the DVC remote (docs/gitops.md); acceptance ran without a champion",
        }
    return {
        "status": "fetched",
        "version": champion.version,
        "commit": champion.commit,
        "summary": f"{where} fetched into {out}",
    }


def plan_command(options: argparse.Namespace) -> None:
    repo = Path.cwd()
    name = model_name(options.params)
    manifest = None
    if (options.package / artifacts.MANIFEST_FILE).is_file():
        manifest = dict(_verified_manifest(options.package))
    breaking = False
    champion_signature = options.champion / artifacts.SIGNATURE_FILE
    if manifest is not None and champion_signature.is_file():
        breaking = signature_changed(
            artifacts.load_signature(options.package), artifacts.load_signature(options.champion)
        )
    plan = registration_plan(
        read_optional_json(options.verdict), manifest, latest_version(repo, name), breaking
    )
    print(f"registration: {plan.reason}")
    publish(
        {
            "register": "true" if plan.register else "false",
            "version": plan.version,
            "model-sha256": plan.model_sha256,
        }
    )


def _verified_manifest(package: Path) -> artifacts.Manifest:
    try:
        return artifacts.verify(package)
    except artifacts.ArtifactError as error:
        raise StageError(str(error)) from None


def register_command(options: argparse.Namespace) -> None:
    parse_version(options.version)
    if not SHA256_PATTERN.match(options.model_sha256):
        raise StageError(f"--model-sha256 '{options.model_sha256}': expected 64 hex digits")
    name = model_name(options.params)
    message = tag_message(name, options.version, options.model_sha256)
    tag = gto_register(Path.cwd(), name, options.ref, options.version, message, options.push)
    print(f"registered {tag}" + (" and pushed it" if options.push else ""))
    publish({"tag": tag})


def promote_command(options: argparse.Namespace) -> None:
    parse_version(options.version)
    name = model_name(options.params)
    tag = gto_promote(Path.cwd(), name, options.version, options.stage, options.push)
    print(f"assigned {name} {options.version} to {options.stage}: {tag}")
    publish({"tag": tag})


def release_info_command(options: argparse.Namespace) -> None:
    repo = Path.cwd()
    manifest = _verified_manifest(options.package)

    def resolve_stage(tag: str) -> str:
        from gto import api

        assignments = api.check_ref(str(repo), tag)
        if not assignments:
            raise StageError(f"tag '{tag}' assigns no registered version (see `gto show`)")
        return str(assignments[-1].version)

    version, stage = release_version(options.ref_name, options.ref_type, resolve_stage)
    info = release_info(
        dict(manifest),
        version,
        stage,
        options.repository,
        options.commit,
        options.source_url,
        datetime.now(UTC),
    )
    deploy = should_deploy(
        stage, options.deploy_requested == "true", options.kubeconfig_set == "true"
    )
    publish({**info, "deploy": str(deploy).lower()})


def arguments() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    champion = _subcommand(commands, "champion", "fetch the production model into accept.champion")
    champion.add_argument("--package", default="models/package", help="the DVC-tracked package")
    champion.add_argument("--rev", help="take the champion from this commit, not the registry")
    champion.add_argument("--status", type=Path, default=Path("reports/pr/champion.json"))

    plan = _subcommand(commands, "plan", "decide whether to register this run's model")
    plan.add_argument("--verdict", type=Path, default=Path("reports/accept/verdict.json"))
    plan.add_argument("--package", type=Path, default=Path("models/package"))
    plan.add_argument("--champion", type=Path, default=Path("models/champion"))

    register = _subcommand(commands, "register", "tag a new model version (GTO)")
    register.add_argument("--version", required=True)
    register.add_argument("--model-sha256", required=True)
    register.add_argument("--ref", default="HEAD")
    register.add_argument("--push", action="store_true", help="push the tag to origin")

    promote = _subcommand(commands, "promote", "assign a version to a stage (GTO)")
    promote.add_argument("--version", required=True)
    promote.add_argument("--stage", default=PRODUCTION_STAGE)
    promote.add_argument("--push", action="store_true", help="push the tag to origin")

    release = _subcommand(commands, "release-info", "name a release from the git ref")
    release.add_argument("--package", type=Path, default=Path("models/package"))
    release.add_argument("--ref-name", required=True)
    release.add_argument("--ref-type", required=True, choices=["tag", "branch"])
    release.add_argument("--commit", required=True)
    release.add_argument("--repository", required=True, help="image repository, e.g. ghcr.io/o/r")
    release.add_argument("--source-url", default="")
    release.add_argument("--deploy-requested", default="false")
    release.add_argument("--kubeconfig-set", default="false")
    return top


def _subcommand(commands: Any, name: str, description: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=description)
    command.add_argument("--params", type=Path, default=Path("params.yaml"))
    return command


COMMANDS = {
    "champion": champion_command,
    "plan": plan_command,
    "register": register_command,
    "promote": promote_command,
    "release-info": release_info_command,
}


def main(argv: Sequence[str] | None = None) -> None:
    options = arguments().parse_args(argv)
    COMMANDS[options.command](options)


if __name__ == "__main__":
    raise SystemExit(run(main))
