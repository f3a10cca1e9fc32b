"""``python -m mlops.serve`` (``make serve``): verify and load the packaged model, then serve it.

Settings come from the environment (docs/serving.md). A bad setting or a packaged model that fails
its manifest check stops the process with one line naming the cause, before it listens.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mlops.core.errors import StageError, run
from mlops.serve.process import serve, serve_workers
from mlops.serve.server import configure_logging
from mlops.serve.settings import SettingsError, describe, load_settings, warn_if_exposed

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
    if settings.workers == 1:
        serve(settings)
    else:
        serve_workers(settings)


if __name__ == "__main__":
    sys.exit(run(main))
