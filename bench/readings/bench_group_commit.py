"""The group commit of single-read requests in-process (issue 16): CPU per read of the service's code and of Postgres.

    python bench/readings/bench_group_commit.py [--size 16] [--groups 800]

An embedded Postgres with the readings migrations and --size devices; then --groups groups, each of --size single
Delta reads (one per device, every one accepted), committed by `services.ReadGroups._commit` as the service does
once a group's window has passed: the group's statements, the rules, read.ingested written to the outbox (not
published: no broker here). Prints the CPU of this process and of Postgres per read. No HTTP, no relay: the part
of a single read that the group commit decides, measured without the noise of the rest.

Before and after: run it with another tree's packages first on PYTHONPATH
(`git archive <commit> libs services | tar -x -C DIR`, then PYTHONPATH=$(ls -d DIR/*/*/src | tr '\\n' :)).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import psutil

from opendrec_devstack.postgres import start_postgres
from opendrec_kit import Principal, UnitOfWork, db, heap
from opendrec_kit.owners import OwnerServices
from opendrec_readings import domain, services
from opendrec_readings.settings import Settings


def tree_cpu(pid: int | None) -> float:
    assert pid is not None
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


async def main(args: argparse.Namespace) -> int:
    n = args.size
    pg = start_postgres(Path(tempfile.mkdtemp(prefix="bench-group-commit-")) / "pgdata")
    try:
        await db.migrate(pg.url, Path(services.__file__).parent / "migrations")
        pool = await db.create_pool(pg.url, max_size=4)
        onboarded = datetime(2020, 1, 1, tzinfo=UTC)
        async with pool.acquire() as conn:
            for i in range(n):
                await conn.execute(
                    "INSERT INTO devices (device_id, device_uuid, external_id, organization_id, capacity_kw,"
                    " country_code, commissioning_date, onboarded_at) VALUES ($1, $2, $3, 42, 1000, 'IND', $4, $5)",
                    i + 1,
                    uuid.uuid4(),
                    f"METER-{i}",
                    onboarded - timedelta(days=30),
                    onboarded,
                )
                await conn.execute("INSERT INTO last_reads (device_id) VALUES ($1)", i + 1)
        settings = Settings(database_url=pg.url)
        owners = cast(OwnerServices, None)  # never asked: every device is known here
        groups = services.ReadGroups(
            lambda: UnitOfWork(pool, "readings"), settings, owners, window_s=0, max_size=n, concurrent=1
        )
        user = Principal(user_id=7, organization_id=42, organization_type="Developer", role="User",
                         email="meter@example.org", permissions={"READS_MANAGEMENT_CRUDL": "RW"})  # fmt: skip
        loop = asyncio.get_running_loop()
        heap.settle()  # the collector as a started service sets it (opendrec_kit.heap): measured as it runs there
        client, pg0 = 0.0, tree_cpu(pg.pid)  # Postgres does nothing else meanwhile
        for g in range(args.groups):
            end = (onboarded + timedelta(seconds=g + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            group = []
            for i in range(n):
                reads, errors = domain.parse_reads([""], [end], [1], "Delta", "Wh", None)
                submission = services.Submission(user, f"METER-{i}", None, "Delta", reads, errors, None, None)
                group.append((submission, loop.create_future()))
            cpu0 = time.process_time()
            await groups._commit(group)
            client += time.process_time() - cpu0
            if not all(isinstance(future.result(), services.Accepted) for _, future in group):
                print("a read was not accepted:", [future.result() for _, future in group][:3])
                return 1
        reads, database = n * args.groups, tree_cpu(pg.pid) - pg0
        print(f"group commit of {args.groups} groups of {n} single reads: {client / reads * 1e6:.1f} us of CPU a read "
              f"here, Postgres {database / reads * 1e6:.1f} us")  # fmt: skip
        await pool.close()
        return 0
    finally:
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=16, help="reads (devices) a group")
    parser.add_argument("--groups", type=int, default=800)
    sys.exit(asyncio.run(main(parser.parse_args())))
