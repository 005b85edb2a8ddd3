"""Certificates benchmark: how fast read.ingested batches become certificates.

    python bench/certificates/bench_certification.py [--batches 10] [--batch 5000]

Starts an embedded Postgres (or uses DATABASE_URL when set), creates the certificates database
with its migrations, and hands each event to the service's own handlers as its consumer does
(`opendrec_kit.testing.dispatch`: inbox claim, use case and outbox in one unit of work, real
transactions); the broker is left out (it only delivers the events). One device,
one reservation over all its reads, minute reads; each frequency (hourly: 60 reads a certificate,
daily: 1,440) in its own database:

  certification: --batches read.ingested events of --batch intervals, handled one after the other
                 (reads stored, allocated, certificates and certificate.issued written);
                 prints reads/s, the certificates issued and the energy they hold.
  baseline:      a bare copy_records_to_table of the same reads into a table of a read a row (the
                 service's `reads` before migration 0021 stored runs of reads), one transaction a
                 batch, in the same run; prints reads/s and the ratio.

Goal (issue 16): certificates keep up with ingestion, >= 100,000 reads/s certified on this machine; the
slower frequency (hourly: the most certificates) is held to it. The bare COPY of the same run is printed beside
it (the machine is shared: compare ratios, and the load average printed with them). The exit status is 1 when the
goal is missed or the certificates do not hold exactly the energy of the reads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

import asyncpg
from pg_server import postgres_server  # this directory (the bench runs as a script)
from proc_cpu import cpu_seconds  # this directory (the bench runs as a script)

import opendrec_certificates
from opendrec_certificates import handlers
from opendrec_contracts import ReadIngested, ReservationCreated
from opendrec_contracts.testing import device_registered
from opendrec_kit import db, heap
from opendrec_kit.testing import dispatch

MINUTE = timedelta(minutes=1)
GOAL_READS_S = 100_000  # issue 16: certificates keep up with ingestion
MIGRATIONS = Path(opendrec_certificates.__file__).parent / "migrations"


def read_batches(device_id: int, owner: int, first: datetime, batches: int, size: int) -> list[ReadIngested]:
    """Consecutive minute reads of 100 Wh, `size` a batch, as readings announces them."""
    events = []
    for b in range(batches):
        t = first + b * size * MINUTE
        events.append(
            ReadIngested(
                batch_id=uuid.uuid4(),
                device_id=device_id,
                external_id=f"BENCH-{device_id}",
                organization_id=owner,
                read_type="Delta",
                **ReadIngested.columns(
                    [t + i * MINUTE for i in range(size)], [t + (i + 1) * MINUTE for i in range(size)], [100] * size
                ),
            )
        )
    return events


async def handle(pool: asyncpg.Pool, handler: Any, event: Any) -> None:
    await dispatch(pool, "certificates", handler, event, consumer="bench")


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds a Postgres backend has used (None: not on this machine, e.g. a DATABASE_URL elsewhere)."""
    return cpu_seconds(pid)


def _cpu_delta(before: float | None, pid: int) -> float | None:
    after = _backend_cpu(pid)
    return None if before is None or after is None else after - before


async def certification(
    server_url: str, frequency: Literal["hourly", "daily"], events: list[ReadIngested], first: datetime
) -> tuple[float, int, int, float, float | None]:
    """Seconds to handle `events`, certificates issued, Wh they hold, and the CPU seconds spent: this process's
    (the service's code) and its Postgres backend's (the SQL). CPU time is what the shared machine's load changes
    least."""
    url = await db.ensure_database(server_url, f"bench_cert_{frequency}_{uuid.uuid4().hex[:6]}")
    await db.migrate(url, MIGRATIONS)
    settlement = handlers.Settlement(settle=timedelta(0))
    device_id, reservation_id = 1, 2
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)  # one connection, as one consumer
    try:
        # Energy is certified only for devices the service knows (device.registered), as devices announces them.
        registered = device_registered(
            device_id, organization_id=events[0].organization_id, external_id=events[0].external_id
        )
        await handle(pool, partial(handlers.on_device_registered, settlement=settlement), registered)
        reservation = ReservationCreated(
            reservation_id=reservation_id, reservation_uid=uuid.uuid4(), name="bench", buyer_organization_id=3,
            device_ids=[device_id], reservation_start=first, reservation_end=first + timedelta(days=3650),
            frequency=frequency, target_capacity_wh=None, authority_to_exceed=True,
        )  # fmt: skip
        await handle(pool, partial(handlers.on_reservation_created, settlement=settlement), reservation)
        on_read_ingested = partial(handlers.on_read_ingested, settlement=settlement)
        backend = await pool.fetchval("SELECT pg_backend_pid()")
        backend_cpu, cpu = _backend_cpu(backend), time.process_time()
        start = time.perf_counter()
        for event in events:
            await handle(pool, on_read_ingested, event)
        elapsed = time.perf_counter() - start
        cpu, sql_cpu = time.process_time() - cpu, _cpu_delta(backend_cpu, backend)
        count, energy = await pool.fetchrow("SELECT count(*), coalesce(sum(energy_wh), 0) FROM certificates")
        return elapsed, count, int(energy), cpu, sql_cpu
    finally:
        await pool.close()


