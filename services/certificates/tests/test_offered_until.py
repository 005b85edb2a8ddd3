"""A device's reads are offered to its reservations once (migration 0019: allocation reads only what ended after the
last round's settle line), and again whenever something may make an earlier read allocatable: energy given back, a
read arriving behind the line."""

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from opendrec_certificates import handlers
from opendrec_contracts import ReservationEnded
from opendrec_kit.testing import dispatch

from .helpers import H, reads, register_on, reservation

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Far ahead of the service's own clock: its certification sweep leaves these reads alone (never settled for it).
T = datetime(2031, 3, 3, 10, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def allocated(pool, device_id: int) -> dict[int, int]:
    rows = await pool.fetch(
        "SELECT reservation_id, sum(energy_wh) AS wh FROM allocations WHERE device_id = $1 GROUP BY 1", device_id
    )
    return {r["reservation_id"]: int(r["wh"]) for r in rows}


async def test_energy_given_back_by_an_early_end_is_offered_again(service):
    runtime, _client, _issuer = service
    clock = Clock(T)
    settlement = handlers.Settlement(settle=timedelta(seconds=1), clock=clock)
    device = uuid.uuid4().int % 10**9
    first, second, buyer, owner = device + 1, device + 2, 900401, 900402
    await register_on(runtime.pool, settlement, device, owner)  # certified only once known here
    # Both hold the device; the first (earlier start) is offered its reads first, daily: its period stays open.
    created = reservation(first, device, buyer, start=T - H, end=T + 24 * H, frequency="daily")
    for r in (created, reservation(second, device, buyer, start=T, end=T + 24 * H)):
        assert await dispatch(
            runtime.pool, "certificates", partial(handlers.on_reservation_created, settlement=settlement), r
        )
    clock.now = T + H + timedelta(seconds=2)
    on_reads = partial(handlers.on_read_ingested, settlement=settlement)
    assert await dispatch(runtime.pool, "certificates", on_reads, reads(device, owner, [5000], start=T))
    assert await allocated(runtime.pool, device) == {first: 5000}  # all of it: nothing left for the second

    # The first ends half-way through the read: the half after its end goes back to the read.
    ended = ReservationEnded(
        reservation_id=first,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=buyer,
        device_ids=[device],
        ended_at=T + H / 2,
        reason="ended_by_buyer",
    )
    assert await dispatch(runtime.pool, "certificates", handlers.on_reservation_ended, ended)
    # The device's next round (a read of the next hour, not settled yet) offers that half to the second reservation.
    assert await dispatch(runtime.pool, "certificates", on_reads, reads(device, owner, [7000], start=T + H))
    assert await allocated(runtime.pool, device) == {first: 2500, second: 2500}


async def test_a_read_arriving_behind_what_was_offered_is_offered(service):
    runtime, _client, _issuer = service
    clock = Clock(T + 3 * H + timedelta(seconds=2))
    settlement = handlers.Settlement(settle=timedelta(seconds=1), clock=clock)
    device = uuid.uuid4().int % 10**9
    res, buyer, owner = device + 1, 900411, 900412
    await register_on(runtime.pool, settlement, device, owner)
    assert await dispatch(
        runtime.pool,
        "certificates",
        partial(handlers.on_reservation_created, settlement=settlement),
        reservation(res, device, buyer, start=T, end=T + 24 * H, frequency="daily"),
    )
    on_reads = partial(handlers.on_read_ingested, settlement=settlement)
    assert await dispatch(runtime.pool, "certificates", on_reads, reads(device, owner, [1000], start=T + 2 * H))
    # a gap filled later: the first two hours, ending before the line the device was offered up to
    assert await dispatch(runtime.pool, "certificates", on_reads, reads(device, owner, [2000, 3000], start=T))
    assert await allocated(runtime.pool, device) == {res: 6000}
