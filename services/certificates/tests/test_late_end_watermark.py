"""Issue 13: no certificate outside its window, however late reservation.ended arrives. Certificates issue a period
only once reservations' watermark passed its end (opendrec_kit.watermarks): a consumer of reservation.ended paused
for longer than the settle time holds issuance back instead of letting periods past the end be certified.

Against the real database, events handed to the handlers as the consumers do; the watermarks recorded as the
subscriptions record them."""

import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path

import asyncpg
import pytest

import opendrec_certificates
from opendrec_certificates import handlers, services
from opendrec_contracts import ReservationEnded
from opendrec_kit import db, watermarks
from opendrec_kit.testing import dispatch
from opendrec_kit.uow import UnitOfWork

from .helpers import T0, H, ids, reads, registered, reservation

pytestmark = pytest.mark.asyncio(loop_scope="session")

MIGRATIONS = Path(opendrec_certificates.__file__).parent / "migrations"
LATER = T0 + 30 * 24 * H  # the wall clock: every period closed and settled long ago
SETTLE = timedelta(seconds=30)


@pytest.fixture
async def pool(postgres_url):
    url = await db.ensure_database(postgres_url, f"cert_wm_{uuid.uuid4().hex[:8]}")
    await db.migrate(url, MIGRATIONS)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def reservations_watermark(pool: asyncpg.Pool, at) -> None:
    """What the subscriptions record on meeting reservations' watermark at `at` (one partition each)."""
    for topic in services.RESERVATION_DECISIONS:
        await watermarks.record(pool, f"certificates.{topic}", topic, 0, at, 1)


def ended(created, at) -> ReservationEnded:
    return ReservationEnded(
        reservation_id=created.reservation_id,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=created.buyer_organization_id,
        device_ids=created.device_ids,
        ended_at=at,
        reason="ended_by_buyer",
    )


async def sweep(pool: asyncpg.Pool, settlement: handlers.Settlement) -> None:
    """The certification worker's step, as app.py runs it."""
    now = await services.known_until(UnitOfWork(pool, "certificates"), SETTLE, LATER, settlement.watermarked)
    await services.certify_due(UnitOfWork(pool, "certificates"), SETTLE, now)


async def issued(pool: asyncpg.Pool, reservation_id: int) -> list[tuple]:
    rows = await pool.fetch(
        "SELECT period_start, energy_wh FROM certificates WHERE reservation_id = $1 ORDER BY period_start",
        reservation_id,
    )
    return [((r["period_start"] - T0) / H, r["energy_wh"]) for r in rows]


async def scenario(pool: asyncpg.Pool, *, watermarked: bool) -> list[tuple]:
    """Hourly reservation from T0, 2 kWh an hour for 4 hours; the buyer ends it at T0+2h, but reservation.ended
    reaches certificates only after the sweep ran with the clock long past every period."""
    settlement = handlers.Settlement(SETTLE, clock=lambda: LATER, watermarked=watermarked)
    device, reservation_id = ids()
    created = reservation(reservation_id, device, 930001)
    for event, handler in [
        (registered(device, 930002), partial(handlers.on_device_registered, settlement=settlement)),
        (created, partial(handlers.on_reservation_created, settlement=settlement)),
        (reads(device, 930002, [2000, 2000, 2000, 2000]), partial(handlers.on_read_ingested, settlement=settlement)),
    ]:
        assert await dispatch(pool, "certificates", handler, event)
    # reservations' watermark stands at T0+1h30: its consumer of reservation.ended is paused behind the end
    await reservations_watermark(pool, T0 + timedelta(minutes=90))
    await sweep(pool, settlement)
    before_the_end_arrived = await issued(pool, reservation_id)
    if watermarked:  # at most the hour the watermark passed (the device's reads are taken once all settled)
        assert all(hour + 1 <= 1.5 for hour, _ in before_the_end_arrived), before_the_end_arrived
    assert await dispatch(pool, "certificates", handlers.on_reservation_ended, ended(created, T0 + 2 * H))
    await reservations_watermark(pool, T0 + 5 * H)  # the consumer caught up: the watermark after the end
    await sweep(pool, settlement)
    return await issued(pool, reservation_id)


async def test_a_late_end_leaves_no_certificate_past_it(pool):
    assert await scenario(pool, watermarked=True) == [(0, 2000), (1, 2000)]


async def test_without_the_watermark_the_same_late_end_would_leave_two_hours_certified_past_it(pool):
    """What the watermark prevents (and why it is on in every deployment): the same events, issuance by the clock."""
    assert await scenario(pool, watermarked=False) == [(0, 2000), (1, 2000), (2, 2000), (3, 2000)]


async def test_nothing_is_issued_before_a_first_watermark(pool):
    settlement = handlers.Settlement(SETTLE, clock=lambda: LATER, watermarked=True)
    device, reservation_id = ids()
    created = reservation(reservation_id, device, 930011)
    on_registered = partial(handlers.on_device_registered, settlement=settlement)
    assert await dispatch(pool, "certificates", on_registered, registered(device, 930012))
    assert await dispatch(
        pool, "certificates", partial(handlers.on_reservation_created, settlement=settlement), created
    )
    assert await dispatch(
        pool, "certificates", partial(handlers.on_read_ingested, settlement=settlement), reads(device, 930012, [3000])
    )
    await sweep(pool, settlement)
    assert await issued(pool, reservation_id) == []
    await reservations_watermark(pool, T0 + H)
    await sweep(pool, settlement)
    assert await issued(pool, reservation_id) == [(0, 3000)]
