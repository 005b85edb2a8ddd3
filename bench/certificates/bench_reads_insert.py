"""What the no-overlap rule costs the insert of reads (migration 0021's check on runs of reads, 0020's rule; before
0020, 0018's GiST constraint).

    python bench/certificates/bench_reads_insert.py [--batches 10] [--batch 5000] [--rounds 2]

Starts an embedded Postgres (or uses DATABASE_URL when set), and writes --batches read.ingested events of --batch
consecutive minute reads of one device with the service's own statement (`store.insert_reads`, one transaction an
event) into a fresh certificates database per way, the ways interleaved --rounds times:

  check:  as migrated (the statement-level check of migration 0021, per chain of new runs of reads);
  none:   the check dropped (the insert alone: the baseline);
  gist:   the check dropped and 0018's exclusion constraint put on the runs' ranges instead (what a constraint would
          cost; stricter than the rule: it would refuse an instant on a read boundary inside a run).

Prints the CPU per read of the Postgres backend (what the machine's load changes least). Goal: the check adds less
than half of the insert's own cost (check / none < 1.5, the best of the rounds); exit status 1 when missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from pg_server import postgres_server  # this directory (the bench runs as a script)
from proc_cpu import cpu_seconds  # this directory (the bench runs as a script)

import opendrec_certificates
from opendrec_certificates import store
from opendrec_contracts import ReadIngested
from opendrec_kit import db

MIGRATIONS = Path(opendrec_certificates.__file__).parent / "migrations"
MINUTE = timedelta(minutes=1)
GOAL_RATIO = 1.5
GIST = """ALTER TABLE read_runs ADD CONSTRAINT reads_no_overlap EXCLUDE USING gist (
    int8range(device_id, device_id, '[]') WITH &&,
    (CASE WHEN start_at = end_at THEN tstzrange(start_at, end_at, '[]') ELSE tstzrange(start_at, end_at, '()') END) WITH &&
)"""
WAYS = {
    "check": [],
    "none": ["DROP TRIGGER read_runs_no_overlap ON read_runs"],
    "gist": ["DROP TRIGGER read_runs_no_overlap ON read_runs", GIST],
}


def events(batches: int, size: int) -> list[ReadIngested]:
    first = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for b in range(batches):
        t = first + b * size * MINUTE
        starts = [t + i * MINUTE for i in range(size)]
        out.append(
            ReadIngested(
                batch_id=uuid.uuid4(),
                device_id=1,
                external_id="BENCH-1",
                organization_id=4,
                read_type="Delta",
                **ReadIngested.columns(starts, [s + MINUTE for s in starts], [100] * size),
            )
        )
    return out


async def insert_all(server_url: str, way: str, batch_events: list[ReadIngested]) -> float | None:
    """Postgres CPU seconds to insert the events' reads, one transaction an event (None: not on this machine)."""
    url = await db.ensure_database(server_url, f"bench_reads_{way}_{uuid.uuid4().hex[:6]}")
    await db.migrate(url, MIGRATIONS)
    conn = await asyncpg.connect(url)
    try:
        for statement in WAYS[way]:
            await conn.execute(statement)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        before = cpu_seconds(backend)
        for event in batch_events:
            async with conn.transaction():
                await store.insert_reads(conn, [event])
        after = cpu_seconds(backend)
        return None if before is None or after is None else after - before
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> int:
    batch_events = events(args.batches, args.batch)
    reads = args.batches * args.batch
    best: dict[str, float] = {}
    with postgres_server() as server_url:
        print(f"{reads:,} minute reads of one device in {args.batches} events; load {os.getloadavg()[0]:.2f}")
        for _ in range(args.rounds):
            for way in WAYS:
                cpu = await insert_all(server_url, way, batch_events)
                if cpu is None:
                    print("  Postgres is not on this machine: no CPU figures")
                    return 1
                print(f"  {way:6s} Postgres CPU per read {cpu / reads * 1e6:6.2f} us")
                best[way] = min(best.get(way, cpu), cpu)
    ratio = best["check"] / best["none"]
    missed = ratio >= GOAL_RATIO
    print(
        f"goal: the check adds less than half of the insert's cost (check / none < {GOAL_RATIO}): {ratio:.2f}"
        f" (the GiST constraint: {best['gist'] / best['none']:.2f}), {'MISSED' if missed else 'met'}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    sys.exit(asyncio.run(main(parser.parse_args())))
