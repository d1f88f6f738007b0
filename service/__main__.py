"""``python -m service``: serve the shipped model (settings: BNN_*).

``BNN_WORKERS`` worker processes (default 2, see ``service/workers.py``), each with its own
socket on the port; their Prometheus metrics are kept in a shared directory
(``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary one unless set) and added up by whichever
worker answers ``/metrics``. ``BNN_WORKERS=1`` serves in this process.

Start-up order matters: the metrics directory is set before anything imports prometheus_client
(``service/workers.py`` imports the app, and with it torch and prometheus_client, only after).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from service import workers
from service.settings import CONTROL_DIR_ENV, METRICS_DIR_ENV, Settings

log = logging.getLogger("service")


def fresh_multiprocess_dir() -> tuple[Path, bool]:
    """The metrics directory for several workers, emptied of an earlier run's files (stale counts
    would be added to ours); returns it and whether we created it (and so remove it at exit)."""
    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="bnn-metrics-"))
    os.environ[METRICS_DIR_ENV] = str(path)  # before prometheus_client is imported: see the module docstring
    return path, True


def port_is_free(settings: Settings) -> bool:
    """Checked before touching the metrics directory, which an instance already on this port may
    be using (emptying it would wipe that instance's counts)."""
    try:
        workers.ensure_port_free(settings.host, settings.port)
    except OSError as error:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, error)
        return False
    return True


def shared_control_dir(settings: Settings) -> Path | None:
    """With admins, the directory where every worker agrees on model changes (``lifecycle/control.py``):
    BNN_CONTROL_DIR, kept (a promotion then outlives a restart), or a fresh one removed at exit
    (a restart serves BNN_MODEL_PATH again). Returns the one to remove, if any."""
    if settings.admin_tokens is None or settings.control_dir is not None:
        return None
    path = Path(tempfile.mkdtemp(prefix="bnn-control-"))
    os.environ[CONTROL_DIR_ENV] = str(path)  # every worker builds its settings from the environment
    return path


def serve_workers(settings: Settings) -> int:
    if not port_is_free(settings):
        return 1
    directory, created = fresh_multiprocess_dir()
    control = shared_control_dir(settings)
    log.info("%d workers, metrics added up in %s", settings.workers, directory)
    try:
        return workers.serve(settings.host, settings.port, settings.workers)
    finally:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        if control is not None:
            shutil.rmtree(control, ignore_errors=True)


def serve_in_process(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.edge.server import server_config

    if not port_is_free(settings):
        return 1
    if os.environ.get(METRICS_DIR_ENV):
        fresh_multiprocess_dir()
    server = uvicorn.Server(server_config(create_app(settings), settings, host=settings.host, port=settings.port))
    server.run()
    return 0 if server.started else 1


def settings_help() -> str:
    """Every setting as its variable, default and description (what ``--help`` prints)."""
    lines = []
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default is None else field.default
        lines.append(f"  BNN_{name.upper()} (default: {default})\n      {field.description or ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Serve; ``--help`` prints the settings and starts nothing. Settings come only from BNN_* variables."""
    parser = argparse.ArgumentParser(
        prog="python -m service", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the digit recognizer (the shipped model, SQLite review queue) on BNN_HOST:BNN_PORT. "
                    "Every setting is an environment variable:",
        epilog=settings_help() + "\n\nExample: BNN_PORT=9000 BNN_WORKERS=1 python -m service")
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
        return 2
    if settings.review and settings.review_tokens is None:
        settings = with_generated_reviewer(settings)
    return serve_workers(settings) if settings.workers > 1 else serve_in_process(settings)


def with_generated_reviewer(settings: Settings) -> Settings:
    """One reviewer token for every worker, made here before they fork (each builds its settings
    from the environment), written to a file beside the store once (``access.show_review_address``)."""
    from pydantic import SecretStr

    from service.review.access import Reviewers, show_review_address
    from service.review.schema import local_directory

    reviewers = Reviewers.generated()
    os.environ["BNN_REVIEW_TOKENS"] = reviewers.spec()
    show_review_address(settings.host, settings.port, reviewers, local_directory(settings.review_db))
    return settings.model_copy(update={"review_tokens": SecretStr(reviewers.spec())})


if __name__ == "__main__":
    raise SystemExit(main())
