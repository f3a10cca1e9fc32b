"""The scorer's HTTP routes: REST ``/predict``, Open Inference Protocol V2, health, metadata,
metrics.

Plain Starlette routes that only translate HTTP: they check the token, the content type and the
body's size, parse the JSON (orjson) and hand the body to the data plane with their protocol's
codec (``mlops.serve.dataplane``, ``mlops.serve.codecs``), which checks, scores, logs and
encodes the answer. The OpenAPI document is written from the signature
(``mlops.serve.openapi``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import importlib.metadata
import json
import logging
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

from mlops.serve.batching import MicroBatcher
from mlops.serve.codecs.base import Codec
from mlops.serve.codecs.rest import RestCodec, metadata_body
from mlops.serve.codecs.v2 import V2Codec, model_metadata_body, model_parameters
from mlops.serve.dataplane import DataPlane
from mlops.serve.errors import ClientError, InputError
from mlops.serve.metrics import PUBLISH_SECONDS, MetricsMiddleware, ScorerMetrics
from mlops.serve.model import Scorer
from mlops.serve.openapi import openapi_document
from mlops.serve.predlog import PredictionLogWriter, require_bounded_lines
from mlops.serve.schema import input_schema
from mlops.serve.settings import ServeSettings
from mlops.serve.warmup import warm_up

logger = logging.getLogger("mlops.serve")

SERVER_NAME = "mlops-scorer"
GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation
PREDICT_ROUTE = "/predict"
INFER_ROUTE = "/v2/models/{model_name}/infer"
Handler = Callable[[Request], Awaitable[Response]]


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


class ScoringResponse(Response):
    """A scoring answer: its JSON and the request id header. The headers are the ones
    ``Response`` makes for JSON bytes, in its order, then the id; made here in one step, they
    cost a third of ``Response.__init__``, which renders the content and inspects the headers
    for every kind of response (a unit test holds the two to the same bytes)."""

    media_type = "application/json"

    def __init__(self, content: bytes, request_id: str) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        self.raw_headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
            (b"x-request-id", request_id.encode()),
        ]


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
    """The routes of one served model: HTTP in, the data plane, HTTP out."""

    settings: ServeSettings
    plane: DataPlane
    token_digest: bytes | None
    openapi: bytes
    rest: RestCodec
    v2: V2Codec

    @property
    def scorer(self) -> Scorer:
        return self.plane.scorer

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

    def check_model(self, request: Request) -> None:
        self.plane.check_model(
            request.path_params["model_name"], request.path_params.get("model_version")
        )

    # REST routes ---------------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        started, received = time.perf_counter(), time.time()
        self.require_token(request)
        body = await self.read_json(request)
        content, request_id = await self.plane.infer(
            self.rest, body, PREDICT_ROUTE, started, received
        )
        return ScoringResponse(content, request_id)

    async def metadata(self, request: Request) -> Response:
        self.require_token(request)
        return json_response(metadata_body(self.scorer))

    async def live(self, request: Request) -> Response:
        return json_response({"status": "live"})

    async def health_ready(self, request: Request) -> Response:
        reason = self.plane.not_ready_reason()
        if reason is None:
            return json_response({"status": "ready"})
        return json_response({"status": "not ready", "reason": reason}, 503)

    async def prometheus(self, request: Request) -> Response:
        content, content_type = self.plane.metrics.exposition(request.headers.get("accept"))
        return Response(content, headers={"content-type": content_type})

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    # Open Inference Protocol V2 ------------------------------------------------------------------

    async def v2_server(self, request: Request) -> Response:
        return json_response({"name": SERVER_NAME, "version": server_version(), "extensions": []})

    async def v2_live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def v2_ready(self, request: Request) -> Response:
        ready = self.plane.not_ready_reason() is None
        return json_response({"ready": ready}, 200 if ready else 503)

    async def v2_model_ready(self, request: Request) -> Response:
        self.check_model(request)
        ready = self.plane.not_ready_reason() is None
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
                self.plane.schema,
                self.scorer.classes,
                model_parameters(self.scorer.signature),
            )
        )

    async def v2_infer(self, request: Request) -> Response:
        started, received = time.perf_counter(), time.time()
        self.require_token(request)
        self.check_model(request)
        body = await self.read_json(request)
        content, request_id = await self.plane.infer(self.v2, body, INFER_ROUTE, started, received)
        return ScoringResponse(content, request_id)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Everything loaded so far lives as long as the process: keep the garbage collector from
        # walking it again on every full collection (shorter pauses, so a lower tail latency).
        # A 1,000-record request allocates thousands of short-lived dicts that are all alive
        # until it answers; the default threshold (700) would scan them ten times per request.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD)
        plane = self.plane
        publisher = asyncio.create_task(self.publish_metrics()) if plane.metrics.shared else None
        plane.ready = True
        logger.info(
            "ready: model %s version %s, %d feature(s)",
            self.scorer.model_name,
            self.scorer.model_version,
            len(plane.schema.fields),
        )
        try:
            yield
        finally:
            plane.ready = False
            logger.info(
                "shutting down: writing %d queued prediction log record(s)", plane.log.pending
            )
            plane.log.close()
            if publisher is not None:
                publisher.cancel()
                plane.metrics.publish()  # the final counts, with the log written out

    async def publish_metrics(self) -> None:
        """Share this worker's counts with the other workers, every ``PUBLISH_SECONDS`` (a small
        file written on the loop: microseconds once a second)."""
        while True:
            await asyncio.sleep(PUBLISH_SECONDS)
            self.plane.metrics.publish()


def server_version() -> str:
    try:
        return importlib.metadata.version("mlops")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def answering_errors(codec: Codec[Any, Any], handler: Handler) -> Handler:
    """Client errors in the protocol's form: input errors as ``codec`` writes them (REST:
    ``{"error", "details"}``, 422 for records that do not validate; V2: ``{"error": "<message>"}``
    with 400), any other refusal as ``{"error": <message>}`` with its status."""

    async def respond(request: Request) -> Response:
        try:
            return await handler(request)
        except InputError as error:
            status, payload = codec.error_body(error)
            return json_response(payload, status)
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

    def rest(handler: Handler) -> Handler:
        return answering_errors(service.rest, handler)

    def v2(handler: Handler) -> Handler:
        return answering_errors(service.v2, handler)

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


def create_app(settings: ServeSettings, scorer: Scorer, log: PredictionLogWriter) -> Starlette:
    """The ASGI app serving ``scorer`` (warmed up here): ready once started, drains ``log`` on
    shutdown. Raises ArtifactError if the model cannot score the signature's example records."""
    schema = input_schema(
        scorer.signature,
        settings.unknown_category,
        settings.out_of_range,
        settings.max_string_length,
    )
    require_bounded_lines(schema, scorer, settings.max_records)
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
    plane = DataPlane(
        scorer, schema, settings.max_records, metrics, log, MicroBatcher(scorer, schema)
    )
    service = Service(
        settings=settings,
        plane=plane,
        token_digest=hashlib.sha256(token.get_secret_value().encode()).digest() if token else None,
        openapi=orjson.dumps(document),
        rest=RestCodec(),
        v2=V2Codec(schema, scorer.outputs),
    )
    return Starlette(
        routes=routes(service),
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=service.lifespan,
    )
