"""The console's process: a FastAPI app serving pages and static files, with security headers on every answer.

`create_app` is uvicorn's factory (`python -m opendrec_console`); `build(settings)` makes the same app for tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opendrec_kit import metrics
from opendrec_kit.telemetry import setup_logging

from . import api
from .client import Api, Refusal
from .session import Sessions
from .settings import Settings

STATIC = Path(__file__).parent / "static"

# No inline script or style anywhere: scripts and styles come from /console/static only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # one-time tokens in mail links must not leak onwards
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the headers above to every answer; pages (not static files) are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/console/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + SECURITY_HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Console:
    app: FastAPI
    settings: Settings


def build(settings: Settings) -> Console:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.api.close()

    # Pages are not API operations: none goes into an OpenAPI document (the gateway's lists the public API only).
    app = FastAPI(title="OpenDREC console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.api = Api(settings.gateway_url, settings.api_timeout_s)
    app.state.sessions = Sessions(settings.session_key, settings.session_max_age_s)
    app.include_router(api.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(metrics.HttpMetricsMiddleware)

    # A page that needs a session raises NotSignedIn, and one the API refused raises Refusal: both are answered
    # here, once. Forms catch their Refusal themselves to show it next to the fields.
    @app.exception_handler(api.NotSignedIn)
    async def not_signed_in(request: Request, exc: api.NotSignedIn) -> Response:
        return api.ask_to_sign_in(request)

    @app.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        return api.problem_page(request, exc)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        # Ready as soon as it serves: the pages say so when the platform behind the gateway does not answer.
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        # Scraped on the console's own port (HTTP_PORT), like every service's: the gateway forwards /console/ only.
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    return Console(app=app, settings=settings)


def create_app() -> FastAPI:
    settings = Settings()
    setup_logging(settings.service_name, settings.log_level)
    return build(settings).app
