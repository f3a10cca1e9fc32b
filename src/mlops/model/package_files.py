"""The bytes of a package's files, and how a package reaches its directory without ever leaving a
half-written one.

Packaged JSON is canonical (``json_bytes``): the same values give the same bytes, which the model
version and the registry rely on. A package is written to a temporary sibling directory,
verified against its own manifest, and only then swapped in with two renames, so a failure at any
point leaves the previous package as it was.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops.core import artifacts
from mlops.model.summaries import PackageManifest
from mlops.stage import StageError


def write_package(directory: Path, files: Mapping[str, bytes], manifest: PackageManifest) -> None:
    """Write ``files`` and a manifest listing the sha256 of each into ``directory``."""
    for name, content in files.items():
        (directory / name).write_bytes(content)
    hashes = {name: artifacts.sha256_of(directory / name) for name in files}
    (directory / artifacts.MANIFEST_FILE).write_bytes(json_bytes({**manifest, "files": hashes}))


def install_package(out: Path, files: Mapping[str, bytes], manifest: PackageManifest) -> None:
    """Build the package next to ``out``, verify it, then swap it in; on failure ``out`` is kept."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        staging.chmod(0o755)
        write_package(staging, files, manifest)
        artifacts.verify(staging)
        _swap_in(staging, out)
    except artifacts.ArtifactError as error:
        raise StageError(
            f"the new package failed verification ({error}); {out} is unchanged"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(new: Path, out: Path) -> None:
    """Replace ``out`` by ``new`` with two renames; if the second fails the old one is put back."""
    if not out.exists():
        new.rename(out)
        return
    retired = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(retired)
    try:
        new.rename(out)
    except BaseException:
        retired.rename(out)
        raise
    shutil.rmtree(retired)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float, however deep, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def json_bytes(value: Any) -> bytes:
    """Canonical JSON of a packaged file: keys in the order built, floats as Python writes them
    (shortest repr), UTF-8 kept as it is (the user's column names), one trailing newline. NaN and
    infinities are refused: they are not JSON, and the scorer and sidecar could not read them."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as error:
        raise StageError(
            f"a packaged file would hold a NaN or infinite number ({error}); the training "
            "data or the model gives a statistic that is not finite"
        ) from None
    return (text + "\n").encode()
