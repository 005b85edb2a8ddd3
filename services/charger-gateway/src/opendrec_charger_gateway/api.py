"""Charger links: which Kazam charger feeds which of the caller organization's devices (an API
user's: the devices of its Developer organizations, named with organizationId)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from opendrec_kit import ApiError, Principal, UoW, permission
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query
from opendrec_kit.runtime import Owners

from . import services
from .credentials import TokenCipher
from .kazam import KazamAccess

MODULE = "DEVICE_MANAGEMENT_CRUDL"
CHARGER_ID = r"^[A-Za-z0-9_.:-]+$"  # Kazam device ids ("3654e5"); it also appears in URL paths

router = APIRouter(prefix="/api", tags=["chargers"])
Reading = Annotated[Acting, acting_for(MODULE, "Read")]
Paging = Annotated[Page, Depends(page_query(default_limit=100, max_limit=500, what="charger links"))]
TxnPaging = Annotated[Page, Depends(page_query(default_limit=100, max_limit=500, what="transactions"))]


class ChargerLinkIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    chargerId: str = Field(
        min_length=1, max_length=64, pattern=CHARGER_ID, description="Kazam device_id, or the OCPP chargePointId"
    )
    externalId: str = Field(min_length=1, max_length=200, description="externalId of one of your devices")
    organizationId: int | None = Field(
        None, ge=1, le=MAX_ID, description="API users (required) and admins: the Developer organization of the device"
    )
    type: Literal["kazam", "ocpp"] = Field(
        "kazam", description="kazam: a Kazam charger (polled); ocpp: an OCPP 1.6J charge point connecting to /ocpp"
    )


@router.post("/charger", status_code=201)
async def link_charger(
    body: ChargerLinkIn, uow: UoW, owners: Owners, request: Request, user: Principal = permission(MODULE, "Write")
) -> dict[str, Any]:
    return await services.link_charger(
        uow,
        owners,
        kazam_access(request),
        token_cipher(request),
        user,
        body.chargerId,
        body.externalId,
        body.organizationId,
        body.type,
    )


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


# ---------------------------------------------------------------- Kazam credentials, charger state


def kazam_access(request: Request) -> KazamAccess:
    access = getattr(request.app.state, "kazam", None)
    if access is None:
        raise ApiError(503, "Kazam access is starting")
    return access


def token_cipher(request: Request) -> TokenCipher:
    cipher: TokenCipher = request.app.state.kazam_cipher
    return cipher


Access = Annotated[KazamAccess, Depends(kazam_access)]
Cipher = Annotated[TokenCipher, Depends(token_cipher)]
OrganizationQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
ChargerPath = Annotated[str, Path(max_length=64, pattern=CHARGER_ID)]


class KazamCredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    token: str = Field(min_length=8, max_length=4096, description="the organization's Kazam API bearer token")
    baseUrl: HttpUrl | None = Field(None, description="the Kazam platform API (default: the service's KAZAM_URL)")
    organizationId: int | None = Field(None, ge=1, le=MAX_ID, description="API users and admins: the organization")


@router.put("/charger/kazam/credentials")
async def register_kazam_credentials(
    body: KazamCredentialsIn, uow: UoW, cipher: Cipher, user: Principal = permission(MODULE, "Write")
) -> dict[str, Any]:
    """Register or replace the organization's Kazam credentials (stored encrypted; the token is never answered)."""
    base_url = str(body.baseUrl).rstrip("/") if body.baseUrl else None
    return await services.register_credentials(uow, cipher, user, body.organizationId, body.token, base_url)


@router.get("/charger/kazam/credentials")
async def kazam_credentials(
    uow: UoW, organizationId: OrganizationQuery = None, user: Principal = permission(MODULE, "Read")
) -> dict[str, Any]:
    return await services.credentials(uow, user, organizationId)


@router.delete("/charger/kazam/credentials", status_code=204)
async def delete_kazam_credentials(
    uow: UoW, organizationId: OrganizationQuery = None, user: Principal = permission(MODULE, "Delete")
) -> Response:
    await services.delete_credentials(uow, user, organizationId)
    return Response(status_code=204)


@router.get("/charger/{chargerId}/state")
async def charger_state(
    uow: UoW, access: Access, cipher: Cipher, chargerId: ChargerPath, acting: Reading
) -> dict[str, Any]:
    return await services.charger_state(uow, access, cipher, acting.user, chargerId, acting.organization_id)


@router.get("/charger/{chargerId}/uptime")
async def charger_uptime(
    uow: UoW,
    access: Access,
    cipher: Cipher,
    chargerId: ChargerPath,
    acting: Reading,
    from_: Annotated[date, Query(alias="from", description="first IST day (YYYY-MM-DD)")],
    to: Annotated[date, Query(description="last IST day (YYYY-MM-DD), included")],
) -> dict[str, Any]:
    return await services.charger_uptime(uow, access, cipher, acting.user, chargerId, acting.organization_id, from_, to)


@router.get("/charger/{chargerId}/transactions")
async def charger_transactions(
    uow: UoW, response: Response, chargerId: ChargerPath, acting: Reading, page: TxnPaging
) -> list[dict[str, Any]]:
    """The charger's Kazam transactions, newest first: turned into reads, skipped (and why), refused by readings."""
    rows, total = await services.charger_transactions(uow, acting.user, chargerId, acting.organization_id, page)
    response.headers["X-Total-Count"] = str(total)
    return rows
