"""`python -m opendrec_console`: serve the console on HTTP_HOST:HTTP_PORT."""

from __future__ import annotations

import uvicorn

from opendrec_kit.telemetry import setup_logging

from .settings import Settings


def main() -> None:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        "opendrec_console.app:create_app",
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
