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
import importlib.metadata
import json
import logging
import time
import zlib
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

from mlops.core.artifacts import CHALLENGER, CHAMPION, ArtifactError, Role
from mlops.serve.auth import UNAUTHORIZED, bearer_matches, token_digest
from mlops.serve.batching import MicroBatcher
from mlops.serve.codecs.base import Codec
from mlops.serve.codecs.rest import RestCodec, metadata_body
from mlops.serve.codecs.v2 import V2Codec, V2Request
from mlops.serve.codecs.v2_grpc import GrpcCodec
from mlops.serve.dataplane import DataPlane, Rollout, ServedModel
from mlops.serve.errors import ClientError, InputError
from mlops.serve.grpc.service import GrpcServer, InferenceService, listen_address
from mlops.serve.metrics import PUBLISH_SECONDS, MetricsMiddleware, ScorerMetrics
from mlops.serve.model import Scorer
from mlops.serve.openapi import openapi_document
from mlops.serve.predlog import PredictionLogWriter, require_bounded_lines
from mlops.serve.schema import InputSchema, input_schema
from mlops.serve.settings import ServeSettings
from mlops.serve.shadow import ShadowScorer
from mlops.serve.warmup import warm_up

logger = logging.getLogger("mlops.serve")

SERVER_NAME = "mlops-scorer"
EXTENSIONS = ("binary_tensor_data",)  # the V2 protocol extensions served (REST)
JSON_TYPE = b"application/json"
BINARY_TYPE = b"application/octet-stream"  # the binary tensor data extension's bodies
HEADER_LENGTH = b"inference-header-content-length"
ROLLOUT_KEY = b"x-rollout-key"  # a canary client's key: the same key, the same model
MODEL_ROLE = b"x-model-role"  # who answered: champion or challenger
DECOMPRESSORS = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}  # zlib's wbits
GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation
PREDICT_ROUTE = "/predict"
INFER_ROUTE = "/v2/models/{model_name}/infer"
Handler = Callable[[Request], Awaitable[Response]]
# At shutdown the shadow copies waiting get this long, after the answers' own drain: within the
# usual grace period (Kubernetes: SIGKILL 30 s after SIGTERM) without doubling it.
SHADOW_DRAIN_SECONDS = 5
ROLE_VALUES: dict[str, bytes] = {CHAMPION: CHAMPION.encode(), CHALLENGER: CHALLENGER.encode()}


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


class ScoringResponse(Response):
    """A scoring answer: its JSON, the request id and the role of the model that answered. The
    headers are the ones ``Response`` makes for JSON bytes, in its order, then the id and the
    role; made here in one step, they cost a third of ``Response.__init__``, which renders the
    content and inspects the headers for every kind of response (a unit test holds the two to
    the same bytes)."""

    media_type = "application/json"

    def __init__(
        self,
        content: bytes,
        request_id: str,
        role: Role = CHAMPION,
        header_length: int | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        self.raw_headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", JSON_TYPE if header_length is None else BINARY_TYPE),
            (b"x-request-id", request_id.encode()),
            (MODEL_ROLE, ROLE_VALUES[role]),
        ]
        if header_length is not None:  # binary outputs follow the JSON header
            self.raw_headers.append((HEADER_LENGTH, str(header_length).encode()))


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


def media_type(headers: dict[bytes, bytes]) -> bytes:
    """The Content-Type without its parameters, lower-case; empty when there is none."""
    return headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()


def decompressed(body: bytes, encoding: bytes, limit: int) -> bytes:
    """A gzip or deflate body (tritonclient's ``request_compression_algorithm``) inflated, at most
    ``limit`` bytes of it: a small body that inflates past the limit is refused, not unpacked."""
    wbits = DECOMPRESSORS.get(encoding)
    if wbits is None:
        shown = encoding.decode("latin-1")
        raise ClientError(415, f"Content-Encoding {shown!r} is not supported; use gzip or deflate")
    inflater = zlib.decompressobj(wbits)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise ClientError(400, f"the {encoding.decode()} body does not inflate: {error}") from None
    if len(inflated) > limit:
        raise ClientError(413, f"inflated body over {limit} bytes (SCORER_MAX_BODY_BYTES)")
    if not inflater.eof:
        raise ClientError(400, f"the {encoding.decode()} body is cut short")
    return inflated


