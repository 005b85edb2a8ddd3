"""Migration 0021 (reads stored as runs, allocations per run of reads) on a database that certified before it: a
database at migration 0020 holding reads (one allocated and issued, one allocated and waiting, the others not yet
offered) is upgraded, and then certifies exactly what a database that never had the old tables certifies from the
same events: the same certificates, and every read's energy once."""

import asyncio
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from opendrec_certificates import handlers, services
from opendrec_kit import db
from opendrec_kit.testing import dispatch
from opendrec_kit.uow import UnitOfWork

from .helpers import MIGRATIONS, reads, registered, reservation

T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)
H = timedelta(hours=1)
LATER = T0 + 100 * H
DEVICE, RESERVATION, OWNER, BUYER = 810001, 810002, 810003, 810004
SETTLEMENT = handlers.Settlement(settle=timedelta(0), clock=lambda: LATER)


async def _certificates(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    rows = await pool.fetch(
        """SELECT c.kind, c.sequence, c.period_start, c.generation_start, c.generation_end, c.energy_wh,
                  c.allocated_wh, c.carry_in_wh, c.carry_out_wh
           FROM certificates c ORDER BY c.period_start, c.kind, c.sequence"""
    )
    return [tuple(r) for r in rows]


async def _reads(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    rows = await pool.fetch("SELECT start_at, end_at, energy_wh, certified_wh FROM reads ORDER BY start_at, end_at")
    return [tuple(r) for r in rows]


async def _deliver(pool: asyncpg.Pool, handler: Any, event: Any) -> None:
    await dispatch(pool, "certificates", partial(handler, settlement=SETTLEMENT), event)


async def _after(pool: asyncpg.Pool) -> None:
    """What both databases get after the upgrade point: the same reads again (a redelivery), two new ones, the sweep."""
    await _deliver(pool, handlers.on_read_ingested, reads(DEVICE, OWNER, [1000, 2500, 500], start=T0))
    await _deliver(pool, handlers.on_read_ingested, reads(DEVICE, OWNER, [1700, 300], start=T0 + 3 * H))
    await services.certify_due(UnitOfWork(pool, "certificates"), timedelta(0), LATER)


async def _upgraded(postgres_url: str, tmp: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """A database at 0020 as the old code left it: the reservation (hourly, 10:00 to 20:00) and its device known,
    reads 10:00-11:00 (1,000 Wh, issued), 11:00-12:00 (2,500 Wh, allocated and waiting) and 12:00-13:00 (500 Wh, not
    offered yet); then upgraded, the events after it, the sweep."""
    old = tmp / "migrations-0020"
    old.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name < "0021":
            shutil.copy(path, old / path.name)
    url = await db.ensure_database(postgres_url, f"cert_upgrade_{uuid.uuid4().hex[:8]}")
    await db.migrate(url, old)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO devices (device_id, external_id, organization_id, country_code, state_at)
               VALUES ($1, $2, $3, 'IND', $4)""",
            DEVICE,
            f"ext-{DEVICE}",
            OWNER,
            T0 - H,
        )
        await conn.execute(
            """INSERT INTO reservations (reservation_id, uid, name, buyer_organization_id, reservation_start,
                                         reservation_end, frequency, target_capacity_wh, authority_to_exceed)
               VALUES ($1, $2, 'res', $3, $4, $5, 'hourly', NULL, true)""",
            RESERVATION,
            uuid.uuid4(),
            BUYER,
            T0,
            T0 + 10 * H,
        )
        await conn.execute("INSERT INTO reservation_devices VALUES ($1, $2)", RESERVATION, DEVICE)
        batch = uuid.uuid4()
        ids = [
            await conn.fetchval(
                """INSERT INTO reads (device_id, organization_id, start_at, end_at, energy_wh, certified_wh, batch_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                DEVICE,
                OWNER,
                T0 + i * H,
                T0 + (i + 1) * H,
                wh,
                certified,
                batch,
            )
            for i, (wh, certified) in enumerate([(1000, 1000), (2500, 2500), (500, 0)])
        ]
        # the first read's period issued (a certificate of 1 kWh), the second allocated and waiting
        round_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO issuance_rounds (id, reservation_id, country_code, kind, sequence, period_start, period_end,
                                            allocated_wh, carry_in_wh, issued_wh, carry_out_wh)
               VALUES ($1, $2, 'IND', 'period', 0, $3, $4, 1000, 0, 1000, 0)""",
            round_id,
            RESERVATION,
            T0,
            T0 + H,
        )
        await conn.execute(
            """INSERT INTO certificates (id, reservation_id, buyer_organization_id, generation_start, generation_end,
                                         energy_wh, country_code, kind, sequence, period_start, period_end,
                                         allocated_wh)
               VALUES ($1, $2, $3, $4, $5, 1000, 'IND', 'period', 0, $4, $5, 1000)""",
            round_id,
            RESERVATION,
            BUYER,
            T0,
            T0 + H,
        )
        await conn.execute(
            """INSERT INTO allocations (read_id, reservation_id, period_start, period_end, kind, device_id, start_at,
                                        end_at, energy_wh, round_id)
               VALUES ($1, $2, $3, $4, 'period', $5, $3, $4, $6, $7)""",
            ids[0],
            RESERVATION,
            T0,
            T0 + H,
            DEVICE,
            1000,
            round_id,
        )
        await conn.execute(
            """INSERT INTO allocations (read_id, reservation_id, period_start, period_end, kind, device_id, start_at,
                                        end_at, energy_wh)
               VALUES ($1, $2, $3, $4, 'period', $5, $3, $4, $6)""",
            ids[1],
            RESERVATION,
            T0 + H,
            T0 + 2 * H,
            DEVICE,
            2500,
        )
        await conn.execute("INSERT INTO device_locks (device_id, offered_until) VALUES ($1, $2)", DEVICE, T0 + 2 * H)
        before = await _reads_of(conn)
    finally:
        await conn.close()

    await db.migrate(url, MIGRATIONS)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        # the same reads, the same energy certified of each, read a row as before
        assert await _reads(pool) == before
        allocations = await pool.fetch(
            "SELECT start_at, end_at, energy_wh, round_id IS NULL AS waiting FROM allocations ORDER BY start_at"
        )
        assert [tuple(a) for a in allocations] == [(T0, T0 + H, 1000, False), (T0 + H, T0 + 2 * H, 2500, True)]
        await _after(pool)
        return await _certificates(pool), await _reads(pool)
    finally:
        await pool.close()


async def _reads_of(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await conn.fetch("SELECT start_at, end_at, energy_wh, certified_wh FROM reads ORDER BY start_at, end_at")
    return [tuple(r) for r in rows]


async def _fresh(postgres_url: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The same story on a database migrated to the end: the device, the reservation, the first read certified on
    its own (its period issued), then the events after the upgrade point and the sweep."""
    url = await db.ensure_database(postgres_url, f"cert_fresh_{uuid.uuid4().hex[:8]}")
    await db.migrate(url, MIGRATIONS)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        await _deliver(pool, handlers.on_device_registered, registered(DEVICE, OWNER))
        created = reservation(RESERVATION, DEVICE, BUYER, start=T0, end=T0 + 10 * H)
        await _deliver(pool, handlers.on_reservation_created, created)
        await _deliver(pool, handlers.on_read_ingested, reads(DEVICE, OWNER, [1000], start=T0))
        await _after(pool)
        return await _certificates(pool), await _reads(pool)
    finally:
        await pool.close()


def test_a_database_upgraded_from_0020_certifies_as_one_that_never_had_reads_a_row(postgres_url, tmp_path):
    upgraded_certificates, upgraded_reads = asyncio.run(_upgraded(postgres_url, tmp_path))
    fresh_certificates, fresh_reads = asyncio.run(_fresh(postgres_url))
    # every read certified whole, once
    assert [(s, e, wh, certified) for s, e, wh, certified in upgraded_reads] == [
        (T0 + i * H, T0 + (i + 1) * H, wh, wh) for i, wh in enumerate([1000, 2500, 500, 1700, 300])
    ]
    assert upgraded_reads == fresh_reads
    # the same certificates (the first one, issued before the upgrade, as the old code issued it)
    assert upgraded_certificates == fresh_certificates
    assert sum(c[5] for c in upgraded_certificates) == 6000
