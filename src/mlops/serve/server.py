"""The uvicorn configuration and the worker processes' sockets, shared by the scorer and the
benchmark's HTTP floor."""

from __future__ import annotations

import logging
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def uvicorn_config(
    app: ASGIApp | str,
    host: str,
    port: int,
    shutdown_timeout: int,
    access_log: bool = False,
    log_level: str = "info",
    workers: int = 1,
) -> uvicorn.Config:
    """uvloop + httptools, graceful shutdown that lets in-flight requests finish. ``app`` is the
    app itself, or for worker processes the import path of a function that makes it."""
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=workers,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=shutdown_timeout,
        timeout_keep_alive=30,
    )


def require_free_port(host: str, port: int) -> None:
    """OSError (EADDRINUSE) if any socket is bound to ``host:port``. A plain bind, without
    SO_REUSEPORT: it fails beside another scorer's workers too, which would otherwise share the
    port with this one's and take a share of its connections."""
    family, kind, protocol, address = stream_address(host, port)
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def stream_address(host: str, port: int) -> tuple[int, int, int, Any]:
    """The family, type, protocol and address of a TCP socket on ``host:port``."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, kind, protocol, address


class PortHolder(socket.socket):
    """The parent's socket on the port of its worker processes: bound (SO_REUSEPORT) and never
    listening, it holds the port from before the workers start until the last one stops.

    A worker is not handed a copy of it. Unpickled in the worker (uvicorn's supervisor pickles
    the sockets it passes to each worker it starts or restarts), it becomes that worker's own
    socket on the same address (``worker_socket``), which uvicorn makes listen. With an accept
    queue per worker, the kernel spreads new connections over the workers; with one queue
    shared by all, the worker that wakes first accepts every connection waiting (16 opened at
    once, as a load balancer's pool or wrk opens them, all went to one worker in 3 of 8 tries:
    half the throughput)."""

    @classmethod
    def on(cls, host: str, port: int) -> PortHolder:
        """OSError if the port is taken (``require_free_port``) or cannot be bound."""
        require_free_port(host, port)
        family, kind, protocol, address = stream_address(host, port)
        holder = cls(family, kind, protocol)
        try:
            reusing_port(holder).bind(address)
        except OSError:
            holder.close()
            raise
        return holder

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[Any, ...]]:
        return worker_socket, (self.family, self.type, self.proto, self.getsockname())


def reusing_port(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def worker_socket(family: int, kind: int, protocol: int, address: Any) -> socket.socket:
    """A worker's own socket, bound to its parent's address (``PortHolder``)."""
    sock = socket.socket(family, kind, protocol)
    try:
        reusing_port(sock).bind(address)
    except OSError:
        sock.close()
        raise
    return sock
