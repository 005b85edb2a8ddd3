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
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from opendrec_kit import ApiError, Principal, Runtime, UoW, permission, uploads
from opendrec_kit.organizations import Acting, acting_for
from opendrec_kit.paging import Page, page_query

from . import services
from .domain import MAX_READS_PER_REQUEST, ReadType

router = APIRouter(tags=["meter-reads"])

MODULE = "READS_MANAGEMENT_CRUDL"
MAX_PAGE_SIZE = 1000
# The reference's page size of reads is 5.
ReadsPage = Annotated[Page, Depends(page_query(5, MAX_PAGE_SIZE, "reads"))]
JobsPage = Annotated[Page, Depends(page_query(20, MAX_PAGE_SIZE, "jobs"))]
RowsPage = Annotated[Page, Depends(page_query(100, MAX_PAGE_SIZE, "rows"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]


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


_START, _END, _VALUE = itemgetter("starttimestamp"), itemgetter("endtimestamp"), itemgetter("value")
_TEXT = {str, type(None)}


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
    uow: UoW,
    runtime: Runtime,
    user: Principal = permission(MODULE, "Write"),
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    body, (starts, ends, values) = parse_body(await request.body())
    result = await services.add_meter_reads(
        uow,
        runtime.settings,
        user,
        externalId,
        organization_id=body.organizationId,
        read_type=body.type,
        unit=body.unit,
        timezone=body.timezone,
        starts=starts,
        ends=ends,
        values=values,
        idempotency_key=idempotency_key,
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


@router.get(
    "/api/meter-reads/new/{externalId}",
    summary="Meter reads of a device in a time window, a page at a time, or sums per period",
)
async def get_meter_reads(
    externalId: str,
    uow: UoW,
    acting: Reading,
    page: ReadsPage,
    start: datetime | None = None,
    end: datetime | None = None,
    readType: Literal["meterReads", "accumulated"] = "meterReads",
    granularity: services.Granularity | None = None,
) -> dict[str, Any]:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise ApiError(
            400, "start must be before end" if start > end else "The given start and end timestamps are the same"
        )
    if readType == "accumulated":
        if granularity is None:
            message = "readType=accumulated needs granularity: hour, day, month or year"
            raise ApiError(400, message, [{"field": "granularity", "message": message, "where": "query"}])
        return await services.accumulated(uow, acting.user, acting.organization_id, externalId, granularity, start, end)
    return await services.meter_reads(uow, acting.user, acting.organization_id, externalId, start, end, page)


@router.get(
    "/api/meter-reads/latestread/{externalId}", summary="The latest ongoing (Delta or Aggregate) read of a device"
)
async def get_latest_read(externalId: str, uow: UoW, acting: Reading) -> dict[str, Any]:
    return await services.latest_read(uow, acting.user, acting.organization_id, externalId)


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
    with spooled.file as file:
        raw = file.read()
    job = await services.create_import_job(uow, acting.user, acting.organization_id, fileName or spooled.file_name, raw)
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
