"""HTTP adapter of uploaded files (D-REC's file module): upload (multipart, field `files`) and download.
Each route parses, authorizes, calls one use case (`services`) and answers.

D-REC guards both with its FILE_MANAGEMENT_CRUDL module, which our access model (opendrec_contracts.access)
does not have: uploads need Write on DEVICE_BULK_MANAGEMENT_CRUDL (files serve bulk onboarding and device
images), downloads Read on DEVICE_MANAGEMENT_CRUDL; only the uploader's organization (and admins) read a file.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request, Response

from opendrec_kit import Principal, UoW, permission

from . import domain, file_uploads, services

router = APIRouter(prefix="/api", tags=["files"])

UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "PDF, JPEG, PNG or CSV files",
                        }
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


@router.post("/file", status_code=201, openapi_extra=UPLOAD_FORM)
async def upload_files(
    request: Request, uow: UoW, user: Principal = permission("DEVICE_BULK_MANAGEMENT_CRUDL", "Write")
) -> list[str]:
    """Store files for the caller's organization; answers their keys (D-REC: `["<name>-<uuid>.csv"]`), which
    GET /api/file/{key} and a bulk onboarding's `{"fileName": key}` name. At most FILE_MAX_FILES files of
    FILE_MAX_BYTES each."""
    settings = request.app.state.runtime.settings
    headers = request.headers

    async def receive() -> list[file_uploads.UploadedFile]:
        return await file_uploads.receive_files(
            headers.get("content-type", ""),
            headers.get("content-length"),
            request.stream(),
            settings.file_max_bytes,
            settings.file_max_files,
        )

    return await services.store_files(uow, user, receive)


@router.get("/file/{id}", responses={200: {"content": {"application/octet-stream": {}}, "description": "the file"}})
async def download_file(
    uow: UoW,
    id: str = Path(max_length=domain.MAX_FILE_KEY, description="the key the upload answered (or the file's uuid)"),
    user: Principal = permission("DEVICE_MANAGEMENT_CRUDL", "Read"),
) -> Response:
    """An uploaded file, with its type; for its organization and admins (others: 404)."""
    found: dict[str, Any] = await services.read_file(uow, user, id)
    return Response(
        found["data"],
        media_type=found["contentType"],
        headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(found['fileName'])}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )
