"""Prometheus metrics (in a registry of its own) and the middleware counting requests.

Requests are counted in plain dictionaries and turned into metric families only when Prometheus
scrapes: every update and every scrape runs on the event loop's thread, so no update needs the
lock (and the per-call bookkeeping) of ``prometheus_client``'s own metric objects.

With several worker processes (``SCORER_WORKERS``) a scrape reaches one of them, so each worker
also publishes its counts to a file in a directory they share, every ``PUBLISH_SECONDS`` and as
it stops; the scraped worker adds the others' files to its own counts. Counts of a worker that
has stopped stay in the sum (counters never go down); its log backlog does not.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BUCKET_LABELS = (*map(floatToGoString, LATENCY_BUCKETS), "+Inf")  # the "le" of each bucket
UNMATCHED_ROUTE = "unmatched"
PUBLISH_SECONDS = 1.0  # how stale another worker's counts may be in a scrape

logger = logging.getLogger("mlops.serve")


@dataclass
class Histogram:
    """One histogram series: a count per bucket (the last is +Inf) and the sum of what was seen."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1  # bucket "le" holds <= le
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        return list(zip(BUCKET_LABELS, map(float, accumulate(self.counts)), strict=True))

    def add(self, other: Histogram) -> None:
        self.counts = [
            mine + theirs for mine, theirs in zip(self.counts, other.counts, strict=True)
        ]
        self.total += other.total


@dataclass
class Counts:
    """Everything one worker process has counted, in a form that adds up and travels as JSON."""

    requests: Counter[tuple[str, str, int]] = field(
        default_factory=Counter
    )  # route, method, status
    latency: dict[str, Histogram] = field(default_factory=dict)  # by route
    records: Counter[str] = field(default_factory=Counter)  # by route
    out_of_range: Counter[str] = field(default_factory=Counter)  # by feature
    unknown_categories: Counter[str] = field(default_factory=Counter)  # by feature
    log_pending: float = 0.0

    def add(self, other: Counts) -> None:
        self.requests.update(other.requests)
        for route, histogram in other.latency.items():
            self.latency.setdefault(route, Histogram()).add(histogram)
        self.records.update(other.records)
        self.out_of_range.update(other.out_of_range)
        self.unknown_categories.update(other.unknown_categories)
        self.log_pending += other.log_pending

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "requests": [[*key, count] for key, count in self.requests.items()],
                "latency": {
                    route: [histogram.counts, histogram.total]
                    for route, histogram in self.latency.items()
                },
                "records": self.records,
                "out_of_range": self.out_of_range,
                "unknown_categories": self.unknown_categories,
                "log_pending": self.log_pending,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Counts:
        raw: dict[str, Any] = orjson.loads(data)
        return cls(
            Counter(
                {(route, method, status): count for route, method, status, count in raw["requests"]}
            ),
            {route: Histogram(counts, total) for route, (counts, total) in raw["latency"].items()},
            Counter(raw["records"]),
            Counter(raw["out_of_range"]),
            Counter(raw["unknown_categories"]),
            raw["log_pending"],
        )


class SharedCounts:
    """The worker processes' counts, one file each in a directory they share."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # The pid says whether the worker still runs; the random part keeps a later process that
        # gets the same pid from overwriting a stopped worker's counts.
        self.own = directory / f"worker-{os.getpid()}-{os.urandom(4).hex()}.json"

    def publish(self, counts: Counts) -> None:
        """Replace this worker's file atomically: a reader sees the old counts or the new."""
        partial = self.own.with_suffix(".partial")
        partial.write_bytes(counts.to_json())
        partial.replace(self.own)

    def others(self) -> Iterator[Counts]:
        """The other workers' last published counts; a stopped worker's backlog is not counted."""
        for path in sorted(self.directory.glob("worker-*.json")):
            if path == self.own:
                continue
            try:
                counts = Counts.from_json(path.read_bytes())
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("metrics of another worker unreadable (%s): %s", path.name, error)
                continue
            if not process_exists(int(path.stem.split("-")[1])):
                counts.log_pending = 0.0
            yield counts


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class ScorerMetrics:
    def __init__(
        self, model_name: str, model_version: str, git_commit: str, shared: Path | None = None
    ) -> None:
        self.model = (model_name, model_version, git_commit)
        self.own = Counts()  # this process's
        self.log_pending: Callable[[], float] = lambda: 0.0
        self.shared = SharedCounts(shared) if shared is not None else None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        own = self.own
        own.requests[route, method, status] += 1
        histogram = own.latency.get(route)
        if histogram is None:
            histogram = own.latency[route] = Histogram()
        histogram.observe(seconds)

    def observe_batch(
        self, route: str, size: int, out_of_range: dict[str, int], unknown: dict[str, int]
    ) -> None:
        own = self.own
        own.records[route] += size
        if out_of_range:
            own.out_of_range.update(out_of_range)
        if unknown:
            own.unknown_categories.update(unknown)

    def track_log_backlog(self, pending: Callable[[], float]) -> None:
        self.log_pending = pending

    def counts(self) -> Counts:
        """This process's counts, with its log backlog as of now."""
        self.own.log_pending = self.log_pending()
        return self.own

    def totals(self) -> Counts:
        """This process's counts plus, with several workers, the others' last published ones."""
        if self.shared is None:
            return self.counts()
        totals = Counts()
        totals.add(self.counts())
        for counts in self.shared.others():
            totals.add(counts)
        return totals

    def publish(self) -> None:
        """Share this worker's counts with the others (nothing to do in a single process). A
        failure is logged, not raised: scoring goes on, and the next publication may succeed."""
        if self.shared is None:
            return
        try:
            self.shared.publish(self.counts())
        except OSError as error:
            logger.warning("could not share this worker's metrics with the others: %s", error)

    def collect(self) -> Iterator[Metric]:
        """The metric families, as the registry asks for them on every scrape."""
        counts = self.totals()
        requests = CounterMetricFamily(
            "scorer_requests",
            "Requests by route template, method and status code (gRPC calls: method GRPC, the "
            "status their code corresponds to)",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in sorted(counts.requests.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "scorer_request_duration_seconds",
            "Time from request start to the end of the response, by route template",
            labels=["route"],
        )
        for route, histogram in sorted(counts.latency.items()):
            latency.add_metric([route], histogram.cumulative(), histogram.total)
        yield latency
        yield counter_family(
            "scorer_records_scored", "Records scored, by route", "route", counts.records
        )
        yield counter_family(
            "scorer_out_of_range_values",
            "Scored values outside the training range, by feature",
            "feature",
            counts.out_of_range,
        )
        yield counter_family(
            "scorer_unknown_categories",
            "Scored categories not seen in training, by feature",
            "feature",
            counts.unknown_categories,
        )
        info = GaugeMetricFamily(
            "scorer_model_info",
            "The model being served (always 1)",
            labels=["model_name", "model_version", "git_commit"],
        )
        info.add_metric(list(self.model), 1)
        yield info
        yield GaugeMetricFamily(
            "scorer_prediction_log_pending_records",
            "Scored records not yet written to the prediction log",
            value=counts.log_pending,
        )

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def counter_family(
    name: str, documentation: str, label: str, counts: Counter[str]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


class MetricsMiddleware:
    """Counts every HTTP request by the route template it matched (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: ScorerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")
            template = (
                getattr(route, "path", UNMATCHED_ROUTE) if route is not None else UNMATCHED_ROUTE
            )
            self.metrics.observe_request(
                template, scope["method"], status, time.perf_counter() - started
            )
