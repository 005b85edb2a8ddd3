"""D-REC buyer reservations ("device groups") over HTTP: parse, authorize, call a use case (services.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from opendrec_kit import ApiError, Principal, Runtime, UoW, permission
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query
from opendrec_kit.runtime import Owners

from . import services
from .services import EndReservationDate, NewReservation, ReservationChange, ReservationFilters

router = APIRouter(tags=["reservations"])
MODULE = "BUYER_RESERVATION_MANAGEMENT_CRUDL"
ReservationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The reservation (device group) id")]
Paging = Annotated[Page, Depends(page_query(default_limit=20, max_limit=100, what="items"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]
# A developer organization reads which reservations hold its devices: a device permission, not a reservation one.
DeviceReading = Annotated[Acting, acting_for("DEVICE_MANAGEMENT_CRUDL", "Read")]
Updating = Annotated[Acting, acting_for(MODULE, "Update")]
Deleting = Annotated[Acting, acting_for(MODULE, "Delete")]
Filters = Annotated[ReservationFilters, Query()]


@router.post("/api/device-group", status_code=201, summary="Reserve devices (D-REC Create Reservation)")
async def create_device_group(
    body: NewReservation, uow: UoW, runtime: Runtime, owners: Owners, user: Principal = permission(MODULE, "Write")
) -> dict[str, Any]:
    return await services.create_reservation(uow, runtime.settings, owners, user, body, body.organizationId)


@router.post("/api/buyer-reservation", status_code=201, summary="Reserve devices (D-REC buyer-reservation path)")
async def create_buyer_reservation(
    body: NewReservation,
    uow: UoW,
    runtime: Runtime,
    owners: Owners,
    orgId: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="The buyer organization (API users: required)")
    ] = None,
    user: Principal = permission(MODULE, "Write"),
) -> dict[str, Any]:
    if orgId is not None and body.organizationId is not None and orgId != body.organizationId:
        raise ApiError(400, f"orgId {orgId} and body organizationId {body.organizationId} name different organizations")
    organization_id = orgId if orgId is not None else body.organizationId
    return await services.create_reservation(uow, runtime.settings, owners, user, body, organization_id)


# The same list under D-REC's two names (`name` keeps each path's own operationId).
@router.get("/api/device-group", summary="Reservations (as GET /api/buyer-reservation)", name="list_device_groups")
@router.get(
    "/api/buyer-reservation", summary="Reservations (D-REC Get Reservation; API users: of their buyer organizations)"
)
async def list_buyer_reservations(
    uow: UoW,
    acting: Reading,
    page: Paging,
    filters: Filters,
    apiuserId: Annotated[uuid.UUID | None, Query(description="Admins: the API user whose reservations to list")] = None,
) -> dict[str, Any]:
    return await services.reservations(uow, acting.user, page, acting.organization_id, apiuserId, filters=filters)


# The buyer's own reservations under D-REC's two names (`name` keeps each path's own operationId).
@router.get(
    "/api/buyer-reservation/my", summary="My reservations (D-REC buyer-reservation path)", name="my_buyer_reservations"
)
@router.get("/api/device-group/my", summary="My reservations", name="my_reservations")
async def my_reservations(uow: UoW, acting: Reading, page: Paging, filters: Filters) -> dict[str, Any]:
    return await services.reservations(uow, acting.user, page, acting.organization_id, mine=True, filters=filters)


@router.get(
    "/api/buyer-reservation/current-information/{groupUid}",
    summary="Where an active reservation's certification stands (D-REC current information)",
)
async def current_information(
    groupUid: uuid.UUID, uow: UoW, acting: Reading, page: Annotated[Page, Depends(page_query(10, 100, "devices"))]
) -> dict[str, Any]:
    """History devices (onboarded after the reservation's start) 10 a page by default, and the certification
    period under way. 409 "Reservation expired" once the reservation ended."""
    return await services.current_information(uow, acting.user, groupUid, acting.organization_id, page)


@router.get(
    "/api/device-group/of-my-devices",
    summary="Reservations holding my organization's devices (OpenDREC: a developer's view)",
)
async def reservations_of_my_devices(uow: UoW, acting: DeviceReading, page: Paging) -> dict[str, Any]:
    """Each reservation that holds or held a device of the developer organization: its window, state and which of
    the organization's devices it holds (the other organizations' devices are not shown)."""
    return await services.reservations_holding_devices(uow, acting.user, acting.organization_id, page)


@router.get("/api/buyer-reservation/{reservation_id}", summary="One reservation (D-REC Get Reservation By Id)")
async def one_buyer_reservation(reservation_id: ReservationId, uow: UoW, acting: Reading) -> dict[str, Any]:
    return await services.reservation(uow, acting.user, reservation_id, acting.organization_id, acting=True)


@router.get("/api/device-group/{reservation_id}", summary="One reservation")
async def one_reservation(reservation_id: ReservationId, uow: UoW, acting: Reading) -> dict[str, Any]:
    return await services.reservation(uow, acting.user, reservation_id, acting.organization_id, acting=False)


@router.post("/api/device-group/{reservation_id}/end", summary="End a reservation before its end date")
async def end_reservation(reservation_id: ReservationId, uow: UoW, acting: Updating) -> dict[str, Any]:
    """Its devices' output after now is no longer certified for it, and they can be reserved again from now.
    Emits reservation.ended (reason ended_by_buyer). A reservation ends once: 409 if it already ended."""
    return await services.end_reservation(uow, acting.user, reservation_id, acting.organization_id)


@router.patch("/api/buyer-reservation/{reservation_id}", summary="Change a reservation (D-REC update device group)")
async def change_reservation(
    reservation_id: ReservationId, body: ReservationChange, uow: UoW, runtime: Runtime, acting: Updating
) -> dict[str, Any]:
    """Name, end date (not before the current certification period's start), target, authority to exceed,
    expiry; only those given change. Emits reservation.updated. 409 once the reservation ended."""
    return await services.change_reservation(
        uow, runtime.settings, acting.user, reservation_id, acting.organization_id, body
    )


@router.delete("/api/buyer-reservation/endreservation/{reservation_id}", summary="End a reservation now (D-REC)")
async def end_buyer_reservation(
    reservation_id: ReservationId,
    uow: UoW,
    acting: Updating,
    body: Annotated[EndReservationDate | None, Body()] = None,
) -> dict[str, Any]:
    """As POST /api/device-group/{id}/end. D-REC's body `{"endresavationdate": <its end date>}` confirms which
    reservation ends (400 when it is not its end date); without it, it ends now as well."""
    end_date = body.endresavationdate if body is not None else None
    return await services.end_reservation(uow, acting.user, reservation_id, acting.organization_id, end_date)


@router.delete(
    "/api/buyer-reservation/{reservation_id}", summary="Delete a reservation nothing was certified against (D-REC)"
)
async def delete_reservation(reservation_id: ReservationId, uow: UoW, acting: Deleting) -> dict[str, Any]:
    """Only before its window begins (or when it was ended before it began): nothing can be certified against it
    yet. 409 once it began: a registry keeps what it certified; end it instead
    (DELETE /api/buyer-reservation/endreservation/{id}). Emits reservation.ended unless it had ended."""
    return await services.delete_reservation(uow, acting.user, reservation_id, acting.organization_id)