# The table of a read a row (the certificates service's `reads` before migration 0021, its no-overlap check left out):
# the baseline a bare COPY of the reads writes into.
READS_A_ROW = """CREATE TABLE bare_reads (
    id              bigserial PRIMARY KEY,
    device_id       bigint      NOT NULL,
    organization_id bigint      NOT NULL,
    start_at        timestamptz NOT NULL,
    end_at          timestamptz NOT NULL,
    energy_wh       bigint      NOT NULL CHECK (energy_wh >= 0),
    certified_wh    bigint      NOT NULL DEFAULT 0,
    batch_id        uuid        NOT NULL,
    read_type       text        NOT NULL DEFAULT 'Delta',
    UNIQUE (device_id, start_at, end_at),
    CHECK (certified_wh >= 0 AND certified_wh <= energy_wh)
) WITH (fillfactor = 50);
CREATE INDEX bare_reads_device_end ON bare_reads (device_id, end_at)"""


async def bare_copy(server_url: str, events: list[ReadIngested]) -> tuple[float, float | None]:
    """Seconds to COPY the same reads into a fresh table of a read a row (READS_A_ROW), one transaction a batch, and
    the CPU seconds of its Postgres backend."""
    url = await db.ensure_database(server_url, f"bench_cert_copy_{uuid.uuid4().hex[:6]}")
    batches = [
        [(e.device_id, e.organization_id, s, end, wh, e.batch_id) for s, end, wh in e.intervals()] for e in events
    ]  # built before the clock starts, as the events are
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(READS_A_ROW)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        backend_cpu = _backend_cpu(backend)
        start = time.perf_counter()
        for rows in batches:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "bare_reads",
                    records=rows,
                    columns=("device_id", "organization_id", "start_at", "end_at", "energy_wh", "batch_id"),
                )
        return time.perf_counter() - start, _cpu_delta(backend_cpu, backend)
    finally:
        await conn.close()


def _per_read(cpu_s: float | None, reads: int) -> str:
    return "?" if cpu_s is None else f"{cpu_s / reads * 1e6:6.1f} us"


def _load() -> str:
    """The machine's load average (1, 5, 15 minutes): it is shared, figures are only comparable within a run."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def main(args: argparse.Namespace) -> int:
    total = args.batches * args.batch
    # Reads end before now: energy is certified once settled, and readings refuses reads in the future.
    first = (datetime.now(UTC) - total * MINUTE - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    events = read_batches(1, 4, first, args.batches, args.batch)
    with postgres_server() as server_url:
        print(
            f"{total:,} minute reads of one device in {args.batches} read.ingested events of {args.batch:,}; postgres {server_url}"
        )
        print(f"  load average before: {_load()}")
        wrong = False
        copy, copy_sql = await bare_copy(server_url, events)
        rates = {}
        frequencies: tuple[Literal["hourly", "daily"], ...] = ("hourly", "daily")
        for frequency in frequencies:
            elapsed, count, energy, cpu, sql_cpu = await certification(server_url, frequency, events, first)
            rates[frequency] = total / elapsed
            print(
                f"  {frequency:7s} certificates: {elapsed:6.2f} s {total / elapsed:10,.0f} reads/s"
                f" ({total / elapsed / (total / copy):5.1%} of the bare COPY); {count:,} certificates holding"
                f" {energy:,} Wh"
            )
            print(f"          CPU per read: {_per_read(cpu, total)} service, {_per_read(sql_cpu, total)} Postgres")
            wrong |= energy != 100 * total
        print(f"  bare COPY of the reads: {copy:6.2f} s {total / copy:10,.0f} reads/s (same run)")
        print(f"          CPU per read: {_per_read(copy_sql, total)} Postgres")
        print(f"  load average after: {_load()}")
        slowest = min(rates.values())
        missed = slowest < GOAL_READS_S
        print(
            f"goal: >= {GOAL_READS_S:,} reads/s certified (the slowest frequency): {slowest:,.0f} reads/s,"
            f" {'MISSED' if missed else 'met'}"
        )
        if wrong:
            print(f"certificates do not hold the reads' {100 * total:,} Wh")
        return 1 if wrong or missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch", type=int, default=5000)
    arguments = parser.parse_args()
    # The garbage collector set as a service process sets it once started (kit runtime.entry_points): the handlers
    # are measured as they run there (left at Python's defaults, full collections walking every imported module's
    # objects cost ~6 us a read here).
    heap.settle()
    sys.exit(asyncio.run(main(arguments)))
