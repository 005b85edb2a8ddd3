"""The D-REC reads module over HTTP: add meter reads, list them, the latest one.

Paths and fields follow the reference (`/api/meter-reads/...`, starttimestamp/endtimestamp/
value in, startdate/enddate/value out). Beyond it: up to 10,000 reads per request, judged as
a whole, a rejection listing every bad read, and Idempotency-Key.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opendrec_kit import ApiError, Pool, Principal, Runtime, permission

from . import domain, ingest, store
from .domain import MAX_READS_PER_REQUEST, ReadType

router = APIRouter(tags=["meter-reads"])

MODULE = "READS_MANAGEMENT_CRUDL"
DEFAULT_PAGE_SIZE = 5  # the reference's page size
MAX_PAGE_SIZE = 1000


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Strings, judged by the rules: blank means none, local times need `timezone`.
    starttimestamp: str | None = None
    endtimestamp: str | None = None
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


def parse_body(raw: bytes) -> MeterReadsIn:
    # Decimals straight from the JSON text: a float would already have lost digits.
    try:
        data = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from exc
    try:
        return MeterReadsIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


def _organization(user: Principal, requested: int | None) -> int:
    """The organization whose devices the caller acts on: its own (an admin may name another)."""
    if requested is None or requested == user.organization_id:
        return user.organization_id
    if user.role == "Admin":
        return requested
    raise ApiError(403, f"You may act only for your own organization ({user.organization_id}), not {requested}")


async def _device(conn: Any, organization_id: int, external_id: str) -> Any:
    device = await store.find_device(conn, organization_id, external_id.strip())
    if device is None:
        raise ApiError(404, f"No device with external id {external_id!r} in organization {organization_id}")
    return device


@router.post(
    "/api/meter-reads/new/{externalId}",
    status_code=201,
    summary="Add meter reads (History, Delta or Aggregate) to a device, accepted or refused as a whole",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(MeterReadsIn)}}}},
)
async def add_meter_reads(
    externalId: str,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    user: Principal = permission(MODULE, "Write"),
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    body = parse_body(await request.body())
    settings = runtime.settings
    tz = None
    if body.timezone and body.timezone.strip():
        try:
            tz = domain.resolve_timezone(body.timezone)
        except ValueError as exc:
            raise ApiError(400, str(exc), [{"field": "timezone", "message": str(exc), "where": "body"}]) from exc
    reads, parse_errors = domain.parse_reads(
        ((r.starttimestamp, r.endtimestamp, r.value) for r in body.reads), body.type, body.unit, tz
    )
    organization_id = _organization(user, body.organizationId)
    async with pool.acquire() as conn:
        device = await _device(conn, organization_id, externalId)
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
            raise ApiError(409, f"Idempotency-Key {idempotency_key!r} was already used for different reads of this device") from exc
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
    return Response(orjson.dumps(result.summary.as_json()), status_code=201, headers=headers, media_type="application/json")


def _utc(moment: datetime | None) -> datetime | None:
    # A query timestamp without offset is read as UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _read_out(row: Any) -> dict[str, Any]:
    return {"startdate": domain.iso(row["start_at"]), "enddate": domain.iso(row["end_at"]), "value": row["wh"]}


@router.get("/api/meter-reads/new/{externalId}", summary="Meter reads of a device in a time window, a page at a time")
async def get_meter_reads(
    externalId: str,
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    start: datetime | None = None,
    end: datetime | None = None,
    pagenumber: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    readType: Literal["meterReads"] = "meterReads",  # noqa: ARG001 - `accumulated` comes with the aggregation queries
    organizationId: int | None = None,
) -> dict[str, Any]:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise ApiError(400, "start must be before end" if start > end else "The given start and end timestamps are the same")
    organization_id = _organization(user, organizationId)
    async with pool.acquire() as conn:
        device = await _device(conn, organization_id, externalId)
        total = await store.count_intervals(conn, device["device_id"], start, end)
        rows = await store.list_intervals(conn, device["device_id"], start, end, limit, (pagenumber - 1) * limit)
    return {
        "historyread": [_read_out(r) for r in rows if r["read_type"] == "History"],
        "ongoing": [_read_out(r) for r in rows if r["read_type"] != "History"],
        "numberOfReads": total,
        "numberOfPages": math.ceil(total / limit),
        "currentPageNumber": pagenumber,
    }


@router.get("/api/meter-reads/latestread/{externalId}", summary="The latest ongoing (Delta or Aggregate) read of a device")
async def get_latest_read(
    externalId: str,
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    organizationId: int | None = None,
) -> dict[str, Any]:
    organization_id = _organization(user, organizationId)
    async with pool.acquire() as conn:
        device = await _device(conn, organization_id, externalId)
        last = await store.get_last_read(conn, device["device_id"])
    if last is None or last.end is None:
        raise ApiError(404, f"Device {externalId!r} has no Delta or Aggregate read yet")
    answer: dict[str, Any] = {"enddate": domain.iso(last.end), "value": last.value_wh, "readType": last.ongoing_type}
    if last.ongoing_type == "Aggregate":
        answer["meterTotal"] = last.meter_total_wh
    return answer
