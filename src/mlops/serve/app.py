"""The scorer's HTTP routes: REST ``/predict``, Open Inference Protocol V2, health, metadata,
metrics.

Plain Starlette routes; the hot path goes raw body → orjson → checked columns → one ORT call
shared with the requests that arrived together (``mlops.serve.batching``) → orjson. The OpenAPI
document is written from the signature (``mlops.serve.openapi``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import importlib.metadata
import itertools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops.core.artifacts import ArtifactError
from mlops.serve.batching import MicroBatcher
from mlops.serve.metrics import PUBLISH_SECONDS, MetricsMiddleware, ScorerMetrics
from mlops.serve.model import Prediction, Scorer
from mlops.serve.openapi import openapi_document
from mlops.serve.predlog import PredictionLogWriter, ScoredBatch
from mlops.serve.responses import (
    infer_body,
    model_metadata_body,
    model_parameters,
    predict_body,
    regression_predict_body,
)
from mlops.serve.settings import ServeSettings
from mlops.serve.validation import (
    InputError,
    InputSchema,
    ModelInput,
    check_inference_request,
    input_schema,
    tensors_to_columns,
    validate_columns,
    validate_records,
    warm_up_records,
)

logger = logging.getLogger("mlops.serve")

SERVER_NAME = "mlops-scorer"
INLINE_MAX_RECORDS = 64  # larger batches are scored in a worker thread
LOG_BACKPRESSURE_SECONDS = 5.0
GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation
PREDICT_ROUTE = "/predict"
INFER_ROUTE = "/v2/models/{model_name}/infer"
Handler = Callable[[Request], Awaitable[Response]]


class ClientError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class RequestIds:
    """Request ids of 32 hex digits: 64 random bits drawn once per process, then a counter.
    Unique across workers and restarts, and cheaper than 128 random bits per request (a system
    call each). A forked child draws its own prefix."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)

    def restart(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.numbers = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.numbers):016x}"


new_request_id = RequestIds()


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def json_bytes_response(content: bytes, request_id: str) -> Response:
    """A scoring answer: its JSON and the request id header (appended to the headers Starlette
    makes, rather than passed as a mapping it would encode anew)."""
    response = Response(content, media_type="application/json")
    response.raw_headers.append((b"x-request-id", request_id.encode()))
    return response


