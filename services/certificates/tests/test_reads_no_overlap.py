"""No two reads of a device overlap (migration 0020's statement-level check, which replaced 0018's exclusion
constraint), against the real database: random statements of reads of two devices on a small grid of minutes (many
instants, touching reads, duplicates, late reads in gaps, reads covering stored instants), each written as
take_many_reads writes them (store.insert_reads, one statement), must be refused exactly when a pairwise check says
one of its new reads overlaps another read of its device (readings' rule: s < e' and s' < e, an instant inside a
read meets it, touching reads don't, the same (device, start, end) again is a duplicate skipped), and nothing else."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opendrec_certificates import store
from opendrec_contracts import ReadIngested

from .helpers import database_examples, migrated_database

BASE = datetime(2027, 6, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture(scope="module")
def database(postgres_url):
    """A certificates database of this module's own (each example uses devices of its own)."""
    return migrated_database(postgres_url, "cert_overlap")


Read = tuple[int, int, int]  # (device 0 or 1, start minute, end minute)
read_ = st.tuples(st.integers(0, 1), st.integers(0, 40), st.integers(0, 4)).map(lambda r: (r[0], r[1], r[1] + r[2]))
statements = st.lists(st.lists(read_, min_size=1, max_size=8), min_size=1, max_size=10)


def overlap(a: Read, b: Read) -> bool:
    return a[0] == b[0] and (a[1], a[2]) != (b[1], b[2]) and a[1] < b[2] and b[1] < a[2]


async def insert(conn: asyncpg.Connection, devices: tuple[int, int], reads: list[Read]) -> None:
    """The reads in one statement, as take_many_reads writes a consumer's batch: one read.ingested each."""
    events = [
        ReadIngested(
            batch_id=uuid.uuid4(),
            device_id=devices[d],
            external_id=f"overlap-{devices[d]}",
            organization_id=970001,
            read_type="Delta",
            **ReadIngested.columns([BASE + s * MINUTE], [BASE + e * MINUTE], [1]),
        )
        for d, s, e in reads
    ]
    async with conn.transaction():
        await store.insert_reads(conn, events)


async def scenario(url: str, batches: list[list[Read]]) -> None:
    n = uuid.uuid4().int % 10**9 * 10
    devices = (n, n + 1)
    stored: set[Read] = set()
    conn = await asyncpg.connect(url)
    try:
        for reads in batches:
            new = {r for r in reads if r not in stored}
            refused = any(overlap(a, b) for a in new for b in new | stored)
            if refused:
                with pytest.raises(asyncpg.ExclusionViolationError, match="reads_no_overlap"):
                    await insert(conn, devices, reads)
            else:
                await insert(conn, devices, reads)
                stored |= new
            rows = await conn.fetch(
                "SELECT device_id, start_at, end_at FROM reads WHERE device_id = ANY($1::bigint[])", list(devices)
            )
            assert sorted(
                (devices.index(r["device_id"]), (r["start_at"] - BASE) // MINUTE, (r["end_at"] - BASE) // MINUTE)
                for r in rows
            ) == sorted(stored)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "batches",
    [
        [[(0, 0, 10)], [(0, 5, 15)]],  # overlaps a stored read's end
        [[(0, 10, 20)], [(0, 5, 15)]],  # overlaps a stored read's start
        [[(0, 10, 20)], [(0, 12, 12)]],  # an instant inside a stored read
        [[(0, 12, 12)], [(0, 10, 20)]],  # a read covering a stored instant
        [[(0, 10, 11), (0, 13, 14)], [(0, 5, 30)]],  # a read covering stored reads, none at its ends
        [[(0, 0, 10), (0, 10, 20), (0, 20, 20), (0, 20, 30)], [(0, 10, 10), (0, 30, 30)]],  # touching, boundaries
        [[(0, 0, 10), (0, 30, 40)], [(0, 10, 20), (0, 20, 30)]],  # late reads filling a gap exactly
        [[(0, 20, 20)], [(0, 10, 20), (0, 20, 30)]],  # back-to-back new reads around a stored instant
        [[(0, 0, 10)], [(0, 0, 10), (0, 10, 20)], [(0, 0, 10)]],  # duplicates skipped, the rest taken
        [[(0, 0, 10), (0, 5, 15)]],  # two new reads overlapping each other
        [[(0, 0, 10), (0, 10, 20), (0, 15, 25)]],  # inside one run of new reads
        [[(0, 0, 10)], [(1, 5, 15)]],  # another device's reads never meet
    ],
)
def test_overlapping_reads_are_refused_and_the_others_taken(database, batches):
    asyncio.run(scenario(database, batches))


# Each example is a few real statements: 200 of them, and no long shrinking (a failure prints its example).
@database_examples(200)
@given(batches=statements)
def test_a_statement_of_reads_is_refused_exactly_when_one_overlaps(database, batches):
    asyncio.run(scenario(database, batches))
