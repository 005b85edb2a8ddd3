"""Bulk CSV onboarding over HTTP: upload (a job id at once), job listing, status and per-row results."""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query, Request
from opendrec_kit import ApiError, Pool, Principal, permission

from . import bulk, domain, store
from .api import FIELD_COLUMNS, _iso

MODULE = "DEVICE_BULK_MANAGEMENT_CRUDL"
STAGE_BATCH = 1000
SPOOL_IN_MEMORY = 1024 * 1024  # bytes of an upload kept in memory before it spills to a temporary file
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream", "application/vnd.ms-excel")
ROW_STATUSES = ("pending", "created", "created_with_warnings", "failed")

router = APIRouter(prefix="/api", tags=["bulk onboarding"])


def wake_worker(request: Request) -> None:
    wake: asyncio.Event | None = getattr(request.app.state, "bulk_wake", None)
    if wake is not None:
        wake.set()


def _target_organization(user: Principal, organization_id: int | None) -> int:
    """Admins onboard for any organization; a developer organization's users for their own."""
    if domain.sees_all_organizations(user.role):
        return organization_id or user.organization_id
    if user.organization_type != "Developer":
        raise ApiError(
            403, f"Only Developer organizations onboard devices; your organization is of type {user.organization_type or 'unknown'}"
        )
    if organization_id is not None and organization_id != user.organization_id:
        raise ApiError(403, f"You may onboard devices for your own organization ({user.organization_id}) only")
    return user.organization_id


async def _spool(request: Request, max_bytes: int) -> tempfile.SpooledTemporaryFile:
    """The request body in a spooled file: memory stays flat whatever the file size."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith("multipart/"):
        raise ApiError(415, "Send the CSV file itself as the request body (Content-Type: text/csv), not a multipart form")
    if content_type and content_type not in CSV_TYPES:
        raise ApiError(415, f"Expected a CSV file (Content-Type: text/csv), got {content_type}")
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            spool.close()
            raise ApiError(413, f"The file is larger than {max_bytes} bytes; split it into several uploads")
        spool.write(chunk)
    spool.seek(0)
    return spool


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


async def _upload(request: Request, pool: asyncpg.Pool, user: Principal, organization_id: int, file_name: str | None) -> dict[str, Any]:
    settings = request.app.state.runtime.settings
    spool = await _spool(request, settings.bulk_max_bytes)
    try:
        # One transaction: a file found bad half-way leaves no job and no staged row.
        async with pool.acquire() as conn, conn.transaction():
            try:
                header, rows = bulk.read_rows(spool, list(FIELD_COLUMNS))
                job_id = await store.create_job(conn, organization_id, user.user_id, file_name, header.warnings)
                total = await _stage(conn, job_id, rows)
            except bulk.BadFile as exc:
                raise ApiError(400, f"Unusable CSV file: {exc}") from None
            if total == 0:
                raise ApiError(400, "Unusable CSV file: it has a header but no rows")
            job = await store.set_job_total(conn, job_id, total)
    finally:
        spool.close()
    wake_worker(request)
    return job_view(job)


@router.post("/device/addByAdmin/process-creation-bulk-devices-csv/{organizationId}", status_code=202)
async def upload_for_organization(
    request: Request,
    pool: Pool,
    organizationId: int = Path(ge=1, le=2**63 - 1),
    fileName: str | None = Query(None, max_length=255),
    user: Principal = permission(MODULE, "Write"),
) -> dict[str, Any]:
    """D-REC's bulk upload: the CSV is the request body; answers the job at once (202)."""
    return await _upload(request, pool, user, _target_organization(user, organizationId), fileName)


@router.post("/device/bulk", status_code=202)
async def upload(
    request: Request,
    pool: Pool,
    fileName: str | None = Query(None, max_length=255),
    user: Principal = permission(MODULE, "Write"),
) -> dict[str, Any]:
    """Bulk upload for the caller's own organization."""
    return await _upload(request, pool, user, _target_organization(user, None), fileName)


def _scope(user: Principal, organization_id: int | None) -> int | None:
    """Organization whose jobs the caller may see (None: all, for admins)."""
    if domain.sees_all_organizations(user.role):
        return organization_id
    if organization_id is not None and organization_id != user.organization_id:
        raise ApiError(403, f"You may see the jobs of your own organization ({user.organization_id}) only")
    return user.organization_id


async def _jobs_page(pool: asyncpg.Pool, scope: int | None, page: int, limit: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        total, rows = await store.list_jobs(conn, scope, limit, (page - 1) * limit)
    return {"csvJobs": [job_view(r) for r in rows], "currentPage": page, "totalPages": domain.total_pages(total, limit), "totalCount": total}


async def _job(pool: asyncpg.Pool, user: Principal, job_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        job = await store.get_job(conn, job_id)
    if job is None or not domain.may_see(user.role, user.organization_id, job["organization_id"]):
        raise ApiError(404, f"No bulk job {job_id}")
    return job


@router.get("/device/bulk-jobs")
async def list_jobs(
    pool: Pool,
    pagenumber: int = Query(1, ge=1),
    limit: int = Query(20, ge=1, le=100),
    organizationId: int | None = Query(None, ge=1, le=2**63 - 1),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return await _jobs_page(pool, _scope(user, organizationId), pagenumber, limit)


@router.get("/device/bulk-jobs/{jobId}")
async def job_status(
    pool: Pool, jobId: int = Path(ge=1, le=2**63 - 1), user: Principal = permission(MODULE, "Read")
) -> dict[str, Any]:
    return job_view(await _job(pool, user, jobId))


@router.get("/device/bulk-jobs/{jobId}/results")
async def job_results(
    pool: Pool,
    jobId: int = Path(ge=1, le=2**63 - 1),
    status: str | None = Query(None, pattern="^(" + "|".join(ROW_STATUSES) + ")$"),
    pagenumber: int = Query(1, ge=1),
    limit: int = Query(100, ge=1, le=1000),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    """Per-row outcome: created, created_with_warnings (and why), failed (with every error), or pending."""
    job = await _job(pool, user, jobId)
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
    orgId: int | None = Query(None, ge=1, le=2**63 - 1),
    pageNumber: int = Query(1, ge=1),
    limit: int = Query(20, ge=1, le=100),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    return await _jobs_page(pool, _scope(user, orgId), pageNumber, limit)


@router.get("/buyer-reservation/bulk-upload-status/{jobId}")
async def drec_job_status(
    pool: Pool,
    jobId: int = Path(ge=1, le=2**63 - 1),
    orgId: int | None = Query(None, ge=1, le=2**63 - 1),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    _scope(user, orgId)
    job = await _job(pool, user, jobId)
    if orgId is not None and job["organization_id"] != orgId:
        raise ApiError(404, f"No bulk job {jobId} in organization {orgId}")
    return job_view(job)
