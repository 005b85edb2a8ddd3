"""Charger links: which Kazam charger feeds which of the caller organization's devices."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Path, Response
from opendrec_kit import ApiError, Pool, Principal, permission
from pydantic import BaseModel, ConfigDict, Field

from . import store

MODULE = "DEVICE_MANAGEMENT_CRUDL"
CHARGER_ID = r"^[A-Za-z0-9_.:-]+$"  # Kazam device ids ("3654e5"); it also appears in URL paths

router = APIRouter(prefix="/api", tags=["chargers"])


class ChargerLinkIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    chargerId: str = Field(
        min_length=1, max_length=64, pattern=CHARGER_ID, description="Kazam device_id of the charger"
    )
    externalId: str = Field(min_length=1, max_length=200, description="externalId of one of your devices")


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


def _scope(user: Principal) -> int | None:
    return None if user.role == "Admin" else user.organization_id


@router.post("/charger", status_code=201)
async def link_charger(
    body: ChargerLinkIn, pool: Pool, user: Principal = permission(MODULE, "Write")
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        device = await store.find_device(conn, user.organization_id, body.externalId)
        if device is None:
            # Unknown here, or another organization's: the same answer, so existence is not disclosed.
            raise ApiError(404, f"No device with externalId {body.externalId!r} in your organization")
        try:
            row = await store.insert_link(conn, body.chargerId, device["device_id"], user.organization_id, user.user_id)
        except store.ChargerTaken:
            raise ApiError(409, f"Charger {body.chargerId!r} is already linked to a device") from None
    return to_json(row)


@router.get("/charger")
async def list_chargers(pool: Pool, user: Principal = permission(MODULE, "Read")) -> list[dict[str, Any]]:
    """The caller organization's charger links (an admin sees all)."""
    async with pool.acquire() as conn:
        rows = await store.list_links(conn, _scope(user))
    return [to_json(r) for r in rows]


@router.delete("/charger/{chargerId}", status_code=204)
async def unlink_charger(
    pool: Pool,
    chargerId: str = Path(max_length=64, pattern=CHARGER_ID),
    user: Principal = permission(MODULE, "Delete"),
) -> Response:
    async with pool.acquire() as conn:
        deleted = await store.delete_link(conn, chargerId, _scope(user))
    if not deleted:
        raise ApiError(404, f"No charger {chargerId!r} linked in your organization")
    return Response(status_code=204)
