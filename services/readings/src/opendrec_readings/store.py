"""SQL of the readings service: one function per query, `conn` first, parameters bound."""

from __future__ import annotations

import struct
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import asyncpg
import orjson

from opendrec_contracts import DeviceRegistered, DeviceUpdated, ReservationCreated, ReservationUpdated

from .domain import Intervals, LastRead, micros

INTERVAL_COLUMNS = ("device_id", "start_at", "end_at", "wh", "read_type", "source", "batch_id")


# -- devices ----------------------------------------------------------------------


async def upsert_device(conn: asyncpg.Connection, e: DeviceRegistered | DeviceUpdated, state_at: datetime) -> bool:
    """Take the device's state as announced at `state_at`; an older state than the stored one is ignored.

    A timezone the event leaves out keeps the one learned from reads. False: nothing changed
    (an older state, or a device deleted already).
    """
    if await conn.fetchval("SELECT 1 FROM deleted_devices WHERE device_id = $1", e.device_id):
        return False
    status = await conn.execute(
        """
        INSERT INTO devices (device_id, device_uuid, external_id, organization_id, capacity_kw, country_code,
                             commissioning_date, onboarded_at, timezone, yield_value, state_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (device_id) DO UPDATE SET
            device_uuid = EXCLUDED.device_uuid, external_id = EXCLUDED.external_id,
            organization_id = EXCLUDED.organization_id, capacity_kw = EXCLUDED.capacity_kw,
            country_code = EXCLUDED.country_code, commissioning_date = EXCLUDED.commissioning_date,
            onboarded_at = EXCLUDED.onboarded_at,
            timezone = COALESCE(EXCLUDED.timezone, devices.timezone),
            yield_value = EXCLUDED.yield_value, state_at = EXCLUDED.state_at, updated_at = now()
        WHERE devices.state_at IS NULL OR devices.state_at <= EXCLUDED.state_at
        """,
        e.device_id,
        e.device_uuid,
        e.external_id,
        e.organization_id,
        e.capacity_kw,
        e.country_code,
        e.commissioning_date,
        e.onboarded_at,
        e.timezone,
        e.yield_value,
        state_at,
    )
    await conn.execute("INSERT INTO last_reads (device_id) VALUES ($1) ON CONFLICT DO NOTHING", e.device_id)
    return status != "INSERT 0 0"


async def delete_device(conn: asyncpg.Connection, device_id: int, deleted_at: datetime) -> None:
    """Remember the deletion (even of a device not known yet) and mark the device: it takes no new reads."""
    await conn.execute(
        "INSERT INTO deleted_devices (device_id, deleted_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        device_id,
        deleted_at,
    )
    await conn.execute(
        "UPDATE devices SET deleted_at = $2, updated_at = now() WHERE device_id = $1 AND deleted_at IS NULL",
        device_id,
        deleted_at,
    )


async def deleted_at(conn: asyncpg.Connection, device_id: int) -> datetime | None:
    """When the device was deleted (remembered even for a device never known here); None: it was not."""
    return await conn.fetchval("SELECT deleted_at FROM deleted_devices WHERE device_id = $1", device_id)


async def find_device(conn: asyncpg.Connection, organization_id: int, external_id: str) -> asyncpg.Record | None:
    """The organization's device by external id: the live one, else the latest deleted one (to say so)."""
    return await conn.fetchrow(
        """
        SELECT * FROM devices WHERE organization_id = $1 AND external_id = $2
        ORDER BY deleted_at IS NOT NULL, deleted_at DESC LIMIT 1
        """,
        organization_id,
        external_id,
    )


