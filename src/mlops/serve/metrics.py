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

from mlops.core.artifacts import CHALLENGER, CHAMPION

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


ModelLabels = tuple[str, str]  # a served model's role and version, as its series are labelled
OK, ERROR, DROPPED = "ok", "error", "dropped"  # a model's outcome on one request


@dataclass
class Counts:
    """Everything one worker process has counted, in a form that adds up and travels as JSON.
    The scoring counts carry the role and version of the model that scored (``ModelLabels``)."""

    requests: Counter[tuple[str, str, int]] = field(
        default_factory=Counter
    )  # route, method, status
    latency: dict[str, Histogram] = field(default_factory=dict)  # by route
    records: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # route, model
    out_of_range: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # feature, model
    unknown_categories: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    model_requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # +outcome
    model_latency: dict[ModelLabels, Histogram] = field(default_factory=dict)
    log_pending: float = 0.0

    def add(self, other: Counts) -> None:
        self.requests.update(other.requests)
        for route, histogram in other.latency.items():
            self.latency.setdefault(route, Histogram()).add(histogram)
        self.records.update(other.records)
        self.out_of_range.update(other.out_of_range)
        self.unknown_categories.update(other.unknown_categories)
        self.model_requests.update(other.model_requests)
        for model, histogram in other.model_latency.items():
            self.model_latency.setdefault(model, Histogram()).add(histogram)
        self.log_pending += other.log_pending

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "requests": listed(self.requests),
                "latency": {
                    route: [histogram.counts, histogram.total]
                    for route, histogram in self.latency.items()
                },
                "records": listed(self.records),
                "out_of_range": listed(self.out_of_range),
                "unknown_categories": listed(self.unknown_categories),
                "model_requests": listed(self.model_requests),
                "model_latency": [
                    [*model, histogram.counts, histogram.total]
                    for model, histogram in self.model_latency.items()
                ],
                "log_pending": self.log_pending,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Counts:
        raw: dict[str, Any] = orjson.loads(data)
        return cls(
            unlisted(raw["requests"]),
            {route: Histogram(counts, total) for route, (counts, total) in raw["latency"].items()},
            unlisted(raw["records"]),
            unlisted(raw["out_of_range"]),
            unlisted(raw["unknown_categories"]),
            unlisted(raw["model_requests"]),
            {
                (role, version): Histogram(counts, total)
                for role, version, counts, total in raw["model_latency"]
            },
            raw["log_pending"],
        )


def listed(counts: Counter[Any]) -> list[list[Any]]:
    """A counter keyed by tuples as JSON: ``[*key, count]`` per entry."""
    return [[*key, count] for key, count in counts.items()]


def unlisted(rows: list[list[Any]]) -> Counter[Any]:
    return Counter({tuple(row[:-1]): row[-1] for row in rows})


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
        self.models = [(model_name, model_version, git_commit, CHAMPION)]  # scorer_model_info
        self.own = Counts()  # this process's
        self.log_pending: Callable[[], float] = lambda: 0.0
        self.shared = SharedCounts(shared) if shared is not None else None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def serve_challenger(self, model_name: str, model_version: str, git_commit: str) -> None:
        self.models.append((model_name, model_version, git_commit, CHALLENGER))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        own = self.own
        own.requests[route, method, status] += 1
        histogram = own.latency.get(route)
        if histogram is None:
            histogram = own.latency[route] = Histogram()
        histogram.observe(seconds)

    def observe_answer(
        self,
        route: str,
        model: ModelLabels,
        size: int,
        out_of_range: dict[str, int],
        unknown: dict[str, int],
        seconds: float,
    ) -> None:
        """A request answered by ``model``: its records, their flagged values, its latency."""
        own = self.own
        role, version = model
        own.records[route, role, version] += size
        if out_of_range:
            own.out_of_range.update({(name, *model): n for name, n in out_of_range.items()})
        if unknown:
            own.unknown_categories.update({(name, *model): n for name, n in unknown.items()})
        self.observe_model(model, OK, seconds)

    def observe_model(self, model: ModelLabels, outcome: str, seconds: float | None = None) -> None:
        """One request's outcome for ``model`` (a shadow copy's too); its latency when scored."""
        own = self.own
        own.model_requests[model[0], model[1], outcome] += 1
        if seconds is None:
            return
        histogram = own.model_latency.get(model)
        if histogram is None:
            histogram = own.model_latency[model] = Histogram()
        histogram.observe(seconds)

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
        yield model_family(
            "scorer_records_scored",
            "Records answered, by route and the role and version of the model that answered",
            "route",
            counts.records,
        )
        yield model_family(
            "scorer_out_of_range_values",
            "Scored values outside the training range, by feature and answering model",
            "feature",
            counts.out_of_range,
        )
        yield model_family(
            "scorer_unknown_categories",
            "Scored categories not seen in training, by feature and answering model",
            "feature",
            counts.unknown_categories,
        )
        outcomes = CounterMetricFamily(
            "scorer_model_requests",
            "Requests each served model scored, by role, version and outcome: ok, error (the "
            "model failed: a 5xx answer, or a shadow copy's exception), dropped (a shadow copy "
            "not scored: its queue was full)",
            labels=["role", "model_version", "outcome"],
        )
        for key, count in sorted(counts.model_requests.items()):
            outcomes.add_metric(list(key), count)
        yield outcomes
        model_latency = HistogramMetricFamily(
            "scorer_model_latency_seconds",
            "Latency of the requests a model scored, as the prediction log records it (an "
            "answer: from its arrival to the encoded answer; a shadow copy: the checks plus the "
            "challenger's scoring, without its wait in the queue), by role and version",
            labels=["role", "model_version"],
        )
        for model, histogram in sorted(counts.model_latency.items()):
            model_latency.add_metric(list(model), histogram.cumulative(), histogram.total)
        yield model_latency
        info = GaugeMetricFamily(
            "scorer_model_info",
            "The models being served, by role (always 1)",
            labels=["model_name", "model_version", "git_commit", "role"],
        )
        for served in self.models:
            info.add_metric(list(served), 1)
        yield info
        yield GaugeMetricFamily(
            "scorer_prediction_log_pending_records",
            "Scored records not yet written to the prediction log",
            value=counts.log_pending,
        )

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def model_family(
    name: str, documentation: str, label: str, counts: Counter[tuple[str, str, str]]
) -> CounterMetricFamily:
    """A counter by ``label`` and the scoring model's role and version."""
    family = CounterMetricFamily(name, documentation, labels=[label, "role", "model_version"])
    for key, count in sorted(counts.items()):
        family.add_metric(list(key), count)
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
