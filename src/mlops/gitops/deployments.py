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

TAG_PREFIX = "deploy/"
TAG = re.compile(r"^deploy/(?P<environment>[a-z0-9][a-z0-9-]*)/(?P<run>\d+)\.(?P<attempt>\d+)$")
ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9-]*$")
HEALTH = {"success": "healthy", "failure": "failed", "cancelled": "cancelled"}


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
    """The record of one deployment; ``context``: Image, Ref, Actor, Reason, Run."""
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
    return format_record(f"deploy {model} {version} to {environment}: {health}", fields)


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
    context = {
        "Image": options.image,
        "Ref": options.ref_name,
        "Actor": options.actor,
        "Reason": options.reason.strip() or reason_of(repo, options.ref_name),
        "Run": options.run_url,
    }
    message = deployment_message(
        options.model, options.version, options.environment, options.result, context
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
    command.add_argument("--version", required=True)
    command.add_argument("--commit", required=True)
    command.add_argument("--ref-name", required=True, help="the tag the release ran on")
    command.add_argument("--run-number", required=True)
    command.add_argument("--run-attempt", default="1")
    command.add_argument("--image", default="")
    command.add_argument("--actor", default="")
    command.add_argument("--reason", default="", help="default: the reason its tag records")
    command.add_argument("--run-url", default="")
    command.add_argument("--push", action="store_true", help="push the tag to origin")
    return top


def main(argv: Sequence[str] | None = None) -> None:
    record(arguments().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(run(main))
