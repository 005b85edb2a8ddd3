"""SQL of the certificates service: one function per query."""

from __future__ import annotations

import itertools
import operator
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from opendrec_contracts import DeviceRegistered, DeviceUpdated, ReadIngested

from .domain import (
    NO_DEVICE_LOG_FILTER,
    RUN_MAX_READS,
    UNIX_EPOCH,
    DeviceLogFilter,
    Reservation,
    Run,
    RunAllocation,
    effective_end,
    micros,
    moment_of,
)

# Before any read: the offered_until of a device never offered.
NEVER = datetime(1, 1, 1, tzinfo=UTC)


async def upsert_device(conn: asyncpg.Connection, e: DeviceRegistered | DeviceUpdated, state_at: datetime) -> None:
    """Take the device's state as announced at `state_at` (registered or updated); an older state than the stored
    one is ignored."""
    await conn.execute(
        """INSERT INTO devices (device_id, external_id, organization_id, country_code, timezone, device_uuid,
                               fuel_code, device_type_code, capacity_kw, commissioning_date, off_taker, state_at,
                               project_name, fuel_name, sdg_benefits)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           ON CONFLICT (device_id) DO UPDATE SET
               external_id = EXCLUDED.external_id, organization_id = EXCLUDED.organization_id,
               country_code = EXCLUDED.country_code, timezone = EXCLUDED.timezone,
               device_uuid = EXCLUDED.device_uuid, fuel_code = EXCLUDED.fuel_code,
               device_type_code = EXCLUDED.device_type_code, capacity_kw = EXCLUDED.capacity_kw,
               commissioning_date = EXCLUDED.commissioning_date, off_taker = EXCLUDED.off_taker,
               state_at = EXCLUDED.state_at, project_name = EXCLUDED.project_name, fuel_name = EXCLUDED.fuel_name,
               sdg_benefits = EXCLUDED.sdg_benefits
           WHERE devices.state_at IS NULL OR devices.state_at <= EXCLUDED.state_at""",
        e.device_id,
        e.external_id,
        e.organization_id,
        e.country_code,
        e.timezone,
        e.device_uuid,
        e.fuel_code,
        e.device_type_code,
        e.capacity_kw,
        e.commissioning_date,
        e.off_taker,
        state_at,
        e.project_name,
        e.fuel_name,
        e.sdg_benefits,
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
) -> bool:
    """The first end of a reservation is the one (it ends once; a replayed event changes nothing): whether this
    one was recorded."""
    return bool(
        await conn.fetchval(
            """INSERT INTO reservation_ends (reservation_id, ended_at, reason) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            reservation_id,
            ended_at,
            reason,
        )
    )


async def reservation_device_ids(conn: asyncpg.Connection, reservation_id: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT device_id FROM reservation_devices WHERE reservation_id = $1 ORDER BY device_id", reservation_id
    )
    return [r["device_id"] for r in rows]


async def release_pending_after(conn: asyncpg.Connection, reservation_id: int, ended_at: datetime) -> list[int]:
    """Give back to their reads the reservation's allocations not issued yet that hold energy generated after
    `ended_at` (its end, learnt after they were made): each read part ending after it (a row's parts before it stay);
    the devices whose reads got energy back."""
    rows = await conn.fetch(
        f"""DELETE FROM run_allocations a USING read_runs r
            WHERE r.id = a.run_id AND a.reservation_id = $1 AND a.round_id IS NULL AND a.end_at > $2
            RETURNING a.*, {_RUN_SLICE}""",
        reservation_id,
        ended_at,
    )
    end_us = micros(ended_at)
    kept: list[RunAllocation] = []
    given_back: dict[int, int] = {}
    devices: set[int] = set()
    for row in rows:
        allocation, run = stored_allocation(row)
        p_lo, p_hi = micros(allocation.period_start), micros(allocation.period_end)
        # a part ends at its read's end cut by the period
        keep = [
            wh if min(run.origin_us + run.ends_us[k], p_hi) <= end_us else 0
            for k, wh in enumerate(allocation.parts_of(run))
        ]
        while keep and not keep[-1]:
            keep.pop()
        released = allocation.energy_wh - sum(keep)
        if released:
            given_back[row["run_id"]] = given_back.get(row["run_id"], 0) + released
            devices.add(row["device_id"])
        if keep:
            first = next(k for k, wh in enumerate(keep) if wh)
            kept.append(
                allocation._replace(
                    run_id=row["run_id"],
                    lo=row["lo"],
                    hi=row["lo"] + len(keep),
                    energy_wh=sum(keep),
                    parts=keep,
                    start=moment_of(max(run.origin_us + run.start_of(first), p_lo)),
                    end=moment_of(min(run.origin_us + run.ends_us[len(keep) - 1], p_hi)),
                )
            )
    if kept:
        await _insert_allocations(conn, reservation_id, kept, [None] * len(kept), take=False)
    await _give_back(conn, given_back, devices)
    return sorted(devices)


async def issued_after_end(conn: asyncpg.Connection, reservation_id: int) -> asyncpg.Record:
    """The certificates of the reservation's periods past its end (`count`, `energy_wh`): issued before the end
    was known (an issued certificate is never reopened). None counted before an end is recorded."""
    return await conn.fetchrow(
        """SELECT count(*) AS count, coalesce(sum(c.energy_wh), 0)::bigint AS energy_wh
           FROM certificates c JOIN reservation_ends e ON e.reservation_id = c.reservation_id
           WHERE c.reservation_id = $1 AND c.period_end > e.ended_at""",
        reservation_id,
    )


async def carry_of_reservation(
    conn: asyncpg.Connection, reservation_id: int, owner_organization_id: int | None
) -> list[asyncpg.Record]:
    """The Wh the reservation carries (under 1 kWh per country, per device), of one owner's devices if given (as
    owns_any_device: registered by it, or its reads accepted), by country and device."""
    return await conn.fetch(
        """SELECT nullif(k.country_key, '') AS country_code, k.device_id, k.carry_wh
           FROM issuance_carry k
           WHERE k.reservation_id = $1
             AND ($2::bigint IS NULL
                  OR EXISTS (SELECT 1 FROM devices d WHERE d.device_id = k.device_id AND d.organization_id = $2)
                  OR EXISTS (SELECT 1 FROM read_runs r WHERE r.device_id = k.device_id AND r.organization_id = $2))
           ORDER BY k.country_key, k.device_id""",
        reservation_id,
        owner_organization_id,
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


async def insert_reads(conn: asyncpg.Connection, events: list[ReadIngested]) -> list[Run]:
    """The intervals of read.ingested events (one or a batch of them) as runs of back-to-back reads (migration 0021:
    a row per run of one event, its reads as arrays of the event's integer microseconds), in one statement; a read
    seen before (the same device, start and end: an event delivered again, under any id) is skipped. The database
    refuses a read overlapping another of its device (SQLSTATE 23P01, reads_no_overlap). Caller holds the devices'
    locks (the check sees committed rows and its own transaction's). The runs stored (allocation takes them as they
    are, without reading them back)."""
    candidates = [run for i, event in enumerate(events) for run in _event_runs(i, event)]
    origins = [micros(e.origin) for e in events]
    # Each device's new runs in time order, back-to-back ones chained (reads arriving one an event: a run each); new
    # runs meeting one another make their device careful.
    hulls: dict[int, list[tuple[int, int]]] = {}
    for c in candidates:
        o = origins[c[0]]
        hulls.setdefault(events[c[0]].device_id, []).append((o + c[1], o + c[2][-1]))
    careful: set[int] = set()
    chains: list[tuple[int, int, int]] = []  # (device, lo, hi) in microseconds since the epoch
    for device, ranges in hulls.items():
        ranges.sort()
        lo, hi = ranges[0]
        for a, b in itertools.pairwise(ranges):
            if b[0] < a[1] or a == b:
                careful.add(device)
            if b[0] == hi and a[0] < a[1] and b[0] < b[1]:
                hi = b[1]
            else:
                chains.append((device, lo, hi))
                lo, hi = b
        chains.append((device, lo, hi))
    # Stored runs that may hold one of the new reads (their ranges meet a chain's, or the same instant): a probe a
    # chain; their devices are careful.
    conflicts = await conn.fetch(
        """SELECT m.device_id, m.origin, m.start_us, m.ends_us
           FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS c (device_id, lo_us, hi_us)
           CROSS JOIN LATERAL (SELECT $4::timestamptz + c.lo_us * interval '1 microsecond' AS lo,
                                      $4::timestamptz + c.hi_us * interval '1 microsecond' AS hi) h
           CROSS JOIN LATERAL (
               (SELECT * FROM read_runs m
                WHERE m.device_id = c.device_id AND m.start_at >= h.lo AND m.start_at <= h.hi)
               UNION ALL
               (SELECT * FROM read_runs m
                WHERE m.device_id = c.device_id AND m.start_at < h.lo AND m.start_at < m.end_at
                ORDER BY m.start_at DESC LIMIT 1)
           ) m
           WHERE (m.start_at < h.hi AND m.end_at > h.lo) OR (m.start_at = m.end_at AND h.lo = h.hi AND m.start_at = h.lo)""",
        [c[0] for c in chains],
        [c[1] for c in chains],
        [c[2] for c in chains],
        UNIX_EPOCH,
    )
    careful |= {r["device_id"] for r in conflicts}
    if careful:
        seen: dict[int, set[tuple[int, int]]] = {device: set() for device in careful}
        for r in conflicts:
            if r["device_id"] in seen:
                o, start = micros(r["origin"]), r["start_us"]
                for end in r["ends_us"]:
                    seen[r["device_id"]].add((o + start, o + end))
                    start = end
        kept: list[_Candidate] = []
        for c in candidates:
            device = events[c[0]].device_id
            if device not in careful:
                kept.append(c)
                continue
            o, start, fresh = origins[c[0]], c[1], []
            for end, wh in zip(c[2], c[3], strict=True):
                if (o + start, o + end) not in seen[device]:
                    seen[device].add((o + start, o + end))
                    fresh.append((start, end, wh))
                start = end
            kept += _cut(c[0], fresh)
        candidates = kept
    if not candidates:
        return []
    if len(candidates) > len(hulls):
        candidates = _joined(events, origins, candidates)
    ends: list[int] = []
    energy: list[int] = []
    bounds: list[int] = []
    for c in candidates:
        ends += c[2]
        energy += c[3]
        bounds.append(len(ends))
    stored = await conn.fetch(
        """INSERT INTO read_runs (device_id, organization_id, batch_id, read_type, origin, start_us, ends_us, energy_wh,
                                  start_at, end_at, left_wh)
           SELECT e.device_id, e.organization_id, e.batch_id, e.read_type, e.origin, x.start_us,
                  ($3::bigint[])[x.a + 1 : x.b], ($4::bigint[])[x.a + 1 : x.b],
                  e.origin + x.start_us * interval '1 microsecond',
                  e.origin + ($3::bigint[])[x.b] * interval '1 microsecond', x.left_wh
           FROM unnest($1::int[], $2::bigint[], $5::int[], $6::int[], $7::bigint[]) WITH ORDINALITY
                AS x (event, start_us, a, b, left_wh, n)
           JOIN unnest($8::bigint[], $9::bigint[], $10::uuid[], $11::text[], $12::timestamptz[]) WITH ORDINALITY
                AS e (device_id, organization_id, batch_id, read_type, origin, event) ON e.event = x.event + 1
           ORDER BY x.n
           RETURNING id, device_id, start_at, end_at""",
        [c[0] for c in candidates],
        [c[1] for c in candidates],
        ends,
        energy,
        [0, *bounds[:-1]],
        bounds,
        [sum(c[3]) for c in candidates],
        [e.device_id for e in events],
        [e.organization_id for e in events],
        [e.batch_id for e in events],
        [e.read_type for e in events],
        [e.origin for e in events],
    )
    # a run is known by its device, start and end (two never share them: the no-overlap check)
    ids = {(r["device_id"], micros(r["start_at"]), micros(r["end_at"])): r["id"] for r in stored}
    runs = []
    for event_index, start_us, run_ends, run_energy in candidates:
        event, o = events[event_index], origins[event_index]
        runs.append(
            Run(
                ids[(event.device_id, o + start_us, o + run_ends[-1])],
                event.device_id,
                o,
                start_us,
                run_ends,
                run_energy,
                event.read_type == "History",
            )
        )
    return runs


_Candidate = tuple[int, int, list[int], list[int]]  # (event index, first start, ends, Wh): a run to store


def _joined(events: list[ReadIngested], origins: list[int], candidates: list[_Candidate]) -> list[_Candidate]:
    """Runs of one device that continue one another across the batch's events (the same owner and kind of read) as
    one run, its reads' instants from the first one's event origin: D-REC clients send a read a request, readings
    announces each in an event of its own, and a run a read would cost a row a read again. The run keeps the first
    event's batch id."""
    ordered = sorted(candidates, key=lambda c: (events[c[0]].device_id, origins[c[0]] + c[1], origins[c[0]] + c[2][-1]))
    out: list[_Candidate] = []
    for c in ordered:
        last = out[-1] if out else None
        if last is not None:
            before, event = events[last[0]], events[c[0]]
            shift = origins[c[0]] - origins[last[0]]
            if (
                before.device_id == event.device_id
                and last[1] < last[2][0]  # neither is an instant
                and c[1] < c[2][0]
                and last[2][-1] == c[1] + shift  # back to back
                and before.organization_id == event.organization_id
                and before.read_type == event.read_type
                and len(last[2]) + len(c[2]) <= RUN_MAX_READS
            ):
                last[2].extend(end + shift for end in c[2])
                last[3].extend(c[3])
                continue
        out.append((c[0], c[1], list(c[2]), list(c[3])))  # copies: the event's own lists stay as they are
    return out


def _event_runs(index: int, event: ReadIngested) -> list[_Candidate]:
    """An event's reads cut into runs of back-to-back reads (in time order; an instant alone; a read given twice in
    the event taken once, the first)."""
    ends, energy = event.ends_us, event.values_wh
    if event.starts_us is None and ends[0] > 0 and all(map(operator.lt, ends, ends[1:])):
        # consecutive reads, none an instant (every Delta batch): one run, cut every RUN_MAX_READS
        if len(ends) <= RUN_MAX_READS:
            return [(index, 0, ends, energy)]
        return [
            (index, 0 if i == 0 else ends[i - 1], ends[i : i + RUN_MAX_READS], energy[i : i + RUN_MAX_READS])
            for i in range(0, len(ends), RUN_MAX_READS)
        ]
    starts = event.starts_us if event.starts_us is not None else [0, *ends[:-1]]
    reads, seen = [], set()
    for start, end, wh in sorted(zip(starts, ends, energy, strict=True), key=_interval):  # stable: the first kept
        if (start, end) not in seen:
            seen.add((start, end))
            reads.append((start, end, wh))
    return _cut(index, reads)


def _interval(read: tuple[int, int, int]) -> tuple[int, int]:
    return read[0], read[1]


def _cut(index: int, reads: list[tuple[int, int, int]]) -> list[_Candidate]:
    """Reads (start, end, Wh) of one event in time order as runs: a new run at a gap, at an instant (alone) and
    every RUN_MAX_READS reads."""
    runs: list[_Candidate] = []
    for start, end, wh in reads:
        last = runs[-1] if runs else None
        if (
            last is not None
            and start < end
            and last[2][-1] == start
            and last[1] < last[2][0]  # the run so far is not an instant
            and len(last[2]) < RUN_MAX_READS
        ):
            last[2].append(end)
            last[3].append(wh)
        else:
            runs.append((index, start, [end], [wh]))
    return runs


async def read_owner(conn: asyncpg.Connection, device_id: int) -> int | None:
    """The organization whose accepted reads these are (the device owner when the reads were accepted)."""
    return await conn.fetchval(
        "SELECT organization_id FROM read_runs WHERE device_id = $1 ORDER BY id DESC LIMIT 1", device_id
    )


async def lock_devices(conn: asyncpg.Connection, device_ids: list[int]) -> None:
    """Certification of a device runs one transaction at a time (reads and reservations arrive on two topics): its
    row in device_locks, locked to the end of the transaction, in id order (no deadlock). Row locks live in the rows,
    not in the server's shared lock table, so a reservation of any size locks its devices (issue 13). A device's row
    is made on first use; one another transaction is making is waited for."""
    ids = sorted(set(device_ids))
    await conn.execute("INSERT INTO device_locks (device_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING", ids)
    await conn.execute(
        "SELECT 1 FROM device_locks WHERE device_id = ANY($1::bigint[]) ORDER BY device_id FOR UPDATE", ids
    )


async def lock_device(conn: asyncpg.Connection, device_id: int) -> None:
    await lock_devices(conn, [device_id])


async def lock_reservations_of_devices(conn: asyncpg.Connection, device_ids: list[int]) -> None:
    """Lock, in id order (no deadlock between transactions), the devices' reservations: allocating to a reservation
    (its target is shared by its devices) and issuing its certificates run one transaction at a time."""
    ids = await conn.fetch(
        "SELECT DISTINCT reservation_id FROM reservation_devices WHERE device_id = ANY($1::bigint[]) ORDER BY 1",
        device_ids,
    )
    for row in ids:
        await lock_reservation(conn, row["reservation_id"])


async def lock_reservation(conn: asyncpg.Connection, reservation_id: int) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(0x0DED, $1::int)", reservation_id % 2_147_483_647)


async def try_lock_due_devices(conn: asyncpg.Connection, device_ids: list[int], now: datetime) -> list[int]:
    """Of `device_ids`, those no other transaction holds (locked here, in id order, never waited for) and still due
    by `now` once locked (the transaction that held one may have certified it), in id order."""
    ids = sorted(set(device_ids))
    await conn.execute("INSERT INTO device_locks (device_id) SELECT unnest($1::bigint[]) ON CONFLICT DO NOTHING", ids)
    locked = await conn.fetch(
        "SELECT device_id FROM device_locks WHERE device_id = ANY($1::bigint[]) ORDER BY device_id "
        "FOR UPDATE SKIP LOCKED",
        ids,
    )
    rows = await conn.fetch(
        "SELECT device_id FROM certification_due WHERE device_id = ANY($1::bigint[]) AND due_at <= $2 "
        "ORDER BY device_id",
        [r["device_id"] for r in locked],
        now,
    )
    return [r["device_id"] for r in rows]


async def latest_unsettled_ends(
    conn: asyncpg.Connection, device_ids: list[int], settled_before: datetime
) -> dict[int, datetime]:
    """The latest end of each device's reads with energy that are not settled yet, in runs with energy left (devices
    with none left out; such a read is not allocated yet: allocation takes settled reads), in one statement. Runs of a
    device do not overlap: the latest run holding such a read holds the latest one (its arrays are the only ones
    read; a device's unsettled runs are many when its reads come one an event)."""
    rows = await conn.fetch(
        """SELECT d.device_id,
                  (SELECT max(r.origin + x.end_us * interval '1 microsecond')
                   FROM (SELECT m.origin, m.ends_us, m.energy_wh FROM read_runs m
                         WHERE m.device_id = d.device_id AND m.end_at > $2 AND m.left_wh > 0
                           AND EXISTS (SELECT 1 FROM unnest(m.ends_us, m.energy_wh) AS y (end_us, energy_wh)
                                       WHERE y.energy_wh > 0 AND m.origin + y.end_us * interval '1 microsecond' > $2)
                         ORDER BY m.end_at DESC LIMIT 1) r
                   CROSS JOIN LATERAL unnest(r.ends_us, r.energy_wh) AS x (end_us, energy_wh)
                   WHERE x.energy_wh > 0 AND r.origin + x.end_us * interval '1 microsecond' > $2) AS latest
           FROM unnest($1::bigint[]) AS d (device_id)""",
        device_ids,
        settled_before,
    )
    return {r["device_id"]: r["latest"] for r in rows if r["latest"] is not None}


async def set_certification_dues(conn: asyncpg.Connection, dues: dict[int, datetime | None]) -> None:
    """When each device is due for certification again (None: it is not), two statements for all of them. Caller
    holds the devices' locks."""
    gone = [d for d, due in dues.items() if due is None]
    if gone:
        await conn.execute("DELETE FROM certification_due WHERE device_id = ANY($1::bigint[])", gone)
    due = [(d, at) for d, at in dues.items() if at is not None]
    if due:
        await conn.execute(
            """INSERT INTO certification_due (device_id, due_at)
               SELECT * FROM unnest($1::bigint[], $2::timestamptz[])
               ON CONFLICT (device_id) DO UPDATE SET due_at = EXCLUDED.due_at""",
            [d for d, _ in due],
            [at for _, at in due],
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
    """Known devices due by `now` (an unknown one is certified when device.registered comes: services.register_device)."""
    rows = await conn.fetch(
        """SELECT c.device_id FROM certification_due c JOIN devices d ON d.device_id = c.device_id
           WHERE c.due_at <= $1 ORDER BY c.due_at LIMIT $2""",
        now,
        limit,
    )
    return [r["device_id"] for r in rows]


async def reservations_of_devices(conn: asyncpg.Connection, device_ids: list[int]) -> dict[int, list[Reservation]]:
    """Each device's reservations (effective end), in window-start order, each with what was allocated to it so far
    when its target caps it (0 otherwise: not needed); one statement for all the devices."""
    rows = await conn.fetch(
        """SELECT rd.device_id, r.reservation_id, r.reservation_start, r.reservation_end, r.frequency,
                  r.target_capacity_wh, r.authority_to_exceed, r.reservation_expiry, e.ended_at,
                  CASE WHEN r.target_capacity_wh IS NOT NULL AND NOT r.authority_to_exceed
                       THEN coalesce((SELECT sum(a.energy_wh) FROM run_allocations a
                                      WHERE a.reservation_id = r.reservation_id), 0)
                       ELSE 0 END AS certified
           FROM reservations r JOIN reservation_devices rd ON rd.reservation_id = r.reservation_id
           LEFT JOIN reservation_ends e ON e.reservation_id = r.reservation_id
           WHERE rd.device_id = ANY($1::bigint[]) ORDER BY rd.device_id, r.reservation_start""",
        device_ids,
    )
    out: dict[int, list[Reservation]] = {}
    for r in rows:
        out.setdefault(r["device_id"], []).append(
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
        )
    return out


async def uncertified_runs(
    conn: asyncpg.Connection,
    windows: list[tuple[int, int, datetime, datetime, datetime | None]],
    settled_before: datetime,
    known: list[int],
) -> tuple[dict[int, list[Run]], list[asyncpg.Record]]:
    """For the (device, reservation, window start, window end, after) given: each device's runs with energy left that
    meet one of its windows, end after its `after` (offered_until) when given, and start by `settled_before`, in start
    order (domain.allocate_runs picks their reads); and every allocation of those runs (`run_id`, `reservation_id`,
    `lo`, `hi`, `parts_wh`: what their reads gave already, and to whom). Two statements for all of them. The runs
    `known` (just stored by this transaction, allocated nothing yet) are left out: the caller has them."""
    rows = await conn.fetch(
        """SELECT r.id, r.device_id, r.origin, r.start_us, r.ends_us, r.energy_wh, r.read_type
           FROM read_runs r
           WHERE r.id IN (SELECT m.id
                          FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $5::timestamptz[])
                               AS w (device_id, start_at, end_at, after)
                          JOIN read_runs m ON m.device_id = w.device_id AND m.end_at >= w.start_at
                                          AND m.start_at <= w.end_at AND m.end_at > w.after
                          WHERE m.left_wh > 0 AND m.start_at <= $4 AND m.id <> ALL($6::bigint[]))
           ORDER BY r.device_id, r.start_at, r.id""",
        [w[0] for w in windows],
        [w[2] for w in windows],
        [w[3] for w in windows],
        settled_before,
        [w[4] if w[4] is not None else NEVER for w in windows],
        known,
    )
    out: dict[int, list[Run]] = {}
    for run_id, device_id, origin, start_us, ends_us, energy_wh, read_type in rows:
        out.setdefault(device_id, []).append(
            Run(run_id, device_id, micros(origin), start_us, ends_us, energy_wh, read_type == "History")
        )
    if not rows:
        return out, []
    given = await conn.fetch(
        "SELECT run_id, reservation_id, lo, hi, parts_wh FROM run_allocations WHERE run_id = ANY($1::bigint[])",
        [r["id"] for r in rows],
    )
    return out, given


async def offered_until(conn: asyncpg.Connection, device_ids: list[int]) -> dict[int, datetime | None]:
    """Until when each device's reads were offered to its reservations (migration 0019), None when never or when a
    full look was asked since (the asks seen are consumed here). Caller holds the devices' locks."""
    rows = await conn.fetch(
        """WITH asked AS (DELETE FROM certification_rescans WHERE device_id = ANY($1::bigint[]) RETURNING device_id)
           SELECT l.device_id, CASE WHEN EXISTS (SELECT 1 FROM asked WHERE asked.device_id = l.device_id) THEN NULL
                                    ELSE l.offered_until END AS offered_until
           FROM device_locks l WHERE l.device_id = ANY($1::bigint[])""",
        device_ids,
    )
    return {r["device_id"]: r["offered_until"] for r in rows}


async def set_offered_until(conn: asyncpg.Connection, device_ids: list[int], moment: datetime) -> None:
    """The devices' reads ending at or before `moment` were offered to every reservation they have. Caller holds the
    devices' locks."""
    await conn.execute(
        "UPDATE device_locks SET offered_until = $2 WHERE device_id = ANY($1::bigint[])", device_ids, moment
    )


async def reservation_offered_line(conn: asyncpg.Connection, reservation_id: int) -> datetime:
    """Until when every device of the reservation was offered to it (the earliest offered_until; NEVER when one of
    them never was, e.g. a device not known yet)."""
    # NEVER is not sent: asyncpg writes datetime.min as -infinity and reads it back without a time zone
    row = await conn.fetchrow(
        """SELECT bool_or(l.offered_until IS NULL) AS never, min(l.offered_until) AS line FROM reservation_devices rd
           LEFT JOIN device_locks l ON l.device_id = rd.device_id WHERE rd.reservation_id = $1""",
        reservation_id,
    )
    line: datetime | None = row["line"]
    return NEVER if row["never"] or line is None else line


async def rescan(conn: asyncpg.Connection, device_ids: list[int]) -> None:
    """Ask for a full look at the devices' reads at their next allocation (something may have made an earlier read
    allocatable again). Takes no lock: callable under any lock."""
    if device_ids:
        await conn.execute(
            "INSERT INTO certification_rescans (device_id) SELECT unnest($1::bigint[])", sorted(set(device_ids))
        )


async def rescan_behind(conn: asyncpg.Connection, earliest_ends: dict[int, datetime]) -> None:
    """A full look for the devices whose earliest new read ends (device -> end) behind what was offered already (a
    read arriving late). Caller holds the devices' locks."""
    await conn.execute(
        """INSERT INTO certification_rescans (device_id)
           SELECT l.device_id FROM device_locks l
           JOIN unnest($1::bigint[], $2::timestamptz[]) AS r (device_id, end_at) ON r.device_id = l.device_id
           WHERE r.end_at <= l.offered_until""",
        list(earliest_ends),
        list(earliest_ends.values()),
    )


async def insert_allocations(
    conn: asyncpg.Connection, reservation_id: int, allocations: list[RunAllocation], round_ids: list[uuid.UUID | None]
) -> None:
    """The reservation's parts of its devices' runs of reads, per period, each with the round that issued it (None:
    not yet), and the runs' energy left less what they gave, in one statement. The database keeps left_wh >= 0."""
    await _insert_allocations(conn, reservation_id, allocations, round_ids, take=True)


# The runs of the rows (their device): their left_wh less the rows' Wh (taking), or as they are (rows kept).
_TAKE = """UPDATE read_runs SET left_wh = read_runs.left_wh - a.energy_wh
           FROM (SELECT run_id, sum(energy_wh) AS energy_wh FROM x GROUP BY run_id) a
           WHERE read_runs.id = a.run_id RETURNING read_runs.id, read_runs.device_id"""
_KEEP = "SELECT id, device_id FROM read_runs WHERE id IN (SELECT run_id FROM x)"


async def _insert_allocations(
    conn: asyncpg.Connection,
    reservation_id: int,
    allocations: list[RunAllocation],
    round_ids: list[uuid.UUID | None],
    *,
    take: bool,
) -> None:
    """Rows of run_allocations (sent per row: run, range, kind, Wh, first and last part's instants, its explicit parts
    as a range of one array, a period index into the periods sent once each with their round); `take`: the runs'
    left_wh less their Wh (False: rows kept of ones given back)."""
    periods: list[tuple[datetime, datetime, uuid.UUID | None]] = []
    index: list[int] = []
    parts: list[int] = []
    parts_a: list[int] = []
    parts_b: list[int] = []
    last: tuple[datetime, datetime, uuid.UUID | None] | None = None
    for a, round_id in zip(allocations, round_ids, strict=True):
        # a run's rows and the next runs' mostly share a period: compared with the last, not hashed
        if last is None or a.period_start != last[0] or a.period_end != last[1] or round_id != last[2]:
            last = (a.period_start, a.period_end, round_id)
            periods.append(last)
        index.append(len(periods))
        if a.parts is None:
            parts_a.append(0)
            parts_b.append(0)
        else:
            parts_a.append(len(parts) + 1)
            parts += a.parts
            parts_b.append(len(parts))
    await conn.execute(
        f"""WITH x AS (SELECT * FROM unnest($2::bigint[], $3::int[], $4::int[], $5::text[], $6::int[], $7::bigint[],
                                            $8::timestamptz[], $9::timestamptz[], $10::int[], $11::int[])
                       AS x (run_id, lo, hi, kind, period, energy_wh, start_at, end_at, pa, pb)),
            r AS ({_TAKE if take else _KEEP})
            INSERT INTO run_allocations (run_id, reservation_id, period_start, period_end, lo, hi, kind, device_id,
                                         start_at, end_at, energy_wh, parts_wh, round_id)
            SELECT x.run_id, $1, p.period_start, p.period_end, x.lo, x.hi, x.kind, r.device_id, x.start_at, x.end_at,
                   x.energy_wh, CASE WHEN x.pa = 0 THEN NULL ELSE ($12::bigint[])[x.pa : x.pb] END, p.round_id
            FROM x JOIN r ON r.id = x.run_id
            JOIN unnest($13::timestamptz[], $14::timestamptz[], $15::uuid[]) WITH ORDINALITY
                 AS p (period_start, period_end, round_id, n) ON p.n = x.period""",
        reservation_id,
        [a.run_id for a in allocations],
        [a.lo for a in allocations],
        [a.hi for a in allocations],
        [a.kind for a in allocations],
        index,
        [a.energy_wh for a in allocations],
        [a.start for a in allocations],
        [a.end for a in allocations],
        parts_a,
        parts_b,
        parts,
        [p[0] for p in periods],
        [p[1] for p in periods],
        [p[2] for p in periods],
    )


# -- issuance -----------------------------------------------------------------------------------------------------


async def issuance_terms(conn: asyncpg.Connection, reservation_id: int) -> asyncpg.Record | None:
    """What issuing for a reservation needs: its terms and effective end (`ends`), its buyer and uid, what was
    allocated to it and issued for it (when a target caps it; else 0: not needed), and whether a certificate reached
    its target."""
    return await conn.fetchrow(
        """SELECT r.reservation_id, r.uid, r.buyer_organization_id, r.reservation_start, r.frequency,
                  r.target_capacity_wh, r.authority_to_exceed, r.reservation_expiry,
                  CASE WHEN e.ended_at IS NOT NULL AND e.ended_at < r.reservation_end THEN e.ended_at
                       ELSE r.reservation_end END AS ends,
                  -- only a target needs them (summed over every allocation and certificate of the reservation)
                  CASE WHEN r.target_capacity_wh IS NOT NULL AND NOT r.authority_to_exceed THEN
                      coalesce((SELECT sum(a.energy_wh) FROM run_allocations a
                                WHERE a.reservation_id = r.reservation_id), 0) ELSE 0 END::bigint AS allocated_wh,
                  CASE WHEN r.target_capacity_wh IS NOT NULL AND NOT r.authority_to_exceed THEN
                      coalesce((SELECT sum(c.energy_wh) FROM certificates c
                                WHERE c.reservation_id = r.reservation_id), 0) ELSE 0 END::bigint AS issued_wh,
                  EXISTS (SELECT 1 FROM certificates c WHERE c.reservation_id = r.reservation_id AND c.target_reached)
                      AS target_reached
           FROM reservations r LEFT JOIN reservation_ends e ON e.reservation_id = r.reservation_id
           WHERE r.reservation_id = $1""",
        reservation_id,
    )


# A stored allocation's reads: the first one's start and the range's ends and Wh, sliced from the run's arrays.
_RUN_SLICE = """r.origin AS run_origin, r.read_type AS run_read_type,
                CASE WHEN a.lo = 0 THEN r.start_us ELSE r.ends_us[a.lo] END AS run_start_us,
                r.ends_us[a.lo + 1 : a.hi] AS run_ends_us, r.energy_wh[a.lo + 1 : a.hi] AS run_energy_wh"""

_DUE_ALLOCATIONS = f"""SELECT a.run_id, a.lo, a.hi, a.period_start, a.period_end, a.kind, a.device_id, a.start_at,
                              a.end_at, a.energy_wh, a.parts_wh, d.country_code, {_RUN_SLICE}
                       FROM run_allocations a JOIN read_runs r ON r.id = a.run_id
                       LEFT JOIN devices d ON d.device_id = a.device_id
                       WHERE a.reservation_id = $1 AND a.round_id IS NULL {{}}
                       ORDER BY a.period_start, a.kind, a.device_id, a.start_at, a.run_id, a.lo"""


def stored_allocation(row: Any) -> tuple[RunAllocation, Run]:
    """A stored allocation's row (with _RUN_SLICE) as (the allocation of indexes 0 to hi - lo, the reads of its
    range as a run)."""
    run = Run(
        row["run_id"],
        row["device_id"],
        micros(row["run_origin"]),
        row["run_start_us"],
        row["run_ends_us"],
        row["run_energy_wh"],
        row["run_read_type"] == "History",
    )
    allocation = RunAllocation(
        row["run_id"],
        0,
        row["hi"] - row["lo"],
        row["kind"],
        row["period_start"],
        row["period_end"],
        row["energy_wh"],
        row["parts_wh"],
        row["start_at"],
        row["end_at"],
    )
    return allocation, run


async def due_allocations(
    conn: asyncpg.Connection, reservation_id: int, settled_before: datetime, ends: datetime
) -> list[asyncpg.Record]:
    """The reservation's allocations not issued yet whose period has closed (at its end, or the window's end if
    earlier) by `settled_before`, with the device's country and the reads they cover (_RUN_SLICE), in period order."""
    if ends <= settled_before:  # the window has closed: every one
        return await conn.fetch(_DUE_ALLOCATIONS.format(""), reservation_id)
    # those of periods ended: an index range (migration 0021), not the open period's, which grow all period long
    return await conn.fetch(_DUE_ALLOCATIONS.format("AND a.period_end <= $2"), reservation_id, settled_before)


async def rounds_of_periods(
    conn: asyncpg.Connection, reservation_id: int, period_starts: list[datetime]
) -> dict[tuple[str, datetime], dict[str, int]]:
    """How many rounds of each kind the reservation had per (country key ('' unknown), period start)."""
    rows = await conn.fetch(
        """SELECT coalesce(country_code, '') AS country_key, period_start, kind, count(*) AS n FROM issuance_rounds
           WHERE reservation_id = $1 AND period_start = ANY($2::timestamptz[])
           GROUP BY country_code, period_start, kind""",
        reservation_id,
        period_starts,
    )
    out: dict[tuple[str, datetime], dict[str, int]] = {}
    for r in rows:
        out.setdefault((r["country_key"], r["period_start"]), {})[r["kind"]] = r["n"]
    return out


async def carries(conn: asyncpg.Connection, reservation_id: int) -> dict[str, dict[int, int]]:
    """The Wh carried to the next certificate of each (reservation, country key), per device."""
    rows = await conn.fetch(
        "SELECT country_key, device_id, carry_wh FROM issuance_carry WHERE reservation_id = $1", reservation_id
    )
    out: dict[str, dict[int, int]] = {}
    for r in rows:
        out.setdefault(r["country_key"], {})[r["device_id"]] = r["carry_wh"]
    return out


async def set_carries(conn: asyncpg.Connection, reservation_id: int, carried: dict[str, dict[int, int]]) -> None:
    """Replace the carry of these country keys of the reservation (per device; 0 Wh: none)."""
    if not carried:
        return
    await conn.execute(
        "DELETE FROM issuance_carry WHERE reservation_id = $1 AND country_key = ANY($2::text[])",
        reservation_id,
        list(carried),
    )
    rows = [(key, d, wh) for key, by_device in carried.items() for d, wh in by_device.items() if wh > 0]
    if rows:
        await conn.execute(
            """INSERT INTO issuance_carry (reservation_id, country_key, device_id, carry_wh)
               SELECT $1, c.country_key, c.device_id, c.carry_wh
               FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS c (country_key, device_id, carry_wh)""",
            reservation_id,
            [k for k, _, _ in rows],
            [d for _, d, _ in rows],
            [wh for _, _, wh in rows],
        )


async def transaction_time(conn: asyncpg.Connection) -> datetime:
    """The transaction's time: what now() writes (e.g. a certificate's issued_at) all through it."""
    moment: datetime = await conn.fetchval("SELECT now()")
    return moment


async def insert_rounds(conn: asyncpg.Connection, reservation_id: int, rounds: list[tuple[Any, ...]]) -> None:
    """Issuance rounds (id, country, kind, sequence, period start, end, allocated, carry in, issued, carry out,
    target reached) in one statement."""
    if not rounds:
        return
    await conn.execute(
        """INSERT INTO issuance_rounds (id, reservation_id, country_code, kind, sequence, period_start, period_end,
                                        allocated_wh, carry_in_wh, issued_wh, carry_out_wh, target_reached)
           SELECT r.id, $1, r.country_code, r.kind, r.sequence, r.period_start, r.period_end, r.allocated_wh,
                  r.carry_in_wh, r.issued_wh, r.carry_out_wh, r.target_reached
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::timestamptz[],
                       $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::boolean[])
                AS r (id, country_code, kind, sequence, period_start, period_end, allocated_wh, carry_in_wh,
                      issued_wh, carry_out_wh, target_reached)""",
        reservation_id,
        *(list(column) for column in zip(*rounds, strict=True)),
    )


async def take_allocations(
    conn: asyncpg.Connection, reservation_id: int, taken: list[tuple[int, datetime, int, uuid.UUID]]
) -> None:
    """Stored allocations (run, period start, first read) taken by a round (its id), in one statement."""
    if not taken:
        return
    await conn.execute(
        """UPDATE run_allocations a SET round_id = x.round_id
           FROM unnest($2::bigint[], $3::timestamptz[], $4::int[], $5::uuid[]) AS x (run_id, period_start, lo, round_id)
           WHERE a.reservation_id = $1 AND a.run_id = x.run_id AND a.period_start = x.period_start AND a.lo = x.lo
             AND a.round_id IS NULL""",
        reservation_id,
        *(list(column) for column in zip(*taken, strict=True)),
    )


async def insert_certificates(
    conn: asyncpg.Connection,
    reservation_id: int,
    buyer_organization_id: int,
    issued_at: datetime,
    certificates: list[tuple[Any, ...]],
    parts: list[tuple[uuid.UUID, uuid.UUID, int, int, int, datetime, datetime]],
) -> None:
    """Certificates (id, kind, sequence, country, period start, end, generation start, end, issued Wh, allocated,
    carry in, carry out, target reached) and their parts (part id, certificate, device, owner organization, Wh,
    generation start, end), a statement each."""
    await conn.execute(
        """INSERT INTO certificates (id, reservation_id, buyer_organization_id, issued_at, kind, sequence,
                                     country_code, period_start, period_end, generation_start, generation_end,
                                     energy_wh, allocated_wh, carry_in_wh, carry_out_wh, target_reached)
           SELECT c.id, $1, $2, $3, c.kind, c.sequence, c.country_code, c.period_start, c.period_end,
                  c.generation_start, c.generation_end, c.energy_wh, c.allocated_wh, c.carry_in_wh, c.carry_out_wh,
                  c.target_reached
           FROM unnest($4::uuid[], $5::text[], $6::int[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                       $10::timestamptz[], $11::timestamptz[], $12::bigint[], $13::bigint[], $14::bigint[],
                       $15::bigint[], $16::boolean[])
                AS c (id, kind, sequence, country_code, period_start, period_end, generation_start, generation_end,
                      energy_wh, allocated_wh, carry_in_wh, carry_out_wh, target_reached)""",
        reservation_id,
        buyer_organization_id,
        issued_at,
        *(list(column) for column in zip(*certificates, strict=True)),
    )
    await conn.execute(
        """INSERT INTO certificate_parts (id, certificate_id, device_id, owner_organization_id, energy_wh,
                                          generation_start, generation_end)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[],
                                $6::timestamptz[], $7::timestamptz[])""",
        *(list(column) for column in zip(*parts, strict=True)),
    )


async def known_devices(conn: asyncpg.Connection, device_ids: list[int]) -> set[int]:
    """Of `device_ids`, those known here (their row from device.registered or device.updated exists)."""
    rows = await conn.fetch("SELECT device_id FROM devices WHERE device_id = ANY($1::bigint[])", device_ids)
    return {r["device_id"] for r in rows}


async def device_countries(conn: asyncpg.Connection, device_ids: list[int]) -> dict[int, str | None]:
    """Each device's country (device.registered; None when unknown or not announced)."""
    rows = await conn.fetch(
        "SELECT device_id, country_code FROM devices WHERE device_id = ANY($1::bigint[])", device_ids
    )
    found = {r["device_id"]: r["country_code"] for r in rows}
    return {d: found.get(d) for d in device_ids}


async def devices_read_owners(conn: asyncpg.Connection, device_ids: list[int]) -> dict[int, int]:
    """The organization of each device's latest accepted read (the owner of its energy)."""
    rows = await conn.fetch(
        """SELECT d.device_id,
                  (SELECT organization_id FROM read_runs WHERE device_id = d.device_id
                   ORDER BY end_at DESC, id DESC LIMIT 1) AS organization_id
           FROM unnest($1::bigint[]) AS d (device_id)""",
        device_ids,
    )
    return {r["device_id"]: r["organization_id"] for r in rows if r["organization_id"] is not None}


async def release_pending(conn: asyncpg.Connection, reservation_id: int) -> int:
    """Give back to their reads what was allocated to the reservation but will never be issued (it expired, or
    its target was reached): that energy stays uncertified. How many Wh."""
    released = await conn.fetch(
        "DELETE FROM run_allocations WHERE reservation_id = $1 AND round_id IS NULL RETURNING run_id, device_id, energy_wh",
        reservation_id,
    )
    given_back: dict[int, int] = {}
    for r in released:
        given_back[r["run_id"]] = given_back.get(r["run_id"], 0) + r["energy_wh"]
    await _give_back(conn, given_back, {r["device_id"] for r in released})
    return sum(r["energy_wh"] for r in released)


async def _give_back(conn: asyncpg.Connection, given_back: dict[int, int], devices: set[int]) -> None:
    """Released allocations' energy (Wh per run) is left again on their runs (another reservation of their device
    may take it: a full look at the devices' reads is asked)."""
    if given_back:
        await rescan(conn, sorted(devices))
        await conn.execute(
            """UPDATE read_runs SET left_wh = read_runs.left_wh + x.energy_wh
               FROM unnest($1::bigint[], $2::bigint[]) AS x (run_id, energy_wh) WHERE read_runs.id = x.run_id""",
            list(given_back),
            list(given_back.values()),
        )


async def due_reservations(conn: asyncpg.Connection, settled_before: datetime, limit: int) -> list[int]:
    """Reservations with allocations whose period closed by `settled_before` (its end or the reservation's end)."""
    # Two index ranges (issue 16: LEAST(...) over every pending allocation read the open periods' too, all of them at
    # every sweep): allocations whose period ended (allocations_pending_end), and reservations whose window ended
    # with allocations pending (allocations_pending_due).
    rows = await conn.fetch(
        """SELECT reservation_id FROM (
               SELECT DISTINCT a.reservation_id FROM run_allocations a WHERE a.round_id IS NULL AND a.period_end <= $1
               UNION
               SELECT r.reservation_id FROM reservations r
               LEFT JOIN reservation_ends e ON e.reservation_id = r.reservation_id
               WHERE LEAST(r.reservation_end, e.ended_at) <= $1
                 AND EXISTS (SELECT 1 FROM run_allocations a WHERE a.reservation_id = r.reservation_id
                             AND a.round_id IS NULL)
           ) due ORDER BY reservation_id LIMIT $2""",
        settled_before,
        limit,
    )
    return [r["reservation_id"] for r in rows]


async def reservation(
    conn: asyncpg.Connection, *, reservation_id: int | None = None, uid: uuid.UUID | None = None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT r.*, array_agg(rd.device_id) AS device_ids,
                  (SELECT e.ended_at FROM reservation_ends e WHERE e.reservation_id = r.reservation_id) AS ended_at,
                  EXISTS (SELECT 1 FROM certificates c WHERE c.reservation_id = r.reservation_id AND c.target_reached)
                      AS target_reached
           FROM reservations r
           JOIN reservation_devices rd ON rd.reservation_id = r.reservation_id
           WHERE ($1::bigint IS NULL OR r.reservation_id = $1) AND ($2::uuid IS NULL OR r.uid = $2)
           GROUP BY r.reservation_id""",
        reservation_id,
        uid,
    )


# -- the certificate log: a certificate's parts (one device's energy each) are D-REC's per-device log ---------------

_PART = """p.id, p.certificate_id, p.device_id, p.owner_organization_id, p.energy_wh, p.generation_start,
           p.generation_end, c.reservation_id, c.buyer_organization_id, c.status, c.issued_at, c.country_code, c.kind,
           c.sequence, c.period_start, c.period_end, d.external_id, d.timezone"""
_ORDER = "c.period_start, c.kind DESC, c.sequence, c.country_code NULLS LAST, c.id"


async def parts_of_reservation(
    conn: asyncpg.Connection, reservation_id: int, owner_organization_id: int | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """One page of the parts of the reservation's certificates (of one owner's devices, if given), by period."""
    return await conn.fetch(
        f"""SELECT {_PART}
            FROM certificate_parts p JOIN certificates c ON c.id = p.certificate_id
            LEFT JOIN devices d ON d.device_id = p.device_id
            WHERE c.reservation_id = $1 AND ($2::bigint IS NULL OR p.owner_organization_id = $2)
            ORDER BY {_ORDER}, p.device_id LIMIT $3 OFFSET $4""",
        reservation_id,
        owner_organization_id,
        limit,
        offset,
    )


async def parts_totals(
    conn: asyncpg.Connection, reservation_id: int, owner_organization_id: int | None
) -> asyncpg.Record:
    """How many parts and Wh the whole view of parts_of_reservation holds: `count`, `energy_wh`."""
    return await conn.fetchrow(
        """SELECT count(*) AS count, coalesce(sum(p.energy_wh), 0)::bigint AS energy_wh
           FROM certificate_parts p JOIN certificates c ON c.id = p.certificate_id
           WHERE c.reservation_id = $1 AND ($2::bigint IS NULL OR p.owner_organization_id = $2)""",
        reservation_id,
        owner_organization_id,
    )


async def certificates_of_reservation(
    conn: asyncpg.Connection, reservation_id: int, owner_organization_id: int | None, limit: int, offset: int
) -> list[asyncpg.Record]:
    """One page of the reservation's certificates by period (those with a part of one owner's devices, if given,
    `visible_wh` then only those parts' energy)."""
    return await conn.fetch(
        f"""SELECT c.*, sum(p.energy_wh)::bigint AS visible_wh
            FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
            WHERE c.reservation_id = $1 AND ($2::bigint IS NULL OR p.owner_organization_id = $2)
            GROUP BY c.id ORDER BY {_ORDER} LIMIT $3 OFFSET $4""",
        reservation_id,
        owner_organization_id,
        limit,
        offset,
    )


async def certificate_totals(
    conn: asyncpg.Connection, reservation_id: int, owner_organization_id: int | None
) -> asyncpg.Record:
    """`count` and `energy_wh` (visible) of the whole view of certificates_of_reservation."""
    return await conn.fetchrow(
        """SELECT count(DISTINCT c.id) AS count, coalesce(sum(p.energy_wh), 0)::bigint AS energy_wh
           FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
           WHERE c.reservation_id = $1 AND ($2::bigint IS NULL OR p.owner_organization_id = $2)""",
        reservation_id,
        owner_organization_id,
    )


async def parts_of_certificates(
    conn: asyncpg.Connection, certificate_ids: list[uuid.UUID], owner_organization_id: int | None
) -> list[asyncpg.Record]:
    """The parts of these certificates (of one owner's devices, if given), by device."""
    return await conn.fetch(
        f"""SELECT {_PART}
            FROM certificate_parts p JOIN certificates c ON c.id = p.certificate_id
            LEFT JOIN devices d ON d.device_id = p.device_id
            WHERE p.certificate_id = ANY($1::uuid[]) AND ($2::bigint IS NULL OR p.owner_organization_id = $2)
            ORDER BY p.certificate_id, p.device_id""",
        certificate_ids,
        owner_organization_id,
    )


def _device_where(n: int) -> str:
    """A device's own filters (domain.DeviceLogFilter: fuel, type, off-taker, capacity, commissioning date, SDG
    benefits; an empty list or a NULL bound: no filter) on `d` (devices), parameters $n to $n+7 (_device_args)."""
    return f"""(cardinality(${n}::text[]) = 0 OR upper(d.fuel_code) = ANY(${n}::text[]))
              AND (cardinality(${n + 1}::text[]) = 0 OR upper(d.device_type_code) = ANY(${n + 1}::text[]))
              AND (cardinality(${n + 2}::text[]) = 0 OR upper(d.off_taker) = ANY(${n + 2}::text[]))
              AND (${n + 3}::float8 IS NULL OR d.capacity_kw >= ${n + 3})
              AND (${n + 4}::float8 IS NULL OR d.capacity_kw <= ${n + 4})
              AND (${n + 5}::timestamptz IS NULL OR d.commissioning_date >= ${n + 5})
              AND (${n + 6}::timestamptz IS NULL OR d.commissioning_date <= ${n + 6})
              AND (cardinality(${n + 7}::text[]) = 0
                   OR EXISTS (SELECT 1 FROM unnest(d.sdg_benefits) b WHERE upper(b) = ANY(${n + 7}::text[])))"""


def _device_args(f: DeviceLogFilter) -> list[object]:
    return [
        list(f.fuel_codes),
        list(f.device_type_codes),
        [o.upper() for o in f.off_takers],
        f.capacity_from_kw,
        f.capacity_to_kw,
        f.commissioned_from,
        f.commissioned_to,
        [b.upper() for b in f.sdg_benefits],
    ]


# An organization's parts (organization_parts, organization_totals): $1 owner, $2 buyer, then certifiedlogOfdevices'
# filters (domain.DeviceLogFilter; an empty list or a NULL bound: no filter), all together; $16 D-REC's
# oldcertificatelog apart (_OLD_LOG): the totals say whether the other log has entries.
_ORGANIZATION_WHERE = f"""($1::bigint IS NULL OR p.owner_organization_id = $1)
              AND ($2::bigint IS NULL OR c.buyer_organization_id = $2)
              AND (cardinality($3::text[]) = 0 OR d.external_id = ANY($3::text[]))
              AND (cardinality($4::text[]) = 0 OR upper(c.country_code) = ANY($4::text[]))
              AND {_device_where(5)}
              AND ($13::timestamptz IS NULL OR p.generation_end > $13)
              AND ($14::timestamptz IS NULL OR p.generation_start < $14)
              AND ($15::bigint IS NULL OR p.energy_wh >= $15)
              AND ($16::bigint IS NULL OR p.energy_wh <= $16)"""
_OLD_LOG = "($17::boolean IS NULL OR (c.kind = 'legacy') = $17)"


def _organization_args(owner: int | None, buyer: int | None, f: DeviceLogFilter) -> list[object]:
    return [
        owner,
        buyer,
        list(f.external_ids),
        list(f.countries),
        *_device_args(f),
        f.generated_from,
        f.generated_to,
        f.energy_from_wh,
        f.energy_to_wh,
        f.old_log,
    ]


async def organization_parts(
    conn: asyncpg.Connection,
    owner_organization_id: int | None,
    buyer_organization_id: int | None,
    limit: int,
    offset: int,
    f: DeviceLogFilter = NO_DEVICE_LOG_FILTER,
) -> list[asyncpg.Record]:
    """One page of the certificate parts of an organization's devices (owner) or of its reservations (buyer), or
    all (neither given), that pass the filters, newest reservation first, then by period; with the reservation's
    uid and name."""
    return await conn.fetch(
        f"""SELECT {_PART}, r.uid AS reservation_uid, r.name AS reservation_name
            FROM certificate_parts p JOIN certificates c ON c.id = p.certificate_id
            JOIN reservations r ON r.reservation_id = c.reservation_id
            LEFT JOIN devices d ON d.device_id = p.device_id
            WHERE {_ORGANIZATION_WHERE} AND {_OLD_LOG}
            ORDER BY c.reservation_id DESC, {_ORDER}, p.device_id LIMIT $18 OFFSET $19""",
        *_organization_args(owner_organization_id, buyer_organization_id, f),
        limit,
        offset,
    )


async def organization_totals(
    conn: asyncpg.Connection,
    owner_organization_id: int | None,
    buyer_organization_id: int | None,
    f: DeviceLogFilter = NO_DEVICE_LOG_FILTER,
) -> asyncpg.Record:
    """`count` and `energy_wh` of the whole view of organization_parts, and whether the view without the
    oldcertificatelog filter holds legacy certificates (`legacy`: D-REC's answer's oldcertificatelog)."""
    return await conn.fetchrow(
        f"""SELECT count(*) FILTER (WHERE {_OLD_LOG}) AS count,
                   coalesce(sum(p.energy_wh) FILTER (WHERE {_OLD_LOG}), 0)::bigint AS energy_wh,
                   coalesce(bool_or(c.kind = 'legacy'), false) AS legacy
            FROM certificate_parts p JOIN certificates c ON c.id = p.certificate_id
            LEFT JOIN devices d ON d.device_id = p.device_id
            WHERE {_ORGANIZATION_WHERE}""",
        *_organization_args(owner_organization_id, buyer_organization_id, f),
    )


async def owns_any_device(conn: asyncpg.Connection, device_ids: list[int], organization_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM devices WHERE device_id = ANY($1::bigint[]) AND organization_id = $2 LIMIT 1",
            device_ids,
            organization_id,
        )
        or await conn.fetchval(
            "SELECT true FROM read_runs WHERE device_id = ANY($1::bigint[]) AND organization_id = $2 LIMIT 1",
            device_ids,
            organization_id,
        )
    )


# -- the certificate read module: an organization's certificates, filtered (D-REC certificateReadModule) ----------

# $1 owner, $2 buyer, $3/$4 generated from/until, $5 the reservation's target at most, $6 countries; then the
# device filters (_device_where): a certificate is in when one of its parts in the view is of a matching device.
_READ_MODULE_WHERE = f"""($1::bigint IS NULL OR p.owner_organization_id = $1)
              AND ($2::bigint IS NULL OR c.buyer_organization_id = $2)
              AND ($3::timestamptz IS NULL OR c.generation_end >= $3)
              AND ($4::timestamptz IS NULL OR c.generation_start <= $4)
              AND ($5::bigint IS NULL OR r.target_capacity_wh <= $5)
              AND (cardinality($6::text[]) = 0 OR upper(c.country_code) = ANY($6::text[]))
              AND (NOT $7::boolean OR EXISTS (
                  SELECT 1 FROM certificate_parts fp JOIN devices d ON d.device_id = fp.device_id
                  WHERE fp.certificate_id = c.id AND ($1::bigint IS NULL OR fp.owner_organization_id = $1)
                    AND {_device_where(8)}))"""


def _read_module_args(
    owner: int | None,
    buyer: int | None,
    generated_from: datetime | None,
    generated_until: datetime | None,
    max_target_wh: int | None,
    f: DeviceLogFilter,
) -> list[object]:
    return [
        owner,
        buyer,
        generated_from,
        generated_until,
        max_target_wh,
        list(f.countries),
        f.on_devices,
        *_device_args(f),
    ]


async def read_module_certificates(
    conn: asyncpg.Connection,
    owner_organization_id: int | None,
    buyer_organization_id: int | None,
    generated_from: datetime | None,
    generated_until: datetime | None,
    max_target_wh: int | None,
    f: DeviceLogFilter,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """One page of the certificates of an organization's devices (owner: `visible_wh` then only their parts') or
    of its reservations (buyer), or all: those generated (in part) in [from, until], of reservations whose target
    is at most `max_target_wh`, of the countries and with a device passing the device filters; newest reservation
    first, then by period. With the reservation's uid and name."""
    return await conn.fetch(
        f"""SELECT c.*, sum(p.energy_wh)::bigint AS visible_wh, r.uid AS reservation_uid, r.name AS reservation_name
            FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
            JOIN reservations r ON r.reservation_id = c.reservation_id
            WHERE {_READ_MODULE_WHERE}
            GROUP BY c.id, r.uid, r.name ORDER BY c.reservation_id DESC, {_ORDER} LIMIT $16 OFFSET $17""",
        *_read_module_args(
            owner_organization_id, buyer_organization_id, generated_from, generated_until, max_target_wh, f
        ),
        limit,
        offset,
    )


async def read_module_totals(
    conn: asyncpg.Connection,
    owner_organization_id: int | None,
    buyer_organization_id: int | None,
    generated_from: datetime | None,
    generated_until: datetime | None,
    max_target_wh: int | None,
    f: DeviceLogFilter,
) -> asyncpg.Record:
    """`count` (certificates) and `energy_wh` (visible) of the whole view of read_module_certificates."""
    return await conn.fetchrow(
        f"""SELECT count(DISTINCT c.id) AS count, coalesce(sum(p.energy_wh), 0)::bigint AS energy_wh
            FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
            JOIN reservations r ON r.reservation_id = c.reservation_id
            WHERE {_READ_MODULE_WHERE}""",
        *_read_module_args(
            owner_organization_id, buyer_organization_id, generated_from, generated_until, max_target_wh, f
        ),
    )


# -- the per-device export: a reservation's parts in a stable order, a chunk at a time ----------------------------


async def export_parts(
    conn: asyncpg.Connection,
    reservation_id: int,
    owner_organization_id: int | None,
    after: tuple[datetime, uuid.UUID, int] | None,
    limit: int,
    offset: int = 0,
) -> list[asyncpg.Record]:
    """Up to `limit` parts of the reservation's certificates (of one owner's devices, if given) in the export's
    order (period start, certificate, device), after the key `after` (the last row of the previous chunk: later
    chunks never repeat or skip a row, whatever is issued meanwhile), else from `offset`."""
    return await conn.fetch(
        f"""SELECT {_PART}
            FROM certificate_parts p JOIN certificates c ON c.id = p.certificate_id
            LEFT JOIN devices d ON d.device_id = p.device_id
            WHERE c.reservation_id = $1 AND ($2::bigint IS NULL OR p.owner_organization_id = $2)
              AND ($3::timestamptz IS NULL OR (c.period_start, c.id, p.device_id) > ($3, $4::uuid, $5::bigint))
            ORDER BY c.period_start, c.id, p.device_id LIMIT $6 OFFSET $7""",
        reservation_id,
        owner_organization_id,
        after[0] if after else None,
        after[1] if after else None,
        after[2] if after else None,
        limit,
        offset,
    )
