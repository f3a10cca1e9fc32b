"""The uvicorn configuration shared by the scorer and the benchmark's HTTP floor."""

from __future__ import annotations

import logging

import uvicorn
from starlette.types import ASGIApp

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def uvicorn_config(
    app: ASGIApp,
    host: str,
    port: int,
    shutdown_timeout: int,
    access_log: bool = False,
    log_level: str = "info",
) -> uvicorn.Config:
    """uvloop + httptools, one process, graceful shutdown that lets in-flight requests finish."""
    return uvicorn.Config(
        app,
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
