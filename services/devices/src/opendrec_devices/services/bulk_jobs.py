"""Use cases of bulk CSV onboarding: a job staged at upload, registered batch by batch by the worker, read back.

A batch's devices, its rows' results, the job's counters and the device.registered events commit
together (one unit of work), so a restart (or a crash) in the middle resumes at the first pending row
and never registers a row twice. Jobs are claimed with SKIP LOCKED: several instances share the work.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import asyncpg

from opendrec_kit import ApiError, Principal, UnitOfWork, db, metrics, uploads
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso, iso_or_none

from .. import bulk, domain, store
from ..models import FIELD_COLUMNS, DeviceRegistration
from . import access, files

STAGE_BATCH = 1000  # staged rows per COPY at upload
MAX_STRIKES = 3  # failures of a row (registered alone) before it is set aside
log = logging.getLogger(__name__)
ROW_STATUSES = ("pending", "created", "created_with_warnings", "failed")

# ---------------------------------------------------------------- answers


def job_view(job: Mapping[str, Any]) -> dict[str, Any]:
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
        "createdAt": iso(job["created_at"]),
        "startedAt": iso_or_none(job["started_at"]),
        "finishedAt": iso_or_none(job["finished_at"]),
    }


def _row_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "row": row["row_number"],
        "externalId": row["external_id"],
        "status": row["status"],
        "deviceId": row["device_id"],
        "errors": json.loads(row["errors"]) if row["errors"] else [],
        "warnings": json.loads(row["warnings"]) if row["warnings"] else [],
    }


# ---------------------------------------------------------------- upload


def _staged_batch(rows: Iterator[tuple[int, dict[str, Any]]]) -> list[tuple[int, str | None, dict[str, Any]]]:
    """The next STAGE_BATCH rows of the file as staged: (row number, externalId as written, cells)."""
    return [
        (number, str(data.get("externalId", "")).strip() or None, data)
        for number, data in itertools.islice(rows, STAGE_BATCH)
    ]


async def _stage(conn: asyncpg.Connection, job_id: int, rows: Iterator[tuple[int, dict[str, Any]]]) -> int:
    """Stage the file's rows, parsed a batch at a time in a worker thread: the event loop never parses, and
    memory holds one batch."""
    total = 0
    while batch := await asyncio.to_thread(_staged_batch, rows):
        await store.stage_rows(conn, job_id, batch)
        total += len(batch)
    return total


async def _make_job(
    uow: UnitOfWork, user: Principal, organization_id: int, file_name: str | None, spooled: uploads.Upload
) -> dict[str, Any]:
    """Stage the rows of a spooled CSV file as a job (closing the file). One transaction: a file found bad
    half-way leaves no job and no staged row."""
    try:
        async with uow:
            try:
                header, rows = bulk.read_rows(spooled.file, list(FIELD_COLUMNS))
                job_id = await store.create_job(
                    uow.conn, organization_id, user.user_id, file_name or spooled.file_name, header.warnings
                )
                total = await _stage(uow.conn, job_id, rows)
            except bulk.BadFile as exc:
                raise ApiError(413 if isinstance(exc, bulk.TooLarge) else 400, f"Unusable CSV file: {exc}") from None
            if total == 0:
                raise ApiError(400, "Unusable CSV file: it has a header but no rows")
            job = await store.set_job_total(uow.conn, job_id, total)
    finally:
        spooled.file.close()
    return job_view(job)


async def upload_job(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    file_name: str | None,
    receive: Callable[[], Awaitable[uploads.Upload]],
) -> dict[str, Any]:
    """Make a job of an uploaded CSV file: its rows staged, for the worker to register.

    Who may onboard where is settled before a byte of the file is read (`receive` reads it)."""
    async with uow.reading() as r:
        organization_id = await access.developer_organization(r.conn, user, organization_id, "onboard devices")
    spooled = await receive()
    return await _make_job(uow, user, organization_id, file_name, spooled)


async def upload_job_from_file(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    read_file_name: Callable[[], Awaitable[str]],
) -> dict[str, Any]:
    """Make a job of a CSV file uploaded before (POST /api/file), named by its key in D-REC's body
    `{"fileName": key}`; the job's fileName is the key. Who may onboard where is settled before the body
    is read; the file must be one the caller may read (its organization's; admins any)."""
    async with uow.reading() as r:
        organization_id = await access.developer_organization(r.conn, user, organization_id, "onboard devices")
    key = await read_file_name()
    async with uow.reading() as r:
        row = files.readable(user, await store.get_file(r.conn, key), key)
    spooled = tempfile.SpooledTemporaryFile(max_size=uploads.SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by _make_job
    spooled.write(row["data"])
    spooled.seek(0)
    return await _make_job(uow, user, organization_id, row["key"], uploads.Upload(spooled, row["file_name"]))


async def upload_drec_job(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    read_file_name: Callable[[], Awaitable[str]],
) -> dict[str, Any]:
    """D-REC's POST /api/buyer-reservation/process-creation-bulk-devices-csv: `upload_job_from_file`, answered
    in the shape of D-REC's DeviceCsvFileProcessingJobsEntity (`jobId`, `fileId`, `userId`, `organizationId`,
    `status`, `api_user_id`, `createdAt`, `updatedAt`) beside ours."""
    job = await upload_job_from_file(uow, user, organization_id, read_file_name)
    return {
        **job,
        "fileId": job["fileName"],
        "userId": user.user_id,
        "api_user_id": user.api_user_id,
        "updatedAt": job["createdAt"],
    }


# ---------------------------------------------------------------- reading jobs


async def _visible_job(
    conn: asyncpg.Connection, user: Principal, job_id: int, organization_id: int | None
) -> asyncpg.Record:
    scope = await access.listing_scope(conn, user, organization_id, admin_default="all")
    job = await store.get_job(conn, job_id)
    if job is None or not domain.within(scope, job["organization_id"]):
        where = f" in organization {organization_id}" if organization_id else ""
        raise ApiError(404, f"No bulk job {job_id}{where}")
    return job


async def list_jobs(uow: UnitOfWork, user: Principal, organization_id: int | None, page: Page) -> dict[str, Any]:
    """Jobs of the organizations the caller sees (an admin naming none: all), newest first."""
    async with uow.reading() as r:
        scope = await access.listing_scope(r.conn, user, organization_id, admin_default="all")
        total, rows = await store.list_jobs(r.conn, scope, page.limit, page.offset)
    return {
        "csvJobs": [job_view(row) for row in rows],
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
    }


async def job_status(uow: UnitOfWork, user: Principal, job_id: int, organization_id: int | None) -> dict[str, Any]:
    async with uow.reading() as r:
        return job_view(await _visible_job(r.conn, user, job_id, organization_id))


async def job_results(
    uow: UnitOfWork, user: Principal, job_id: int, organization_id: int | None, status: str | None, page: Page
) -> dict[str, Any]:
    """Per-row outcome: created, created_with_warnings (and why), failed (with every error), or pending."""
    async with uow.reading() as r:
        job = await _visible_job(r.conn, user, job_id, organization_id)
        total, rows = await store.job_rows(r.conn, job_id, status, page.limit, page.offset)
    return {
        "job": job_view(job),
        "rows": [_row_view(row) for row in rows],
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
    }


# ---------------------------------------------------------------- the worker's batch


async def process_batch(uow: UnitOfWork, batch_size: int) -> bool:
    """Register up to `batch_size` pending rows of the oldest unfinished job; False when idle.

    An externalId registered through the API between the check and the insert rolls the batch back
    as a whole: the worker retries it, and it is judged again. A batch that fails otherwise (not an outage of
    the database) is struck: the rows up to its last are then registered one at a time, and a row that failed
    MAX_STRIKES times is set aside as failed with the error, so one row never holds the job, or the worker."""
    batch: tuple[int, int, int] | None = None  # (job, first row, last row) being registered
    try:
        async with uow:
            conn = uow.conn
            job = await store.claim_unfinished_job(conn)
            if job is None:
                return False
            rows = await store.pending_rows(conn, job["id"], batch_size)
            if not rows:
                await store.finish_job(conn, job["id"])
                return True
            first = rows[0]["row_number"]
            if job["careful_until"] is not None and first <= job["careful_until"]:
                rows = rows[:1]  # within a batch that failed: one row at a time
            if job["strikes"] >= MAX_STRIKES and job["strike_row"] == first and len(rows) == 1:
                await _set_aside(conn, job, first)
                return True
            batch = (job["id"], first, rows[-1]["row_number"])
            await _register(uow, job, rows, batch_size)
    except Exception as exc:
        if batch is None or isinstance(exc, db.OUTAGES):
            raise  # an outage is no fault of the rows: retried as it is
        async with uow:
            await store.strike_job(uow.conn, *batch, f"{type(exc).__name__}: {exc}"[:1000])
        raise
    metrics.bulk_rows("devices", len(rows))
    return True


async def _set_aside(conn: asyncpg.Connection, job: Mapping[str, Any], row_number: int) -> None:
    why = f"could not be registered: it failed {job['strikes']} times ({job['last_error']})"
    await store.record_row_results(
        conn, job["id"], [(row_number, "failed", None, [{"field": "row", "message": why}], None)]
    )
    await store.advance_job(conn, job["id"], 0, 0, 1)
    log.error(
        "bulk onboarding row set aside", extra={"job_id": job["id"], "row": row_number, "error": job["last_error"]}
    )


async def _register(uow: UnitOfWork, job: Mapping[str, Any], rows: list[asyncpg.Record], batch_size: int) -> None:
    """Judge and register `rows` of `job` in the open unit of work."""
    conn = uow.conn
    external_ids = [r["external_id"] for r in rows if r["external_id"]]
    first_rows = await store.first_rows_of(conn, job["id"], external_ids)
    taken = await store.existing_external_ids(conn, job["organization_id"], external_ids)
    results: list[tuple[int, str, int | None, list[Any] | None, list[str] | None]] = []
    to_insert: list[tuple[int, dict[str, Any], list[str]]] = []  # (row number, columns, warnings)
    failed = 0
    for row in rows:
        result = bulk.judge_row(json.loads(row["data"]), DeviceRegistration)
        errors = list(result.errors)
        ext = result.columns["external_id"] if result.columns else (row["external_id"] or "").strip()
        first = first_rows.get(row["external_id"])
        if first is not None and first < row["row_number"]:
            errors.append({"field": "externalId", "message": f"externalId {ext!r} repeats row {first} of this file"})
        elif ext in taken:
            errors.append(
                {"field": "externalId", "message": f"externalId {ext!r} is already used by device {taken[ext]}"}
            )
        if errors or result.columns is None:  # no columns: the row has errors
            failed += 1
            results.append((row["row_number"], "failed", None, errors, None))
        else:
            taken[ext] = 0  # claimed by this batch
            to_insert.append((row["row_number"], result.columns, result.warnings))
    devices = await store.insert_devices(
        conn, job["organization_id"], job["created_by"], [columns for _, columns, _ in to_insert]
    )
    warned = sum(1 for _, _, warnings in to_insert if warnings)
    created = len(to_insert) - warned
    for (number, _, warnings), device in zip(to_insert, devices, strict=True):
        status = "created_with_warnings" if warnings else "created"
        results.append((number, status, device["id"], None, warnings or None))
    await store.record_row_results(conn, job["id"], results)
    await store.advance_job(conn, job["id"], created, warned, failed)
    uow.record_all(domain.registered_event(d) for d in devices)
    if len(rows) < batch_size and job["careful_until"] is None:
        await store.finish_job(conn, job["id"])
