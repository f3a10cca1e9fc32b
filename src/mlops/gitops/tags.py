"""The registry itself: GTO tags in git, read and written through GTO's API (and git for a rev).

GTO is imported where it is used (0.6 s): ``--help`` and the commands that need no tag skip it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from mlops.core.errors import StageError
from mlops.gitops.rollout import EventKind, RegistryEvent
from mlops.gitops.versions import PRODUCTION_STAGE, RegisteredVersion

EVENT_KINDS = ("registration", "deregistration", "assignment", "unassignment", "deprecation")


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


def annotated_tag_message(repo: Path, tag: str) -> str | None:
    """The message of the annotated tag ``tag``; None when there is no such annotated tag."""
    found = git(repo, "for-each-ref", "--format=%(objecttype)%00%(contents)", f"refs/tags/{tag}")
    kind, _, message = found.partition("\0")
    return message if kind == "tag" else None


def stage_tag_version(repo: Path, tag: str) -> str:
    """The version a stage tag ``<name>#<stage>#<n>`` assigns."""
    from gto import api

    assignments = api.check_ref(str(repo), tag)
    if not assignments:
        raise StageError(f"tag '{tag}' assigns no registered version (see `gto show`)")
    return str(assignments[-1].version)


def gto_register(repo: Path, name: str, ref: str, version: str, message: str, push: bool) -> str:
    """Create (and push) the annotated tag ``<name>@<version>``; return the tag."""
    from gto import api
    from gto.exceptions import GTOException

    try:
        event = api.register(str(repo), name, ref, version=version, message=message, push=push)
    except GTOException as error:
        raise StageError(f"gto register {name} {version}: {error}") from None
    return str(event.tag)


def registry_events(repo: Path, name: str) -> list[RegistryEvent]:
    """Every GTO tag of the model (GTO parses the names and resolves a stage tag's version)."""
    from gto import api
    from gto.constants import COUNTER
    from gto.exceptions import ArtifactNotFound
    from gto.tag import parse_name

    try:
        history = api.history(str(repo), name)
    except ArtifactNotFound:
        return []
    return [
        RegistryEvent(
            tag=entry["ref"],
            kind=cast(EventKind, entry["event"]),
            version=entry.get("version"),
            stage=entry.get("stage"),
            at=entry["timestamp"],
            counter=int(parse_name(entry["ref"], raise_on_fail=False).get(COUNTER, 0)),
            author=str(entry.get("author") or ""),
            message=str(entry.get("message") or ""),
            commit=str(entry.get("commit") or ""),
        )
        for entry in history
        if entry.get("event") in EVENT_KINDS
    ]


def stage_tag_name(repo: Path, name: str, stage: str, assign: bool) -> str:
    """The next stage tag GTO would make: ``<name>#<stage>#N``, or ``<name>#<stage>!#N``."""
    from gto.constants import Action
    from gto.tag import name_tag
    from scmrepo.git import Git

    action = Action.ASSIGN if assign else Action.UNASSIGN
    with Git(str(repo)) as scm:
        return str(name_tag(action, name, stage=stage, scm=scm))


def create_stage_tags(
    repo: Path, name: str, changes: Sequence[tuple[bool, str, str, str]], after: datetime | None
) -> list[str]:
    """Create annotated stage tags (assign, stage, commit, message), in order, each one second
    after the one before and after ``after`` (the newest event of the model): GTO orders a
    stage's assignments by their time, which git keeps to the second, so two tags made within
    one second (or by a machine whose clock is behind) would otherwise leave the stage's version
    to chance."""
    moment = datetime.now(UTC).replace(microsecond=0)
    if after is not None and moment <= after:
        moment = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    created: list[str] = []
    for assign, stage, commit, message in changes:
        tag = stage_tag_name(repo, name, stage, assign)
        environment = {**os.environ, "GIT_COMMITTER_DATE": moment.isoformat()}
        result = subprocess.run(
            ["git", "tag", "--annotate", "--cleanup=verbatim", "--file=-", tag, commit],
            cwd=repo,
            input=message,
            capture_output=True,
            text=True,
            env=environment,
            check=False,
        )
        if result.returncode != 0:
            for made in created:
                git(repo, "tag", "--delete", made)
            raise StageError(f"git tag {tag}: {result.stderr.strip()}")
        created.append(tag)
        moment += timedelta(seconds=1)
    return created


def push_tags(repo: Path, tags: Sequence[str]) -> None:
    """Push the tags to origin all at once: all of them arrive, or none (a concurrent push that
    took one of their names fails the push, and nothing is half-recorded)."""
    git(repo, "push", "--atomic", "origin", *(f"refs/tags/{tag}" for tag in tags))


def git(repo: Path, *arguments: str) -> str:
    result = subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StageError(f"git {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout.strip()
