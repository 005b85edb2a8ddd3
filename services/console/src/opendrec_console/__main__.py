"""`python -m opendrec_console`: serve the console on HTTP_HOST:HTTP_PORT."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from opendrec_kit import heap
from opendrec_kit.telemetry import setup_logging

from .app import create_app
from .settings import Settings


def serving_app() -> FastAPI:
    """uvicorn's factory (`--factory`, once in each worker process): the app, with start-up's objects frozen for the
    collector (opendrec_kit.heap; not in create_app, which tests call many times in one process)."""
    app = create_app()
    heap.settle()
    return app


def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        "opendrec_console.__main__:serving_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.http_workers,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
