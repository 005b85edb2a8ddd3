"""Routes for the other services, never routed by the gateway nor in the public document: read-your-writes
(opendrec_kit.owners). A service that does not know a reservation yet (reservation.created may still be on its
way) asks here on its caller's behalf, by the reservation's uid (certificate-log paths name it groupUid) or id."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from opendrec_kit import CurrentPrincipal, UoW

from . import services
from .api import ReservationId

router = APIRouter(include_in_schema=False)


@router.get("/internal/reservations/by-id/{reservation_id}")
async def reservation_state_by_id(
    reservation_id: ReservationId, uow: UoW, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The events making the reservation's current state, for a caller who may see it; else 404."""
    return await services.reservation_state(uow, principal, reservation_id)


@router.get("/internal/reservations/{uid}")
async def reservation_state(uid: uuid.UUID, uow: UoW, principal: CurrentPrincipal) -> dict[str, Any]:
    """As by-id, the reservation named by its uid (devicegroup_uid)."""
    return await services.reservation_state(uow, principal, uid)
