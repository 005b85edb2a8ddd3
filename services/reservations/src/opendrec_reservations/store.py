"""SQL of the reservations service: one function per query."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from .domain import DeviceState, ListingFilter, Window


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
    fuel_code: str,
    device_type_code: str,
    commissioning_date: datetime,
    since: datetime,
) -> None:
    """A device registered after its deletion was heard is stored deleted (never revived). A state that began
    before the one held (`since`: an older delivery, e.g. device.registered after the devices service's answer
    gave a later state) changes nothing."""
    await conn.execute(
        """INSERT INTO devices (device_id, external_id, organization_id, capacity_kw, country_code, onboarded_at,
                                fuel_code, device_type_code, commissioning_date, state_since, deleted_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                   (SELECT deleted_at FROM deleted_devices WHERE device_id = $1))
           ON CONFLICT (device_id) DO UPDATE SET external_id = $2, organization_id = $3, capacity_kw = $4,
                country_code = $5, fuel_code = $7, device_type_code = $8, commissioning_date = $9, state_since = $10
           WHERE devices.state_since IS NULL OR devices.state_since <= $10""",
        device_id,
        external_id,
        organization_id,
        capacity_kw,
        country_code,
        onboarded_at,
        fuel_code,
        device_type_code,
        commissioning_date,
        since,
    )


async def unknown_devices(conn: asyncpg.Connection, device_ids: list[int]) -> list[int]:
    """Those of `device_ids` this service has heard nothing of (neither registered nor deleted), ascending."""
    rows = await conn.fetch(
        """SELECT DISTINCT id FROM unnest($1::bigint[]) AS id
           WHERE NOT EXISTS (SELECT 1 FROM devices WHERE device_id = id)
             AND NOT EXISTS (SELECT 1 FROM deleted_devices WHERE device_id = id)
           ORDER BY id""",
        device_ids,
    )
    return [r["id"] for r in rows]


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


async def lock_devices(
    conn: asyncpg.Connection, device_ids: list[int], *, besides: int | None = None
) -> dict[int, DeviceState]:
    """The devices with their reservation windows (but reservation `besides`'s), row-locked so two
    reservations can't race for one device."""
    rows = await conn.fetch(
        """SELECT device_id, organization_id, deleted_at, capacity_kw FROM devices
           WHERE device_id = ANY($1::bigint[]) ORDER BY device_id FOR UPDATE""",
        device_ids,
    )
    # A reservation holds its devices up to its effective end: an early end frees the rest of the window
    # (LEAST skips a NULL ended_at); one ended before it started holds nothing.
    windows = await conn.fetch(
        """SELECT rd.device_id, r.reservation_start, LEAST(r.reservation_end, r.ended_at) AS reservation_end
           FROM reservation_devices rd JOIN reservations r ON r.id = rd.reservation_id
           WHERE rd.device_id = ANY($1::bigint[]) AND LEAST(r.reservation_end, r.ended_at) > r.reservation_start
             AND r.id IS DISTINCT FROM $2::bigint""",
        device_ids,
        besides,
    )
    reserved: dict[int, list[Window]] = {}
    for w in windows:
        reserved.setdefault(w["device_id"], []).append(Window(w["reservation_start"], w["reservation_end"]))
    return {
        r["device_id"]: DeviceState(
            r["device_id"],
            r["organization_id"],
            reserved.get(r["device_id"], []),
            r["deleted_at"] is not None,
            r["capacity_kw"],
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
    expiry: datetime,
    device_ids: list[int],
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO reservations (uid, name, buyer_organization_id, buyer_user_id, reservation_start, reservation_end,
                                     frequency, target_capacity_wh, authority_to_exceed, reservation_expiry)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
        uid,
        name,
        buyer_organization_id,
        buyer_user_id,
        window.start,
        window.end,
        frequency,
        target_capacity_wh,
        authority_to_exceed,
        expiry,
    )
    await conn.copy_records_to_table(
        "reservation_devices", records=[(row["id"], d) for d in device_ids], columns=["reservation_id", "device_id"]
    )
    return row


# A reservation with its devices and the attributes derived from them (a device registered before the
# attribute columns existed adds none).
_WITH_GROUP = """
    SELECT r.*, g.*
    FROM reservations r
    CROSS JOIN LATERAL (
        SELECT array_agg(rd.device_id ORDER BY rd.device_id) AS device_ids,
               coalesce(array_agg(DISTINCT d.country_code) FILTER (WHERE d.country_code IS NOT NULL), '{}') AS country_codes,
               coalesce(array_agg(DISTINCT d.fuel_code) FILTER (WHERE d.fuel_code IS NOT NULL), '{}') AS fuel_codes,
               coalesce(array_agg(DISTINCT d.device_type_code) FILTER (WHERE d.device_type_code IS NOT NULL), '{}')
                   AS device_type_codes,
               coalesce(sum(d.capacity_kw), 0) AS capacity_kw,
               coalesce(array_agg(d.commissioning_date) FILTER (WHERE d.commissioning_date IS NOT NULL), '{}')
                   AS commissioning_dates
        FROM reservation_devices rd JOIN devices d ON d.device_id = rd.device_id
        WHERE rd.reservation_id = r.id
    ) g"""


async def reservation(conn: asyncpg.Connection, reservation_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{_WITH_GROUP} WHERE r.id = $1", reservation_id)


async def reservation_by_uid(conn: asyncpg.Connection, uid: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{_WITH_GROUP} WHERE r.uid = $1", uid)


async def device_organizations(conn: asyncpg.Connection, reservation_id: int) -> list[int]:
    """The organizations owning the reservation's devices (as this service knows them)."""
    rows = await conn.fetch(
        """SELECT DISTINCT d.organization_id FROM reservation_devices rd JOIN devices d ON d.device_id = rd.device_id
           WHERE rd.reservation_id = $1 ORDER BY d.organization_id""",
        reservation_id,
    )
    return [r["organization_id"] for r in rows]


async def count_history_devices(conn: asyncpg.Connection, reservation_id: int) -> int:
    """How many of the reservation's devices were onboarded after its start (their output before is History)."""
    return await conn.fetchval(
        """SELECT count(*) FROM reservation_devices rd JOIN devices d ON d.device_id = rd.device_id
           JOIN reservations r ON r.id = rd.reservation_id
           WHERE rd.reservation_id = $1 AND d.onboarded_at > r.reservation_start""",
        reservation_id,
    )


async def history_devices(
    conn: asyncpg.Connection, reservation_id: int, limit: int, offset: int
) -> list[asyncpg.Record]:
    """Those devices (externalId, onboarded_at), by device id."""
    return await conn.fetch(
        """SELECT d.device_id, d.external_id, d.onboarded_at
           FROM reservation_devices rd JOIN devices d ON d.device_id = rd.device_id
           JOIN reservations r ON r.id = rd.reservation_id
           WHERE rd.reservation_id = $1 AND d.onboarded_at > r.reservation_start
           ORDER BY d.device_id LIMIT $2 OFFSET $3""",
        reservation_id,
        limit,
        offset,
    )


def _listing(organization_ids: list[int] | None, filters: ListingFilter, now: datetime) -> tuple[str, list[object]]:
    """The WHERE clause of a listing (over `reservations r`) and its arguments: the buyer organizations (all of
    them for None), then each filter given. A group's countries and fuels are its devices'."""
    args: list[object] = [organization_ids]
    conditions = ["($1::bigint[] IS NULL OR r.buyer_organization_id = ANY($1::bigint[]))"]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.name is not None:
        conditions.append(f"r.name ILIKE {arg(like_pattern(filters.name))} ESCAPE '\\'")
    for column, codes in (("country_code", filters.countries), ("fuel_code", filters.fuel_codes)):
        if codes:
            conditions.append(
                f"""ARRAY(SELECT d.{column} FROM reservation_devices rd JOIN devices d ON d.device_id = rd.device_id
                          WHERE rd.reservation_id = r.id AND d.{column} IS NOT NULL) @> {arg(list(codes))}::text[]"""
            )
    if filters.start is not None and filters.end is not None:
        start, end = arg(filters.start), arg(filters.end)
        conditions.append(
            f"r.reservation_start BETWEEN {start} AND {end} AND r.reservation_end BETWEEN {start} AND {end}"
        )
    if filters.active is not None:
        active = f"(r.ended_at IS NULL AND r.reservation_end > {arg(now)})"
        conditions.append(active if filters.active else f"NOT {active}")
    return " AND ".join(conditions), args


def like_pattern(text: str) -> str:
    """`text` anywhere, its own %, _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def count_reservations(
    conn: asyncpg.Connection, organization_ids: list[int] | None, filters: ListingFilter, now: datetime
) -> int:
    """How many reservations of the buyer organizations (all of them for None) the filters let through."""
    where, args = _listing(organization_ids, filters, now)
    return await conn.fetchval(f"SELECT count(*) FROM reservations r WHERE {where}", *args)


async def reservations_page(
    conn: asyncpg.Connection,
    organization_ids: list[int] | None,
    filters: ListingFilter,
    now: datetime,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """Newest first, of the buyer organizations (all of them for None), as the filters let through."""
    where, args = _listing(organization_ids, filters, now)
    n = len(args)
    return await conn.fetch(
        f"{_WITH_GROUP} WHERE {where} ORDER BY r.id DESC LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset
    )


_HOLDING = """
    FROM reservations r JOIN reservation_devices rd ON rd.reservation_id = r.id
    JOIN devices d ON d.device_id = rd.device_id
    WHERE d.organization_id = $1"""


async def count_reservations_holding_devices_of(conn: asyncpg.Connection, organization_id: int) -> int:
    total: int = await conn.fetchval(f"SELECT count(DISTINCT r.id) {_HOLDING}", organization_id)
    return total


async def reservations_holding_devices_of(
    conn: asyncpg.Connection, organization_id: int, limit: int, offset: int
) -> list[asyncpg.Record]:
    """Newest first: the reservations holding a device of the organization, with those of its devices they hold."""
    return await conn.fetch(
        f"""SELECT r.id, r.uid, r.name, r.reservation_start, r.reservation_end, r.frequency, r.ended_at, r.end_reason,
                   array_agg(d.device_id ORDER BY d.device_id) AS device_ids
            {_HOLDING} GROUP BY r.id ORDER BY r.id DESC LIMIT $2 OFFSET $3""",
        organization_id,
        limit,
        offset,
    )


async def delete_reservation(conn: asyncpg.Connection, reservation_id: int) -> None:
    """Remove it and its devices' claim (the caller holds the row lock)."""
    await conn.execute("DELETE FROM reservation_devices WHERE reservation_id = $1", reservation_id)
    await conn.execute("DELETE FROM reservations WHERE id = $1", reservation_id)


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


async def change_reservation(
    conn: asyncpg.Connection,
    reservation_id: int,
    *,
    name: str,
    end: datetime,
    target_capacity_wh: int | None,
    authority_to_exceed: bool,
    expiry: datetime | None,
    changed_at: datetime,
) -> None:
    """New terms, one revision more (the caller holds the row lock)."""
    await conn.execute(
        """UPDATE reservations SET name = $2, reservation_end = $3, target_capacity_wh = $4, authority_to_exceed = $5,
                                   reservation_expiry = $6, revision = revision + 1, changed_at = $7
           WHERE id = $1""",
        reservation_id,
        name,
        end,
        target_capacity_wh,
        authority_to_exceed,
        expiry,
        changed_at,
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
