"""The scorer's request counts per role, scraped from its ``/metrics`` (``MONITOR_SCORER_URL``):
``scorer_model_requests_total{role, model_version, outcome}``, outcome ``ok``, ``error`` or
``dropped``.

The counters grow from the scorer's start; the error rate over the comparison's window is their
increase from the last scrape at or before the window's start (the oldest scrape kept when the
sidecar was not scraping yet) to the latest, summed over model versions. A counter that went down
was reset (the scorer restarted): its new value counts as the increase, as Prometheus's
``increase()`` does.
"""

from __future__ import annotations

import itertools
import logging
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from mlops.core.artifacts import ROLES, Role
from mlops.monitor.rollout import ErrorCounts, RequestCounts

LOGGER = logging.getLogger(__name__)
SAMPLE = "scorer_model_requests_total"
OUTCOMES = ("ok", "error", "dropped")
MAX_BYTES = 16 << 20
MAX_SCRAPES = 2000  # at the default 15 s, more than 8 hours
Counts = Mapping[Role, Mapping[str, float]]


@dataclass(frozen=True)
class Scrape:
    time: float
    counts: Counts  # role -> outcome -> the counter (summed over model versions)


def parse_counts(text: str) -> dict[Role, dict[str, float]]:
    """The request counters per role and outcome in a Prometheus text exposition (ValueError
    when it is not one)."""
    counts: dict[Role, dict[str, float]] = {role: dict.fromkeys(OUTCOMES, 0.0) for role in ROLES}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            role, outcome = sample.labels.get("role"), sample.labels.get("outcome")
            if sample.name == SAMPLE and role in counts and outcome in OUTCOMES:
                counts[role][outcome] += sample.value
    return counts


def increase(values: Sequence[float]) -> float:
    """How much a counter grew over its samples, oldest first, across resets."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def counts_since(scrapes: Sequence[Scrape], start: float | None) -> dict[Role, RequestCounts]:
    """Each role's requests from the window's ``start`` to the latest scrape."""
    first = 0
    for position, scrape in enumerate(scrapes):
        if start is not None and scrape.time <= start:
            first = position
    kept = scrapes[first:]
    grown = {
        role: {
            outcome: increase([s.counts.get(role, {}).get(outcome, 0.0) for s in kept])
            for outcome in OUTCOMES
        }
        for role in ROLES
    }
    return {
        role: RequestCounts(round(c["ok"]), round(c["error"]), round(c["dropped"]))
        for role, c in grown.items()
    }


class ScorerCounters:
    """Scrapes the scorer at most every ``interval_seconds`` and keeps the scrapes."""

    def __init__(self, url: str | None, interval_seconds: float, timeout_seconds: float) -> None:
        self.url = None if url is None else url.rstrip("/") + "/metrics"
        self.interval_seconds = interval_seconds
        self.timeout_seconds = timeout_seconds
        self._scrapes: deque[Scrape] = deque(maxlen=MAX_SCRAPES)
        self._last_attempt: float | None = None
        self._failure: str | None = None

    def poll(self, now: float) -> bool:
        """Scrape if one is due; a failure is logged (once until it recovers) and remembered.
        Whether anything changed (a scrape, or a failure)."""
        if self.url is None:
            return False
        if self._last_attempt is not None and now - self._last_attempt < self.interval_seconds:
            return False
        self._last_attempt = now
        try:
            counts = parse_counts(self._read())
        except (OSError, ValueError, UnicodeDecodeError) as error:
            if self._failure is None:
                LOGGER.warning("cannot read the scorer's metrics at %s: %s", self.url, error)
            self._failure = str(error) or type(error).__name__
            return True
        if self._failure is not None:
            LOGGER.info("the scorer's metrics at %s can be read again", self.url)
        self._failure = None
        self._scrapes.append(Scrape(now, counts))
        return True

    def _read(self) -> str:
        assert self.url is not None
        request = urllib.request.Request(self.url, headers={"Accept": "text/plain"})
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            return bytes(response.read(MAX_BYTES)).decode("utf-8")

    def over(self, start: float | None) -> ErrorCounts:
        """The counts over the window starting at ``start``, or why there are none."""
        if self.url is None:
            return ErrorCounts()
        if self._failure is not None:
            note = f"the scorer's metrics at {self.url} cannot be read ({self._failure})"
            return ErrorCounts(None, note, expected=True)
        if len(self._scrapes) < 2:
            note = f"waiting for a second scrape of {self.url} (every {self.interval_seconds:g} s)"
            return ErrorCounts(None, note, expected=True)
        return ErrorCounts(counts_since(list(self._scrapes), start), "", expected=True)