def parse_json(body: bytes) -> Any:
    """orjson first; the standard library only for NaN/Infinity, so validation names the field."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        strict_error = error
    try:
        value = json.loads(body)
        orjson.dumps(value)  # everything accepted must be writable to the prediction log
    except (ValueError, TypeError, RecursionError):
        raise ClientError(400, f"malformed JSON: {strict_error}") from None
    return value


def bearer_matches(header: str | None, token_digest: bytes) -> bool:
    """Compare digests in constant time: neither the token nor its length leaks through timing."""
    scheme, _, credentials = (header or "").partition(" ")
    given = hashlib.sha256(credentials.strip().encode()).digest()
    return hmac.compare_digest(given, token_digest) and scheme.lower() == "bearer"


@dataclass
class Service:
    settings: ServeSettings
    scorer: Scorer
    schema: InputSchema
    metrics: ScorerMetrics
    log: PredictionLogWriter
    batcher: MicroBatcher
    token_digest: bytes | None
    openapi: bytes
    ready: bool = False

    def not_ready_reason(self) -> str | None:
        if not self.ready:
            return "starting or shutting down"
        if not self.log.healthy:
            return f"prediction log failing: {self.log.failed or 'writer stopped'}"
        return None

    def require_token(self, request: Request) -> None:
        if self.token_digest is None:
            return
        if not bearer_matches(request.headers.get("authorization"), self.token_digest):
            raise ClientError(
                401,
                "missing or invalid bearer token",
                {"WWW-Authenticate": 'Bearer realm="scorer"'},
            )

    async def read_json(self, request: Request) -> Any:
        headers = dict(request.scope["headers"])  # ASGI: names already lower-case
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if content_type != b"application/json":
            given = content_type.decode("latin-1") or "none"
            raise ClientError(415, f"Content-Type must be application/json, got {given!r}")
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ClientError(400, "Content-Length is not a number")
            if int(declared) > limit:
                raise ClientError(
                    413,
                    f"body of {int(declared)} bytes; the limit is {limit} (SCORER_MAX_BODY_BYTES)",
                )
            return parse_json(await request.body())
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ClientError(413, f"body over {limit} bytes (SCORER_MAX_BODY_BYTES)")
            chunks.append(chunk)
        return parse_json(b"".join(chunks))

    def score(self, batch: ModelInput) -> Awaitable[Prediction]:
        """Small batches join others in one ORT call on the event loop; large ones run in a worker
        thread (ORT releases the GIL), so the loop keeps serving meanwhile."""
        reason = self.not_ready_reason()
        if reason is not None:
            raise ClientError(503, f"not ready: {reason}")
        if batch.size <= INLINE_MAX_RECORDS:
            return self.batcher.predict(batch)
        return asyncio.to_thread(self.scorer.predict, batch.feed)

    async def record(self, route: str, batch: ModelInput, scored: ScoredBatch) -> None:
        """Queue the scored records for the prediction log; wait (bounded) if the writer lags."""
        if not self.log.submit(scored):
            await self.wait_for_log(scored)
        self.metrics.observe_batch(route, batch.size, batch.out_of_range, batch.unknown_categories)

    async def wait_for_log(self, scored: ScoredBatch) -> None:
        deadline = time.perf_counter() + LOG_BACKPRESSURE_SECONDS
        while not self.log.submit(scored):
            if not self.log.healthy or time.perf_counter() > deadline:
                raise ClientError(503, "the prediction log is not keeping up; retry later")
            await asyncio.sleep(0.005)

    def check_model(self, request: Request) -> None:
        name = request.path_params["model_name"]
        version = request.path_params.get("model_version")
        if name != self.scorer.model_name:
            raise ClientError(
                404, f"unknown model {name!r}; this server serves {self.scorer.model_name!r}"
            )
        if version is not None and version != self.scorer.model_version:
            raise ClientError(
                404,
                f"unknown version {version!r} of {name!r}; "
                f"the served version is {self.scorer.model_version!r}",
            )

    # REST routes ---------------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        started, received = time.perf_counter(), time.time()
        self.require_token(request)
        body = await self.read_json(request)
        batch, records = validate_records(body, self.schema, self.settings.max_records)
        prediction = await self.score(batch)
        request_id = new_request_id()
        version = self.scorer.model_version
        maps = None
        if self.scorer.regression:
            answer = regression_predict_body(request_id, version, prediction.values, batch.warnings)
        else:
            maps = prediction.probability_maps(self.scorer.classes)
            answer = predict_body(request_id, version, prediction.labels, maps, batch.warnings)
        content = orjson.dumps(answer)
        scored = self.scored(received, started, request_id, records, prediction, maps)
        await self.record(PREDICT_ROUTE, batch, scored)
        return json_bytes_response(content, request_id)

    def scored(
        self,
        received: float,
        started: float,
        request_id: str,
        records: list[dict[str, Any]],
        prediction: Prediction,
        maps: list[dict[str, float]] | None,
    ) -> ScoredBatch:
        """What the prediction log records of a request: a classifier's labels and probability
        maps (``maps``, shared with the answer), or a regressor's values."""
        predictions = prediction.values if self.scorer.regression else prediction.labels
        return ScoredBatch(
            received,
            request_id,
            self.scorer.model_version,
            records,
            predictions,
            maps,
            time.perf_counter() - started,
        )

    async def metadata(self, request: Request) -> Response:
        self.require_token(request)
        manifest = self.scorer.manifest
        return json_response(
            {
                "model_name": manifest["model_name"],
                "model_version": manifest["model_version"],
                "task": self.scorer.task,
                "lineage": manifest["lineage"],
                "metrics": manifest["metrics"],
                "signature": self.scorer.signature,
            }
        )

    async def live(self, request: Request) -> Response:
        return json_response({"status": "live"})

    async def health_ready(self, request: Request) -> Response:
        reason = self.not_ready_reason()
        if reason is None:
            return json_response({"status": "ready"})
        return json_response({"status": "not ready", "reason": reason}, 503)

    async def prometheus(self, request: Request) -> Response:
        content, content_type = self.metrics.exposition(request.headers.get("accept"))
        return Response(content, headers={"content-type": content_type})

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    # Open Inference Protocol V2 ------------------------------------------------------------------

    async def v2_server(self, request: Request) -> Response:
        return json_response({"name": SERVER_NAME, "version": server_version(), "extensions": []})

    async def v2_live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        ready = self.not_ready_reason() is None
        return json_response({"ready": ready}, 200 if ready else 503)

    async def v2_model_ready(self, request: Request) -> Response:
        self.check_model(request)
        ready = self.not_ready_reason() is None
        return json_response(
            {"name": self.scorer.model_name, "ready": ready}, 200 if ready else 503
        )

    async def v2_model_metadata(self, request: Request) -> Response:
        self.require_token(request)
        self.check_model(request)
        return json_response(
            model_metadata_body(
                self.scorer.model_name,
                self.scorer.model_version,
                self.schema,
                self.scorer.classes,
                model_parameters(self.scorer.signature),
            )
        )

    async def v2_infer(self, request: Request) -> Response:
        started, received = time.perf_counter(), time.time()
        self.require_token(request)
        self.check_model(request)
        body = await self.read_json(request)
        request_id = new_request_id()
        client_id, wanted = check_inference_request(body, self.scorer.outputs)
        columns, size = tensors_to_columns(body["inputs"], self.schema, self.settings.max_records)
        batch = validate_columns(columns, size, self.schema)
        prediction = await self.score(batch)
        content = orjson.dumps(
            infer_body(
                self.scorer.model_name,
                self.scorer.model_version,
                client_id if client_id is not None else request_id,
                prediction,
                wanted,
            )
        )
        records = [
            {name: columns[name][index] for name in self.schema.order} for index in range(size)
        ]
        maps = None if self.scorer.regression else prediction.probability_maps(self.scorer.classes)
        scored = self.scored(received, started, request_id, records, prediction, maps)
        await self.record(INFER_ROUTE, batch, scored)
        return json_bytes_response(content, request_id)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Everything loaded so far lives as long as the process: keep the garbage collector from
        # walking it again on every full collection (shorter pauses, so a lower tail latency).
        # A 1,000-record request allocates thousands of short-lived dicts that are all alive
        # until it answers; the default threshold (700) would scan them ten times per request.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD)
        publisher = asyncio.create_task(self.publish_metrics()) if self.metrics.shared else None
        self.ready = True
        logger.info(
            "ready: model %s version %s, %d feature(s)",
            self.scorer.model_name,
            self.scorer.model_version,
            len(self.schema.fields),
        )
        try:
            yield
        finally:
            self.ready = False
            logger.info(
                "shutting down: writing %d queued prediction log record(s)", self.log.pending
            )
            self.log.close(self.settings.shutdown_timeout)
            if publisher is not None:
                publisher.cancel()
                self.metrics.publish()  # the final counts, with the log written out

    async def publish_metrics(self) -> None:
        """Share this worker's counts with the other workers, every ``PUBLISH_SECONDS`` (a small
        file written on the loop: microseconds once a second)."""
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            self.metrics.publish()


