"""Step outputs for GitHub Actions: printed, and appended to ``$GITHUB_OUTPUT`` when it is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path


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


def step_summary(markdown: str) -> None:
    """Append to the job's summary page when running in GitHub Actions."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a") as file:
            file.write(markdown.rstrip("\n") + "\n")
