"""SQL of the reservations service: one function per query."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from .domain import DeviceState, Window


async def lock_device_change(conn: asyncpg.Connection, device_id: int) -> None:
    """Registration and deletion of one device (two topics) are handled one after the other, so neither
    misses the other's uncommitted row: a deletion heard first is always seen by a late registration."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"reservations.device:{device_id}")


async def upsert_device(
    conn: asyncpg.Connection,
    device_id: int,
    external_id: str,
    organization_id: int,
    capacity_kw: float,
    country_code: str,
    onboarded_at: datetime,
) -> None:
    """A device registered after its deletion was heard is stored deleted (never revived)."""
    await conn.execute(
        """INSERT INTO devices (device_id, external_id, organization_id, capacity_kw, country_code, onboarded_at, deleted_at)
           VALUES ($1, $2, $3, $4, $5, $6, (SELECT deleted_at FROM deleted_devices WHERE device_id = $1))
           ON CONFLICT (device_id) DO UPDATE SET external_id = $2, organization_id = $3, capacity_kw = $4, country_code = $5""",
        device_id,
        external_id,
        organization_id,
        capacity_kw,
        country_code,
        onboarded_at,
    )


async def delete_device(conn: asyncpg.Connection, device_id: int, deleted_at: datetime) -> None:
    """Remember the deletion (even of a device not known yet) and mark the device: it can't be reserved any more.
    The UPDATE takes the device's row lock, so a reservation deciding on it meanwhile finishes first."""
    await conn.execute(
        "INSERT INTO deleted_devices (device_id, deleted_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        device_id,
        deleted_at,
    )
    await conn.execute(
        "UPDATE devices SET deleted_at = $2 WHERE device_id = $1 AND deleted_at IS NULL", device_id, deleted_at
    )


async def lock_devices(conn: asyncpg.Connection, device_ids: list[int]) -> dict[int, DeviceState]:
    """The devices with their reservation windows, row-locked so two reservations can't race for one device."""
    rows = await conn.fetch(
        "SELECT device_id, organization_id, deleted_at FROM devices WHERE device_id = ANY($1::bigint[]) ORDER BY device_id FOR UPDATE",
        device_ids,
    )
    # A reservation holds its devices up to its effective end: an early end frees the rest of the window
    # (LEAST skips a NULL ended_at); one ended before it started holds nothing.
    windows = await conn.fetch(
        """SELECT rd.device_id, r.reservation_start, LEAST(r.reservation_end, r.ended_at) AS reservation_end
           FROM reservation_devices rd JOIN reservations r ON r.id = rd.reservation_id
           WHERE rd.device_id = ANY($1::bigint[]) AND LEAST(r.reservation_end, r.ended_at) > r.reservation_start""",
        device_ids,
    )
    reserved: dict[int, list[Window]] = {}
    for w in windows:
        reserved.setdefault(w["device_id"], []).append(Window(w["reservation_start"], w["reservation_end"]))
    return {
        r["device_id"]: DeviceState(
            r["device_id"], r["organization_id"], reserved.get(r["device_id"], []), r["deleted_at"] is not None
        )
        for r in rows
    }


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
        uid,
        name,
        buyer_organization_id,
        buyer_user_id,
        window.start,
        window.end,
        frequency,
        target_capacity_wh,
        authority_to_exceed,
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


async def count_reservations(conn: asyncpg.Connection, organization_ids: list[int] | None) -> int:
    """How many reservations the buyer organizations hold (all of them for None)."""
    return await conn.fetchval(
        "SELECT count(*) FROM reservations WHERE $1::bigint[] IS NULL OR buyer_organization_id = ANY($1::bigint[])",
        organization_ids,
    )


async def reservations_page(
    conn: asyncpg.Connection, organization_ids: list[int] | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """Newest first, of the buyer organizations (all of them for None)."""
    return await conn.fetch(
        """SELECT r.*, (SELECT array_agg(rd.device_id ORDER BY rd.device_id) FROM reservation_devices rd
                        WHERE rd.reservation_id = r.id) AS device_ids
           FROM reservations r
           WHERE $1::bigint[] IS NULL OR r.buyer_organization_id = ANY($1::bigint[])
           ORDER BY r.id DESC LIMIT $2 OFFSET $3""",
        organization_ids,
        limit,
        offset,
    )


async def lock_reservation(conn: asyncpg.Connection, reservation_id: int) -> bool:
    """Row-lock one reservation so its end is decided once (the sweep skips it meanwhile); False when unknown."""
    return bool(await conn.fetchval("SELECT true FROM reservations WHERE id = $1 FOR UPDATE", reservation_id))


async def end_reservation(
    conn: asyncpg.Connection, reservation_id: int, ended_at: datetime, reason: str
) -> asyncpg.Record | None:
    """Mark it ended unless it already is (None then)."""
    return await conn.fetchrow(
        """UPDATE reservations SET ended_at = $2, end_reason = $3, status = 'Ended'
           WHERE id = $1 AND ended_at IS NULL RETURNING *""",
        reservation_id,
        ended_at,
        reason,
    )


async def end_expired(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """End up to `limit` reservations whose end date is at or before `now`, each exactly once: rows another
    transaction holds are skipped (it is ending them, or a buyer is), and `ended_at IS NULL` is checked again
    under the lock. Returns the ended ones with their devices."""
    return await conn.fetch(
        """WITH due AS (
               SELECT id FROM reservations WHERE ended_at IS NULL AND reservation_end <= $1
               ORDER BY reservation_end, id LIMIT $2 FOR UPDATE SKIP LOCKED
           ), ended AS (
               UPDATE reservations r SET ended_at = r.reservation_end, end_reason = 'expired', status = 'Ended'
               FROM due WHERE r.id = due.id AND r.ended_at IS NULL
               RETURNING r.*
           )
           SELECT e.*, (SELECT array_agg(rd.device_id ORDER BY rd.device_id) FROM reservation_devices rd
                        WHERE rd.reservation_id = e.id) AS device_ids
           FROM ended e
           ORDER BY e.id""",
        now,
        limit,
    )
