"""The Dockerfile is hadolint-clean and builds the image the deployment expects."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import PROJECT_ROOT, run
from infra.tools import require_tool

DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, arguments = stripped.partition(" ")
            pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_passes() -> None:
    hadolint = require_tool("hadolint")
    result = run([hadolint, str(DOCKERFILE)], PROJECT_ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_an_unpinned_install(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint")
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace('"uv==${UV_VERSION}"', "uv"))
    result = run([hadolint, str(broken)], tmp_path, check=False)
    assert result.returncode != 0
    assert "DL3013" in result.stdout


def test_multi_stage_build_installs_only_the_serving_extras_from_the_lock() -> None:
    steps = instructions(DOCKERFILE.read_text())
    assert sum(keyword == "FROM" for keyword, _ in steps) >= 2
    syncs = [
        arguments for keyword, arguments in steps if keyword == "RUN" and "uv sync" in arguments
    ]
    assert syncs
    for command in syncs:
        assert "--frozen" in command
        assert re.findall(r"--extra (\S+)", command) == ["serve", "monitor"]
        assert "--all-extras" not in command


def test_final_stage_runs_as_a_numeric_non_root_user_with_a_log_volume() -> None:
    final = dict(final_stage(DOCKERFILE.read_text()))
    user = final["USER"].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert "/var/log/mlops" in final["VOLUME"]
    assert "PYTHONDONTWRITEBYTECODE=1" in final["ENV"]
    assert "MODEL_DIR=/app/model" in final["ENV"]
    assert "PREDICTION_LOG=/var/log/mlops/" in final["ENV"]
    assert final["HEALTHCHECK"].startswith("--")
    assert "python" in final["HEALTHCHECK"]
    assert "mlops.serve" in final["CMD"]


def test_oci_labels_come_from_build_arguments() -> None:
    labels = dict(final_stage(DOCKERFILE.read_text()))["LABEL"]
    for key, argument in {
        "org.opencontainers.image.revision": "REVISION",
        "org.opencontainers.image.version": "VERSION",
        "org.opencontainers.image.created": "CREATED",
        "mlops.model.version": "MODEL_VERSION",
        "mlops.model.sha256": "MODEL_SHA256",
    }.items():
        assert f'{key}="${{{argument}}}"' in labels


def copied_from_the_context(text: str) -> set[str]:
    """The build-context paths the Dockerfile's COPY instructions read (not other stages')."""
    sources = set()
    for keyword, arguments in instructions(text):
        words = arguments.split()
        if keyword == "COPY" and not any(word.startswith("--from") for word in words):
            sources |= {word.rstrip("/") for word in words[:-1] if not word.startswith("--")}
    return sources


def test_build_context_holds_only_what_the_image_needs() -> None:
    patterns = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert patterns.index("*") < min(i for i, p in enumerate(patterns) if p.startswith("!"))
    included = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied = copied_from_the_context(DOCKERFILE.read_text())
    assert {"src", "models/package", "deploy/rollout.yaml"} <= copied
    assert included == copied


def test_the_image_holds_the_sidecars_rollout_thresholds() -> None:
    """deploy/rollout.yaml, at the path MONITOR_ROLLOUT_SETTINGS names."""
    final = final_stage(DOCKERFILE.read_text())
    assert ("COPY", "deploy/rollout.yaml /app/deploy/rollout.yaml") in final
    assert "MONITOR_ROLLOUT_SETTINGS=/app/deploy/rollout.yaml" in dict(final)["ENV"]
