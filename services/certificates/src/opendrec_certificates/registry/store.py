"""SQL of the registry: one function per query, parameters bound."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from .domain import Balances, Holding, SerialRange

HOLDING_COLUMNS = """h.id, h.certificate_id, h.device_id, h.organization_id, h.country_code, h.period_start,
    h.period_end, h.total_wh, h.on_sale_wh, h.on_retirement_wh, h.retired_wh, h.on_exporting_wh, h.exported_wh,
    h.on_auction_wh, h.trading_count, h.rec_item_type, h.created_at"""


def holding_of(row: asyncpg.Record, ranges: list[SerialRange] | None = None) -> Holding:
    return Holding(
        id=row["id"],
        certificate_id=row["certificate_id"],
        device_id=row["device_id"],
        organization_id=row["organization_id"],
        country_code=row["country_code"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        balances=Balances(
            total=row["total_wh"],
            on_sale=row["on_sale_wh"],
            on_retirement=row["on_retirement_wh"],
            retired=row["retired_wh"],
            on_exporting=row["on_exporting_wh"],
            exported=row["exported_wh"],
            on_auction=row["on_auction_wh"],
        ),
        trading_count=row["trading_count"],
        ranges=tuple(ranges or ()),
    )


async def take_serials(conn: asyncpg.Connection, device_id: int, energy_wh: int) -> int:
    """The first of the next `energy_wh` serials of the device (its counter row locked until commit)."""
    start: int = await conn.fetchval(
        """INSERT INTO registry_serials (device_id, next_serial) VALUES ($1, 1 + $2)
           ON CONFLICT (device_id) DO UPDATE SET next_serial = registry_serials.next_serial + $2
           RETURNING next_serial - $2""",
        device_id,
        energy_wh,
    )
    return start


async def take_serials_many(conn: asyncpg.Connection, needed: dict[int, int]) -> dict[int, int]:
    """take_serials for several devices at once (in device order, the order every issuance locks them in): the
    first of each device's next `needed[device]` serials."""
    devices = sorted(needed)
    rows = await conn.fetch(
        """INSERT INTO registry_serials AS s (device_id, next_serial)
           SELECT n.device_id, 1 + n.energy_wh FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY
               AS n (device_id, energy_wh, o) ORDER BY n.o
           ON CONFLICT (device_id) DO UPDATE SET next_serial = s.next_serial + EXCLUDED.next_serial - 1
           RETURNING s.device_id, s.next_serial""",
        devices,
        [needed[d] for d in devices],
    )
    return {r["device_id"]: r["next_serial"] - needed[r["device_id"]] for r in rows}


async def certificates_with_holdings(conn: asyncpg.Connection, certificate_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT DISTINCT certificate_id FROM holdings WHERE certificate_id = ANY($1::uuid[])", certificate_ids
    )
    return {r["certificate_id"] for r in rows}


async def insert_holdings(
    conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, uuid.UUID, int, int, str | None, datetime, datetime, int]]
) -> None:
    """Holdings (id, certificate, device, organization, country, period start, end, total Wh) in one statement."""
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        """INSERT INTO holdings (id, certificate_id, device_id, organization_id, country_code, period_start,
                                 period_end, total_wh)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[],
                                $7::timestamptz[], $8::bigint[])""",
        *(list(c) for c in columns),
    )


async def insert_ranges(conn: asyncpg.Connection, rows: list[tuple[int, uuid.UUID, SerialRange]]) -> None:
    """New ranges (device, holding, range) of no operation, in one statement."""
    await conn.execute(
        """INSERT INTO serial_ranges (device_id, serial_start, serial_end, holding_id, state, operation_id)
           SELECT d, s, e, h, st, NULL FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::uuid[], $5::text[])
               AS x (d, s, e, h, st)""",
        [d for d, _, _ in rows],
        [r.start for _, _, r in rows],
        [r.end for _, _, r in rows],
        [h for _, h, _ in rows],
        [r.state for _, _, r in rows],
    )


async def holdings_of_certificate(conn: asyncpg.Connection, certificate_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {HOLDING_COLUMNS} FROM holdings h WHERE h.certificate_id = $1 ORDER BY h.device_id, h.created_at",
        certificate_id,
    )


