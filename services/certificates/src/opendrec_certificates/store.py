"""SQL of the certificates service: one function per query."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from .domain import Allocation, Read, Reservation, effective_end


async def upsert_device(
    conn: asyncpg.Connection,
    device_id: int,
    external_id: str,
    organization_id: int,
    country_code: str | None,
    timezone: str | None,
) -> None:
    await conn.execute(
        """INSERT INTO devices (device_id, external_id, organization_id, country_code, timezone)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (device_id) DO UPDATE SET external_id = $2, organization_id = $3, country_code = $4,
               timezone = $5""",
        device_id,
        external_id,
        organization_id,
        country_code,
        timezone,
    )


async def insert_reservation(
    conn: asyncpg.Connection,
    reservation_id: int,
    uid: uuid.UUID,
    name: str,
    buyer_organization_id: int,
    start: datetime,
    end: datetime,
    frequency: str,
    target_wh: int | None,
    authority_to_exceed: bool,
    expiry: datetime | None,
    device_ids: list[int],
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO reservations (reservation_id, uid, name, buyer_organization_id, reservation_start, reservation_end,
                                     frequency, target_capacity_wh, authority_to_exceed, reservation_expiry)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING true""",
        reservation_id,
        uid,
        name,
        buyer_organization_id,
        start,
        end,
        frequency,
        target_wh,
        authority_to_exceed,
        expiry,
    )
    if inserted:
        await conn.executemany(
            "INSERT INTO reservation_devices (reservation_id, device_id) VALUES ($1, $2)",
            [(reservation_id, d) for d in device_ids],
        )
    return bool(inserted)


async def record_reservation_end(
    conn: asyncpg.Connection, reservation_id: int, ended_at: datetime, reason: str
) -> None:
    """The first end of a reservation is the one (it ends once; a replayed event changes nothing)."""
    await conn.execute(
        "INSERT INTO reservation_ends (reservation_id, ended_at, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        reservation_id,
        ended_at,
        reason,
    )


async def record_reservation_change(
    conn: asyncpg.Connection,
    reservation_id: int,
    revision: int,
    name: str,
    end: datetime,
    target_wh: int | None,
    authority_to_exceed: bool,
    expiry: datetime | None,
) -> None:
    """Keep a reservation's latest terms (the highest revision; an older or replayed change is ignored)."""
    await conn.execute(
        """INSERT INTO reservation_changes (reservation_id, revision, name, reservation_end, target_capacity_wh,
                                            authority_to_exceed, reservation_expiry)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (reservation_id) DO UPDATE SET revision = $2, name = $3, reservation_end = $4,
               target_capacity_wh = $5, authority_to_exceed = $6, reservation_expiry = $7
           WHERE reservation_changes.revision < $2""",
        reservation_id,
        revision,
        name,
        end,
        target_wh,
        authority_to_exceed,
        expiry,
    )


async def apply_reservation_change(conn: asyncpg.Connection, reservation_id: int) -> list[int] | None:
    """Give the reservation (when known) its latest recorded terms, if newer than its own; its devices when
    they changed (None: nothing to apply)."""
    return await conn.fetchval(
        """WITH changed AS (
               UPDATE reservations r SET name = c.name, reservation_end = c.reservation_end,
                   target_capacity_wh = c.target_capacity_wh, authority_to_exceed = c.authority_to_exceed,
                   reservation_expiry = c.reservation_expiry, revision = c.revision
               FROM reservation_changes c
               WHERE c.reservation_id = r.reservation_id AND r.reservation_id = $1 AND c.revision > r.revision
               RETURNING r.reservation_id
           )
           SELECT array_agg(rd.device_id ORDER BY rd.device_id)
           FROM changed JOIN reservation_devices rd ON rd.reservation_id = changed.reservation_id""",
        reservation_id,
    )


async def insert_reads(
    conn: asyncpg.Connection,
    device_id: int,
    organization_id: int,
    batch_id: uuid.UUID,
    starts: list[datetime],
    ends: list[datetime],
    energies_wh: list[int],
) -> None:
    """The intervals of one read.ingested event, in one statement (arrays, not a statement per read);
    a read seen before is skipped."""
    await conn.execute(
        """INSERT INTO reads (device_id, organization_id, start_at, end_at, energy_wh, batch_id)
           SELECT $1, $2, r.start_at, r.end_at, r.energy_wh, $3
           FROM unnest($4::timestamptz[], $5::timestamptz[], $6::bigint[]) AS r (start_at, end_at, energy_wh)
           ON CONFLICT (device_id, start_at, end_at) DO NOTHING""",
        device_id,
        organization_id,
        batch_id,
        starts,
        ends,
        energies_wh,
    )


async def read_owner(conn: asyncpg.Connection, device_id: int) -> int | None:
    """The organization whose accepted reads these are (the device owner when the reads were accepted)."""
    return await conn.fetchval(
        "SELECT organization_id FROM reads WHERE device_id = $1 ORDER BY id DESC LIMIT 1", device_id
    )


async def lock_device(conn: asyncpg.Connection, device_id: int) -> None:
    """Certification of one device runs one transaction at a time (reads and reservations arrive on two topics)."""
    await conn.execute("SELECT pg_advisory_xact_lock(0x0DEC, $1::int)", device_id % 2_147_483_647)


async def lock_capped_reservations(conn: asyncpg.Connection, device_id: int) -> None:
    """Lock, in id order (no deadlock between devices), the device's reservations whose target may not be exceeded."""
    ids = await conn.fetch(
        """SELECT r.reservation_id FROM reservations r JOIN reservation_devices rd ON rd.reservation_id = r.reservation_id
           WHERE rd.device_id = $1 AND r.target_capacity_wh IS NOT NULL AND NOT r.authority_to_exceed
           ORDER BY r.reservation_id""",
        device_id,
    )
    for row in ids:
        await conn.execute("SELECT pg_advisory_xact_lock(0x0DED, $1::int)", row["reservation_id"] % 2_147_483_647)


async def try_lock_device(conn: asyncpg.Connection, device_id: int) -> bool:
    """lock_device, unless another transaction holds it (it is certifying the device right now)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock(0x0DEC, $1::int)", device_id % 2_147_483_647))


async def latest_unsettled_end(conn: asyncpg.Connection, device_id: int, settled_before: datetime) -> datetime | None:
    """The latest end of the device's reads with energy left that are not settled yet."""
    return await conn.fetchval(
        "SELECT max(end_at) FROM reads WHERE device_id = $1 AND end_at > $2 AND certified_wh < energy_wh",
        device_id,
        settled_before,
    )


async def set_certification_due(conn: asyncpg.Connection, device_id: int, due_at: datetime | None) -> None:
    """When the device is due for certification again (None: it is not). Caller holds the device lock."""
    if due_at is None:
        await conn.execute("DELETE FROM certification_due WHERE device_id = $1", device_id)
        return
    await conn.execute(
        "INSERT INTO certification_due (device_id, due_at) VALUES ($1, $2) ON CONFLICT (device_id) DO UPDATE SET due_at = $2",
        device_id,
        due_at,
    )


async def due_devices(conn: asyncpg.Connection, now: datetime, limit: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT device_id FROM certification_due WHERE due_at <= $1 ORDER BY due_at LIMIT $2", now, limit
    )
    return [r["device_id"] for r in rows]


async def is_certification_due(conn: asyncpg.Connection, device_id: int, now: datetime) -> bool:
    return bool(
        await conn.fetchval("SELECT 1 FROM certification_due WHERE device_id = $1 AND due_at <= $2", device_id, now)
    )


async def reservations_of_device(conn: asyncpg.Connection, device_id: int) -> list[Reservation]:
    rows = await conn.fetch(
        """SELECT r.reservation_id, r.reservation_start, r.reservation_end, r.frequency, r.target_capacity_wh,
                  r.authority_to_exceed, r.reservation_expiry, e.ended_at,
                  coalesce((SELECT sum(energy_wh) FROM certificates c WHERE c.reservation_id = r.reservation_id), 0) AS certified
           FROM reservations r JOIN reservation_devices rd ON rd.reservation_id = r.reservation_id
           LEFT JOIN reservation_ends e ON e.reservation_id = r.reservation_id
           WHERE rd.device_id = $1 ORDER BY r.reservation_start""",
        device_id,
    )
    return [
        Reservation(
            r["reservation_id"],
            r["reservation_start"],
            effective_end(r["reservation_end"], r["ended_at"]),
            r["frequency"],
            r["target_capacity_wh"],
            r["authority_to_exceed"],
            int(r["certified"]),
            r["reservation_expiry"],
        )
        for r in rows
    ]


async def uncertified_reads(
    conn: asyncpg.Connection,
    device_id: int,
    reservation_id: int,
    start: datetime,
    end: datetime,
    settled_before: datetime,
) -> list[Read]:
    """Settled reads of the device (ending at or before `settled_before`) meeting the window, with energy left,
    not yet certified for this reservation."""
    rows = await conn.fetch(
        """SELECT id, start_at, end_at, energy_wh, certified_wh FROM reads r
           WHERE device_id = $1 AND end_at >= $3 AND start_at <= $4 AND certified_wh < energy_wh AND end_at <= $5
             AND NOT EXISTS (SELECT 1 FROM certified_energy ce WHERE ce.read_id = r.id AND ce.reservation_id = $2)
           ORDER BY end_at, id""",
        device_id,
        reservation_id,
        start,
        end,
        settled_before,
    )
    return [Read(r["id"], r["start_at"], r["end_at"], r["energy_wh"], r["certified_wh"]) for r in rows]


