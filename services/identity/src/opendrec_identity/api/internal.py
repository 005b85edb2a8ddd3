"""Routes for the other services, never routed by the gateway nor in the public document: read-your-writes
(opendrec_kit.owners). A service that does not know an organization yet asks here on its caller's behalf."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path

from opendrec_kit import CurrentPrincipal, UoW
from opendrec_kit.organizations import MAX_ID

from ..services import organizations

router = APIRouter(include_in_schema=False)


@router.get("/internal/organizations/{organization_id}")
async def organization_state(
    uow: UoW, principal: CurrentPrincipal, organization_id: int = Path(ge=1, le=MAX_ID)
) -> dict[str, Any]:
    """organization.registered as it was announced, for a caller who may manage the organization; else 404."""
    return await organizations.organization_state(uow, principal, organization_id)