async def insert_holding(
    conn: asyncpg.Connection,
    holding_id: uuid.UUID,
    certificate_id: uuid.UUID,
    device_id: int,
    organization_id: int,
    country_code: str | None,
    period_start: datetime,
    period_end: datetime,
    total_wh: int,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO holdings AS h (id, certificate_id, device_id, organization_id, country_code, period_start,
                                       period_end, total_wh)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {HOLDING_COLUMNS}""",
        holding_id,
        certificate_id,
        device_id,
        organization_id,
        country_code,
        period_start,
        period_end,
        total_wh,
    )
    return row


async def insert_range(
    conn: asyncpg.Connection,
    device_id: int,
    holding_id: uuid.UUID,
    r: SerialRange,
    operation_id: uuid.UUID | None,
) -> None:
    await conn.execute(
        """INSERT INTO serial_ranges (device_id, serial_start, serial_end, holding_id, state, operation_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        device_id,
        r.start,
        r.end,
        holding_id,
        r.state,
        operation_id,
    )


async def ranges_of(conn: asyncpg.Connection, holding_id: uuid.UUID) -> list[SerialRange]:
    rows = await conn.fetch(
        "SELECT serial_start, serial_end, state FROM serial_ranges WHERE holding_id = $1 ORDER BY serial_start",
        holding_id,
    )
    return [SerialRange(r["serial_start"], r["serial_end"], r["state"]) for r in rows]


async def lock_part(conn: asyncpg.Connection, holding_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every holding of the certificate part `holding_id` belongs to, locked until commit; empty: no such holding.
    Operations on one part line up on a transaction-level advisory lock of the part first (class 0x0DEE), so that
    a holding a concurrent operation has just created for a receiver cannot be locked in another order. Two
    statements: the rows are read after the lock is held (a fresh snapshot)."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock(0x0DEE, hashtext(certificate_id::text || ':' || device_id::text))
           FROM holdings WHERE id = $1""",
        holding_id,
    )
    return await conn.fetch(
        f"""SELECT {HOLDING_COLUMNS} FROM holdings h
            WHERE (h.certificate_id, h.device_id) = (SELECT certificate_id, device_id FROM holdings WHERE id = $1)
            ORDER BY h.id FOR UPDATE""",
        holding_id,
    )


async def receiving_holding(
    conn: asyncpg.Connection, source_id: uuid.UUID, organization_id: int, new_id: uuid.UUID
) -> asyncpg.Record:
    """The receiver's holding of the same certificate part as `source_id` (created empty if it has none), locked."""
    await conn.execute(
        """INSERT INTO holdings (id, certificate_id, device_id, organization_id, country_code, period_start,
                                 period_end, rec_item_type)
           SELECT $3, certificate_id, device_id, $2, country_code, period_start, period_end, rec_item_type
           FROM holdings WHERE id = $1
           ON CONFLICT (certificate_id, device_id, organization_id) DO NOTHING""",
        source_id,
        organization_id,
        new_id,
    )
    row: asyncpg.Record = await conn.fetchrow(
        f"""SELECT {HOLDING_COLUMNS} FROM holdings h
            JOIN holdings s ON s.certificate_id = h.certificate_id AND s.device_id = h.device_id
            WHERE s.id = $1 AND h.organization_id = $2 FOR UPDATE OF h""",
        source_id,
        organization_id,
    )
    return row


async def change_balances(conn: asyncpg.Connection, holding_id: uuid.UUID, delta: Balances, trades: int = 0) -> None:
    """Add `delta` (signed Wh) to the holding's columns; the CHECKs refuse any going negative."""
    await conn.execute(
        """UPDATE holdings SET total_wh = total_wh + $2, on_sale_wh = on_sale_wh + $3,
               on_retirement_wh = on_retirement_wh + $4, retired_wh = retired_wh + $5,
               on_exporting_wh = on_exporting_wh + $6, exported_wh = exported_wh + $7,
               on_auction_wh = on_auction_wh + $8, trading_count = trading_count + $9, updated_at = now()
           WHERE id = $1""",
        holding_id,
        delta.total,
        delta.on_sale,
        delta.on_retirement,
        delta.retired,
        delta.on_exporting,
        delta.exported,
        delta.on_auction,
        trades,
    )


async def mark_range(
    conn: asyncpg.Connection,
    device_id: int,
    r: SerialRange,
    state: str,
    operation_id: uuid.UUID | None,
) -> None:
    """The range starting at r.start now ends at r.end (a cut keeps its first serials) and is in `state`."""
    await conn.execute(
        """UPDATE serial_ranges SET serial_end = $3, state = $4, operation_id = $5
           WHERE device_id = $1 AND serial_start = $2""",
        device_id,
        r.start,
        r.end,
        state,
        operation_id,
    )


async def ranges_of_operation(conn: asyncpg.Connection, operation_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT device_id, serial_start, serial_end, state, holding_id FROM serial_ranges
           WHERE operation_id = $1 ORDER BY serial_start""",
        operation_id,
    )


async def move_ranges(
    conn: asyncpg.Connection, operation_id: uuid.UUID, holding_id: uuid.UUID, state: str, keep_operation: bool
) -> None:
    """Every range of the operation into `holding_id` and `state` (the operation's mark kept or cleared)."""
    await conn.execute(
        """UPDATE serial_ranges SET holding_id = $2, state = $3,
               operation_id = CASE WHEN $4 THEN operation_id END
           WHERE operation_id = $1""",
        operation_id,
        holding_id,
        state,
        keep_operation,
    )


# -- transfers, retirements, locks ---------------------------------------------------------------------------

TRANSFER_COLUMNS = """id, holding_id, certificate_id, device_id, from_organization_id, to_organization_id, energy_wh,
    status, serial_number, ranges::text AS ranges, created_at, decided_at"""


async def insert_transfer(
    conn: asyncpg.Connection,
    transfer_id: uuid.UUID,
    holding: Holding,
    to_organization_id: int,
    energy_wh: int,
    status: str,
    serial_number: str,
    ranges: str,
    at: datetime,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO registry_transfers (id, holding_id, certificate_id, device_id, from_organization_id,
                to_organization_id, energy_wh, status, serial_number, ranges, created_at, decided_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11,
                    CASE WHEN $8 = 'direct' THEN $11::timestamptz END)
            RETURNING {TRANSFER_COLUMNS}""",
        transfer_id,
        holding.id,
        holding.certificate_id,
        holding.device_id,
        holding.organization_id,
        to_organization_id,
        energy_wh,
        status,
        serial_number,
        ranges,
        at,
    )
    return row


async def lock_transfer(conn: asyncpg.Connection, transfer_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {TRANSFER_COLUMNS} FROM registry_transfers WHERE id = $1 FOR UPDATE", transfer_id
    )
    return row


async def decide_transfer(
    conn: asyncpg.Connection, transfer_id: uuid.UUID, status: str, at: datetime
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE registry_transfers SET status = $2, decided_at = $3 WHERE id = $1 RETURNING {TRANSFER_COLUMNS}""",
        transfer_id,
        status,
        at,
    )
    return row


async def transfers_of(
    conn: asyncpg.Connection, organizations: list[int] | None, status: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    """Transfers from or to the organizations (None: all), newest first, and how many there are."""
    where = """($1::bigint[] IS NULL OR from_organization_id = ANY($1) OR to_organization_id = ANY($1))
               AND ($2::text IS NULL OR status = $2)"""
    rows = await conn.fetch(
        f"""SELECT {TRANSFER_COLUMNS} FROM registry_transfers WHERE {where}
            ORDER BY created_at DESC, id LIMIT $3 OFFSET $4""",
        organizations,
        status,
        limit,
        offset,
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM registry_transfers WHERE {where}", organizations, status)
    return rows, total


RETIREMENT_COLUMNS = """id, holding_id, certificate_id, device_id, organization_id, energy_wh, beneficiary, location,
    purpose, reporting_start, reporting_end, serial_number, ranges::text AS ranges, retired_at"""


async def insert_retirement(
    conn: asyncpg.Connection,
    retirement_id: uuid.UUID,
    holding: Holding,
    energy_wh: int,
    beneficiary: str,
    location: str | None,
    purpose: str,
    reporting_start: datetime,
    reporting_end: datetime,
    serial_number: str,
    ranges: str,
    at: datetime,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO registry_retirements (id, holding_id, certificate_id, device_id, organization_id, energy_wh,
                beneficiary, location, purpose, reporting_start, reporting_end, serial_number, ranges, retired_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14) RETURNING {RETIREMENT_COLUMNS}""",
        retirement_id,
        holding.id,
        holding.certificate_id,
        holding.device_id,
        holding.organization_id,
        energy_wh,
        beneficiary,
        location,
        purpose,
        reporting_start,
        reporting_end,
        serial_number,
        ranges,
        at,
    )
    return row


async def redemptions(conn: asyncpg.Connection, organizations: list[int] | None) -> list[asyncpg.Record]:
    """Claims of the organizations (None: all), oldest first, with the holding's country and the device's."""
    return await conn.fetch(
        """SELECT r.id, r.holding_id, r.certificate_id, r.device_id, r.organization_id, r.energy_wh, r.beneficiary,
                  r.location, r.purpose, r.reporting_start, r.reporting_end, r.serial_number, r.ranges::text AS ranges, r.retired_at,
                  coalesce(h.country_code, d.country_code) AS country_code, d.external_id
           FROM registry_retirements r JOIN holdings h ON h.id = r.holding_id
           LEFT JOIN devices d ON d.device_id = r.device_id
           WHERE $1::bigint[] IS NULL OR r.organization_id = ANY($1)
           ORDER BY r.retired_at, r.id""",
        organizations,
    )


LOCK_COLUMNS = """id, holding_id, certificate_id, device_id, organization_id, purpose, energy_wh, status, serial_number,
    ranges::text AS ranges, created_at, released_at"""


async def insert_lock(
    conn: asyncpg.Connection,
    lock_id: uuid.UUID,
    holding: Holding,
    purpose: str,
    energy_wh: int,
    serial_number: str,
    ranges: str,
    at: datetime,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO registry_locks (id, holding_id, certificate_id, device_id, organization_id, purpose, energy_wh,
                                        status, serial_number, ranges, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'locked', $8, $9::jsonb, $10) RETURNING {LOCK_COLUMNS}""",
        lock_id,
        holding.id,
        holding.certificate_id,
        holding.device_id,
        holding.organization_id,
        purpose,
        energy_wh,
        serial_number,
        ranges,
        at,
    )
    return row


async def lock_lock(conn: asyncpg.Connection, lock_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {LOCK_COLUMNS} FROM registry_locks WHERE id = $1 FOR UPDATE", lock_id
    )
    return row


async def end_lock(conn: asyncpg.Connection, lock_id: uuid.UUID, status: str, at: datetime) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"UPDATE registry_locks SET status = $2, released_at = $3 WHERE id = $1 RETURNING {LOCK_COLUMNS}",
        lock_id,
        status,
        at,
    )
    return row


# -- listings --------------------------------------------------------------------------------------------------


async def holdings_page(
    conn: asyncpg.Connection,
    organizations: list[int] | None,
    device_uuids: list[uuid.UUID] | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """Holdings with energy (Total > 0) of the organizations (None: all) and devices (by their uuid; None: all),
    oldest first, with their device's external id, country, uuid and fuel code; and how many there are."""
    where = """h.total_wh > 0 AND ($1::bigint[] IS NULL OR h.organization_id = ANY($1))
               AND ($2::uuid[] IS NULL OR d.device_uuid = ANY($2))"""
    rows = await conn.fetch(
        f"""SELECT {HOLDING_COLUMNS}, d.external_id, d.country_code AS device_country_code, d.device_uuid,
                   d.fuel_code, d.fuel_name, d.project_name
            FROM holdings h LEFT JOIN devices d ON d.device_id = h.device_id
            WHERE {where} ORDER BY h.created_at, h.id LIMIT $3 OFFSET $4""",
        organizations,
        device_uuids,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM holdings h LEFT JOIN devices d ON d.device_id = h.device_id WHERE {where}",
        organizations,
        device_uuids,
    )
    return rows, total


async def ranges_of_holdings(
    conn: asyncpg.Connection, holding_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[SerialRange]]:
    rows = await conn.fetch(
        """SELECT holding_id, serial_start, serial_end, state FROM serial_ranges
           WHERE holding_id = ANY($1) ORDER BY serial_start""",
        holding_ids,
    )
    out: dict[uuid.UUID, list[SerialRange]] = {h: [] for h in holding_ids}
    for r in rows:
        out[r["holding_id"]].append(SerialRange(r["serial_start"], r["serial_end"], r["state"]))
    return out


# -- idempotency -----------------------------------------------------------------------------------------------


async def claim_request(conn: asyncpg.Connection, user_id: int, key: str, request_hash: str) -> asyncpg.Record | None:
    """Claim the key for this request (None), or the request that holds it already (waiting for its commit when
    it is being made right now)."""
    inserted = await conn.fetchval(
        """INSERT INTO registry_requests (user_id, idempotency_key, request_hash, status_code, answer)
           VALUES ($1, $2, $3, 0, 'null') ON CONFLICT DO NOTHING RETURNING true""",
        user_id,
        key,
        request_hash,
    )
    if inserted:
        return None
    row: asyncpg.Record = await conn.fetchrow(
        """SELECT request_hash, status_code, answer FROM registry_requests
           WHERE user_id = $1 AND idempotency_key = $2""",
        user_id,
        key,
    )
    return row


async def answer_request(conn: asyncpg.Connection, user_id: int, key: str, status_code: int, answer: str) -> None:
    await conn.execute(
        """UPDATE registry_requests SET status_code = $3, answer = $4::jsonb
           WHERE user_id = $1 AND idempotency_key = $2""",
        user_id,
        key,
        status_code,
        answer,
    )


def as_dict(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None
