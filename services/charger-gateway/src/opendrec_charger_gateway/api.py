"""Charger links: which Kazam charger feeds which of the caller organization's devices (an API
user's: the devices of its Developer organizations, named with organizationId)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from opendrec_kit import ApiError, Pool, Principal, permission
from opendrec_kit.organizations import acting_organization, visible_organizations

from . import store

MODULE = "DEVICE_MANAGEMENT_CRUDL"
ADMIN, API_USER = "Admin", "ApiUser"
CHARGER_ID = r"^[A-Za-z0-9_.:-]+$"  # Kazam device ids ("3654e5"); it also appears in URL paths

router = APIRouter(prefix="/api", tags=["chargers"])


class ChargerLinkIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    chargerId: str = Field(
        min_length=1, max_length=64, pattern=CHARGER_ID, description="Kazam device_id of the charger"
    )
    externalId: str = Field(min_length=1, max_length=200, description="externalId of one of your devices")
    organizationId: int | None = Field(
        None,
        ge=1,
        le=2**63 - 1,
        description="API users (required) and admins: the Developer organization of the device",
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "chargerId": row["charger_id"],
        "externalId": row["external_id"],
        "deviceId": row["device_id"],
        "organizationId": row["organization_id"],
        "linkedAt": _iso(row["linked_at"]),
        # transactions starting from here on (less the look-back) are what the next poll asks for
        "pollCursor": _iso(datetime.fromtimestamp(row["poll_cursor"], UTC)),
    }


async def _scope(pool: asyncpg.Pool, user: Principal, organization_id: int | None) -> list[int] | None:
    """Organizations whose links the caller reaches (None: all, for an admin naming none). An API
    user naming none reaches all its Developer organizations."""
    if user.role == ADMIN:
        return None if organization_id is None else [organization_id]
    kind = "Developer" if user.role == API_USER else None
    return await visible_organizations(pool, user, organization_id, organization_type=kind)


def organization_query() -> Any:
    # a new Query per parameter: FastAPI binds a parameter's name into its FieldInfo, so one cannot be shared
    return Query(None, ge=1, le=2**63 - 1, description="API users: one of your Developer organizations")


@router.post("/charger", status_code=201)
async def link_charger(
    body: ChargerLinkIn, pool: Pool, user: Principal = permission(MODULE, "Write")
) -> dict[str, Any]:
    if user.role == ADMIN and body.organizationId in (None, user.organization_id):
        raise ApiError(
            400, "organizationId is required: an admin links chargers for the Developer organization it names"
        )
    async with pool.acquire() as conn, conn.transaction():
        # the device's organization: an API user's named Developer organization, an admin's named one, one's own
        organization_id = await acting_organization(conn, user, body.organizationId, organization_type="Developer")
        device = await store.find_device(conn, organization_id, body.externalId)
        if device is None:
            # Unknown here, or another organization's: the same answer, so existence is not disclosed.
            raise ApiError(404, f"No device with externalId {body.externalId!r} in organization {organization_id}")
        try:
            row = await store.insert_link(conn, body.chargerId, device["device_id"], organization_id, user.user_id)
        except store.ChargerTaken:
            raise ApiError(409, f"Charger {body.chargerId!r} is already linked to a device") from None
    return to_json(row)


@router.get("/charger")
async def list_chargers(
    pool: Pool, organizationId: int | None = organization_query(), user: Principal = permission(MODULE, "Read")
) -> list[dict[str, Any]]:
    """The caller organization's charger links (an API user's organizations'; an admin sees all)."""
    scope = await _scope(pool, user, organizationId)
    async with pool.acquire() as conn:
        rows = await store.list_links(conn, scope)
    return [to_json(r) for r in rows]


@router.delete("/charger/{chargerId}", status_code=204)
async def unlink_charger(
    pool: Pool,
    chargerId: str = Path(max_length=64, pattern=CHARGER_ID),
    organizationId: int | None = organization_query(),
    user: Principal = permission(MODULE, "Delete"),
) -> Response:
    scope = await _scope(pool, user, organizationId)
    async with pool.acquire() as conn:
        deleted = await store.delete_link(conn, chargerId, scope)
    if not deleted:
        raise ApiError(404, f"No charger {chargerId!r} linked in your organization(s)")
    return Response(status_code=204)
