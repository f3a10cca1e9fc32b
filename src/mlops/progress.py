"""Progress lines for long stages: rows processed, elapsed time and rate, on the terminal.

Two forms. A loop over chunks creates a ``Progress`` and calls ``advance`` as rows are done: a
line is printed at most every ``interval`` seconds, and ``done`` prints the closing line. One long
call (a fit, a validation) runs inside ``step``: a line when it starts, if it has many rows, and
one with the elapsed time and rate when it ends, if it was announced or took long. Small runs stay
quiet either way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

INTERVAL_SECONDS = 5.0
ANNOUNCE_ROWS = 100_000  # a step over at least this many rows says so when it starts


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None = None,
        interval: float = INTERVAL_SECONDS,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.rows = 0
        self.interval = interval
        self.stream = stream or sys.stdout
        self.started = time.perf_counter()
        self._last_print = self.started
        self._printed = False

    def advance(self, rows: int) -> None:
        self.rows += rows
        now = time.perf_counter()
        if now - self._last_print >= self.interval:
            self._print(now)

    def done(self) -> None:
        """The closing line, printed only if a progress line was (the step was long)."""
        if self._printed:
            self._print(time.perf_counter())

    def _print(self, now: float) -> None:
        self._last_print = now
        self._printed = True
        self.stream.write(describe_rate(self.label, self.rows, now - self.started, self.total))
        self.stream.write("\n")
        self.stream.flush()


def describe_rate(label: str, rows: int, seconds: float, total: int | None = None) -> str:
    """``label: 250,000 of 1,000,000 rows, 2.1 s, 119,048 rows/s``."""
    done = f"{rows:,} of {total:,} rows" if total is not None else f"{rows:,} rows"
    rate = rows / seconds if seconds > 0 else 0.0
    return f"{label}: {done}, {seconds:.1f} s, {rate:,.0f} rows/s"


@contextmanager
def step(
    label: str, rows: int | None, *, announce: bool | None = None, stream: TextIO | None = None
) -> Iterator[None]:
    """Report one long step over ``rows`` rows, or over something else when ``rows`` is None
    (see the module's docstring); ``announce`` overrides whether the start is reported."""
    output = stream or sys.stdout
    announced = announce if announce is not None else (rows or 0) >= ANNOUNCE_ROWS
    if announced:
        output.write(f"{label}: {rows:,} rows ...\n" if rows is not None else f"{label} ...\n")
        output.flush()
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    if announced or seconds >= INTERVAL_SECONDS:
        done = (
            describe_rate(label, rows, seconds) if rows is not None else f"{label}: {seconds:.1f} s"
        )
        output.write(done + "\n")
        output.flush()
