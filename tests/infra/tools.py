"""Helpers shared by the infrastructure tests: find a tool or skip naming it, read manifests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import BIN

INSTALL_HINT = "run scripts/install-test-deps.sh as root"


def require_tool(name: str) -> str:
    """The path of ``name`` (the project's virtualenv first, then PATH and sbin), or skip."""
    search = os.pathsep.join([str(BIN), os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.skip(f"{name} is not installed ({INSTALL_HINT})")
    return found


def load_yaml_documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]
