"""The messages of the annotated tags that record who did what to a model, and why.

A promotion, a rollback or a deployment is an annotated git tag whose message is a subject line
and then one ``Key: value`` line per field (git's trailer format), e.g.::

    roll back penguins in prod to v1.1.0 (from v1.2.0)

    Action: rollback
    Model: penguins
    Version: v1.1.0
    Actor: alice
    Reason: the p99 latency doubled

``git tag -n99``, GitHub's tag page and ``make audit`` read the same lines. Standard library only:
the release's record job writes one with any ``python3``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_VALUE_LENGTH = 2000
FIELD_LINE = re.compile(r"^(?P<key>[A-Z][A-Za-z-]*): (?P<value>.*)$")


def one_line(value: str) -> str:
    """A field's value on one line (a reason typed over several lines stays one field)."""
    text = " ".join(value.split())
    return text if len(text) <= MAX_VALUE_LENGTH else text[: MAX_VALUE_LENGTH - 1] + "…"


def format_record(subject: str, fields: Mapping[str, str | None]) -> str:
    """The tag message: the subject, a blank line, one line per field that has a value."""
    lines = [one_line(subject), ""]
    lines += [f"{key}: {one_line(value)}" for key, value in fields.items() if value]
    return "\n".join(lines) + "\n"


def parse_record(message: str) -> tuple[str, dict[str, str]]:
    """(subject, fields) of a tag message; the fields are the ``Key: value`` lines of its last
    paragraph (none for a message written another way)."""
    lines = message.strip().splitlines()
    subject = lines[0].strip() if lines else ""
    paragraphs = "\n".join(lines[1:]).strip().split("\n\n")
    fields: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        match = FIELD_LINE.match(line.strip())
        if match is None:
            return subject, {}
        fields[match["key"]] = match["value"]
    return subject, fields
