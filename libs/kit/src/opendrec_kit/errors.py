"""One error envelope for every 4xx/5xx answer of every service and of the gateway:
statusCode, error, message, details (when any), path, timestamp (`...123Z`), requestId, and the reference
D-REC API's `success: false`, which D-REC clients read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .telemetry import redact_path
from .timestamps import now_iso

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise from a route to answer `status` with `message` in the envelope."""

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def envelope(status: int, message: str, path: str, request_id: str | None, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "path": path,
        "timestamp": now_iso(),
        "requestId": request_id,
        "success": False,
    }
    if details is not None:
        body["details"] = details
    return body


def envelope_bytes(status: int, message: str, path: str, request_id: str | None, details: Any = None) -> bytes:
    """The envelope as a JSON body (for answers written without FastAPI, e.g. by the gateway)."""
    return orjson.dumps(envelope(status, message, path, request_id, details))


def _respond(request: Request, status: int, message: str, details: Any = None, headers=None) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    return JSONResponse(
        envelope(status, message, request.url.path, request_id, details), status_code=status, headers=headers
    )


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _respond(request, exc.status, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": _field(tuple(e.get("loc", ()))),
                "message": e.get("msg", "invalid"),
                "where": (e.get("loc") or ["body"])[0],
            }
            for e in exc.errors()
        ]
        fields = ", ".join(sorted({d["field"] for d in details}))
        return _respond(request, 400, f"Invalid request: check {fields}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        return _respond(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": redact_path(request.url.path)})
        return _respond(request, 500, "Internal error; it has been logged with this requestId")


def field_rule(check: Callable[..., Any], *args: Any) -> Any:
    """Run a domain rule inside a pydantic validator: its ValueError becomes that field's
    error with the rule's message as is (and so a 400 naming the field)."""
    try:
        return check(*args)
    except ValueError as exc:
        raise PydanticCustomError("invalid", "{reason}", {"reason": str(exc)}) from None
