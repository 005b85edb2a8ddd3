"""The D-REC reads module over HTTP: add meter reads, list them, the latest one.

Paths and fields follow the reference (`/api/meter-reads/...`, starttimestamp/endtimestamp/
value in, startdate/enddate/value out). Beyond it: up to 10,000 reads per request, judged as
a whole, a rejection listing every bad read, and Idempotency-Key.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Annotated, Any, Literal, NotRequired

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from opendrec_kit import ApiError, Pool, Principal, Runtime, permission, uploads
from opendrec_kit.organizations import acting_organization, find_organization

from . import domain, imports, ingest, store
from .domain import MAX_READS_PER_REQUEST, ReadType

router = APIRouter(tags=["meter-reads"])

MODULE = "READS_MANAGEMENT_CRUDL"
DEFAULT_PAGE_SIZE = 5  # the reference's page size
MAX_PAGE_SIZE = 1000


class ReadIn(TypedDict):
    # A TypedDict, not a model: validating 10,000 dicts is ~3x faster than building models.
    # Strings, judged by the rules: blank means none, local times need `timezone`.
    starttimestamp: NotRequired[str | None]
    endtimestamp: NotRequired[str | None]
    value: int | Decimal  # JSON integers stay int; decimals arrive exact (see parse_body)


class MeterReadsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: ReadType
    unit: Literal["Wh", "kWh", "MWh", "GWh"]
    reads: list[ReadIn] = Field(min_length=1, max_length=MAX_READS_PER_REQUEST)
    timezone: str | None = None
    organizationId: int | None = None


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The body schema for OpenAPI with its nested models inlined (the body is parsed by hand)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    schema["properties"]["reads"]["items"] = defs["ReadIn"]
    return schema


class _MeterReadsEnvelope(MeterReadsIn):
    # The body without judging each read: those are checked by _plain_reads, a column at a time.
    reads: list[Any] = Field(min_length=1, max_length=MAX_READS_PER_REQUEST)  # type: ignore[assignment]


# The reads of a body as columns: starttimestamp, endtimestamp, value.
RawReads = tuple[list[str | None], list[str | None], list[int | Decimal]]


def parse_body(raw: bytes) -> tuple[MeterReadsIn, RawReads]:
    """The request and its reads as columns (starttimestamps, endtimestamps, values).

    The common body (integers, strings) is parsed by orjson and checked without a model per read;
    one with a fractional number, or anything unusual, takes the exact path: decimals straight from
    the JSON text (a float would already have lost digits) and the full model, whose errors are
    the answer.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None  # maybe JSON orjson refuses (NaN, a huge integer, UTF-16): the exact path decides
    else:
        try:
            body = _MeterReadsEnvelope.model_validate(data)
        except ValidationError:
            pass  # the full model below says what is wrong
        else:
            reads = _plain_reads(body.reads)
            if reads is not None:
                return body, reads  # type: ignore[return-value]
    try:
        data = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from exc
    try:
        body = MeterReadsIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
    return body, (
        [r.get("starttimestamp") for r in body.reads],
        [r.get("endtimestamp") for r in body.reads],
        [r["value"] for r in body.reads],
    )


def _plain_reads(items: list[Any]) -> RawReads | None:
    """Reads that are objects with string (or null) timestamps and an integer value; None if any is not.

    Column by column, so the loops run in C: the types of a whole column are checked at once.
    """
    if set(map(type, items)) != {dict}:
        return None
    try:
        starts = list(map(_START, items))
    except KeyError:  # optional: Delta and Aggregate reads may leave it out
        starts = [r.get("starttimestamp") for r in items]
    try:
        ends, values = list(map(_END, items)), list(map(_VALUE, items))
    except KeyError:
        return None  # the full model says which read lacks what
    # bool is not int here (type, not isinstance); floats and strings go the exact path.
    if set(map(type, values)) != {int} or not set(map(type, starts)) <= _TEXT or not set(map(type, ends)) <= _TEXT:
        return None
    return starts, ends, values


_START, _END, _VALUE = itemgetter("starttimestamp"), itemgetter("endtimestamp"), itemgetter("value")
_TEXT = {str, type(None)}


async def _organization(conn: Any, user: Principal, requested: int | None, organization_type: str | None = None) -> int:
    """The organization whose devices the caller acts on: its own, one of an API user's (named with
    organizationId), or any for an admin."""
    return await acting_organization(conn, user, requested, organization_type=organization_type)


async def _organization_type(conn: Any, user: Principal, organization_id: int) -> str:
    if organization_id == user.organization_id:
        return user.organization_type
    known = await find_organization(conn, organization_id)
    return known.organization_type if known else ""


async def _device(conn: Any, organization_id: int, external_id: str) -> Any:
    device = await store.find_device(conn, organization_id, external_id.strip())
    if device is None:
        raise ApiError(404, f"No device with external id {external_id!r} in organization {organization_id}")
    return device


