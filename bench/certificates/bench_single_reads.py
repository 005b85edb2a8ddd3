"""Certificates under the D-REC client load (issue 16): what one single-read read.ingested event costs.

    python bench/certificates/bench_single_reads.py [--events 4000] [--devices 16] [--batch 200]

Every D-REC client sends one read per request, so readings announces one read.ingested per read. This hands N such
events (--devices devices of one hourly reservation, each device's reads consecutive, 1 Wh in 5 ms as the client
bench sends them, interleaved across devices as they arrive) to the service's real read.ingested handler on a real
Postgres, in the same run:

  one by one: as the consumer took them before (kit `messaging.handle_once`: an inbox claim, the use case and the
              outbox in one transaction per event);
  batched:    as the consumer takes them now (kit `messaging.handle_batch`, --batch events a transaction: the inbox
              rows of all of them in one statement, the use case once for the batch, `services.take_many_reads`).

Reads arrive unsettled (CERTIFY_SETTLE_S, as live reads do): the event stores them and marks their devices due; the
certification sweep (`services.certify_due`, the worker's round) allocates and issues them once settled, measured
after each. Prints, per way, the CPU per event of this process (the service's code) and of its Postgres backend,
beyond what the machine's load changes: compare them, not the wall time. Exit status 1 when a way does not certify
exactly the reads' energy, or when batching does not spend less than half the CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import asyncpg
from pg_server import postgres_server  # this directory (the bench runs as a script)
from proc_cpu import cpu_seconds  # this directory (the bench runs as a script)

import opendrec_certificates
from opendrec_certificates import handlers, services
from opendrec_contracts import Envelope, ReadIngested, ReservationCreated, envelope_for
from opendrec_contracts.testing import device_registered
from opendrec_kit import UnitOfWork, db, heap
from opendrec_kit.messaging import handle_batch, handle_once

MIGRATIONS = Path(opendrec_certificates.__file__).parent / "migrations"
STEP = timedelta(milliseconds=5)
SETTLE = timedelta(seconds=30)
PRODUCER = "certificates"


def single_reads(devices: int, count: int, first: datetime) -> list[tuple[Envelope, ReadIngested]]:
    """`count` events of one 1 Wh read each, the devices taking turns (each device's reads consecutive)."""
    out = []
    for i in range(count):
        device, n = 1 + i % devices, i // devices
        event = ReadIngested(
            batch_id=uuid.uuid4(),
            device_id=device,
            external_id=f"BENCH-{device}",
            organization_id=4,
            read_type="Delta",
            **ReadIngested.columns([first + n * STEP], [first + (n + 1) * STEP], [1]),
        )
        out.append((envelope_for(event, "readings"), event))
    return out


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds a Postgres backend has used (None: not on this machine, e.g. a DATABASE_URL elsewhere)."""
    return cpu_seconds(pid)


class Cpu:
    """CPU seconds of this process and of one Postgres backend between start() and stop()."""

    def __init__(self, backend: int) -> None:
        self.backend = backend
        self.service = self.sql = 0.0
        self.known = True

    def start(self) -> None:
        self._p, self._b = time.process_time(), _backend_cpu(self.backend)

    def stop(self) -> None:
        b = _backend_cpu(self.backend)
        self.service += time.process_time() - self._p
        if b is None or self._b is None:
            self.known = False
        else:
            self.sql += b - self._b


async def run(
    server_url: str,
    way: str,
    items: list[tuple[Envelope, ReadIngested]],
    devices: int,
    first: datetime,
    batch: int,
) -> tuple[float, Cpu, Cpu, int, int]:
    """Handle `items` one way in a fresh database, then sweep; (seconds, CPU handling, CPU sweeping, certificates,
    Wh certified or carried (under a kWh waits for the next certificate))."""
    url = await db.ensure_database(server_url, f"bench_single_{way.split()[0]}_{uuid.uuid4().hex[:6]}")
    await db.migrate(url, MIGRATIONS)
    last_end = items[-1][1].intervals()[-1][1]
    now = last_end + timedelta(seconds=1)  # the reads are live: none has settled yet
    settlement = handlers.Settlement(settle=SETTLE, clock=lambda: now)
    # one connection, as one consumer (kept: asyncpg replaces one after 50,000 queries, and its backend with it)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1, max_queries=10**9)
    try:
        # Energy is certified only for devices the service knows (device.registered), as devices announces them.
        for device in range(1, devices + 1):
            registered = device_registered(device, organization_id=4)
            await handle_once(
                pool,
                "bench",
                PRODUCER,
                envelope_for(registered, "devices"),
                registered,
                partial(handlers.on_device_registered, settlement=settlement),
            )
        reservation = ReservationCreated(
            reservation_id=2, reservation_uid=uuid.uuid4(), name="bench", buyer_organization_id=3,
            device_ids=list(range(1, devices + 1)), reservation_start=first, reservation_end=first + timedelta(days=1),
            frequency="hourly", target_capacity_wh=None, authority_to_exceed=True,
        )  # fmt: skip
        await handle_once(
            pool,
            "bench",
            PRODUCER,
            envelope_for(reservation, "reservations"),
            reservation,
            partial(handlers.on_reservation_created, settlement=settlement),
        )
        backend = await pool.fetchval("SELECT pg_backend_pid()")
        handling, sweeping = Cpu(backend), Cpu(backend)
        start = time.perf_counter()
        handling.start()
        if way == "one by one":
            one = partial(handlers.on_read_ingested, settlement=settlement)
            for envelope, event in items:
                await handle_once(pool, "bench", PRODUCER, envelope, event, one)
        else:
            many = partial(handlers.on_reads_ingested, settlement=settlement)
            for i in range(0, len(items), batch):
                await handle_batch(pool, "bench", PRODUCER, items[i : i + batch], many)
        handling.stop()
        elapsed = time.perf_counter() - start
        # Every period closed and settled: the sweep allocates and issues all of it.
        later = last_end + timedelta(hours=2)
        sweeping.start()
        await _sweep(lambda: services.certify_due(UnitOfWork(pool, PRODUCER), SETTLE, later))
        sweeping.stop()
        count, energy = await pool.fetchrow("SELECT count(*), coalesce(sum(energy_wh), 0) FROM certificates")
        carried = await pool.fetchval("SELECT coalesce(sum(carry_wh), 0) FROM issuance_carry")
        return elapsed, handling, sweeping, int(count), int(energy) + int(carried or 0)
    finally:
        await pool.close()


async def _sweep(round_: Callable[[], Awaitable[services.Sweep]]) -> None:
    while True:
        sweep = await round_()
        if sweep.due < services.DUE_BATCH and not sweep.issued:
            return


def _per_event(cpu: Cpu, n: int) -> str:
    sql = f"{cpu.sql / n * 1e3:6.3f}" if cpu.known else "     ?"
    return f"{cpu.service / n * 1e3:6.3f} ms service + {sql} ms Postgres"


async def main(args: argparse.Namespace) -> int:
    first = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    items = single_reads(args.devices, args.events, first)
    n = len(items)
    with postgres_server() as server_url:
        print(f"{n:,} read.ingested events of one read each, {args.devices} devices of one hourly reservation")
        print(f"  load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        wrong, per_event = False, {}
        for way in ("one by one", f"batched {args.batch}"):
            elapsed, handling, sweeping, count, energy = await run(
                server_url, way, items, args.devices, first, args.batch
            )
            per_event[way] = handling.service + handling.sql
            print(f"  {way:12s} handled {n / elapsed:9,.0f} events/s; CPU per event: {_per_event(handling, n)}")
            print(f"  {'':12s} then the sweep certified {count:,} certificates: {_per_event(sweeping, n)}")
            if energy != n:
                print(f"  {'':12s} WRONG: {energy:,} Wh certified or carried of {n:,}")
                wrong = True
        print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        one, batched = per_event.values()
        print(f"batched / one by one, CPU per event handled: {batched / one:.1%} (goal: under 50%)")
        return 1 if wrong or batched >= one / 2 else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--batch", type=int, default=200)
    arguments = parser.parse_args()
    # The garbage collector set as a service process sets it once started (kit runtime.entry_points): the handlers
    # are measured as they run there (left at Python's defaults, full collections walking every imported module's
    # objects cost ~6 us a read here).
    heap.settle()
    sys.exit(asyncio.run(main(arguments)))