def server_version() -> str:
    try:
        return importlib.metadata.version("mlops")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def rest(handler: Handler) -> Handler:
    """Client errors as ``{"error", "details"}`` JSON (422 for records that do not validate)."""

    async def respond(request: Request) -> Response:
        try:
            return await handler(request)
        except InputError as error:
            return json_response(error.payload(), error.status)
        except ClientError as error:
            return json_response({"error": error.message}, error.status, error.headers)

    return respond


def v2(handler: Handler) -> Handler:
    """Client errors as the protocol's ``{"error": "<message>"}``, mostly with status 400."""

    async def respond(request: Request) -> Response:
        try:
            return await handler(request)
        except InputError as error:
            status = error.status if error.status == 413 else 400
            return json_response({"error": error.one_line()}, status)
        except ClientError as error:
            return json_response({"error": error.message}, error.status, error.headers)

    return respond


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return json_response({"error": error.detail}, error.status_code, dict(error.headers or {}))


async def internal_error(request: Request, error: Exception) -> Response:
    logger.exception("internal error on %s %s", request.method, request.url.path)
    return json_response({"error": "internal error"}, 500)


def routes(service: Service) -> list[Route]:
    model = "/v2/models/{model_name}"
    version = model + "/versions/{model_version}"
    return [
        Route(PREDICT_ROUTE, rest(service.predict), methods=["POST"]),
        Route("/metadata", rest(service.metadata), methods=["GET"]),
        Route("/health/live", service.live, methods=["GET"]),
        Route("/health/ready", service.health_ready, methods=["GET"]),
        Route("/metrics", service.prometheus, methods=["GET"]),
        Route("/openapi.json", service.openapi_json, methods=["GET"]),
        Route("/v2", v2(service.v2_server), methods=["GET"]),
        Route("/v2/health/live", v2(service.v2_live), methods=["GET"]),
        Route("/v2/health/ready", v2(service.v2_ready), methods=["GET"]),
        Route(model, v2(service.v2_model_metadata), methods=["GET"]),
        Route(version, v2(service.v2_model_metadata), methods=["GET"]),
        Route(model + "/ready", v2(service.v2_model_ready), methods=["GET"]),
        Route(version + "/ready", v2(service.v2_model_ready), methods=["GET"]),
        Route(INFER_ROUTE, v2(service.v2_infer), methods=["POST"]),
        Route(version + "/infer", v2(service.v2_infer), methods=["POST"]),
    ]


