"""``python -m mlops.monitor``: the monitoring sidecar; its settings come from the environment."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from mlops.core.errors import run
from mlops.monitor.app import create_app
from mlops.monitor.service import build_monitor
from mlops.monitor.settings import load_settings, settings_help
from mlops.monitor.ship import build_shipper


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="python -m mlops.monitor",
        description="Follow the prediction log, report drift and performance, signal retraining.",
        epilog="settings, from the environment:\n" + settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    monitor = build_monitor(settings)
    app = create_app(monitor, build_shipper(settings, monitor.labels, monitor.reading))
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False)


if __name__ == "__main__":
    sys.exit(run(main))
