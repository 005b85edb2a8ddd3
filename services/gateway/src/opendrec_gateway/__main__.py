"""`python -m opendrec_gateway`: serve the gateway on HTTP_HOST:HTTP_PORT."""

from __future__ import annotations

import uvicorn

from opendrec_kit import heap, metrics
from opendrec_kit.telemetry import setup_logging

from .app import Gateway, create_app
from .settings import Settings


def serving_app() -> Gateway:
    """uvicorn's factory (`--factory`, once in each worker process): the app, with start-up's objects frozen for the
    collector (opendrec_kit.heap; not in create_app, which tests call many times in one process)."""
    app = create_app()
    heap.settle()
    return app


def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level)
    if settings.http_workers > 1:  # the worker holding METRICS_PORT then serves every worker's figures, summed
        metrics.prepare_multiprocess(settings.service_name, settings.http_port)
    uvicorn.run(
        "opendrec_gateway.__main__:serving_app",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.http_workers,
        loop="uvloop",
        http="httptools",
        ws="websockets",  # OCPP charge points (/ocpp/...) are relayed to the charger gateway
        lifespan="on",
        log_config=None,  # our JSON logging (set up again in each worker by create_app)
        access_log=False,  # spans record every request; ACCESS_LOG=true adds a JSON line each
        proxy_headers=False,  # the gateway is the edge: X-Forwarded-* from clients are not trusted
        server_header=False,  # the service's own Server/Date headers pass through
        date_header=False,
        backlog=2048,
        # a stuck request must not hold the process
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # type: ignore[arg-type]  # uvicorn's wait_for takes a float
    )


if __name__ == "__main__":
    main()
