"""Issue 13: reservations of any size certify without exhausting the server's lock table or deadlocking. A
reservation of 10,000 devices locks them all in one transaction (rows of device_locks, not advisory locks: the
shared lock table holds max_locks_per_transaction x max_connections, 6,400 by default, for every database), and
two overlapping reservations handled at once both finish."""

import asyncio
import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path

import asyncpg
import pytest

import opendrec_certificates
from opendrec_certificates import handlers, services
from opendrec_contracts import ReservationCreated
from opendrec_kit import db
from opendrec_kit.testing import dispatch
from opendrec_kit.uow import UnitOfWork

from .helpers import T0, H, reads, register_on

pytestmark = pytest.mark.asyncio(loop_scope="session")

MIGRATIONS = Path(opendrec_certificates.__file__).parent / "migrations"
SETTLEMENT = handlers.Settlement(timedelta(seconds=30), clock=lambda: T0 + 30 * 24 * H)
DEVICES = 10_000


@pytest.fixture
async def pool(postgres_url):
    url = await db.ensure_database(postgres_url, f"cert_large_{uuid.uuid4().hex[:8]}")
    await db.migrate(url, MIGRATIONS)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def reservation(reservation_id: int, device_ids: list[int], buyer: int, start, end) -> ReservationCreated:
    return ReservationCreated(
        reservation_id=reservation_id, reservation_uid=uuid.uuid4(), name=f"large-{reservation_id}",
        buyer_organization_id=buyer, device_ids=device_ids, reservation_start=start, reservation_end=end,
        frequency="daily",
    )  # fmt: skip


async def test_a_reservation_of_10000_devices_and_two_overlapping_ones_at_once(pool):
    first = uuid.uuid4().int % 10**9 * 100_000
    devices = list(range(first, first + DEVICES))
    on_reads = partial(handlers.on_read_ingested, settlement=SETTLEMENT)
    on_reservation = partial(handlers.on_reservation_created, settlement=SETTLEMENT)
    # two devices with energy, at either end of the id range
    for device in (devices[0], devices[-1]):
        await register_on(pool, SETTLEMENT, device, 940001)  # certified only once known here
        assert await dispatch(pool, "certificates", on_reads, reads(device, 940001, [1000] * 48))
    locks = await pool.fetchval("SHOW max_locks_per_transaction")
    connections = await pool.fetchval("SHOW max_connections")
    assert int(locks) * int(connections) < DEVICES  # more devices than the shared lock table holds

    whole = reservation(first + 1, devices, 940002, T0, T0 + 24 * H)
    assert await dispatch(pool, "certificates", on_reservation, whole)
    # the next day: two reservations sharing half their devices, handled at the same time
    a = reservation(first + 2, devices[: DEVICES // 2 + 100], 940003, T0 + 24 * H, T0 + 36 * H)
    b = reservation(first + 3, devices[DEVICES // 2 - 100 :], 940004, T0 + 36 * H, T0 + 48 * H)
    done = await asyncio.gather(*(dispatch(pool, "certificates", on_reservation, r) for r in (a, b)))
    assert done == [True, True]
    # the 9,998 devices that sent nothing are not known here: the sweep issues the closed periods without them
    await services.certify_due(UnitOfWork(pool, "certificates"), SETTLEMENT.settle, SETTLEMENT.clock())

    held = await pool.fetch(
        "SELECT reservation_id, sum(energy_wh) AS wh FROM certificates WHERE reservation_id = ANY($1::bigint[])"
        " GROUP BY reservation_id",
        [first + 1, first + 2, first + 3],
    )
    # each of the two devices made 24 kWh a day: day one to the whole reservation, day two split at noon
    assert {r["reservation_id"]: r["wh"] for r in held} == {first + 1: 48_000, first + 2: 12_000, first + 3: 12_000}