def warm_up(scorer: Scorer, schema: InputSchema) -> None:
    """Score typical, missing and (if they are scored) unseen values once before taking traffic."""
    records = warm_up_records(schema)
    try:
        batch, _ = validate_records({"records": records}, schema, len(records))
        scorer.predict(batch.feed)
    except InputError as error:
        raise ArtifactError(
            f"signature.json: its own example records do not validate ({error.one_line()})"
        ) from None
    except Exception as error:  # ONNX Runtime's error types are not part of its public API
        raise ArtifactError(
            f"warm-up failed: the model cannot score {records} ({error}); "
            "with SCORER_UNKNOWN_CATEGORY=score the model must accept unseen categories"
        ) from None


def create_app(settings: ServeSettings, scorer: Scorer, log: PredictionLogWriter) -> Starlette:
    """The ASGI app serving ``scorer`` (warmed up here): ready once started, drains ``log`` on
    shutdown. Raises ArtifactError if the model cannot score the signature's example records."""
    schema = input_schema(scorer.signature, settings.unknown_category, settings.out_of_range)
    warm_up(scorer, schema)
    metrics = ScorerMetrics(
        scorer.model_name,
        scorer.model_version,
        scorer.manifest["lineage"]["git_commit"],
        shared=settings.shared_metrics_dir if settings.workers > 1 else None,
    )
    metrics.track_log_backlog(lambda: log.pending)
    token = settings.api_token
    document = openapi_document(
        schema,
        scorer.signature,
        scorer.model_name,
        scorer.model_version,
        settings.max_records,
        token is not None,
    )
    service = Service(
        settings=settings,
        scorer=scorer,
        schema=schema,
        metrics=metrics,
        log=log,
        batcher=MicroBatcher(scorer, schema),
        token_digest=hashlib.sha256(token.get_secret_value().encode()).digest() if token else None,
        openapi=orjson.dumps(document),
    )
    return Starlette(
        routes=routes(service),
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=service.lifespan,
    )