@router.post(
    "/api/meter-reads/new/{externalId}",
    status_code=201,
    summary="Add meter reads (History, Delta or Aggregate) to a device, accepted or refused as a whole",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(MeterReadsIn)}}}
    },
)
async def add_meter_reads(
    externalId: str,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    user: Principal = permission(MODULE, "Write"),
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    body, (starts, ends, values) = parse_body(await request.body())
    settings = runtime.settings
    tz = None
    if body.timezone and body.timezone.strip():
        try:
            tz = domain.resolve_timezone(body.timezone)
        except ValueError as exc:
            raise ApiError(400, str(exc), [{"field": "timezone", "message": str(exc), "where": "body"}]) from exc
    reads, parse_errors = domain.parse_reads(starts, ends, values, body.type, body.unit, tz)
    async with pool.acquire() as conn:
        organization_id = await _organization(conn, user, body.organizationId, "Developer")
        device = await _device(conn, organization_id, externalId)
        if device["deleted_at"] is not None:
            raise ApiError(
                409, f"Device {externalId!r} was deleted on {domain.iso(device['deleted_at'])}: it takes no new reads"
            )
        try:
            async with conn.transaction():
                result = await ingest.ingest(
                    conn,
                    settings,  # type: ignore[arg-type]
                    device,
                    body.type,
                    reads,
                    source="api",
                    parse_errors=parse_errors,
                    idempotency_key=idempotency_key,
                    timezone=tz.key if tz else None,
                )
        except ingest.IdempotencyConflict as exc:
            raise ApiError(
                409, f"Idempotency-Key {idempotency_key!r} was already used for different reads of this device"
            ) from exc
    if isinstance(result, ingest.Rejected):
        bad = len({e.index for e in result.errors})
        raise ApiError(
            400,
            f"{body.type} reads refused, nothing was stored: {bad} of {len(body.reads)} reads are not acceptable"
            if all(e.index is not None for e in result.errors)
            else f"{body.type} reads refused, nothing was stored: {result.errors[0].reason}",
            [e.as_dict() for e in result.errors],
        )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(
        orjson.dumps(result.summary.as_json()), status_code=201, headers=headers, media_type="application/json"
    )


def _utc(moment: datetime | None) -> datetime | None:
    # A query timestamp without offset is read as UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _read_out(row: Any) -> dict[str, Any]:
    return {"startdate": domain.iso(row["start_at"]), "enddate": domain.iso(row["end_at"]), "value": row["wh"]}


async def _visible(
    conn: Any, user: Principal, organization_id: int | None, path_id: str
) -> tuple[Any, tuple[datetime, datetime] | None]:
    """The device the caller may read, and the window it may see (None: all of it).

    Developers name their own devices by external id. Buyers name a device by its id (as in
    the D-REC manual) and see it only if one of their reservations holds it, within the span
    of those reservations.
    """
    organization = await _organization(conn, user, organization_id)
    if await _organization_type(conn, user, organization) != "Buyer":
        return await _device(conn, organization, path_id), None
    device_id = int(path_id) if path_id.strip().isdigit() else None
    span = await store.reservation_span(conn, organization, device_id) if device_id is not None else None
    device = await store.get_device(conn, device_id) if span is not None else None
    if device is None or span is None:
        raise ApiError(404, f"No device with id {path_id!r} in a reservation of organization {organization}")
    return device, span


def _clip(
    start: datetime | None, end: datetime | None, span: tuple[datetime, datetime] | None
) -> tuple[datetime | None, datetime | None]:
    if span is None:
        return start, end
    return max(start, span[0]) if start else span[0], min(end, span[1]) if end else span[1]


@router.get(
    "/api/meter-reads/new/{externalId}",
    summary="Meter reads of a device in a time window, a page at a time, or sums per period",
)
async def get_meter_reads(
    externalId: str,
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    start: datetime | None = None,
    end: datetime | None = None,
    pagenumber: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    readType: Literal["meterReads", "accumulated"] = "meterReads",
    granularity: Literal["hour", "day", "month", "year"] | None = None,
    organizationId: int | None = None,
) -> dict[str, Any]:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise ApiError(
            400, "start must be before end" if start > end else "The given start and end timestamps are the same"
        )
    if readType == "accumulated" and granularity is None:
        message = "readType=accumulated needs granularity: hour, day, month or year"
        raise ApiError(400, message, [{"field": "granularity", "message": message, "where": "query"}])
    async with pool.acquire() as conn:
        device, span = await _visible(conn, user, organizationId, externalId)
        start, end = _clip(start, end, span)
        empty = start is not None and end is not None and start >= end
        if readType == "accumulated":
            assert granularity is not None
            zone = device["timezone"] or "UTC"
            rows = [] if empty else await store.accumulate(conn, device["device_id"], granularity, zone, start, end)
            return {
                "externalId": device["external_id"],
                "deviceId": device["device_id"],
                "granularity": granularity,
                "timezone": zone,
                "accumulated": [_read_out(r) for r in rows],
                "totalWh": sum(r["wh"] for r in rows),
            }
        total = 0 if empty else await store.count_intervals(conn, device["device_id"], start, end)
        rows = (
            []
            if empty
            else await store.list_intervals(conn, device["device_id"], start, end, limit, (pagenumber - 1) * limit)
        )
    return {
        "historyread": [_read_out(r) for r in rows if r["read_type"] == "History"],
        "ongoing": [_read_out(r) for r in rows if r["read_type"] != "History"],
        "numberOfReads": total,
        "numberOfPages": math.ceil(total / limit),
        "currentPageNumber": pagenumber,
    }


@router.get(
    "/api/meter-reads/latestread/{externalId}", summary="The latest ongoing (Delta or Aggregate) read of a device"
)
async def get_latest_read(
    externalId: str,
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    organizationId: int | None = None,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        device, span = await _visible(conn, user, organizationId, externalId)
        last = await store.get_last_read(conn, device["device_id"])
    if last is None or last.end is None or (span is not None and not span[0] < last.end <= span[1]):
        raise ApiError(
            404,
            f"Device {externalId!r} has no Delta or Aggregate read yet" + (" within your reservations" if span else ""),
        )
    answer: dict[str, Any] = {"enddate": domain.iso(last.end), "value": last.value_wh, "readType": last.ongoing_type}
    if last.ongoing_type == "Aggregate":
        answer["meterTotal"] = last.meter_total_wh
    return answer


# -- bulk read import (CSV) ------------------------------------------------------------------


def _job_rows_out(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {"row": r["row_number"], "status": "accepted" if r["accepted"] else "rejected", "reason": r["reason"],
         "batchId": str(r["batch_id"]) if r["batch_id"] else None}
        for r in rows
    ]  # fmt: skip


@router.post(
    "/api/meter-reads/bulk-upload",
    status_code=202,
    summary="Upload a CSV of reads (deviceExternalId,timezone,type,unit,value,startDate,endDate), processed in the background",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                },
            },
        }
    },
)
async def upload_reads(
    request: Request,
    pool: Pool,
    runtime: Runtime,
    user: Principal = permission(MODULE, "Write"),
    organizationId: int | None = None,
    fileName: Annotated[str | None, Query(max_length=300)] = None,
) -> dict[str, Any]:
    organization_id = await _organization(pool, user, organizationId, "Developer")
    settings = runtime.settings
    # The CSV as the body (text/csv) or a form's file field (multipart/form-data), size-limited as it streams in.
    spooled = await uploads.spool(
        request.headers.get("content-type", ""), request.headers.get("content-length"), request.stream(),
        settings.import_max_bytes,  # type: ignore[attr-defined]
    )  # fmt: skip
    with spooled.file as file:
        raw = file.read()
    fileName = fileName or spooled.file_name  # noqa: N806
    try:
        content = raw.decode("utf-8")
        rows = imports.parse_csv(content)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "The file is not UTF-8 text") from exc
    except ValueError as exc:
        raise ApiError(400, f"Not a reads CSV: {exc}") from exc
    if not rows:
        raise ApiError(400, "The file has a header but no rows")
    async with pool.acquire() as conn:
        job = await store.create_job(
            conn, job_id=uuid.uuid4(), organization_id=organization_id, user_id=user.user_id,
            file_name=fileName, content=content, rows_total=len(rows),
        )  # fmt: skip
    request.app.state.import_worker.wake.set()
    return imports.job_out(job)