async def insert_certificate(
    conn: asyncpg.Connection,
    certificate_id: uuid.UUID,
    reservation_id: int,
    device_id: int,
    owner_organization_id: int,
    buyer_organization_id: int,
    start: datetime,
    end: datetime,
    energy_wh: int,
    allocations: tuple[Allocation, ...],
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """INSERT INTO certificates (id, reservation_id, device_id, owner_organization_id, buyer_organization_id,
                                     generation_start, generation_end, energy_wh)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
        certificate_id,
        reservation_id,
        device_id,
        owner_organization_id,
        buyer_organization_id,
        start,
        end,
        energy_wh,
    )
    # A certificate covers up to thousands of reads: two statements over arrays, not two per read.
    read_ids, energies = [a.read_id for a in allocations], [a.energy_wh for a in allocations]
    await conn.execute(
        """INSERT INTO certified_energy (read_id, reservation_id, certificate_id, energy_wh)
           SELECT a.read_id, $1, $2, a.energy_wh FROM unnest($3::bigint[], $4::bigint[]) AS a (read_id, energy_wh)""",
        reservation_id,
        certificate_id,
        read_ids,
        energies,
    )
    # One allocation per read (certified_energy's key holds it), so each read is updated once.
    await conn.execute(
        """UPDATE reads SET certified_wh = reads.certified_wh + a.energy_wh
           FROM unnest($1::bigint[], $2::bigint[]) AS a (read_id, energy_wh) WHERE reads.id = a.read_id""",
        read_ids,
        energies,
    )
    return row


async def reservation(
    conn: asyncpg.Connection, *, reservation_id: int | None = None, uid: uuid.UUID | None = None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT r.*, array_agg(rd.device_id) AS device_ids,
                  (SELECT e.ended_at FROM reservation_ends e WHERE e.reservation_id = r.reservation_id) AS ended_at
           FROM reservations r
           JOIN reservation_devices rd ON rd.reservation_id = r.reservation_id
           WHERE ($1::bigint IS NULL OR r.reservation_id = $1) AND ($2::uuid IS NULL OR r.uid = $2)
           GROUP BY r.reservation_id""",
        reservation_id,
        uid,
    )


async def device_owner(conn: asyncpg.Connection, device_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT organization_id, external_id FROM devices WHERE device_id = $1", device_id)


async def certificates_of_reservation(
    conn: asyncpg.Connection, reservation_id: int, owner_organization_id: int | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """One page of the reservation's certificates (of one owner's devices, if given), by generation start."""
    return await conn.fetch(
        """SELECT c.*, d.external_id, d.country_code, d.timezone
           FROM certificates c LEFT JOIN devices d ON d.device_id = c.device_id
           WHERE c.reservation_id = $1 AND ($2::bigint IS NULL OR c.owner_organization_id = $2)
           ORDER BY c.generation_start, c.id LIMIT $3 OFFSET $4""",
        reservation_id,
        owner_organization_id,
        limit,
        offset,
    )


async def reservation_totals(
    conn: asyncpg.Connection, reservation_id: int, owner_organization_id: int | None
) -> asyncpg.Record:
    """How many certificates and Wh the whole view holds (not one page): `count`, `energy_wh`."""
    return await conn.fetchrow(
        """SELECT count(*) AS count, coalesce(sum(energy_wh), 0)::bigint AS energy_wh FROM certificates
           WHERE reservation_id = $1 AND ($2::bigint IS NULL OR owner_organization_id = $2)""",
        reservation_id,
        owner_organization_id,
    )


async def organization_certificates(
    conn: asyncpg.Connection,
    owner_organization_id: int | None,
    buyer_organization_id: int | None,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """One page of the certificates of an organization's devices (owner) or of its reservations (buyer), or all
    (neither given), newest reservation first, then by generation start; with the reservation's uid and name."""
    return await conn.fetch(
        """SELECT c.*, d.external_id, r.uid AS reservation_uid, r.name AS reservation_name
           FROM certificates c
           JOIN reservations r ON r.reservation_id = c.reservation_id
           LEFT JOIN devices d ON d.device_id = c.device_id
           WHERE ($1::bigint IS NULL OR c.owner_organization_id = $1) AND ($2::bigint IS NULL OR c.buyer_organization_id = $2)
           ORDER BY c.reservation_id DESC, c.generation_start, c.id LIMIT $3 OFFSET $4""",
        owner_organization_id,
        buyer_organization_id,
        limit,
        offset,
    )


async def organization_totals(
    conn: asyncpg.Connection, owner_organization_id: int | None, buyer_organization_id: int | None
) -> asyncpg.Record:
    """`count` and `energy_wh` of the whole view of organization_certificates."""
    return await conn.fetchrow(
        """SELECT count(*) AS count, coalesce(sum(energy_wh), 0)::bigint AS energy_wh FROM certificates
           WHERE ($1::bigint IS NULL OR owner_organization_id = $1) AND ($2::bigint IS NULL OR buyer_organization_id = $2)""",
        owner_organization_id,
        buyer_organization_id,
    )


async def owns_any_device(conn: asyncpg.Connection, device_ids: list[int], organization_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM devices WHERE device_id = ANY($1::bigint[]) AND organization_id = $2 LIMIT 1",
            device_ids,
            organization_id,
        )
        or await conn.fetchval(
            "SELECT true FROM reads WHERE device_id = ANY($1::bigint[]) AND organization_id = $2 LIMIT 1",
            device_ids,
            organization_id,
        )
    )
