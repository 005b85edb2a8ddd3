"""D-REC buyer reservations ("device groups") over HTTP."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from opendrec_contracts import ReservationCreated
from opendrec_kit import ApiError, Pool, Principal, outbox, permission

from . import domain, store

router = APIRouter(tags=["reservations"])
MODULE = "BUYER_RESERVATION_MANAGEMENT_CRUDL"


class NewReservation(BaseModel):
    """The D-REC "Create Reservation" payload, field names unchanged."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    deviceIds: list[int] = Field(min_length=1, max_length=10_000)
    targetCapacityInMegaWattHour: Decimal | None = Field(default=None, gt=0)
    reservationStartDate: AwareDatetime
    reservationEndDate: AwareDatetime
    continueWithReservationIfOneOrMoreDevicesUnavailableForReservation: bool = False
    continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration: bool = True
    authorityToExceed: bool = True
    frequency: Annotated[str, Field(description="hourly, daily, weekly, monthly or quarterly")]
    organizationId: int | None = None  # API users name the buyer organization they act for

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


def _as_json(row) -> dict:  # noqa: ANN001
    target = row["target_capacity_wh"]
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
        "reservationActive": row["status"] == "Active",
        "createdAt": row["created_at"].isoformat(),
    }


def _buyer(user: Principal) -> None:
    if user.organization_type != "Buyer" and user.role != "Admin":
        raise ApiError(403, "Only Buyer organizations can reserve devices")


async def create(body: NewReservation, user: Principal, pool) -> dict:  # noqa: ANN001
    _buyer(user)
    if body.organizationId is not None and body.organizationId != user.organization_id:
        raise ApiError(403, "You can only reserve for your own organization")
    window = domain.Window(body.reservationStartDate, body.reservationEndDate)
    async with pool.acquire() as conn, conn.transaction():
        known = await store.lock_devices(conn, body.deviceIds)
        selection = domain.select_devices(body.deviceIds, known, window)
        refused = [{"deviceId": d, "reason": why} for d, why in selection.refused.items()]
        if not selection.accepted or (refused and not body.continueWithReservationIfOneOrMoreDevicesUnavailableForReservation):
            raise ApiError(400, "Some devices are not available for this reservation", refused)
        row = await store.insert_reservation(
            conn,
            uid=uuid.uuid4(),
            name=body.name,
            buyer_organization_id=user.organization_id,
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
            "reservations",
        )
    return {**_as_json({**row, "device_ids": selection.accepted}), "unavailableDevices": refused}


@router.post("/api/device-group", status_code=201, summary="Reserve devices (D-REC Create Reservation)")
async def create_device_group(
    body: NewReservation, pool: Pool, user: Principal = permission(MODULE, "Write")
) -> dict:
    return await create(body, user, pool)


@router.post("/api/buyer-reservation", status_code=201, summary="Reserve devices (D-REC buyer-reservation path)")
async def create_buyer_reservation(
    body: NewReservation, pool: Pool, orgId: int | None = None, user: Principal = permission(MODULE, "Write")
) -> dict:
    if orgId is not None and body.organizationId is None:
        body.organizationId = orgId
    return await create(body, user, pool)


@router.get("/api/device-group/my", summary="My reservations")
async def my_reservations(
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    pagenumber: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    async with pool.acquire() as conn:
        rows = await store.reservations_of_buyer(conn, user.organization_id, limit, (pagenumber - 1) * limit)
        total = rows[0]["total"] if rows else await store.count_reservations_of_buyer(conn, user.organization_id)
    return {
        "deviceGroups": [_as_json(r) for r in rows],
        "currentPage": pagenumber,
        "totalPages": -(-total // limit),
        "totalCount": total,
    }


@router.get("/api/device-group/{reservation_id}", summary="One reservation")
async def one_reservation(reservation_id: int, pool: Pool, user: Principal = permission(MODULE, "Read")) -> dict:
    async with pool.acquire() as conn:
        row = await store.reservation(conn, reservation_id)
    if row is None or (row["buyer_organization_id"] != user.organization_id and user.role != "Admin"):
        raise ApiError(404, f"No reservation {reservation_id}")
    return _as_json(row)
