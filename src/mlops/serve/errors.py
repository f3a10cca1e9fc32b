"""The scorer's client errors, and how their messages show what the client sent.

``InputError`` is what the checks and the codecs raise for input the model cannot score; each
codec turns it into its protocol's error body (``Codec.error_body``). ``ClientError`` is any
other refusal with its status (a missing token, an unknown model, not ready), answered as
``{"error": <message>}`` by every route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

MAX_REPORTED_ISSUES = 100
MAX_SHOWN_NAME = 100  # a field name longer than this is cut short in a message


class Issue(TypedDict):
    """One problem with the input: the record (or tensor element) index and the field."""

    index: int | None
    field: str | None
    message: str


class InputError(Exception):
    """The client sent something the model cannot score; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, issues: Sequence[Issue] = (), status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.issues = list(issues)
        self.status = status

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.issues:
            body["details"] = self.issues[:MAX_REPORTED_ISSUES]
            body["issue_count"] = len(self.issues)
        return body

    def one_line(self) -> str:
        """The message and the first few issues, for protocols whose error is a single string."""
        shown = "; ".join(describe_issue(issue) for issue in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        return f"{self.message}: {shown}{more}" if shown else self.message


class ClientError(Exception):
    """A refusal that is not about the input's values: its status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def describe_issue(issue: Issue) -> str:
    where = [] if issue["index"] is None else [f"[{issue['index']}]"]
    if issue["field"] is not None:
        where.append(issue["field"])
    return f"{' '.join(where)}: {issue['message']}" if where else issue["message"]


def shown(value: object, limit: int = 60) -> str:
    """``repr`` of a client's value, cut short: error messages must stay small."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
