"""HTTP adapter of bulk CSV onboarding: upload (a job id at once), job listing, status and per-row results.
Each route parses, authorizes, calls one use case (`services`) and answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from opendrec_kit import ApiError, Principal, UoW, Worker, permission, uploads
from opendrec_kit.organizations import MAX_ID, Acting, OrganizationQuery, acting_for
from opendrec_kit.paging import Page, page_query

from . import domain, services
from .services.bulk_jobs import ROW_STATUSES

MODULE = "DEVICE_BULK_MANAGEMENT_CRUDL"

router = APIRouter(prefix="/api", tags=["bulk onboarding"])

JobsPage = Annotated[Page, Depends(page_query(20, 100, "jobs"))]
RowsPage = Annotated[Page, Depends(page_query(100, 1000, "rows"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]


def wake_worker(request: Request) -> None:
    """A new job: the bulk worker looks at once (instead of at its next poll)."""
    worker: Worker | None = getattr(request.app.state, "bulk_worker", None)
    if worker is not None:
        worker.wake()


async def _upload(
    request: Request, uow: UoW, user: Principal, organization_id: int | None, file_name: str | None
) -> dict[str, Any]:
    settings = request.app.state.runtime.settings
    headers = request.headers

    async def receive() -> uploads.Upload:
        return await uploads.spool(
            headers.get("content-type", ""), headers.get("content-length"), request.stream(), settings.bulk_max_bytes
        )

    job = await services.upload_job(uow, user, organization_id, file_name, receive)
    wake_worker(request)
    return job


MAX_JSON_BODY = 8 * 1024  # D-REC's {"fileName": ...}


async def _json_body(request: Request) -> Any:
    """The request's JSON body, read up to MAX_JSON_BODY bytes."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON_BODY:
            raise ApiError(413, f'The JSON body is larger than {MAX_JSON_BODY} bytes: send {{"fileName": "<key>"}}')
    try:
        return json.loads(data)
    except ValueError:
        raise ApiError(400, 'The body is not JSON: send {"fileName": "<key>"}, or the CSV itself as text/csv') from None


def _file_name_reader(request: Request, *, drec_errors: bool = False) -> Callable[[], Awaitable[str]]:
    """Reads D-REC's body `{"fileName": key}` (a CSV file uploaded before with POST /api/file) when called.
    `drec_errors`: no file named and a name not ending in .csv answer D-REC's 409 "File Not Found" and
    "Invalid file" (the field named in `details`), else 400."""

    async def read_file_name() -> str:
        body = await _json_body(request)
        try:
            return domain.check_bulk_file_name(body.get("fileName") if isinstance(body, dict) else None)
        except ValueError as exc:
            details = [{"field": "fileName", "message": str(exc), "where": "body"}]
            if drec_errors and isinstance(exc, domain.NoFileName):
                raise ApiError(409, "File Not Found", details) from None
            if drec_errors and isinstance(exc, domain.NotCsvFileName):
                raise ApiError(409, "Invalid file", details) from None
            raise ApiError(400, str(exc), details) from None

    return read_file_name


async def _upload_named_file(request: Request, uow: UoW, user: Principal, organization_id: int) -> dict[str, Any]:
    """D-REC's body `{"fileName": key}`: a CSV file uploaded before with POST /api/file."""
    job = await services.upload_job_from_file(uow, user, organization_id, _file_name_reader(request))
    wake_worker(request)
    return job


# The CSV as the request body (text/csv), or as the file field of a multipart/form-data form.
UPLOAD_CONTENT: dict[str, Any] = {
    "text/csv": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary", "description": "the CSV file"}},
            "required": ["file"],
        }
    },
}
UPLOAD_BODY = {"requestBody": {"required": True, "content": UPLOAD_CONTENT}}


# D-REC's JSON body naming a file uploaded before (POST /api/file).
FILE_NAME_CONTENT: dict[str, Any] = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"fileName": {"type": "string", "description": "the key POST /api/file answered (a .csv)"}},
            "required": ["fileName"],
        }
    }
}
# D-REC's route also takes its JSON body naming a file uploaded before.
NAMED_FILE_BODY = {"requestBody": {"required": True, "content": {**FILE_NAME_CONTENT, **UPLOAD_CONTENT}}}


