"""Deployments as git events: which release run deployed which version where, and how it went.

The stage tags say what should run; a deployment tag says what a release run did about it. After
the release workflow's deploy job, its record job tags the released commit with the annotated tag
``deploy/<environment>/<run number>.<attempt>``::

    deploy penguins v1.2.0 to production: healthy

    Action: deploy
    Model: penguins
    Version: v1.2.0
    Environment: production
    Health: healthy
    Image: ghcr.io/owner/repo@sha256:...
    Ref: penguins#prod#7
    Actor: alice
    Reason: the canary's error rate and accuracy match the champion's
    Run: https://github.com/owner/repo/actions/runs/123

``Version`` and ``Image`` are the champion's (the model production answers with). With a
challenger deployed beside it in the same pod, the subject names both roles and three more fields
say which version ran as the challenger, how and from which image::

    deploy penguins v1.2.0 with the canary challenger v1.3.0 to production: healthy
    ...
    Challenger: v1.3.0
    Challenger-Mode: canary
    Challenger-Image: ghcr.io/owner/repo@sha256:...

``healthy``: the rollout finished and every pod passed its readiness probe (the scorer checked
the model's sha256 and warmed it up; the sidecar loaded the reference profile). ``failed``: the
rollout did not finish in time, or the deployment was not approved; ``cancelled``: the run was
cancelled while it deployed. ``make audit`` reads these tags with the registry's.

``python -m mlops.gitops.deployments record ...`` writes one. Standard library only (and git):
the record job runs it with the runner's ``python3``, no environment to install.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mlops.core.errors import StageError, run
from mlops.gitops.records import format_record, parse_record
from mlops.gitops.rollout import CHALLENGER_STAGES

TAG_PREFIX = "deploy/"
TAG = re.compile(r"^deploy/(?P<environment>[a-z0-9][a-z0-9-]*)/(?P<run>\d+)\.(?P<attempt>\d+)$")
ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9-]*$")
HEALTH = {"success": "healthy", "failure": "failed", "cancelled": "cancelled"}
ROLES = ("champion", "challenger")
CHALLENGER_FIELDS = ("Challenger", "Challenger-Mode", "Challenger-Image")


RECORD_SEPARATOR = "\x1e"  # between the tags for-each-ref lists; never in a message


@dataclass(frozen=True)
class Deployment:
    tag: str
    environment: str
    at: datetime
    fields: dict[str, str]

    @property
    def version(self) -> str:
        return self.fields.get("Version", "")

    @property
    def health(self) -> str:
        return self.fields.get("Health", "")

    @property
    def challenger(self) -> str:
        return self.fields.get("Challenger", "")

    @property
    def mode(self) -> str:
        return self.fields.get("Challenger-Mode", "")

    def image_of(self, version: str) -> str | None:
        """The image this deployment ran ``version`` from (in either role), if it ran it."""
        if version == self.version:
            return self.fields.get("Image") or None
        if version == self.challenger:
            return self.fields.get("Challenger-Image") or None
        return None


def pod_images(role: str, released: str, companion: str) -> tuple[str, str]:
    """(the champion's image, the challenger's): the release built one of them, in its role;
    the other (its companion, an earlier release's image) is given, or none."""
    if role not in ROLES:
        raise StageError(f"release role '{role}': expected one of {ROLES}")
    return (companion, released) if role == "challenger" else (released, companion)


def deployed_image(deployments: Sequence[Deployment], version: str) -> str | None:
    """The image, pinned by digest, that the newest deployment of ``version`` ran: what a later
    deployment runs it from again when this release built the other role's image."""
    for deployment in sorted(deployments, key=lambda found: found.at, reverse=True):
        image = deployment.image_of(version)
        if image and "@sha256:" in image:
            return image
    return None


def deployment_tag(environment: str, run_number: str, attempt: str) -> str:
    if not ENVIRONMENT.match(environment):
        raise StageError(
            f"environment '{environment}': expected lower-case letters, digits and dashes"
        )
    if not (run_number.isdigit() and attempt.isdigit()):
        raise StageError(f"run {run_number!r} attempt {attempt!r}: expected numbers")
    return f"{TAG_PREFIX}{environment}/{run_number}.{attempt}"


def deployment_message(
    model: str, version: str, environment: str, result: str, context: dict[str, str]
) -> str:
    """The record of one deployment of the champion ``version``; ``context``: Image (the
    champion's), the challenger's fields if one ran beside it, Ref, Actor, Reason, Run."""
    if result not in HEALTH:
        raise StageError(f"deploy result '{result}': expected one of {sorted(HEALTH)}")
    health = HEALTH[result]
    fields = {
        "Action": "deploy",
        "Model": model,
        "Version": version,
        "Environment": environment,
        "Health": health,
        **context,
    }
    deployed = f"{model} {version}"
    if context.get("Challenger"):
        mode = context.get("Challenger-Mode") or "a"
        deployed += f" with the {mode} challenger {context['Challenger']}"
    return format_record(f"deploy {deployed} to {environment}: {health}", fields)


def parse_deployment(tag: str, message: str, at: datetime) -> Deployment | None:
    """The deployment a tag records; None for any other tag."""
    match = TAG.match(tag)
    if match is None:
        return None
    return Deployment(tag, match["environment"], at, parse_record(message)[1])


def read_deployments(repo: Path, model: str) -> list[Deployment]:
    """Every deployment of the model recorded in the repository's tags."""
    listing = _git(
        repo,
        "for-each-ref",
        f"--format=%(refname:short)%00%(creatordate:iso-strict)%00%(contents){RECORD_SEPARATOR}",
        "refs/tags/deploy/",
    )
    found = []
    for entry in listing.split(RECORD_SEPARATOR):
        if "\0" not in entry:
            continue
        tag, at, message = entry.strip("\n").split("\0", 2)
        deployment = parse_deployment(tag, message, datetime.fromisoformat(at))
        if deployment is not None and deployment.fields.get("Model") == model:
            found.append(deployment)
    return found


def reason_of(repo: Path, ref_name: str) -> str:
    """Why the release ran, when nobody said: the reason its tag records, else its subject."""
    message = _git(repo, "tag", "--list", "--format=%(contents)", ref_name)
    subject, fields = parse_record(message)
    return fields.get("Reason") or subject


def record(options: argparse.Namespace) -> None:
    repo = Path.cwd()
    tag = deployment_tag(options.environment, options.run_number, options.run_attempt)
    champion_image, challenger_image = pod_images(
        options.role, options.image, options.companion_image
    )
    challenger = options.challenger.strip()
    if challenger and options.challenger_mode not in CHALLENGER_STAGES:
        raise StageError(
            f"--challenger-mode '{options.challenger_mode}': expected one of {CHALLENGER_STAGES}"
        )
    roles = [challenger, options.challenger_mode, challenger_image] if challenger else []
    context = {
        "Image": champion_image,
        **dict(zip(CHALLENGER_FIELDS, roles, strict=False)),
        "Ref": options.ref_name,
        "Actor": options.actor,
        "Reason": options.reason.strip() or reason_of(repo, options.ref_name),
        "Run": options.run_url,
    }
    message = deployment_message(
        options.model, options.champion, options.environment, options.result, context
    )
    _git(
        repo, "tag", "--annotate", "--cleanup=verbatim", f"--message={message}", tag, options.commit
    )
    if options.push:
        _git(repo, "push", "origin", f"refs/tags/{tag}")
    print(f"recorded {tag}: {message.splitlines()[0]}")


def _git(repo: Path, *arguments: str) -> str:
    result = subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StageError(f"git {arguments[0]}: {result.stderr.strip()}")
    return result.stdout


def arguments() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    command = commands.add_parser("record", help="tag the released commit with the deployment")
    command.add_argument("--environment", required=True)
    command.add_argument("--result", required=True, help="the deploy job's: success, failure, ...")
    command.add_argument("--model", required=True)
    command.add_argument("--champion", required=True, help="the champion's version (prod)")
    command.add_argument("--challenger", default="", help="the challenger's version, if any")
    command.add_argument("--challenger-mode", default="", help="canary or shadow")
    command.add_argument("--commit", required=True)
    command.add_argument("--ref-name", required=True, help="the tag the release ran on")
    command.add_argument("--run-number", required=True)
    command.add_argument("--run-attempt", default="1")
    command.add_argument("--image", default="", help="the image this release built")
    command.add_argument("--role", default="champion", choices=ROLES, help="its role")
    command.add_argument("--companion-image", default="", help="the other role's image")
    command.add_argument("--actor", default="")
    command.add_argument("--reason", default="", help="default: the reason its tag records")
    command.add_argument("--run-url", default="")
    command.add_argument("--push", action="store_true", help="push the tag to origin")
    return top


def main(argv: Sequence[str] | None = None) -> None:
    record(arguments().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(run(main))
