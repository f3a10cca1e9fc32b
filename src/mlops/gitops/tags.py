"""The registry itself: GTO tags in git, read and written through GTO's API (and git for a rev).

GTO is imported where it is used (0.6 s): ``--help`` and the commands that need no tag skip it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from mlops.core.errors import StageError
from mlops.gitops.versions import PRODUCTION_STAGE, RegisteredVersion


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
