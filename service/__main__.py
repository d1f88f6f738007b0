"""``python -m service``: serve the shipped model (settings: BNN_*).

One uvicorn worker by default. ``BNN_WORKERS`` > 1 starts that many worker processes on one
socket; their Prometheus metrics are kept in a shared directory (``PROMETHEUS_MULTIPROC_DIR``,
a fresh temporary one unless set) and added up by whichever worker answers ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from model.checkpoint import CheckpointError
from service.app import create_app
from service.metrics import MULTIPROC_ENV
from service.predictor import Predictor
from service.settings import Settings

log = logging.getLogger("service")


def fresh_multiprocess_dir() -> tuple[Path, bool]:
    """The metrics directory for several workers, emptied of an earlier run's files (stale counts
    would be added to ours); returns it and whether we created it (and so remove it at exit)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="bnn-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)  # inherited by the spawned workers before they import prometheus_client
    return path, True


def serve_workers(settings: Settings) -> int:
    try:  # fail fast, once, with the checkpoint's problem, rather than in every worker
        Predictor.from_checkpoint(settings.model_path, settings.threshold, settings.default_samples)
    except CheckpointError as error:
        log.error("cannot start: %s", error)
        return 1
    directory, created = fresh_multiprocess_dir()
    log.info("%d workers, metrics added up in %s", settings.workers, directory)
    try:
        uvicorn.run("service.app:app_from_environment", factory=True, host=settings.host, port=settings.port,
                    workers=settings.workers, lifespan="on", timeout_graceful_shutdown=20, log_level="info")
    finally:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        return serve_workers(settings)
    if os.environ.get(MULTIPROC_ENV):
        fresh_multiprocess_dir()
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, workers=1,
                            lifespan="on", timeout_graceful_shutdown=20, log_level="info")
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
