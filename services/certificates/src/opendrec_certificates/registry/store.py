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


def as_dict(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None