@router.get("/api/meter-reads/bulk-upload", summary="The organization's bulk read imports, newest first")
async def list_uploads(
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    organizationId: int | None = None,
    pagenumber: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> dict[str, Any]:
    organization_id = await _organization(pool, user, organizationId)
    async with pool.acquire() as conn:
        jobs = await store.list_jobs(conn, organization_id, limit, (pagenumber - 1) * limit)
    return {"jobs": [imports.job_out(j) for j in jobs], "currentPageNumber": pagenumber}


@router.get("/api/meter-reads/bulk-upload/{jobId}", summary="Progress of a bulk read import and its per-row results")
async def get_upload(
    jobId: uuid.UUID,
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    organizationId: int | None = None,
    status: Literal["accepted", "rejected"] | None = None,
    pagenumber: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> dict[str, Any]:
    organization_id = await _organization(pool, user, organizationId)
    async with pool.acquire() as conn:
        job = await store.get_job(conn, jobId, with_content=False)
        if job is None or job["organization_id"] != organization_id:
            raise ApiError(404, f"No bulk read import {jobId} in organization {organization_id}")
        rows = await store.job_rows(
            conn, jobId, None if status is None else status == "accepted", limit, (pagenumber - 1) * limit
        )
    return {**imports.job_out(job), "rows": _job_rows_out(rows), "currentPageNumber": pagenumber}
