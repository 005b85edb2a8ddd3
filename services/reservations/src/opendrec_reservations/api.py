"""D-REC buyer reservations ("device groups") over HTTP: parse, authorize, call a use case (services.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from opendrec_kit import ApiError, Principal, UoW, permission
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query

from . import services
from .services import NewReservation

router = APIRouter(tags=["reservations"])
MODULE = "BUYER_RESERVATION_MANAGEMENT_CRUDL"
ReservationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The reservation (device group) id")]
Paging = Annotated[Page, Depends(page_query(default_limit=20, max_limit=100, what="items"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]


@router.post("/api/device-group", status_code=201, summary="Reserve devices (D-REC Create Reservation)")
async def create_device_group(
    body: NewReservation, uow: UoW, user: Principal = permission(MODULE, "Write")
) -> dict[str, Any]:
    return await services.create_reservation(uow, user, body, body.organizationId)


@router.post("/api/buyer-reservation", status_code=201, summary="Reserve devices (D-REC buyer-reservation path)")
async def create_buyer_reservation(
    body: NewReservation,
    uow: UoW,
    orgId: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="The buyer organization (API users: required)")
    ] = None,
    user: Principal = permission(MODULE, "Write"),
) -> dict[str, Any]:
    if orgId is not None and body.organizationId is not None and orgId != body.organizationId:
        raise ApiError(400, f"orgId {orgId} and body organizationId {body.organizationId} name different organizations")
    return await services.create_reservation(uow, user, body, orgId if orgId is not None else body.organizationId)


@router.get(
    "/api/buyer-reservation", summary="Reservations (D-REC Get Reservation; API users: of their buyer organizations)"
)
async def list_buyer_reservations(
    uow: UoW,
    acting: Reading,
    page: Paging,
    apiuserId: Annotated[uuid.UUID | None, Query(description="Admins: the API user whose reservations to list")] = None,
) -> dict[str, Any]:
    return await services.reservations(uow, acting.user, page, acting.organization_id, apiuserId)


@router.get("/api/device-group/my", summary="My reservations")
async def my_reservations(uow: UoW, acting: Reading, page: Paging) -> dict[str, Any]:
    return await services.reservations(uow, acting.user, page, acting.organization_id, mine=True)


@router.get("/api/buyer-reservation/{reservation_id}", summary="One reservation (D-REC Get Reservation By Id)")
async def one_buyer_reservation(reservation_id: ReservationId, uow: UoW, acting: Reading) -> dict[str, Any]:
    return await services.reservation(uow, acting.user, reservation_id, acting.organization_id, acting=True)


@router.get("/api/device-group/{reservation_id}", summary="One reservation")
async def one_reservation(reservation_id: ReservationId, uow: UoW, acting: Reading) -> dict[str, Any]:
    return await services.reservation(uow, acting.user, reservation_id, acting.organization_id, acting=False)


@router.post("/api/device-group/{reservation_id}/end", summary="End a reservation before its end date")
async def end_reservation(
    reservation_id: ReservationId, uow: UoW, acting: Acting = acting_for(MODULE, "Update")
) -> dict[str, Any]:
    """Its devices' output after now is no longer certified for it, and they can be reserved again from now.
    Emits reservation.ended (reason ended_by_buyer). A reservation ends once: 409 if it already ended."""
    return await services.end_reservation(uow, acting.user, reservation_id, acting.organization_id)
