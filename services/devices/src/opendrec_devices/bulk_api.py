"""Bulk CSV onboarding over HTTP: upload (a job id at once), job listing, status and per-row results."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from fastapi import APIRouter, Path, Query, Request

from opendrec_kit import ApiError, Pool, Principal, permission, uploads

from . import bulk, domain, store
from .api import FIELD_COLUMNS, _iso, developer_organization, listing_scope

MODULE = "DEVICE_BULK_MANAGEMENT_CRUDL"
STAGE_BATCH = 1000
ROW_STATUSES = ("pending", "created", "created_with_warnings", "failed")

router = APIRouter(prefix="/api", tags=["bulk onboarding"])


def wake_worker(request: Request) -> None:
    wake: asyncio.Event | None = getattr(request.app.state, "bulk_wake", None)
    if wake is not None:
        wake.set()


async def _stage(conn: asyncpg.Connection, job_id: int, rows: Any) -> int:
    total, batch = 0, []
    for number, data in rows:
        external_id = str(data.get("externalId", "")).strip() or None
        batch.append((number, external_id, data))
        if len(batch) >= STAGE_BATCH:
            await store.stage_rows(conn, job_id, batch)
            total += len(batch)
            batch = []
    if batch:
        await store.stage_rows(conn, job_id, batch)
        total += len(batch)
    return total


def job_view(job: asyncpg.Record) -> dict[str, Any]:
    done, total = job["done_rows"], job["total_rows"]
    return {
        "jobId": job["id"],
        "organizationId": job["organization_id"],
        "fileName": job["file_name"],
        "status": job["status"],
        "totalRows": total,
        "processedRows": done,
        "progress": round(100 * done / total, 1) if total else 100.0,
        "createdRows": job["created_rows"],
        "createdWithWarningsRows": job["warning_rows"],
        "failedRows": job["failed_rows"],
        "warnings": json.loads(job["warnings"]),
        "createdAt": _iso(job["created_at"]),
        "startedAt": _iso(job["started_at"]) if job["started_at"] else None,
        "finishedAt": _iso(job["finished_at"]) if job["finished_at"] else None,
    }


async def _upload(
    request: Request, pool: asyncpg.Pool, user: Principal, organization_id: int | None, file_name: str | None
) -> dict[str, Any]:
    settings = request.app.state.runtime.settings
    # who may onboard where is settled before a byte of the file is read
    organization_id = await developer_organization(pool, user, organization_id, "onboard devices")
    headers = request.headers
    spooled = await uploads.spool(
        headers.get("content-type", ""), headers.get("content-length"), request.stream(), settings.bulk_max_bytes
    )
    try:
        # One transaction: a file found bad half-way leaves no job and no staged row.
        async with pool.acquire() as conn, conn.transaction():
            try:
                header, rows = bulk.read_rows(spooled.file, list(FIELD_COLUMNS))
                job_id = await store.create_job(
                    conn, organization_id, user.user_id, file_name or spooled.file_name, header.warnings
                )
                total = await _stage(conn, job_id, rows)
            except bulk.BadFile as exc:
                raise ApiError(400, f"Unusable CSV file: {exc}") from None
            if total == 0:
                raise ApiError(400, "Unusable CSV file: it has a header but no rows")
            job = await store.set_job_total(conn, job_id, total)
    finally:
        spooled.file.close()
    wake_worker(request)
    return job_view(job)


# The CSV as the request body (text/csv), or as the file field of a multipart/form-data form.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary", "description": "the CSV file"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "/device/addByAdmin/process-creation-bulk-devices-csv/{organizationId}", status_code=202, openapi_extra=UPLOAD_BODY
)
async def upload_for_organization(
    request: Request,
    pool: Pool,
    organizationId: int = Path(ge=1, le=2**63 - 1, description="the Developer organization the devices are for"),
    fileName: str | None = Query(None, max_length=255, description="default: the uploaded file's name"),
    user: Principal = permission(MODULE, "Write"),
) -> dict[str, Any]:
    """D-REC's bulk upload (a CSV file, as the body or a form's file field); answers the job at once (202).
    Admins onboard for any Developer organization, API users for theirs, others for their own."""
    return await _upload(request, pool, user, organizationId, fileName)


@router.post("/device/bulk", status_code=202, openapi_extra=UPLOAD_BODY)
async def upload_own(
    request: Request,
    pool: Pool,
    organizationId: int | None = Query(None, ge=1, le=2**63 - 1, description="API users and admins (required)"),
    fileName: str | None = Query(None, max_length=255, description="default: the uploaded file's name"),
    user: Principal = permission(MODULE, "Write"),
) -> dict[str, Any]:
    """Bulk upload for the caller's own organization (an API user's or admin's named one)."""
    return await _upload(request, pool, user, organizationId, fileName)


