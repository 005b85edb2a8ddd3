"""SQL of the reservations service: one function per query."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from .domain import DeviceState, Window


async def upsert_device(
    conn: asyncpg.Connection, device_id: int, external_id: str, organization_id: int, capacity_kw: float, country_code: str, onboarded_at: datetime
) -> None:
    await conn.execute(
        """INSERT INTO devices (device_id, external_id, organization_id, capacity_kw, country_code, onboarded_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (device_id) DO UPDATE SET external_id = $2, organization_id = $3, capacity_kw = $4, country_code = $5""",
        device_id, external_id, organization_id, capacity_kw, country_code, onboarded_at,
    )


async def lock_devices(conn: asyncpg.Connection, device_ids: list[int]) -> dict[int, DeviceState]:
    """The devices with their active reservation windows, row-locked so two reservations can't race for one device."""
    rows = await conn.fetch(
        "SELECT device_id, organization_id FROM devices WHERE device_id = ANY($1::bigint[]) ORDER BY device_id FOR UPDATE",
        device_ids,
    )
    windows = await conn.fetch(
        """SELECT rd.device_id, r.reservation_start, r.reservation_end
           FROM reservation_devices rd JOIN reservations r ON r.id = rd.reservation_id
           WHERE rd.device_id = ANY($1::bigint[]) AND r.status = 'Active'""",
        device_ids,
    )
    reserved: dict[int, list[Window]] = {}
    for w in windows:
        reserved.setdefault(w["device_id"], []).append(Window(w["reservation_start"], w["reservation_end"]))
    return {r["device_id"]: DeviceState(r["device_id"], r["organization_id"], reserved.get(r["device_id"], [])) for r in rows}


async def insert_reservation(
    conn: asyncpg.Connection,
    *,
    uid: uuid.UUID,
    name: str,
    buyer_organization_id: int,
    buyer_user_id: int,
    window: Window,
    frequency: str,
    target_capacity_wh: int | None,
    authority_to_exceed: bool,
    device_ids: list[int],
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO reservations (uid, name, buyer_organization_id, buyer_user_id, reservation_start, reservation_end,
                                     frequency, target_capacity_wh, authority_to_exceed)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
        uid, name, buyer_organization_id, buyer_user_id, window.start, window.end, frequency, target_capacity_wh, authority_to_exceed,
    )
    await conn.copy_records_to_table(
        "reservation_devices", records=[(row["id"], d) for d in device_ids], columns=["reservation_id", "device_id"]
    )
    return row


async def reservation(conn: asyncpg.Connection, reservation_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT r.*, array_agg(rd.device_id ORDER BY rd.device_id) AS device_ids
           FROM reservations r JOIN reservation_devices rd ON rd.reservation_id = r.id
           WHERE r.id = $1 GROUP BY r.id""",
        reservation_id,
    )


async def reservations_of_buyer(conn: asyncpg.Connection, organization_id: int, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT r.*, array_agg(rd.device_id ORDER BY rd.device_id) AS device_ids, count(*) OVER () AS total
           FROM reservations r JOIN reservation_devices rd ON rd.reservation_id = r.id
           WHERE r.buyer_organization_id = $1 GROUP BY r.id ORDER BY r.id DESC LIMIT $2 OFFSET $3""",
        organization_id, limit, offset,
    )


async def count_reservations_of_buyer(conn: asyncpg.Connection, organization_id: int) -> int:
    return await conn.fetchval("SELECT count(*) FROM reservations WHERE buyer_organization_id = $1", organization_id)
