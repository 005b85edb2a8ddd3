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
from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import db
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


class ErrorEnvelope(BaseModel):
    """The envelope every 4xx/5xx answer has (as `envelope` makes it), for the OpenAPI documents."""

    model_config = ConfigDict(extra="allow")

    statusCode: int
    error: str
    message: str
    details: Any = None
    path: str
    timestamp: str
    requestId: str | None
    success: bool


# What any operation may answer beside its own answers, in the envelope: each service documents them on every
# operation (a route's own entry for a status wins), so that a client, and the API fuzzer, know every answer.
ERROR_STATUSES: dict[int, str] = {
    400: "The request is invalid: a parameter or field is refused (`details` names each)",
    401: "No token, or one that is invalid, expired or revoked; or wrong credentials",
    403: "The caller may not do this",
    404: "No such thing, or none the caller may see",
    408: "The body did not arrive in time (gateway)",
    409: "In conflict with the current state",
    413: "The body is larger than this route accepts",
    414: "The URL is too long (gateway)",
    415: "The body's media type is not one this route takes",
    429: "Too many calls: try again after Retry-After",
    431: "The request's headers are too large (gateway)",
    503: "A part it needs is unavailable (database, another service, identity's keys): try again after Retry-After",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ErrorEnvelope,
        "description": description,
        # JSON whatever the route's own answers are (FastAPI would document the model in the route's media type)
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    for status, description in ERROR_STATUSES.items()
}
OUTAGE_RETRY_AFTER_S = 5


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

    async def _outage(request: Request, exc: Exception) -> JSONResponse:
        # A pool or statement timeout, or a database away (db.OUTAGES): the service's outage, not the request's fault.
        log.warning("database unavailable", extra={"path": redact_path(request.url.path), "error": repr(exc)})
        message = "The database did not answer in time; try again"
        return _respond(request, 503, message, headers={"Retry-After": str(OUTAGE_RETRY_AFTER_S)})

    for outage in db.OUTAGES:
        app.add_exception_handler(outage, _outage)

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
