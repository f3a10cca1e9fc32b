"""Prometheus metrics (in a registry of its own) and the middleware counting requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED_ROUTE = "unmatched"


class ScorerMetrics:
    def __init__(self, model_name: str, model_version: str, git_commit: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "scorer_requests",
            "HTTP requests by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "scorer_request_duration_seconds",
            "Time from request start to the end of the response, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.records = Counter(
            "scorer_records_scored", "Records scored, by route", ["route"], registry=self.registry
        )
        self.out_of_range = Counter(
            "scorer_out_of_range_values",
            "Scored values outside the training range, by feature",
            ["feature"],
            registry=self.registry,
        )
        self.unknown_categories = Counter(
            "scorer_unknown_categories",
            "Scored categories not seen in training, by feature",
            ["feature"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "scorer_model_info",
            "The model being served (always 1)",
            ["model_name", "model_version", "git_commit"],
            registry=self.registry,
        )
        self.model_info.labels(model_name, model_version, git_commit).set(1)
        self.log_pending = Gauge(
            "scorer_prediction_log_pending_records",
            "Scored records not yet written to the prediction log",
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._records_children: dict[str, Any] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, method, str(status))
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self.latency.labels(route)
        histogram.observe(seconds)

    def observe_batch(
        self, route: str, size: int, out_of_range: dict[str, int], unknown: dict[str, int]
    ) -> None:
        counter = self._records_children.get(route)
        if counter is None:
            counter = self._records_children[route] = self.records.labels(route)
        counter.inc(size)
        for feature, count in out_of_range.items():
            self.out_of_range.labels(feature).inc(count)
        for feature, count in unknown.items():
            self.unknown_categories.labels(feature).inc(count)

    def track_log_backlog(self, pending: Callable[[], float]) -> None:
        self.log_pending.set_function(pending)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


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