@router.post(
    "/device/addByAdmin/process-creation-bulk-devices-csv/{organizationId}",
    status_code=202,
    openapi_extra=NAMED_FILE_BODY,
)
async def upload_for_organization(
    request: Request,
    uow: UoW,
    organizationId: int = Path(ge=1, le=MAX_ID, description="the Developer organization the devices are for"),
    fileName: str | None = Query(
        None, max_length=255, description="direct uploads: the job's file name (default: the uploaded file's name)"
    ),
    user: Principal = permission(MODULE, "Write"),
) -> dict[str, Any]:
    """D-REC's bulk upload; answers the job at once (202). The body is D-REC's `{"fileName": key}` naming
    a CSV file uploaded with POST /api/file (application/json), or the CSV file itself (as the body or a
    form's file field). Admins onboard for any Developer organization, API users for theirs, others for
    their own."""
    if uploads.media_type(request.headers.get("content-type", "")) == "application/json":
        return await _upload_named_file(request, uow, user, organizationId)
    return await _upload(request, uow, user, organizationId, fileName)


@router.post("/device/bulk", status_code=202, openapi_extra=UPLOAD_BODY)
async def upload_own(
    request: Request,
    uow: UoW,
    fileName: str | None = Query(None, max_length=255, description="default: the uploaded file's name"),
    acting: Acting = acting_for(MODULE, "Write"),
) -> dict[str, Any]:
    """Bulk upload for the caller's own organization (an API user's or admin's named one)."""
    return await _upload(request, uow, acting.user, acting.organization_id, fileName)


@router.post(
    "/buyer-reservation/process-creation-bulk-devices-csv",
    status_code=202,
    openapi_extra={"requestBody": {"required": True, "content": FILE_NAME_CONTENT}},
    responses={
        409: {"description": 'D-REC\'s "File Not Found" (no fileName) and "Invalid file" (not a .csv)'},
        404: {"description": "a file the caller may not read, or none under that key"},
    },
)
async def drec_upload_own(
    request: Request,
    uow: UoW,
    acting: Acting = acting_for(MODULE, "Write"),
) -> dict[str, Any]:
    """D-REC's bulk upload for the caller's own organization (API users and admins name a Developer organization
    with `organizationId`): the body `{"fileName": key}` names a CSV file uploaded with POST /api/file. Answers
    the job at once (202), as POST /api/device/addByAdmin/process-creation-bulk-devices-csv/{organizationId}
    does, plus D-REC's job fields (`fileId`, `userId`, `api_user_id`, `updatedAt`)."""
    read_file_name = _file_name_reader(request, drec_errors=True)
    job = await services.upload_drec_job(uow, acting.user, acting.organization_id, read_file_name)
    wake_worker(request)
    return job


@router.get("/device/bulk-jobs")
async def list_jobs(uow: UoW, acting: Reading, page: JobsPage) -> dict[str, Any]:
    return await services.list_jobs(uow, acting.user, acting.organization_id, page)


@router.get("/device/bulk-jobs/{jobId}")
async def job_status(
    uow: UoW,
    jobId: int = Path(ge=1, le=MAX_ID),
    acting: Acting = acting_for(MODULE, "Read"),
) -> dict[str, Any]:
    return await services.job_status(uow, acting.user, jobId, acting.organization_id)


@router.get("/device/bulk-jobs/{jobId}/results")
async def job_results(
    uow: UoW,
    acting: Reading,
    page: RowsPage,
    jobId: int = Path(ge=1, le=MAX_ID),
    status: str | None = Query(None, pattern="^(" + "|".join(ROW_STATUSES) + ")$"),
) -> dict[str, Any]:
    """Per-row outcome: created, created_with_warnings (and why), failed (with every error), or pending."""
    return await services.job_results(uow, acting.user, jobId, acting.organization_id, status, page)


# D-REC clients read jobs under /api/buyer-reservation (the gateway must route these two to devices).
@router.get("/buyer-reservation/bulk-upload/get-all-csv-jobs-of-organization")
async def drec_list_jobs(
    uow: UoW,
    page: JobsPage,
    orgId: OrganizationQuery = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return await services.list_jobs(uow, user, orgId, page)


@router.get("/buyer-reservation/bulk-upload-status/{jobId}")
async def drec_job_status(
    uow: UoW,
    jobId: int = Path(ge=1, le=MAX_ID),
    orgId: OrganizationQuery = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return await services.job_status(uow, user, jobId, orgId)
