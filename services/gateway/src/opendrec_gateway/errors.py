"""The platform's one error envelope, as the gateway writes it."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson


def envelope(status: int, message: str, path: str, request_id: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
        "path": path,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestId": request_id,
    }
    if details is not None:
        body["details"] = details
    return body


def envelope_bytes(status: int, message: str, path: str, request_id: str, details: Any = None) -> bytes:
    return orjson.dumps(envelope(status, message, path, request_id, details))
