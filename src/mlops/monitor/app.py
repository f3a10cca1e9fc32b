"""The sidecar's HTTP interface: handlers read the snapshot the background thread last published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mlops.core.artifacts import Role, Task
from mlops.monitor.feedback import FeedbackError, feedback_schema, parse_feedback_body
from mlops.monitor.metrics import metrics_registry, render
from mlops.monitor.page import render_page
from mlops.monitor.service import Monitor
from mlops.monitor.ship import Shipper

MAX_BODY_BYTES = 4 << 20


def feedback_body(task: Task) -> dict[str, Any]:
    """The OpenAPI request body of ``POST /feedback``: the label's type follows the task."""
    return {"required": True, "content": {"application/json": {"schema": feedback_schema(task)}}}


def create_app(monitor: Monitor, shipper: Shipper | None = None) -> FastAPI:
    settings = monitor.settings
    registry_versions: dict[Role, str | None] = {
        "champion": settings.champion_registry_version,
        "challenger": settings.challenger_registry_version,
    }
    registry = metrics_registry(monitor.reference, monitor.snapshot, shipper, registry_versions)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        monitor.start()
        if shipper is not None:
            shipper.start()
        try:
            yield
        finally:
            await asyncio.to_thread(shut_down, monitor, shipper)

    app = FastAPI(
        title="Monitoring sidecar", version=monitor.reference.model_version, lifespan=lifespan
    )

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return render_page(monitor.reference, monitor.snapshot(), monitor.settings.min_window_size)

    @app.get("/drift")
    def drift() -> dict[str, Any]:
        return monitor.snapshot().drift.as_json()

    @app.get("/performance")
    def performance() -> dict[str, Any]:
        return monitor.snapshot().performance.as_json()

    @app.get("/rollout")
    def rollout() -> dict[str, Any]:
        """The champion and the challenger compared, and the verdict (null: no challenger)."""
        body = monitor.snapshot().rollout.as_json()
        return {"registry_versions": registry_versions, **body}

    task = monitor.reference.task

    @app.post("/feedback", openapi_extra={"requestBody": feedback_body(task)})
    async def feedback(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _problem(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _problem(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
        try:
            items = parse_feedback_body(body, task)
        except FeedbackError as error:
            return JSONResponse({"detail": error.problems}, status_code=422)
        try:
            matched, pending = monitor.add_feedback(items)
        except OSError as error:  # not written: not accepted
            return _problem(503, "body", f"the label log cannot be written ({error})")
        return JSONResponse({"matched": matched, "pending": pending})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health/live")
    def live() -> JSONResponse:
        alive = monitor.alive
        return JSONResponse({"alive": alive}, status_code=200 if alive else 503)

    @app.get("/health/ready")
    def ready() -> JSONResponse:
        is_ready = monitor.ready
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    return app


def shut_down(monitor: Monitor, shipper: Shipper | None) -> None:
    """The sidecar's last steps: close the open segments once the scorer is gone, read what is
    left, save the state, ship everything closed."""
    if shipper is not None:
        shipper.seal_for_shutdown()
    monitor.stop()
    if shipper is not None:
        shipper.ship()
        shipper.close()
    monitor.labels.close()


def _problem(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"field": field, "message": message}]}, status_code=status)
