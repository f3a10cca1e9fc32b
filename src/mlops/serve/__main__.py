"""``python -m mlops.serve`` (``make serve``): verify and load the packaged model, then serve it.

Settings come from the environment (docs/serving.md). A bad setting or a packaged model that fails
its manifest check stops the process with one line naming the cause, before it listens.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from mlops.artifacts import ArtifactError
from mlops.serve.app import create_app
from mlops.serve.model import load_scorer
from mlops.serve.predlog import PredictionLogWriter
from mlops.serve.server import configure_logging, uvicorn_config
from mlops.serve.settings import SettingsError, describe, load_settings, warn_if_exposed
from mlops.stage import StageError, run

logger = logging.getLogger("mlops.serve")


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(
        description="Serve the packaged model over HTTP. Configured by environment variables "
        "(MODEL_DIR, PREDICTION_LOG, SCORER_*); see docs/serving.md."
    ).parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        raise StageError(str(error)) from None
    configure_logging(settings.log_level)
    logger.info("settings: %s", describe(settings))
    warn_if_exposed(settings)
    try:
        scorer = load_scorer(settings.model_dir, settings.ort_threads)
    except ArtifactError as error:
        raise StageError(f"refusing to serve: {error}") from None
    logger.info("verified %s against its manifest", settings.model_dir)
    try:
        log = PredictionLogWriter(
            settings.prediction_log, settings.log_max_bytes, settings.log_backups
        )
    except OSError as error:
        raise StageError(
            f"PREDICTION_LOG={settings.prediction_log}: cannot open it ({error})"
        ) from None
    try:
        app = create_app(settings, scorer, log)
        server = uvicorn.Server(
            uvicorn_config(
                app,
                settings.host,
                settings.port,
                settings.shutdown_timeout,
                settings.access_log,
                settings.log_level,
            )
        )
        server.run()
    except ArtifactError as error:
        raise StageError(f"refusing to serve: {error}") from None
    finally:
        log.close(settings.shutdown_timeout)
    if not server.started:
        raise StageError(f"could not start listening on {settings.host}:{settings.port}")


if __name__ == "__main__":
    sys.exit(run(main))
