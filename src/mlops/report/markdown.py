"""Markdown building blocks: tables, numbers, marks."""

from __future__ import annotations

from collections.abc import Sequence

BETTER, WORSE, SAME = "🟢", "🔴", "⚪"
PASSED, FAILED, WARNING = "✅", "❌", "⚠️"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A GitHub table; ``align`` has one letter per column (l or r), left by default."""
    alignment = [("---:" if align[i : i + 1] == "r" else "---") for i in range(len(header))]
    lines = [_row(header), _row(alignment)]
    lines += [_row([cell_text(cell) for cell in row]) for row in rows]
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def cell_text(value: object) -> str:
    """A table cell: numbers at 4 significant digits, nothing for None, pipes escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}g}"


def signed(value: float) -> str:
    return f"{value:+.4g}"


def mark(passed: bool) -> str:
    return PASSED if passed else FAILED


def section(title: str, *blocks: str) -> str:
    return "\n\n".join([f"### {title}", *[block for block in blocks if block]])


def details(summary: str, body: str) -> str:
    """A collapsed block, for long tables a reviewer opens on demand."""
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"