async def get_device(conn: asyncpg.Connection, device_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM devices WHERE device_id = $1", device_id)


async def lock_device_arrival(conn: asyncpg.Connection, device_id: int) -> None:
    """Until the transaction ends, no other transaction registers this device or parks a read for it."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"readings.device:{device_id}")


async def set_timezone_if_missing(conn: asyncpg.Connection, device_id: int, timezone: str) -> None:
    await conn.execute(
        "UPDATE devices SET timezone = $2, updated_at = now() WHERE device_id = $1 AND timezone IS NULL",
        device_id,
        timezone,
    )


# -- last read ----------------------------------------------------------------------


def _last_read(row: asyncpg.Record) -> LastRead:
    return LastRead(row["ongoing_type"], row["last_end"], row["last_value_wh"], row["meter_total_wh"])


async def lock_last_read(conn: asyncpg.Connection, device_id: int) -> LastRead:
    """The device's last read, locked until the transaction ends: batches of one device go one at a time."""
    row = await conn.fetchrow("SELECT * FROM last_reads WHERE device_id = $1 FOR UPDATE", device_id)
    if row is None:
        raise LookupError(f"device {device_id} has no last_reads row")
    return _last_read(row)


async def lock_for_batch(conn: asyncpg.Connection, device_id: int, fingerprint: bytes) -> asyncpg.Record | None:
    """What judging a batch of the device needs, in one round trip: its last read (`last_*` columns) locked until
    the transaction ends (batches of one device go one at a time), the device as stored now (read under that lock,
    so a device.updated/deleted handled meanwhile is seen), its country's Active configured yield
    (`configured_yield`), and the earliest batch of the same content (`previous_*`, NULL without one). None: the
    device has no last_reads row."""
    return await conn.fetchrow(
        """
        SELECT d.*, l.ongoing_type AS last_ongoing_type, l.last_end AS last_end, l.last_value_wh AS last_value_wh,
               l.meter_total_wh AS last_meter_total_wh,
               (SELECT y.yield_value FROM yield_configs y WHERE y.country_code = d.country_code AND y.status = 'Y')
                   AS configured_yield,
               p.batch_id AS previous_batch_id, p.read_type AS previous_read_type,
               p.read_count AS previous_read_count, p.total_wh AS previous_total_wh,
               p.first_at AS previous_first_at, p.last_at AS previous_last_at
        FROM last_reads l
        JOIN devices d ON d.device_id = l.device_id
        LEFT JOIN LATERAL (
            SELECT * FROM batches b WHERE b.device_id = l.device_id AND b.fingerprint = $2 ORDER BY b.created_at LIMIT 1
        ) p ON true
        WHERE l.device_id = $1
        FOR UPDATE OF l
        """,
        device_id,
        fingerprint,
    )


def locked_last_read(row: Mapping[str, Any]) -> LastRead:
    """The last read in a lock_for_batch row."""
    return LastRead(row["last_ongoing_type"], row["last_end"], row["last_value_wh"], row["last_meter_total_wh"])


async def get_last_read(conn: asyncpg.Connection, device_id: int) -> LastRead | None:
    row = await conn.fetchrow("SELECT * FROM last_reads WHERE device_id = $1", device_id)
    return _last_read(row) if row else None


async def save_last_read(conn: asyncpg.Connection, device_id: int, last: LastRead) -> None:
    await conn.execute(
        """
        UPDATE last_reads SET ongoing_type = $2, last_end = $3, last_value_wh = $4, meter_total_wh = $5,
                              updated_at = now()
        WHERE device_id = $1
        """,
        device_id,
        last.ongoing_type,
        last.end,
        last.value_wh,
        last.meter_total_wh,
    )


async def intervals_near(
    conn: asyncpg.Connection, device_id: int, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The device's stored intervals (any read type) that may overlap [start, end): those ending in (start, end]
    and the first ending after `end`. A device's intervals never overlap one another, so no other can; both
    parts walk the (device_id, end_at) key only where they look (not every later read of a busy meter)."""
    rows = await conn.fetch(
        """
        SELECT start_at, end_at FROM intervals WHERE device_id = $1 AND end_at > $2 AND end_at <= $3
        UNION ALL
        (SELECT start_at, end_at FROM intervals WHERE device_id = $1 AND end_at > $3 ORDER BY end_at LIMIT 1)
        """,
        device_id,
        start,
        end,
    )
    return [(r["start_at"], r["end_at"]) for r in rows]


# -- intervals ----------------------------------------------------------------------


async def copy_intervals(
    conn: asyncpg.Connection,
    device_id: int,
    read_type: str,
    source: str,
    batch_id: uuid.UUID,
    intervals: Intervals,
) -> None:
    payload = binary_copy(device_id, read_type, source, batch_id, intervals)

    async def chunks() -> AsyncIterator[bytes]:
        yield payload

    await conn.copy_to_table("intervals", source=chunks(), columns=INTERVAL_COLUMNS, format="binary")


# timestamptz in binary COPY: microseconds since 2000-01-01, i.e. the Unix-epoch µs less this.
_PG_EPOCH_US = micros(datetime(2000, 1, 1, tzinfo=UTC))
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"


def binary_copy(device_id: int, read_type: str, source: str, batch_id: uuid.UUID, intervals: Intervals) -> bytes:
    """Intervals as a binary COPY stream in INTERVAL_COLUMNS order.

    Built here with one struct.pack per row: asyncpg's copy_records_to_table encodes every
    value on its own (~5 µs a row, more than Postgres takes to store it). Only start, end
    and wh change from row to row; the rest is packed once. Postgres still checks every row
    against the table's types and constraints.
    """
    kind, origin = read_type.encode(), source.encode()
    head = struct.pack(">hiq", len(INTERVAL_COLUMNS), 8, device_id)
    tail = struct.pack(f">i{len(kind)}si{len(origin)}si16s", len(kind), kind, len(origin), origin, 16, batch_id.bytes)
    row = struct.Struct(f">{len(head)}siqiqiq{len(tail)}s").pack
    shift, eight = _PG_EPOCH_US, repeat(8)
    ends = [end - shift for end in intervals.ends_us]
    if (
        intervals.starts_us[1:] == intervals.ends_us[:-1]
    ):  # consecutive intervals (Delta, Aggregate): starts are the ends before
        starts = [intervals.starts_us[0] - shift, *ends[:-1]] if intervals else []
    else:
        starts = [start - shift for start in intervals.starts_us]
    rows = map(row, repeat(head), eight, starts, eight, ends, eight, intervals.whs, repeat(tail))
    return b"".join((_COPY_HEADER, *rows, _COPY_TRAILER))


def _conditions(*bounds: tuple[str, datetime | None], numbered_after: int) -> tuple[str, list[Any]]:
    """` AND <condition> $n` for each bound given (None = open), its parameter numbered after the first `numbered_after`."""
    clauses, args = [], []
    for condition, value in bounds:
        if value is not None:
            args.append(value)
            clauses.append(f" AND {condition} ${len(args) + numbered_after}")
    return "".join(clauses), args


def _window(start: datetime | None, end: datetime | None) -> tuple[str, list[Any]]:
    """Conditions for intervals overlapping [start, end), numbered after $1 (the device); either bound may be open."""
    return _conditions(("end_at >", start), ("start_at <", end), numbered_after=1)


async def count_intervals(
    conn: asyncpg.Connection, device_id: int, start: datetime | None, end: datetime | None
) -> int:
    where, args = _window(start, end)
    return await conn.fetchval(f"SELECT count(*) FROM intervals WHERE device_id = $1{where}", device_id, *args)


async def list_intervals(
    conn: asyncpg.Connection, device_id: int, start: datetime | None, end: datetime | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """A page of the device's intervals overlapping [start, end), by end."""
    where, args = _window(start, end)
    return await _intervals_page(conn, device_id, where, args, limit, offset)


async def _intervals_page(
    conn: asyncpg.Connection, device_id: int, where: str, args: list[Any], limit: int, offset: int
) -> list[asyncpg.Record]:
    n = len(args)
    return await conn.fetch(
        f"""
        SELECT start_at, end_at, wh, read_type FROM intervals
        WHERE device_id = $1{where}
        ORDER BY end_at LIMIT ${n + 2} OFFSET ${n + 3}
        """,
        device_id,
        *args,
        limit,
        offset,
    )


# -- batches ------------------------------------------------------------------------


async def insert_batch(
    conn: asyncpg.Connection,
    *,
    batch_id: uuid.UUID,
    device_id: int,
    read_type: str,
    source: str,
    idempotency_key: str | None,
    fingerprint: bytes,
    read_count: int,
    total_wh: int,
    first_at: datetime,
    last_at: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO batches (batch_id, device_id, read_type, source, idempotency_key, fingerprint,
                             read_count, total_wh, first_at, last_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        """,
        batch_id,
        device_id,
        read_type,
        source,
        idempotency_key,
        fingerprint,
        read_count,
        total_wh,
        first_at,
        last_at,
    )


# A batch of at most this many intervals is written with one statement (store_small_batch); larger ones by COPY.
SMALL_BATCH = 64


async def store_small_batch(
    conn: asyncpg.Connection,
    *,
    batch_id: uuid.UUID,
    device_id: int,
    read_type: str,
    source: str,
    intervals: Intervals,
    last: LastRead,
    idempotency_key: str | None,
    fingerprint: bytes,
    read_count: int,
    total_wh: int,
    first_at: datetime,
    last_at: datetime,
) -> None:
    """An ongoing (Delta/Aggregate) batch of at most SMALL_BATCH intervals, its batch row and the device's new last
    read, in one statement (what copy_intervals, insert_batch and save_last_read do for a large one: a single read
    a request, as D-REC clients send, is three round trips less)."""
    await conn.execute(
        """
        WITH stored AS (
            INSERT INTO intervals (device_id, start_at, end_at, wh, read_type, source, batch_id)
            SELECT $1, t.start_at, t.end_at, t.wh, $5, $6, $7
            FROM unnest($2::timestamptz[], $3::timestamptz[], $4::bigint[]) AS t(start_at, end_at, wh)
        ), batch AS (
            INSERT INTO batches (batch_id, device_id, read_type, source, idempotency_key, fingerprint,
                                 read_count, total_wh, first_at, last_at)
            VALUES ($7, $1, $5, $6, $8, $9, $10, $11, $12, $13)
        )
        UPDATE last_reads SET ongoing_type = $14, last_end = $15, last_value_wh = $16, meter_total_wh = $17,
                              updated_at = now()
        WHERE device_id = $1
        """,
        device_id,
        intervals.starts,
        intervals.ends,
        intervals.whs,
        read_type,
        source,
        batch_id,
        idempotency_key,
        fingerprint,
        read_count,
        total_wh,
        first_at,
        last_at,
        last.ongoing_type,
        last.end,
        last.value_wh,
        last.meter_total_wh,
    )


async def lock_group(
    conn: asyncpg.Connection,
    organization_ids: Sequence[int],
    external_ids: Sequence[str],
    fingerprints: Sequence[bytes],
    idempotency_keys: Sequence[str | None],
) -> list[asyncpg.Record]:
    """What judging a group of batches needs (a group commit of single-read requests), in one round trip: batch `i`
    (0-based) of the device `external_ids[i]` of organization `organization_ids[i]`: one row per batch whose device
    is known (`i`), with the device (the live one, else the latest deleted one, as find_device), its last read
    (`last_*`; `locked` false when the device has no last_reads row) locked until the transaction ends, in device
    order (two groups sharing devices lock them in the same order), its country's Active configured yield, the
    earliest batch of the device with the same content (`previous_*`) and the one with the same Idempotency-Key
    (`keyed_*`), NULL without. lock_for_batch's row, for many batches at once."""
    return await conn.fetch(
        """
        WITH wanted AS (
            SELECT w.i - 1 AS i, w.organization_id, w.external_id, w.fingerprint, w.idempotency_key
            FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[])
                 WITH ORDINALITY AS w(organization_id, external_id, fingerprint, idempotency_key, i)
        ), named AS MATERIALIZED (
            SELECT DISTINCT ON (w.i) w.i, w.fingerprint, w.idempotency_key, d.device_id
            FROM wanted w JOIN devices d ON d.organization_id = w.organization_id AND d.external_id = w.external_id
            ORDER BY w.i, d.deleted_at IS NOT NULL, d.deleted_at DESC
        ), locked AS MATERIALIZED (
            SELECT l.* FROM last_reads l WHERE l.device_id IN (SELECT device_id FROM named)
            ORDER BY l.device_id FOR UPDATE
        )
        SELECT n.i, d.*, l.device_id IS NOT NULL AS locked,
               l.ongoing_type AS last_ongoing_type, l.last_end AS last_end, l.last_value_wh AS last_value_wh,
               l.meter_total_wh AS last_meter_total_wh,
               (SELECT y.yield_value FROM yield_configs y WHERE y.country_code = d.country_code AND y.status = 'Y')
                   AS configured_yield,
               p.batch_id AS previous_batch_id, p.read_type AS previous_read_type,
               p.read_count AS previous_read_count, p.total_wh AS previous_total_wh,
               p.first_at AS previous_first_at, p.last_at AS previous_last_at,
               k.batch_id AS keyed_batch_id, k.read_type AS keyed_read_type, k.read_count AS keyed_read_count,
               k.total_wh AS keyed_total_wh, k.first_at AS keyed_first_at, k.last_at AS keyed_last_at,
               k.fingerprint AS keyed_fingerprint
        FROM named n
        JOIN devices d ON d.device_id = n.device_id
        LEFT JOIN locked l ON l.device_id = n.device_id
        LEFT JOIN LATERAL (
            SELECT * FROM batches b WHERE b.device_id = n.device_id AND b.fingerprint = n.fingerprint
            ORDER BY b.created_at LIMIT 1
        ) p ON true
        LEFT JOIN batches k ON k.device_id = n.device_id AND k.idempotency_key = n.idempotency_key
        """,
        organization_ids,
        external_ids,
        fingerprints,
        idempotency_keys,
    )


async def store_group(
    conn: asyncpg.Connection,
    intervals: Sequence[list[Any]],
    batches: Sequence[list[Any]],
    timezones: Sequence[list[Any]],
    last_reads: Sequence[list[Any]],
) -> None:
    """A group's accepted ongoing batches in one statement, each argument in columns: their intervals (in
    INTERVAL_COLUMNS order), their batch rows (insert_batch's columns in its order), the timezones learned (device,
    timezone: set where the device has none) and the devices' new last reads (device, ongoing type, end, value,
    meter total: one each)."""
    await conn.execute(
        """
        WITH stored AS (
            INSERT INTO intervals (device_id, start_at, end_at, wh, read_type, source, batch_id)
            SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::text[],
                                 $6::text[], $7::uuid[])
        ), batch AS (
            INSERT INTO batches (batch_id, device_id, read_type, source, idempotency_key, fingerprint,
                                 read_count, total_wh, first_at, last_at)
            SELECT * FROM unnest($8::uuid[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::bytea[],
                                 $14::integer[], $15::numeric[], $16::timestamptz[], $17::timestamptz[])
        ), zone AS (
            UPDATE devices d SET timezone = z.timezone, updated_at = now()
            FROM unnest($18::bigint[], $19::text[]) AS z(device_id, timezone)
            WHERE d.device_id = z.device_id AND d.timezone IS NULL
        )
        UPDATE last_reads l SET ongoing_type = t.ongoing_type, last_end = t.last_end, last_value_wh = t.last_value_wh,
                                meter_total_wh = t.meter_total_wh, updated_at = now()
        FROM unnest($20::bigint[], $21::text[], $22::timestamptz[], $23::bigint[], $24::bigint[])
             AS t(device_id, ongoing_type, last_end, last_value_wh, meter_total_wh)
        WHERE l.device_id = t.device_id
        """,
        *intervals,
        *batches,
        *timezones,
        *last_reads,
    )


async def find_batch_by_key(conn: asyncpg.Connection, device_id: int, idempotency_key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM batches WHERE device_id = $1 AND idempotency_key = $2", device_id, idempotency_key
    )


async def find_batch_by_fingerprint(
    conn: asyncpg.Connection, device_id: int, fingerprint: bytes
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM batches WHERE device_id = $1 AND fingerprint = $2 ORDER BY created_at LIMIT 1",
        device_id,
        fingerprint,
    )


# -- submissions (read.submitted) ---------------------------------------------------------


async def submission_known(conn: asyncpg.Connection, submission_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM submissions WHERE submission_id = $1", submission_id))


async def record_submission(
    conn: asyncpg.Connection,
    submission_id: str,
    device_id: int,
    source: str,
    status: str,
    event_id: uuid.UUID,
    *,
    batch_id: uuid.UUID | None = None,
    reasons: list[dict[str, Any]] | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Insert a submission, or settle a waiting one."""
    await conn.execute(
        """
        INSERT INTO submissions (submission_id, device_id, source, status, batch_id, reasons, payload, event_id,
                                 decided_at)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, CASE WHEN $4 = 'waiting' THEN NULL ELSE now() END)
        ON CONFLICT (submission_id) DO UPDATE SET
            status = EXCLUDED.status, batch_id = EXCLUDED.batch_id, reasons = EXCLUDED.reasons,
            payload = NULL, decided_at = now()
        WHERE submissions.status = 'waiting'
        """,
        submission_id,
        device_id,
        source,
        status,
        batch_id,
        _json(reasons),
        _json(payload),
        event_id,
    )


async def waiting_submissions(conn: asyncpg.Connection, device_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT submission_id, event_id, payload FROM submissions
        WHERE device_id = $1 AND status = 'waiting' ORDER BY received_at, submission_id
        FOR UPDATE
        """,
        device_id,
    )


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


# -- reservations (what buyers may see) -----------------------------------------------------


async def upsert_reservation(conn: asyncpg.Connection, e: ReservationCreated) -> None:
    """reservation.created: its terms as revision 0, unless a reservation.updated (a later revision) came first."""
    await conn.execute(
        """
        INSERT INTO reservations (reservation_id, buyer_organization_id, device_ids, reservation_start, reservation_end)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (reservation_id) DO UPDATE SET
            buyer_organization_id = EXCLUDED.buyer_organization_id, device_ids = EXCLUDED.device_ids,
            reservation_start = EXCLUDED.reservation_start, reservation_end = EXCLUDED.reservation_end
        WHERE reservations.revision = 0
        """,
        e.reservation_id,
        e.buyer_organization_id,
        e.device_ids,
        e.reservation_start,
        e.reservation_end,
    )


async def change_reservation(conn: asyncpg.Connection, e: ReservationUpdated) -> bool:
    """reservation.updated: its full terms replace older ones (or stand for a reservation not heard of yet).
    False: the revision held is this one or later (an older or replayed change), nothing written."""
    return bool(
        await conn.fetchval(
            """
            INSERT INTO reservations
                (reservation_id, buyer_organization_id, device_ids, reservation_start, reservation_end, revision)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (reservation_id) DO UPDATE SET
                buyer_organization_id = EXCLUDED.buyer_organization_id, device_ids = EXCLUDED.device_ids,
                reservation_start = EXCLUDED.reservation_start, reservation_end = EXCLUDED.reservation_end,
                revision = EXCLUDED.revision
            WHERE reservations.revision < EXCLUDED.revision
            RETURNING true
            """,
            e.reservation_id,
            e.buyer_organization_id,
            e.device_ids,
            e.reservation_start,
            e.reservation_end,
            e.revision,
        )
    )


async def record_reservation_end(conn: asyncpg.Connection, reservation_id: int, ended_at: datetime) -> None:
    """The first end recorded stands (a redelivered or late event changes nothing)."""
    await conn.execute(
        "INSERT INTO reservation_ends (reservation_id, ended_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        reservation_id,
        ended_at,
    )


async def reservation_span(
    conn: asyncpg.Connection, buyer_organization_id: int, device_id: int
) -> tuple[datetime, datetime] | None:
    """From the earliest start to the latest (actual) end of the buyer's reservations holding the device; None: none."""
    row = await conn.fetchrow(
        """
        SELECT min(r.reservation_start) AS start_at, max(LEAST(r.reservation_end, e.ended_at)) AS end_at
        FROM reservations r LEFT JOIN reservation_ends e USING (reservation_id)
        WHERE r.buyer_organization_id = $1 AND r.device_ids @> ARRAY[$2::bigint]
        """,
        buyer_organization_id,
        device_id,
    )
    return (row["start_at"], row["end_at"]) if row["start_at"] is not None else None


# -- sums per period ---------------------------------------------------------------------------


def _ending(start: datetime | None, end: datetime | None, numbered_after: int) -> tuple[str, list[Any]]:
    """Conditions for intervals ending in (start, end], their parameters numbered after the first `numbered_after`."""
    return _conditions(("end_at >", start), ("end_at <=", end), numbered_after=numbered_after)


async def accumulate(
    conn: asyncpg.Connection,
    device_id: int,
    granularity: str,
    timezone: str,
    start: datetime | None,
    end: datetime | None,
) -> list[asyncpg.Record]:
    """Energy per hour/day/month/year in `timezone`: each interval counts in the period where it ends.

    An interval ending exactly on a boundary belongs to the period it closes (hence − 1 µs);
    `start`/`end` select intervals ending in (start, end].
    """
    where, args = _ending(start, end, 3)
    return await conn.fetch(
        f"""
        WITH sums AS (
            SELECT date_trunc($2, end_at - interval '1 microsecond', $3) AS period, sum(wh)::bigint AS wh
            FROM intervals WHERE device_id = $1{where}
            GROUP BY 1
        )
        SELECT period AS start_at,
               CASE WHEN $2 = 'hour' THEN period + interval '1 hour'
                    ELSE ((period AT TIME ZONE $3) + ('1 ' || $2)::interval) AT TIME ZONE $3 END AS end_at,
               wh
        FROM sums ORDER BY period
        """,
        device_id,
        granularity,
        timezone,
        *args,
    )


async def accumulate_calendar(
    conn: asyncpg.Connection,
    device_id: int,
    parts: str,
    timezone: str,
    first: datetime,
    after: datetime,
    start: datetime | None,
    end: datetime | None,
) -> list[asyncpg.Record]:
    """Energy per day (or month) of the local period [first, after) in `timezone`, every part listed (0 without reads).

    `first`/`after` are naive local times; as in `accumulate`, an interval counts in the part where it ends,
    and `start`/`end` narrow it to intervals ending in (start, end]. The parts are made by Postgres from
    the same local times as date_trunc's, so each sum meets its part whatever the daylight-saving rules.
    """
    where, args = _ending(start, end, 5)
    return await conn.fetch(
        f"""
        WITH parts AS (
            SELECT local AT TIME ZONE $3 AS start_at, (local + ('1 ' || $2)::interval) AT TIME ZONE $3 AS end_at
            FROM generate_series($4::timestamp, $5::timestamp - ('1 ' || $2)::interval, ('1 ' || $2)::interval) AS local
        ),
        sums AS (
            SELECT date_trunc($2, end_at - interval '1 microsecond', $3) AS period, sum(wh)::bigint AS wh
            FROM intervals
            WHERE device_id = $1
              AND end_at > ($4::timestamp AT TIME ZONE $3) AND end_at <= ($5::timestamp AT TIME ZONE $3){where}
            GROUP BY 1
        )
        SELECT parts.start_at, parts.end_at, coalesce(sums.wh, 0)::bigint AS wh
        FROM parts LEFT JOIN sums ON sums.period = parts.start_at
        ORDER BY parts.start_at
        """,
        device_id,
        parts,
        timezone,
        first,
        after,
        *args,
    )


async def list_reads_ending(
    conn: asyncpg.Connection, device_id: int, start: datetime | None, end: datetime | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """A page of the device's intervals ending in (start, end] (either bound may be open), by end."""
    where, args = _ending(start, end, 1)
    return await _intervals_page(conn, device_id, where, args, limit, offset)


# -- bulk import jobs ------------------------------------------------------------------------


async def create_job(
    conn: asyncpg.Connection,
    *,
    job_id: uuid.UUID,
    organization_id: int,
    user_id: int | None,
    file_name: str | None,
) -> None:
    """A job being staged: it counts no rows yet (`set_job_total`), and no worker takes it before its commit."""
    await conn.execute(
        """
        INSERT INTO import_jobs (job_id, organization_id, user_id, file_name, status, rows_total)
        VALUES ($1, $2, $3, $4, 'queued', 0)
        """,
        job_id,
        organization_id,
        user_id,
        file_name,
    )


async def stage_rows(conn: asyncpg.Connection, job_id: uuid.UUID, rows: Sequence[Any]) -> None:
    """Rows of an upload (CsvRows) for the worker."""
    await conn.copy_records_to_table(
        "import_staged",
        records=[(job_id, r.number, r.cells()) for r in rows],
        columns=("job_id", "row_number", "cells"),
    )


_JOB_FIELDS = (
    "job_id, organization_id, file_name, status, rows_total, rows_done, accepted, last_row, created_at, finished_at"
)


async def set_job_total(conn: asyncpg.Connection, job_id: uuid.UUID, rows_total: int) -> asyncpg.Record:
    return await conn.fetchrow(
        f"UPDATE import_jobs SET rows_total = $2, content = NULL WHERE job_id = $1 RETURNING {_JOB_FIELDS}",
        job_id,
        rows_total,
    )


async def get_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_JOB_FIELDS} FROM import_jobs WHERE job_id = $1", job_id)


async def list_jobs(conn: asyncpg.Connection, organization_id: int, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {_JOB_FIELDS} FROM import_jobs WHERE organization_id = $1 ORDER BY created_at DESC LIMIT $2 OFFSET $3",
        organization_id,
        limit,
        offset,
    )


async def job_rows(
    conn: asyncpg.Connection, job_id: uuid.UUID, accepted: bool | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT row_number, accepted, reason, batch_id FROM import_rows
        WHERE job_id = $1 AND ($2::boolean IS NULL OR accepted = $2)
        ORDER BY row_number LIMIT $3 OFFSET $4
        """,
        job_id,
        accepted,
        limit,
        offset,
    )


async def claim_job(conn: asyncpg.Connection, lease_s: float) -> asyncpg.Record | None:
    """The oldest unfinished job no worker holds (its lease run out), leased for `lease_s`; None when there is none."""
    return await conn.fetchrow(
        f"""
        UPDATE import_jobs SET status = 'running', updated_at = now(), leased_until = now() + make_interval(secs => $1)
        WHERE job_id = (
            SELECT job_id FROM import_jobs
            WHERE status IN ('queued', 'running') AND (leased_until IS NULL OR leased_until < now())
            ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1
        )
        RETURNING {_JOB_FIELDS}, content, strikes, strike_row, error
        """,
        lease_s,
    )


async def hold_job(conn: asyncpg.Connection, job_id: uuid.UUID, last_row: int) -> bool:
    """The job for this transaction, if its cursor is still at `last_row` (no other worker went on with it)."""
    at = await conn.fetchval("SELECT last_row FROM import_jobs WHERE job_id = $1 FOR UPDATE", job_id)
    return at == last_row


async def release_job(conn: asyncpg.Connection, job_id: uuid.UUID, error: str | None) -> None:
    """The lease given back, the next claim may take the job at once; with `error`, the group at the job's cursor
    failed: a strike there (counted again from 1 at another cursor)."""
    await conn.execute(
        """
        UPDATE import_jobs SET leased_until = NULL, updated_at = now(), error = COALESCE($2, error),
            strikes = CASE WHEN $2 IS NULL THEN strikes WHEN strike_row = last_row THEN strikes + 1 ELSE 1 END,
            strike_row = CASE WHEN $2 IS NULL THEN strike_row ELSE last_row END
        WHERE job_id = $1
        """,
        job_id,
        error,
    )


async def staged_rows(
    conn: asyncpg.Connection, job_id: uuid.UUID, after: int, limit: int
) -> list[tuple[int, list[str]]]:
    rows = await conn.fetch(
        "SELECT row_number, cells FROM import_staged WHERE job_id = $1 AND row_number > $2 ORDER BY row_number LIMIT $3",
        job_id,
        after,
        limit,
    )
    return [(r["row_number"], r["cells"]) for r in rows]


async def save_row_results(conn: asyncpg.Connection, job_id: uuid.UUID, results: Sequence[Any]) -> None:
    await conn.copy_records_to_table(
        "import_rows",
        records=[(job_id, r.number, r.accepted, r.reason, r.batch_id) for r in results],
        columns=("job_id", "row_number", "accepted", "reason", "batch_id"),
    )


async def advance_job(
    conn: asyncpg.Connection, job_id: uuid.UUID, last_row: int, done: int, accepted: int, lease_s: float
) -> None:
    """The cursor moved to `last_row` (its staged rows dropped), the counts, and the lease renewed."""
    await conn.execute(
        """
        UPDATE import_jobs SET last_row = $2, rows_done = rows_done + $3, accepted = accepted + $4, updated_at = now(),
            leased_until = now() + make_interval(secs => $5)
        WHERE job_id = $1
        """,
        job_id,
        last_row,
        done,
        accepted,
        lease_s,
    )
    await conn.execute("DELETE FROM import_staged WHERE job_id = $1 AND row_number <= $2", job_id, last_row)


async def finish_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE import_jobs SET status = 'done', finished_at = now(), updated_at = now(), leased_until = NULL"
        " WHERE job_id = $1",
        job_id,
    )


# -- yield configuration ---------------------------------------------------------------------------

YIELD_CONFIG_COLUMNS = (
    "id, country_code, country_name, yield_value, status, created_by, updated_by, created_at, updated_at"
)


async def yield_configs(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT {YIELD_CONFIG_COLUMNS} FROM yield_configs ORDER BY id")


async def yield_config(conn: asyncpg.Connection, config_id: int, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {YIELD_CONFIG_COLUMNS} FROM yield_configs WHERE id = $1{suffix}", config_id)


async def yield_config_of_country(conn: asyncpg.Connection, country_code: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {YIELD_CONFIG_COLUMNS} FROM yield_configs WHERE country_code = $1", country_code
    )


async def insert_yield_config(
    conn: asyncpg.Connection, country_code: str, country_name: str, yield_value: float, status: str, by: int
) -> asyncpg.Record | None:
    """The new row; None when the country has one already (also one inserted concurrently)."""
    return await conn.fetchrow(
        f"""
        INSERT INTO yield_configs (country_code, country_name, yield_value, status, created_by)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (country_code) DO NOTHING
        RETURNING {YIELD_CONFIG_COLUMNS}
        """,
        country_code,
        country_name,
        yield_value,
        status,
        by,
    )


async def update_yield_config(
    conn: asyncpg.Connection, config_id: int, changes: dict[str, Any], by: int
) -> asyncpg.Record | None:
    """Set the given columns (country_code, country_name, yield_value, status) of the row."""
    allowed = ("country_code", "country_name", "yield_value", "status")
    names = [name for name in allowed if name in changes]
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=3))
    return await conn.fetchrow(
        f"""
        UPDATE yield_configs SET {sets}{", " if sets else ""}updated_by = $2, updated_at = now()
        WHERE id = $1 RETURNING {YIELD_CONFIG_COLUMNS}
        """,
        config_id,
        by,
        *(changes[name] for name in names),
    )


async def active_country_yield(conn: asyncpg.Connection, country_code: str) -> float | None:
    """The country's Active ('Y') configured yield, None without one."""
    return await conn.fetchval(
        "SELECT yield_value FROM yield_configs WHERE country_code = $1 AND status = 'Y'", country_code
    )
