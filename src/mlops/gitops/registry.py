"""The model registry: versions and stages are GTO git tags, so git stays the only interface.

A version is an annotated tag ``<model>@v1.2.0`` on the commit whose pipeline produced the model
(its message records the sha256 of ``model.onnx``); a stage is a tag ``<model>#prod#3`` pointing a
stage at a version. ``package.model_name`` in params.yaml names the model (by default it is named
after ``data.source``).

Subcommands of ``python -m mlops.gitops.registry``, each a step of the GitOps loop (see
docs/gitops.md):

- ``champion``: fetch the packaged model of the version in production (stage ``prod``, else the
  latest version) into ``accept.champion`` for the acceptance test; nothing on a first run.
- ``plan``: decide whether this run's packaged model becomes a new version, and which.
- ``register``: create (and push) the version tag, recording who and which run.
- ``release-info``: the version, image tags and OCI labels of a release, from the git ref; a
  registered version's packaged model must be the one its version tag records (sha256), else
  the release stops. With them, what a deployment serves: the champion and the challenger (the
  release's version in its stage's role, the other from the registry) and the other's image.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from mlops.core import artifacts
from mlops.gitops.champion import champion_status
from mlops.gitops.deployments import deployed_image, read_deployments
from mlops.gitops.outputs import publish
from mlops.gitops.records import format_record
from mlops.gitops.release import (
    Roles,
    check_registered_model,
    companion_image,
    deployment_roles,
    release_info,
    release_version,
    should_deploy,
    tag_model_name,
)
from mlops.gitops.rollout import rollout_state
from mlops.gitops.tags import (
    annotated_tag_message,
    gto_register,
    latest_version,
    registry_events,
    stage_tag_version,
)
from mlops.gitops.versions import (
    SHA256_PATTERN,
    parse_version,
    registration_plan,
    signature_changed,
    tag_message,
)
from mlops.params import AcceptParams, load_section, project_model_name
from mlops.stage import StageError, read_json, run, write_json


def model_name(params: Path) -> str:
    """The model's name: ``package.model_name``, or named after ``data.source``."""
    return project_model_name(params)


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
    fields = {"Action": "register", "Actor": options.actor, "Run": options.run_url}
    message = format_record(tag_message(name, options.version, options.model_sha256), fields)
    tag = gto_register(Path.cwd(), name, options.ref, options.version, message, options.push)
    print(f"registered {tag}" + (" and pushed it" if options.push else ""))
    publish({"tag": tag})


def release_info_command(options: argparse.Namespace) -> None:
    manifest = _verified_manifest(options.package)
    repo = Path.cwd()
    version, stage = release_version(
        options.ref_name, options.ref_type, partial(stage_tag_version, repo)
    )
    print(_verify_registered(repo, options.ref_name, version, manifest))
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
    roles, why = _roles(repo, info, version, stage)
    print(f"deployment: {why}")
    publish(
        {**info, **_role_outputs(repo, info, roles), "deploy": str(deploy and bool(roles)).lower()}
    )


def _roles(
    repo: Path, info: dict[str, str], version: str | None, stage: str
) -> tuple[Roles | None, str]:
    """Who serves production if this release deploys: an unregistered build (no version tag)
    serves alone, having no registry version for the sidecar to compare it under."""
    if version is None:
        return Roles("champion", info["version"]), "production: an unregistered build, alone"
    return deployment_roles(version, stage, rollout_state(registry_events(repo, info["model"])))


def _role_outputs(repo: Path, info: dict[str, str], roles: Roles | None) -> dict[str, str]:
    if roles is None:
        keys = ("role", "champion", "challenger", "challenger-mode", "companion-image")
        return dict.fromkeys(keys, "")
    other = roles.champion if roles.role == "challenger" else roles.challenger
    deployed = deployed_image(read_deployments(repo, info["model"]), other) if other else None
    return {
        "role": roles.role,
        "champion": roles.champion,
        "challenger": roles.challenger,
        "challenger-mode": roles.mode,
        "companion-image": companion_image(roles, deployed, info["image"], info["model"]),
    }


def _verify_registered(
    repo: Path, ref_name: str, version: str | None, manifest: artifacts.Manifest
) -> str:
    """A registered version's release ships the model its version tag records, or stops."""
    if version is None:
        return f"release of {ref_name}: not a registered version, no tag to check the model with"
    name = tag_model_name(ref_name) or ""
    message = annotated_tag_message(repo, f"{name}@{version}")
    return f"verified: {check_registered_model(dict(manifest), name, version, message)}"


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
    register.add_argument("--actor", default="", help="who registers (the workflow's actor)")
    register.add_argument("--run-url", default="", help="the workflow run that registers")

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
    "release-info": release_info_command,
}


def main(argv: Sequence[str] | None = None) -> None:
    options = arguments().parse_args(argv)
    COMMANDS[options.command](options)


if __name__ == "__main__":
    raise SystemExit(run(main))
