"""``python -m service``: serve the shipped model with one uvicorn worker (settings: BNN_*)."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
        return 2
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, workers=1,
                            lifespan="on", timeout_graceful_shutdown=20, log_level="info")
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
