"""``inference.GRPCInferenceService`` on the scorer's data plane, and the standard gRPC health
service, in one ``grpc.aio`` server on the same event loop as the HTTP routes.

Like the HTTP routes, the service only translates: a ``ModelInferRequest`` goes to the data plane
with the gRPC codec (``codecs.v2_grpc``), which checks, scores, logs and counts it as it does a
REST request. Errors are gRPC status codes: bad input ``INVALID_ARGUMENT`` with the message that
names the input (``RESOURCE_EXHAUSTED`` for a batch over ``SCORER_MAX_RECORDS``), a missing or
wrong token ``UNAUTHENTICATED`` (the ``authorization: Bearer <token>`` metadata), an unknown model
or version ``NOT_FOUND``, not ready ``UNAVAILABLE``; ``INTERNAL`` only for a fault of the server.
Each call is counted in the request metrics under its method's path with the HTTP status its code
corresponds to, so the alerts on 4xx and 5xx rates cover both protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from mlops.serve.auth import UNAUTHORIZED, bearer_matches
from mlops.serve.codecs.v2_grpc import GrpcCodec
from mlops.serve.dataplane import DataPlane, ServedModel
from mlops.serve.errors import ClientError, InputError
from mlops.serve.grpc import open_inference_pb2 as pb
from mlops.serve.grpc import open_inference_pb2_grpc as pb_grpc

logger = logging.getLogger("mlops.serve")

SERVICE = "inference.GRPCInferenceService"
INFER_ROUTE = f"/{SERVICE}/ModelInfer"
ROLLOUT_KEY = "x-rollout-key"  # a canary client's key: the same key, the same model
HEALTH_POLL_SECONDS = 0.5  # how soon the health service follows the data plane's readiness
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
Code = grpc.StatusCode
CODE_OF_STATUS = {  # a refusal's HTTP status, as a gRPC code
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    404: Code.NOT_FOUND,
    413: Code.RESOURCE_EXHAUSTED,
    422: Code.INVALID_ARGUMENT,
    503: Code.UNAVAILABLE,
}
STATUS_OF_CODE = {code: status for status, code in CODE_OF_STATUS.items() if status != 422}
STATUS_OF_CODE |= {Code.OK: 200, Code.CANCELLED: 499, Code.INTERNAL: 500}
Request = TypeVar("Request")
Reply = TypeVar("Reply")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]


def answered(method: Method[Request, Reply]) -> Method[Request, Reply]:
    """A servicer method whose refusals become gRPC status codes and whose calls are counted."""
    route = f"/{SERVICE}/{method.__name__}"

    @functools.wraps(method)
    async def call(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Reply:
        started, code = time.perf_counter(), Code.OK
        try:
            return await method(self, request, context)
        except InputError as error:
            code = CODE_OF_STATUS.get(error.status, Code.INVALID_ARGUMENT)
            await context.abort(code, error.one_line())
        except ClientError as error:
            code = CODE_OF_STATUS.get(error.status, Code.INVALID_ARGUMENT)
            await context.abort(code, error.message)
        except asyncio.CancelledError:  # the client went away
            code = Code.CANCELLED
            raise
        except Exception:
            code = Code.INTERNAL
            logger.exception("internal error on gRPC %s", route)
            await context.abort(code, "internal error")
        finally:
            seconds = time.perf_counter() - started
            self.plane.metrics.observe_request(route, "GRPC", STATUS_OF_CODE[code], seconds)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    return call


@dataclass
class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The six calls of the protocol's service, on the data plane."""

    plane: DataPlane
    codec: GrpcCodec
    token_digest: bytes | None
    server_name: str
    server_version: str
    extensions: tuple[str, ...]

    def require_token(self, context: grpc.aio.ServicerContext) -> None:
        if self.token_digest is None:
            return
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        header = metadata.get("authorization")
        if not bearer_matches(header if isinstance(header, str) else None, self.token_digest):
            raise ClientError(401, UNAUTHORIZED)

    def check_model(self, name: str, version: str) -> ServedModel | None:
        return self.plane.check_model(name, version or None)  # no version: the champion

    def rollout_key(self, context: grpc.aio.ServicerContext) -> str | None:
        """The client's canary key (metadata ``x-rollout-key``), read only when a canary is
        served."""
        rollout = self.plane.rollout
        if rollout is None or rollout.mode != "canary":
            return None
        for name, value in context.invocation_metadata() or ():
            if name == ROLLOUT_KEY and isinstance(value, str) and value:
                return value
        return None

    @answered
    async def ServerLive(  # noqa: N802 (the protocol's name)
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @answered
    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.not_ready_reason() is None)

    @answered
    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        self.check_model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.plane.not_ready_reason() is None)

    @answered
    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=self.server_name, version=self.server_version, extensions=self.extensions
        )

    @answered
    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        self.require_token(context)
        named = self.check_model(request.name, request.version)
        body = self.plane.model_metadata(named)
        return pb.ModelMetadataResponse(
            name=body["name"],
            versions=body["versions"],
            platform=body["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in body["inputs"]],
            outputs=[
                pb.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in body["outputs"]
            ],
            properties={key: str(value) for key, value in body["parameters"].items()},
        )

    @answered
    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        started, received = time.perf_counter(), time.time()
        self.require_token(context)
        named = self.check_model(request.model_name, request.model_version)
        response, request_id, role = await self.plane.infer(
            self.codec, request, INFER_ROUTE, started, received, self.rollout_key(context), named
        )
        context.set_trailing_metadata((("x-request-id", request_id), ("x-model-role", role)))
        return response


class GrpcServer:
    """The gRPC server of one process: made and started when the app starts (``grpc.aio`` needs
    the running event loop), stopped before the log closes so that every call it answered is
    logged."""

    def __init__(
        self, service: InferenceService, address: str, max_message_bytes: int, reuse_port: bool
    ) -> None:
        self.service = service
        self.address = address
        self.options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            # Worker processes each listen on the port (the kernel spreads the connections); a
            # single process must fail loudly on a port another server holds.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ]
        self.server: grpc.aio.Server | None = None
        self.health: HealthServicer | None = None
        self.watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; RuntimeError naming the address if it cannot."""
        self.server = grpc.aio.server(options=self.options)
        self.health = HealthServicer()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        try:
            self.server.add_insecure_port(self.address)
        except RuntimeError as error:
            raise RuntimeError(f"cannot listen for gRPC on {self.address}: {error}") from None
        await self.server.start()
        await self.follow_readiness(self.health)
        self.watcher = asyncio.create_task(self.keep_following_readiness(self.health))
        logger.info("gRPC (Open Inference Protocol V2) on %s", self.address)

    async def follow_readiness(self, health: HealthServicer) -> None:
        ready = self.service.plane.not_ready_reason() is None
        for name in ("", SERVICE):
            await health.set(name, SERVING if ready else NOT_SERVING)

    async def keep_following_readiness(self, health: HealthServicer) -> None:
        while True:
            await asyncio.sleep(HEALTH_POLL_SECONDS)
            await self.follow_readiness(health)

    async def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let the ones in flight finish (at most ``grace_seconds``)."""
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watcher
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace_seconds)


def listen_address(host: str, port: int) -> str:
    """``host:port`` as gRPC takes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
