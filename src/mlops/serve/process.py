"""How the scorer runs: one process, or a parent supervising ``SCORER_WORKERS`` worker processes.

One process serves on one core: its event loop holds Python's GIL for the JSON, validation and
log lines of every request. With several workers the parent holds the port and uvicorn's
supervisor starts, health-checks and restarts them; each listens on the port with a socket of its
own (SO_REUSEPORT, ``server.PortHolder``: the kernel spreads the connections over them) and
verifies and loads the model itself. They append to one prediction log (``SegmentedLog`` locks
around each write) and publish their metric counts for each other (``mlops.serve.metrics``).
Each worker also runs its own gRPC server on ``SCORER_GRPC_PORT``, bound the same way. SIGTERM to
the parent reaches every worker, and each finishes its requests (HTTP and gRPC) and writes out
its log before the parent exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from mlops.core.artifacts import ArtifactError, load_manifest, load_signature, verify
from mlops.core.errors import StageError
from mlops.core.segments import SegmentedLog
from mlops.serve.app import create_app
from mlops.serve.grpc.service import listen_address
from mlops.serve.model import Scorer, load_scorer
from mlops.serve.predlog import PredictionLogWriter
from mlops.serve.rollout import is_the_champion, require_compatible
from mlops.serve.server import PortHolder, configure_logging, require_free_port, uvicorn_config
from mlops.serve.settings import ServeSettings, load_settings

logger = logging.getLogger("mlops.serve")

WORKER_APP = "mlops.serve.process:worker_app"


def refusal(error: ArtifactError) -> StageError:
    return StageError(f"refusing to serve: {error}")


def unopenable_log(settings: ServeSettings, error: OSError) -> StageError:
    return StageError(f"PREDICTION_LOG={settings.prediction_log}: cannot open it ({error})")


def load_models(settings: ServeSettings) -> tuple[Scorer, Scorer | None]:
    """The champion and the challenger (if ``SCORER_CHALLENGER_DIR`` is set), each verified
    against its manifest and loaded; ArtifactError if one cannot be, or if the challenger cannot
    be served beside the champion (``rollout.require_compatible``)."""
    scorer = load_scorer(settings.model_dir, settings.ort_threads)
    logger.info("verified %s against its manifest", settings.model_dir)
    directory = settings.challenger_dir
    if directory is None:
        return scorer, None
    try:
        require_directory(directory)
        challenger = load_scorer(directory, settings.ort_threads)
    except ArtifactError as error:
        raise ArtifactError(f"SCORER_CHALLENGER_DIR={directory}: {error}") from None
    if is_the_champion(scorer.manifest, challenger.manifest):
        logger.warning(
            "SCORER_CHALLENGER_DIR=%s holds the champion's own version %s: serving the champion "
            "alone",
            directory,
            scorer.model_version,
        )
        return scorer, None
    champion = (scorer.signature, scorer.manifest)
    require_compatible(champion, (challenger.signature, challenger.manifest), directory)
    logger.info("verified the challenger %s against its manifest", directory)
    return scorer, challenger


def require_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no packaged model directory here")


def check_challenger(settings: ServeSettings) -> None:
    """The challenger's files and its fit with the champion, checked once before the workers
    start (each loads both again)."""
    directory = settings.challenger_dir
    if directory is None:
        return
    try:
        require_directory(directory)
        manifest = verify(directory)
        challenger = (load_signature(directory), manifest)
    except ArtifactError as error:
        raise ArtifactError(f"SCORER_CHALLENGER_DIR={directory}: {error}") from None
    champion = (load_signature(settings.model_dir), load_manifest(settings.model_dir))
    if not is_the_champion(champion[1], manifest):
        require_compatible(champion, challenger, directory)


# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). The
# event loop hands work to threads (ONNX Runtime for large batches, shadow scoring) and waits for
# them; with the default, a thread done with its call may wait up to 5 ms for the busy loop to let
# it return. Measured when large batches' log lines were also written in a thread (two hand-offs
# per batch): -20 % in 1,000-record batches with the default. With one hand-off (the lines are
# written on the loop) V2 batches measured within the machine's spread either way; kept.
SWITCH_INTERVAL_SECONDS = 0.0005


def build(settings: ServeSettings) -> tuple[Starlette, PredictionLogWriter]:
    """Verify and load the models, open the prediction log, warm up: what one process serves.
    StageError names the cause (a model, the log's path)."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        scorer, challenger = load_models(settings)
    except ArtifactError as error:
        raise refusal(error) from None
    try:
        log = PredictionLogWriter(
            settings.prediction_log,
            settings.log_max_bytes,
            settings.log_backups,
            settings.log_sidecar,
            settings.log_max_total_bytes,
        )
    except OSError as error:
        raise unopenable_log(settings, error) from None
    try:
        return create_app(settings, scorer, log, challenger), log
    except ArtifactError as error:
        log.close()
        raise refusal(error) from None
    except StageError:
        log.close()
        raise


def listening(settings: ServeSettings) -> tuple[str, int, int, bool, str]:
    """The server's share of the settings, as ``uvicorn_config`` takes them."""
    return (
        settings.host,
        settings.port,
        settings.shutdown_timeout,
        settings.access_log,
        settings.log_level,
    )


def check_grpc_port(settings: ServeSettings) -> None:
    """StageError naming ``SCORER_GRPC_PORT`` if another program listens there: checked once
    before anything starts, rather than failing in the app's start-up (or in each worker)."""
    if not settings.grpc_port:
        return
    try:
        require_free_port(settings.host, settings.grpc_port)
    except OSError as error:
        raise StageError(
            f"SCORER_GRPC_PORT={settings.grpc_port}: cannot listen on "
            f"{settings.host}:{settings.grpc_port} ({error.strerror or error})"
        ) from None


def serve(settings: ServeSettings) -> None:
    """Serve in this process until SIGTERM or SIGINT."""
    check_grpc_port(settings)
    app, log = build(settings)
    server = uvicorn.Server(uvicorn_config(app, *listening(settings)))
    try:
        server.run()
    finally:
        log.close()
    if not server.started:
        raise StageError(f"could not start listening on {settings.host}:{settings.port}")


def worker_app() -> Starlette:
    """uvicorn's app factory in each worker process (settings come from the inherited
    environment, already checked by the parent)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        app, _ = build(settings)  # the app's shutdown closes the log
    except StageError as error:
        logger.error("worker %d: %s", os.getpid(), error)
        sys.exit(STARTUP_FAILURE)  # the supervisor stops instead of restarting it in a loop
    return app


def serve_workers(settings: ServeSettings) -> None:
    """Check what can be checked once, bind the socket, then supervise the workers until SIGTERM
    or SIGINT. A worker that fails to start stops them all (StageError)."""
    try:
        verify(settings.model_dir)  # each worker verifies again what it loads
        check_challenger(settings)
    except ArtifactError as error:
        raise refusal(error) from None
    check_grpc_port(settings)
    try:
        SegmentedLog(settings.prediction_log, settings.log_max_bytes).close()
    except OSError as error:
        raise unopenable_log(settings, error) from None
    shared = settings.shared_metrics_dir
    shutil.rmtree(shared, ignore_errors=True)  # counts of an earlier run must not add up
    shared.mkdir(parents=True)
    config = uvicorn_config(WORKER_APP, *listening(settings), settings.workers)
    try:
        holder = PortHolder.on(settings.host, settings.port)
    except OSError as error:
        raise StageError(
            f"SCORER_PORT={settings.port}: cannot listen on {settings.host}:{settings.port} "
            f"({error.strerror or error})"
        ) from None
    logger.info(
        "%d workers, each listening on %s",
        settings.workers,
        listen_address(settings.host, settings.port),
    )
    supervisor = Multiprocess(config, sockets=[holder])
    try:
        supervisor.run()
    finally:
        holder.close()
        shutil.rmtree(shared, ignore_errors=True)
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise StageError("a worker could not start (its error is logged above)")
