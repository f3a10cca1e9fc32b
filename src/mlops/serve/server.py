"""The uvicorn configuration shared by the scorer and the benchmark's HTTP floor."""

from __future__ import annotations

import logging

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
