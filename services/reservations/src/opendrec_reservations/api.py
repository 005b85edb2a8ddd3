"""D-REC buyer reservations ("device groups") over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from opendrec_contracts import ReservationCreated
from opendrec_kit import ApiError, Pool, Principal, outbox, permission
from opendrec_kit.organizations import acting_organization, api_user_organizations, visible_organizations
from opendrec_kit.paging import page_query

from . import domain, lifecycle, store

router = APIRouter(tags=["reservations"])
MODULE = "BUYER_RESERVATION_MANAGEMENT_CRUDL"
BUYER = "Buyer"
MAX_ID = 2**63 - 1
ReservationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The reservation (device group) id")]
OrganizationId = Annotated[
    int | None,
    Query(ge=1, le=MAX_ID, description="The buyer organization acted for: required for API users, else your own"),
]


class NewReservation(BaseModel):
    """The D-REC "Create Reservation" payload, field names unchanged."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    deviceIds: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=10_000)
    targetCapacityInMegaWattHour: Decimal | None = Field(default=None, gt=0, le=10**12)  # in Wh it must fit a bigint
    reservationStartDate: AwareDatetime
    reservationEndDate: AwareDatetime
    continueWithReservationIfOneOrMoreDevicesUnavailableForReservation: bool = False
    continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration: bool = True
    authorityToExceed: bool = True
    frequency: Annotated[str, Field(description="hourly, daily, weekly, monthly or quarterly")]
    organizationId: int | None = Field(
        default=None, ge=1, le=MAX_ID
    )  # API users name the buyer organization they act for

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        if value.lower() not in domain.FREQUENCIES:
            raise ValueError(f"frequency must be one of {', '.join(domain.FREQUENCIES)}")
        return value.lower()

    @model_validator(mode="after")
    def _window(self) -> NewReservation:
        if self.reservationEndDate <= self.reservationStartDate:
            raise ValueError("reservationEndDate must be after reservationStartDate")
        return self


def _as_json(row, now: datetime) -> dict:
    target = row["target_capacity_wh"]
    state = domain.state_of(row["reservation_end"], row["ended_at"], row["end_reason"], now)
    return {
        "id": row["id"],
        "devicegroup_uid": str(row["uid"]),
        "name": row["name"],
        "organizationId": row["buyer_organization_id"],
        "buyerId": row["buyer_user_id"],
        "deviceIds": list(row["device_ids"]),
        "reservationStartDate": row["reservation_start"].isoformat(),
        "reservationEndDate": row["reservation_end"].isoformat(),
        "targetCapacityInMegaWattHour": float(Decimal(target) / domain.WH_PER_MWH) if target is not None else None,
        "authorityToExceed": row["authority_to_exceed"],
        "frequency": row["frequency"],
        "reservationActive": state.state == "active",
        "state": state.state,
        "endedAt": state.ended_at.isoformat() if state.ended_at else None,
        "endReason": state.end_reason,
        "createdAt": row["created_at"].isoformat(),
    }


Paging = Annotated[domain.Page, Depends(page_query(default_limit=20, max_limit=100, what="items"))]


async def _scope(
    conn: asyncpg.Connection, user: Principal, organization_id: int | None, *, acting: bool
) -> list[int] | None:
    """The buyer organizations whose reservations this request may touch (None: all, for an admin naming none).
    `acting`: the request acts for one organization, so an API user must name it (400 otherwise)."""
    if acting and user.role == "ApiUser":
        return [await acting_organization(conn, user, organization_id, organization_type=BUYER)]
    return await visible_organizations(conn, user, organization_id, organization_type=BUYER)


async def _visible_reservation(conn: asyncpg.Connection, reservation_id: int, organizations: list[int] | None):
    row = await store.reservation(conn, reservation_id)
    if row is None or (organizations is not None and row["buyer_organization_id"] not in organizations):
        raise ApiError(404, f"No reservation {reservation_id}")  # another's: as if absent, so ids leak nothing
    return row


async def _page(pool: asyncpg.Pool, organizations: list[int] | None, page: domain.Page) -> dict:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await store.count_reservations(conn, organizations)
        rows = await store.reservations_page(conn, organizations, page.limit, page.offset)
    now = datetime.now(UTC)
    return {
        "deviceGroups": [_as_json(r, now) for r in rows],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }


async def create(body: NewReservation, user: Principal, pool: asyncpg.Pool, organization_id: int | None) -> dict:
    refusal = domain.refuse_buyer(user.role, user.organization_id, user.organization_type, organization_id)
    if refusal:
        raise ApiError(400, refusal)
    async with pool.acquire() as conn:
        buyer_organization_id = await acting_organization(conn, user, organization_id, organization_type=BUYER)
    window = domain.Window(body.reservationStartDate, body.reservationEndDate)
    refusal = domain.refuse_window(window, datetime.now(UTC))
    if refusal:
        raise ApiError(400, refusal, [{"field": "reservationEndDate", "message": refusal}])
    async with pool.acquire() as conn, conn.transaction():
        known = await store.lock_devices(conn, body.deviceIds)
        selection = domain.select_devices(body.deviceIds, known, window)
        refused = [{"deviceId": d, "reason": why} for d, why in selection.refused.items()]
        if not selection.accepted or (
            refused and not body.continueWithReservationIfOneOrMoreDevicesUnavailableForReservation
        ):
            raise ApiError(400, "Some devices are not available for this reservation", refused)
        row = await store.insert_reservation(
            conn,
            uid=uuid.uuid4(),
            name=body.name,
            buyer_organization_id=buyer_organization_id,
            buyer_user_id=user.user_id,
            window=window,
            frequency=body.frequency,
            target_capacity_wh=domain.target_wh(body.targetCapacityInMegaWattHour),
            authority_to_exceed=body.authorityToExceed,
            device_ids=selection.accepted,
        )
        await outbox.add(
            conn,
            ReservationCreated(
                reservation_id=row["id"],
                reservation_uid=row["uid"],
                name=row["name"],
                buyer_organization_id=row["buyer_organization_id"],
                device_ids=selection.accepted,
                reservation_start=row["reservation_start"],
                reservation_end=row["reservation_end"],
                frequency=row["frequency"],
                target_capacity_wh=row["target_capacity_wh"],
                authority_to_exceed=row["authority_to_exceed"],
            ),
            lifecycle.SERVICE,
        )
    return {**_as_json({**row, "device_ids": selection.accepted}, datetime.now(UTC)), "unavailableDevices": refused}


