"""Charger links: which Kazam charger feeds which of the caller organization's devices (an API
user's: the devices of its Developer organizations, named with organizationId)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from opendrec_kit import Principal, UoW, permission
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query
from opendrec_kit.runtime import Owners

from . import services

MODULE = "DEVICE_MANAGEMENT_CRUDL"
CHARGER_ID = r"^[A-Za-z0-9_.:-]+$"  # Kazam device ids ("3654e5"); it also appears in URL paths

router = APIRouter(prefix="/api", tags=["chargers"])
Reading = Annotated[Acting, acting_for(MODULE, "Read")]
Paging = Annotated[Page, Depends(page_query(default_limit=100, max_limit=500, what="charger links"))]


class ChargerLinkIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    chargerId: str = Field(
        min_length=1, max_length=64, pattern=CHARGER_ID, description="Kazam device_id of the charger"
    )
    externalId: str = Field(min_length=1, max_length=200, description="externalId of one of your devices")
    organizationId: int | None = Field(
        None, ge=1, le=MAX_ID, description="API users (required) and admins: the Developer organization of the device"
    )


@router.post("/charger", status_code=201)
async def link_charger(
    body: ChargerLinkIn, uow: UoW, owners: Owners, user: Principal = permission(MODULE, "Write")
) -> dict[str, Any]:
    return await services.link_charger(uow, owners, user, body.chargerId, body.externalId, body.organizationId)


@router.get("/charger")
async def list_chargers(uow: UoW, response: Response, acting: Reading, page: Paging) -> list[dict[str, Any]]:
    """The caller organization's charger links (an API user's organizations'; an admin sees all), a page at a
    time by charger id; the total is in the X-Total-Count header."""
    links, total = await services.list_links(uow, acting.user, acting.organization_id, page)
    response.headers["X-Total-Count"] = str(total)
    return links


@router.delete("/charger/{chargerId}", status_code=204)
async def unlink_charger(
    uow: UoW,
    chargerId: str = Path(max_length=64, pattern=CHARGER_ID),
    acting: Acting = acting_for(MODULE, "Delete"),
) -> Response:
    await services.unlink_charger(uow, acting.user, chargerId, acting.organization_id)
    return Response(status_code=204)