async def _scope(pool: asyncpg.Pool, user: Principal, organization_id: int | None) -> list[int] | None:
    """Organizations whose jobs the caller may see (None: all, for an admin naming none)."""
    return await listing_scope(pool, user, organization_id, admin_default="all")


async def _jobs_page(pool: asyncpg.Pool, scope: list[int] | None, page: int, limit: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        total, rows = await store.list_jobs(conn, scope, limit, (page - 1) * limit)
    return {
        "csvJobs": [job_view(r) for r in rows],
        "currentPage": page,
        "totalPages": domain.total_pages(total, limit),
        "totalCount": total,
    }


async def _job(pool: asyncpg.Pool, user: Principal, job_id: int, organization_id: int | None) -> asyncpg.Record:
    scope = await _scope(pool, user, organization_id)
    async with pool.acquire() as conn:
        job = await store.get_job(conn, job_id)
    if job is None or not domain.within(scope, job["organization_id"]):
        where = f" in organization {organization_id}" if organization_id else ""
        raise ApiError(404, f"No bulk job {job_id}{where}")
    return job


def job_organization() -> Any:
    # a new Query per parameter: FastAPI binds a parameter's name into its FieldInfo, so one cannot be shared
    return Query(
        None, ge=1, le=2**63 - 1, description="API users: one of your Developer organizations (none: any of them)"
    )


@router.get("/device/bulk-jobs")
async def list_jobs(
    pool: Pool,
    pagenumber: int = Query(1, ge=1),
    limit: int = Query(20, ge=1, le=100),
    organizationId: int | None = job_organization(),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return await _jobs_page(pool, await _scope(pool, user, organizationId), pagenumber, limit)


@router.get("/device/bulk-jobs/{jobId}")
async def job_status(
    pool: Pool,
    jobId: int = Path(ge=1, le=2**63 - 1),
    organizationId: int | None = job_organization(),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return job_view(await _job(pool, user, jobId, organizationId))


@router.get("/device/bulk-jobs/{jobId}/results")
async def job_results(
    pool: Pool,
    jobId: int = Path(ge=1, le=2**63 - 1),
    status: str | None = Query(None, pattern="^(" + "|".join(ROW_STATUSES) + ")$"),
    pagenumber: int = Query(1, ge=1),
    limit: int = Query(100, ge=1, le=1000),
    organizationId: int | None = job_organization(),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    """Per-row outcome: created, created_with_warnings (and why), failed (with every error), or pending."""
    job = await _job(pool, user, jobId, organizationId)
    async with pool.acquire() as conn:
        total, rows = await store.job_rows(conn, jobId, status, limit, (pagenumber - 1) * limit)
    return {
        "job": job_view(job),
        "rows": [
            {
                "row": r["row_number"],
                "externalId": r["external_id"],
                "status": r["status"],
                "deviceId": r["device_id"],
                "errors": json.loads(r["errors"]) if r["errors"] else [],
                "warnings": json.loads(r["warnings"]) if r["warnings"] else [],
            }
            for r in rows
        ],
        "currentPage": pagenumber,
        "totalPages": domain.total_pages(total, limit),
        "totalCount": total,
    }


# D-REC clients read jobs under /api/buyer-reservation (the gateway must route these two to devices).
@router.get("/buyer-reservation/bulk-upload/get-all-csv-jobs-of-organization")
async def drec_list_jobs(
    pool: Pool,
    orgId: int | None = job_organization(),
    pageNumber: int = Query(1, ge=1),
    limit: int = Query(20, ge=1, le=100),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return await _jobs_page(pool, await _scope(pool, user, orgId), pageNumber, limit)


@router.get("/buyer-reservation/bulk-upload-status/{jobId}")
async def drec_job_status(
    pool: Pool,
    jobId: int = Path(ge=1, le=2**63 - 1),
    orgId: int | None = job_organization(),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return job_view(await _job(pool, user, jobId, orgId))