@router.post("/api/device-group", status_code=201, summary="Reserve devices (D-REC Create Reservation)")
async def create_device_group(body: NewReservation, pool: Pool, user: Principal = permission(MODULE, "Write")) -> dict:
    return await create(body, user, pool, body.organizationId)


@router.post("/api/buyer-reservation", status_code=201, summary="Reserve devices (D-REC buyer-reservation path)")
async def create_buyer_reservation(
    body: NewReservation,
    pool: Pool,
    orgId: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="The buyer organization (API users: required)")
    ] = None,
    user: Principal = permission(MODULE, "Write"),
) -> dict:
    if orgId is not None and body.organizationId is not None and orgId != body.organizationId:
        raise ApiError(400, f"orgId {orgId} and body organizationId {body.organizationId} name different organizations")
    return await create(body, user, pool, orgId if orgId is not None else body.organizationId)


@router.get(
    "/api/buyer-reservation", summary="Reservations (D-REC Get Reservation; API users: of their buyer organizations)"
)
async def list_buyer_reservations(
    pool: Pool,
    page: Paging,
    organizationId: OrganizationId = None,
    apiuserId: Annotated[uuid.UUID | None, Query(description="Admins: the API user whose reservations to list")] = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    async with pool.acquire() as conn:
        if apiuserId is not None and user.role == "Admin":
            mine = await api_user_organizations(conn, str(apiuserId), BUYER)
            organizations = [o for o in mine if organizationId in (None, o)]
        elif apiuserId is not None and not (
            user.role == "ApiUser" and domain.same_api_user(user.api_user_id, apiuserId)
        ):
            raise ApiError(
                403, "apiuserId names another API user: only an admin may list another API user's reservations"
            )
        else:
            organizations = await _scope(conn, user, organizationId, acting=False)
    return await _page(pool, organizations, page)


@router.get("/api/device-group/my", summary="My reservations")
async def my_reservations(
    pool: Pool, page: Paging, organizationId: OrganizationId = None, user: Principal = permission(MODULE, "Read")
) -> dict:
    if user.role == "Admin" and organizationId is None:
        organizations: list[int] | None = [user.organization_id]  # "my": an admin's own, not everyone's
    else:
        async with pool.acquire() as conn:
            organizations = await _scope(conn, user, organizationId, acting=False)
    return await _page(pool, organizations, page)


@router.get("/api/buyer-reservation/{reservation_id}", summary="One reservation (D-REC Get Reservation By Id)")
async def one_buyer_reservation(
    reservation_id: ReservationId,
    pool: Pool,
    organizationId: OrganizationId = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    async with pool.acquire() as conn:
        row = await _visible_reservation(conn, reservation_id, await _scope(conn, user, organizationId, acting=True))
    return _as_json(row, datetime.now(UTC))


@router.get("/api/device-group/{reservation_id}", summary="One reservation")
async def one_reservation(
    reservation_id: ReservationId,
    pool: Pool,
    organizationId: OrganizationId = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    async with pool.acquire() as conn:
        row = await _visible_reservation(conn, reservation_id, await _scope(conn, user, organizationId, acting=False))
    return _as_json(row, datetime.now(UTC))


@router.post("/api/device-group/{reservation_id}/end", summary="End a reservation before its end date")
async def end_reservation(
    reservation_id: ReservationId,
    pool: Pool,
    organizationId: OrganizationId = None,
    user: Principal = permission(MODULE, "Update"),
) -> dict:
    """Its devices' output after now is no longer certified for it, and they can be reserved again from now.
    Emits reservation.ended (reason ended_by_buyer). A reservation ends once: 409 if it already ended."""
    async with pool.acquire() as conn:
        organizations = await _scope(conn, user, organizationId, acting=True)
        async with conn.transaction():
            # Locked first, then read: the sweep skips it meanwhile, and we decide on its latest state.
            await store.lock_reservation(conn, reservation_id)
            row = await _visible_reservation(conn, reservation_id, organizations)
            now = datetime.now(UTC)
            refusal = domain.refuse_end(reservation_id, row["reservation_end"], row["ended_at"], row["end_reason"], now)
            if refusal:
                raise ApiError(409, refusal)
            ended = await store.end_reservation(conn, reservation_id, now, "ended_by_buyer")
            ended = {**ended, "device_ids": row["device_ids"]}
            await outbox.add(conn, lifecycle.ended_event(ended), lifecycle.SERVICE)
    return _as_json(ended, now)