@dataclass
class Service:
    """The routes of one served model: HTTP in, the data plane, HTTP out."""

    settings: ServeSettings
    plane: DataPlane
    token_digest: bytes | None
    openapi: bytes
    rest: RestCodec
    v2: V2Codec
    grpc: GrpcServer | None = None  # the gRPC port's server, when SCORER_GRPC_PORT is set

    @property
    def scorer(self) -> Scorer:
        return self.plane.scorer

    def require_token(self, request: Request) -> None:
        if self.token_digest is None:
            return
        if not bearer_matches(request.headers.get("authorization"), self.token_digest):
            raise ClientError(401, UNAUTHORIZED, {"WWW-Authenticate": 'Bearer realm="scorer"'})

    async def read_json(self, request: Request) -> Any:
        """A ``/predict`` body: JSON, declared as such."""
        headers = dict(request.scope["headers"])  # ASGI: names already lower-case
        content_type = media_type(headers)
        if content_type != JSON_TYPE:
            given = content_type.decode("latin-1") or "none"
            raise ClientError(415, f"Content-Type must be application/json, got {given!r}")
        return parse_json(await self.read_body(request, headers))

    async def read_v2(self, request: Request) -> V2Request:
        """A V2 inference body as the protocol's clients send it: JSON with or without a
        Content-Type (tritonclient sends none), or the binary tensor data extension's JSON
        header and bytes (``Inference-Header-Content-Length``)."""
        headers = dict(request.scope["headers"])
        content_type = media_type(headers)
        if content_type not in (b"", JSON_TYPE, BINARY_TYPE):
            raise ClientError(
                415,
                "Content-Type must be application/json, application/octet-stream (binary "
                f"tensor data) or none, got {content_type.decode('latin-1')!r}",
            )
        body = await self.read_body(request, headers)
        declared = headers.get(HEADER_LENGTH)
        if declared is None:
            return V2Request(parse_json(body))
        if not declared.strip().isdigit() or not 0 < int(declared) <= len(body):
            raise ClientError(
                400,
                f"Inference-Header-Content-Length must be the length of the JSON header, between "
                f"1 and the body's {len(body)} bytes; got {declared.decode('latin-1')!r}",
            )
        length = int(declared)
        return V2Request(parse_json(body[:length]), memoryview(body)[length:])

    async def read_body(self, request: Request, headers: dict[bytes, bytes]) -> bytes:
        """The body, at most ``SCORER_MAX_BODY_BYTES`` (413 beyond), inflated if compressed."""
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
            body = await request.body()
        else:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ClientError(413, f"body over {limit} bytes (SCORER_MAX_BODY_BYTES)")
                chunks.append(chunk)
            body = b"".join(chunks)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        return body if encoding == b"identity" else decompressed(body, encoding, limit)

    def check_model(self, request: Request) -> ServedModel | None:
        """The served model the path names by version (None: no version named)."""
        return self.plane.check_model(
            request.path_params["model_name"], request.path_params.get("model_version")
        )

    def rollout_key(self, request: Request) -> str | None:
        """The client's canary key (``X-Rollout-Key``), read only when a canary is served."""
        rollout = self.plane.rollout
        if rollout is None or rollout.mode != "canary":
            return None
        key = dict(request.scope["headers"]).get(ROLLOUT_KEY)
        return None if not key else key.decode("latin-1")  # empty: no key

    # REST routes ---------------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        started, received = time.perf_counter(), time.time()
        self.require_token(request)
        body = await self.read_json(request)
        content, request_id, role = await self.plane.infer(
            self.rest, body, PREDICT_ROUTE, started, received, self.rollout_key(request)
        )
        return ScoringResponse(content, request_id, role)

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
        return json_response(
            {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}
        )

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
        """The named version's metadata; without a version, the champion's, listing every
        version served."""
        self.require_token(request)
        named = self.check_model(request)
        return json_response(self.plane.model_metadata(named))

    async def v2_infer(self, request: Request) -> Response:
        started, received = time.perf_counter(), time.time()
        self.require_token(request)
        named = self.check_model(request)
        body = await self.read_v2(request)
        answer, request_id, role = await self.plane.infer(
            self.v2, body, INFER_ROUTE, started, received, self.rollout_key(request), named
        )
        return ScoringResponse(answer.content, request_id, role, answer.header_length)

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
        if self.grpc is not None:
            await self.grpc.start()
        logger.info(
            "ready: model %s version %s, %d feature(s)%s",
            self.scorer.model_name,
            self.scorer.model_version,
            len(plane.schema.fields),
            describe_rollout(plane.rollout),
        )
        try:
            yield
        finally:
            if self.grpc is not None:  # its calls in flight are answered and logged first
                await self.grpc.stop(self.settings.shutdown_timeout)
            plane.ready = False
            shadow = plane.rollout.shadow if plane.rollout is not None else None
            if shadow is not None:  # its lines join the log before it closes
                await shadow.drain(min(SHADOW_DRAIN_SECONDS, self.settings.shutdown_timeout))
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


