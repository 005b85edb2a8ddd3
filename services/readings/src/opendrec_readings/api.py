"""The D-REC reads module over HTTP: add meter reads, list them, the latest one.

Paths and fields follow the reference (`/api/meter-reads/...`, starttimestamp/endtimestamp/
value in, startdate/enddate/value out). Beyond it: up to 10,000 reads per request, judged as
a whole, a rejection listing every bad read, and Idempotency-Key.

An adapter: each route parses the request, is authorized by `permission(...)`, calls one use
case of services.py with an unopened unit of work (`UoW`) and answers.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Annotated, Any, Literal, NotRequired

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from opendrec_kit import ApiError, Principal, Runtime, UoW, permission, uploads
from opendrec_kit.auth import only_roles
from opendrec_kit.models import Instant
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query
from opendrec_kit.runtime import Owners

from . import services
from .domain import MAX_READS_PER_REQUEST, MAX_YEAR, MIN_YEAR, AccumulationType, ReadType, accumulation_problem

router = APIRouter(tags=["meter-reads"])

MODULE = "READS_MANAGEMENT_CRUDL"
MAX_PAGE_SIZE = 1000
# The reference's page size of reads is 5.
ReadsPage = Annotated[Page, Depends(page_query(5, MAX_PAGE_SIZE, "reads"))]
JobsPage = Annotated[Page, Depends(page_query(20, MAX_PAGE_SIZE, "jobs"))]
RowsPage = Annotated[Page, Depends(page_query(100, MAX_PAGE_SIZE, "rows"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
# The reference's FilterDTO of GET /api/meter-reads/{externalId}: up to 10,000 reads, skipping `offset`.
MAX_READS_LISTED = 10_000
MAX_OFFSET = 100_000_000


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
    organizationId: int | None = Field(default=None, ge=1, le=MAX_ID)  # a Postgres bigint, as every id


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The body schema for OpenAPI with its nested models inlined (the body is parsed by hand)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    schema["properties"]["reads"]["items"] = defs["ReadIn"]
    return schema


class _MeterReadsEnvelope(MeterReadsIn):
    # The body without judging each read: those are checked by _plain_reads, a column at a time.
    reads: list[Any] = Field(min_length=1, max_length=MAX_READS_PER_REQUEST)


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
            envelope = _MeterReadsEnvelope.model_validate(data)
        except ValidationError:
            pass  # the full model below says what is wrong
        else:
            reads = _plain_reads(envelope.reads)
            if reads is not None:
                return envelope, reads
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


# The body both add routes read by hand (parse_body), documented as if FastAPI read it.
_METER_READS_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(MeterReadsIn)}}}
}
_START, _END, _VALUE = itemgetter("starttimestamp"), itemgetter("endtimestamp"), itemgetter("value")
_TEXT = {str, type(None)}


@router.post(
    "/api/meter-reads/new/{externalId}",
    status_code=201,
    summary="Add meter reads (History, Delta or Aggregate) to a device, accepted or refused as a whole",
    openapi_extra=_METER_READS_BODY,
)
async def add_meter_reads(
    externalId: str,
    request: Request,
    runtime: Runtime,
    user: Principal = permission(MODULE, "Write"),
    idempotency_key: IdempotencyKey = None,
) -> Response:
    # The unit of work and the owners from the runtime, not two more dependencies: FastAPI solves each one for every
    # request (~12 us of CPU each, measured), and this route is what every D-REC meter calls (issue 16).
    body, reads = parse_body(await request.body())
    return await _add(runtime, user, externalId, body, reads, body.organizationId, idempotency_key)


async def _add(
    runtime: Runtime,
    user: Principal,
    external_id: str,
    body: MeterReadsIn,
    reads: RawReads,
    organization_id: int | None,
    idempotency_key: str | None,
) -> Response:
    starts, ends, values = reads
    result = await services.add_meter_reads(
        runtime.uow(),
        runtime.settings,
        runtime.owners,
        user,
        external_id,
        organization_id=organization_id,
        read_type=body.type,
        unit=body.unit,
        timezone=body.timezone,
        starts=starts,
        ends=ends,
        values=values,
        idempotency_key=idempotency_key,
        groups=getattr(runtime.app.state, "read_groups", None),
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return Response(
        orjson.dumps(result.summary.as_json()), status_code=201, headers=headers, media_type="application/json"
    )


ADMIN_ROLES = ("Admin", "DeviceOwner", "OrganizationAdmin")  # the reference's @Roles of addByAdmin


async def _admin_acting(
    acting: Acting = acting_for(MODULE, "Write"), user: Principal = only_roles(*ADMIN_ROLES)
) -> Acting:
    # Decided before the body is read: only an Admin names another organization here.
    if acting.organization_id not in (None, user.organization_id) and user.role != "Admin":
        raise ApiError(403, f"Only an Admin adds reads for another organization; you act for {user.organization_id}")
    return acting


@router.post(
    "/api/meter-reads/addByAdmin/new/{id}",
    status_code=201,
    summary="An Admin adds meter reads to a device of any organization (organizationId), by the rules of new/{id}",
    openapi_extra=_METER_READS_BODY,
)
async def add_meter_reads_by_admin(
    id: Annotated[str, Path(max_length=200, description="The device's external id")],
    request: Request,
    runtime: Runtime,
    acting: Acting = Depends(_admin_acting),
    idempotency_key: IdempotencyKey = None,
) -> Response:
    body, reads = parse_body(await request.body())
    named = {acting.organization_id, body.organizationId} - {None}
    if len(named) > 1:
        message = f"organizationId {acting.organization_id} (query) and {body.organizationId} (body) disagree: give one"
        raise ApiError(400, message, [{"field": "organizationId", "message": message, "where": "body"}])
    organization_id = named.pop() if named else None
    return await _add(runtime, acting.user, id, body, reads, organization_id, idempotency_key)


def _utc(moment: datetime | None) -> datetime | None:
    # A query timestamp without offset is read as UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get(
    "/api/meter-reads/new/{externalId}",
    summary="Meter reads of a device in a time window, a page at a time, or sums per period",
)
async def get_meter_reads(
    externalId: str,
    uow: UoW,
    runtime: Runtime,
    owners: Owners,
    acting: Reading,
    page: ReadsPage,
    start: Instant | None = None,
    end: Instant | None = None,
    readType: Literal["meterReads", "accumulated"] = "meterReads",
    granularity: services.Granularity | None = None,
    accumulationType: Annotated[
        AccumulationType | None,
        Query(description="The reference's sums: Monthly (per day of Month of Year) or Yearly (per month of Year)"),
    ] = None,
    Month: Annotated[int | None, Query(ge=1, le=12, description="1–12, with accumulationType=Monthly")] = None,
    Year: Annotated[int | None, Query(ge=MIN_YEAR, le=MAX_YEAR, description="with accumulationType")] = None,
) -> dict[str, Any]:
    start, end = _window(start, end)
    if problem := accumulation_problem(accumulationType, Month, Year):
        parameter, message = problem
        raise ApiError(400, message, [{"field": parameter, "message": message, "where": "query"}])
    if accumulationType is not None:
        if readType != "accumulated" or granularity is not None:
            message = "accumulationType goes with readType=accumulated, without granularity"
            raise ApiError(400, message, [{"field": "accumulationType", "message": message, "where": "query"}])
        assert Year is not None  # accumulation_problem said so
        return await services.accumulated_calendar(
            uow,
            runtime.settings,
            owners,
            acting.user,
            acting.organization_id,
            externalId,
            accumulationType,
            Year,
            Month,
            start,
            end,
        )
    if readType == "accumulated":
        if granularity is None:
            message = "readType=accumulated needs granularity: hour, day, month or year"
            raise ApiError(400, message, [{"field": "granularity", "message": message, "where": "query"}])
        return await services.accumulated(
            uow, runtime.settings, owners, acting.user, acting.organization_id, externalId, granularity, start, end
        )
    return await services.meter_reads(
        uow, runtime.settings, owners, acting.user, acting.organization_id, externalId, start, end, page
    )


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise ApiError(
            400, "start must be before end" if start > end else "The given start and end timestamps are the same"
        )
    return start, end


@router.get(
    "/api/meter-reads/latestread/{externalId}", summary="The latest ongoing (Delta or Aggregate) read of a device"
)
async def get_latest_read(
    externalId: str, uow: UoW, runtime: Runtime, owners: Owners, acting: Reading
) -> dict[str, Any]:
    return await services.latest_read(uow, runtime.settings, owners, acting.user, acting.organization_id, externalId)


# -- bulk read import (CSV) ------------------------------------------------------------------


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
    uow: UoW,
    runtime: Runtime,
    fileName: Annotated[str | None, Query(max_length=300)] = None,
    acting: Acting = acting_for(MODULE, "Write"),
) -> dict[str, Any]:
    # The CSV as the body (text/csv) or a form's file field (multipart/form-data), size-limited as it streams in.
    spooled = await uploads.spool(
        request.headers.get("content-type", ""),
        request.headers.get("content-length"),
        request.stream(),
        runtime.settings.import_max_bytes,
    )
    with spooled.file as file:  # parsed as it is staged, a batch of rows at a time
        job = await services.create_import_job(
            uow, acting.user, acting.organization_id, fileName or spooled.file_name, file
        )
    request.app.state.import_worker.wake()
    return job


@router.get("/api/meter-reads/bulk-upload", summary="The organization's bulk read imports, newest first")
async def list_uploads(uow: UoW, acting: Reading, page: JobsPage) -> dict[str, Any]:
    return await services.import_jobs(uow, acting.user, acting.organization_id, page)


@router.get("/api/meter-reads/bulk-upload/{jobId}", summary="Progress of a bulk read import and its per-row results")
async def get_upload(
    jobId: uuid.UUID,
    uow: UoW,
    acting: Reading,
    page: RowsPage,
    status: Literal["accepted", "rejected"] | None = None,
) -> dict[str, Any]:
    accepted = None if status is None else status == "accepted"
    return await services.import_job(uow, acting.user, acting.organization_id, jobId, accepted, page)


@router.get(
    "/api/meter-reads/time-zones",
    summary="The IANA time zone names (those containing timezoneSearchKeyword, in any case), as a read's timezone takes them",
)
async def get_time_zones(
    _: Principal = permission(MODULE, "Read"),
    timezoneSearchKeyword: Annotated[str | None, Query(max_length=100)] = None,
) -> list[str]:
    return services.time_zones(timezoneSearchKeyword)


# Last: its one-segment path would take /api/meter-reads/time-zones and /bulk-upload, registered above.
@router.get(
    "/api/meter-reads/{externalId}",
    summary="A device's reads as a time series: each interval's end (timestamp) and energy in Wh, oldest first",
)
async def get_reads(
    externalId: str,
    uow: UoW,
    runtime: Runtime,
    owners: Owners,
    acting: Reading,
    start: Annotated[Instant | None, Query(description="Reads ending after it (e.g. 2020-01-01T00:00:00Z)")] = None,
    end: Annotated[Instant | None, Query(description="Reads ending by it (e.g. 2020-01-01T00:00:00Z)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READS_LISTED, description="reads answered")] = MAX_READS_LISTED,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="reads skipped")] = 0,
) -> list[dict[str, Any]]:
    start, end = _window(start, end)
    return await services.reads_by_end(
        uow, runtime.settings, owners, acting.user, acting.organization_id, externalId, start, end, limit, offset
    )