def describe_rollout(rollout: Rollout | None) -> str:
    """The challenger and its mode, for the "ready" log line."""
    if rollout is None:
        return ""
    version = rollout.challenger.scorer.model_version
    if rollout.mode == "canary":
        return f"; challenger version {version} answers {rollout.canary_percent:g} % (canary)"
    return f"; challenger version {version} scores a copy of every request (shadow)"


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


def create_app(
    settings: ServeSettings,
    scorer: Scorer,
    log: PredictionLogWriter,
    challenger: Scorer | None = None,
) -> Starlette:
    """The ASGI app serving ``scorer`` (warmed up here), and ``challenger`` beside it if given,
    over HTTP and, when ``SCORER_GRPC_PORT`` is set, gRPC: ready once started, drains ``log`` on
    shutdown. Raises ArtifactError if a model cannot score the signature's example records.
    Requests are checked against the champion's signature whoever answers them."""
    schema = input_schema(
        scorer.signature,
        settings.unknown_category,
        settings.out_of_range,
        settings.max_string_length,
    )
    other_versions = [] if challenger is None else [challenger.model_version]
    require_bounded_lines(schema, scorer, settings.max_records, other_versions)
    warm_up(scorer, schema)
    metrics = ScorerMetrics(
        scorer.model_name,
        scorer.model_version,
        scorer.manifest["lineage"]["git_commit"],
        shared=settings.shared_metrics_dir if settings.workers > 1 else None,
    )
    metrics.track_log_backlog(lambda: log.pending)
    rollout = None
    if challenger is not None:
        rollout = challenger_rollout(settings, challenger, schema, log, metrics)
    digest = token_digest(settings.api_token)
    document = openapi_document(
        schema,
        scorer.signature,
        scorer.model_name,
        scorer.model_version,
        settings.max_records,
        digest is not None,
        settings.extra_fields,
    )
    plane = DataPlane(
        scorer, schema, settings.max_records, metrics, log, MicroBatcher(scorer, schema), rollout
    )
    service = Service(
        settings=settings,
        plane=plane,
        token_digest=digest,
        openapi=orjson.dumps(document),
        rest=RestCodec(schema.names, settings.extra_fields),
        v2=V2Codec(schema, scorer.outputs),
        grpc=grpc_server(settings, plane, digest) if settings.grpc_port else None,
    )
    return Starlette(
        routes=routes(service),
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=service.lifespan,
    )


def challenger_rollout(
    settings: ServeSettings,
    challenger: Scorer,
    schema: InputSchema,
    log: PredictionLogWriter,
    metrics: ScorerMetrics,
) -> Rollout:
    """The challenger warmed up on what clients may send the champion (ArtifactError naming
    SCORER_CHALLENGER_DIR if it cannot score it), in its mode."""
    try:
        warm_up(challenger, schema)
    except ArtifactError as error:
        raise ArtifactError(f"SCORER_CHALLENGER_DIR={settings.challenger_dir}: {error}") from None
    metrics.serve_challenger(
        challenger.model_name,
        challenger.model_version,
        challenger.manifest["lineage"]["git_commit"],
    )
    served = ServedModel(challenger, MicroBatcher(challenger, schema), CHALLENGER)
    if settings.challenger_mode == "canary":
        return Rollout(served, "canary", settings.canary_percent)
    shadow = ShadowScorer(challenger, schema, settings.shadow_queue, log, metrics)
    return Rollout(served, "shadow", shadow=shadow)


def grpc_server(settings: ServeSettings, plane: DataPlane, digest: bytes | None) -> GrpcServer:
    """The Open Inference Protocol's gRPC service on ``plane``, for ``SCORER_GRPC_PORT``. Worker
    processes each listen on the port (SO_REUSEPORT: the kernel spreads connections over them)."""
    service = InferenceService(
        plane,
        GrpcCodec(plane.schema, plane.scorer.outputs),
        digest,
        SERVER_NAME,
        server_version(),
        EXTENSIONS,
    )
    address = listen_address(settings.host, settings.grpc_port)
    return GrpcServer(service, address, settings.max_body_bytes, settings.workers > 1)
