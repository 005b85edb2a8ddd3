"""Period boundaries (issue 14), end to end against the database: reservation.created and read.ingested handed to
the handlers as the consumer does, then the issuance sweep. For each frequency (hourly, daily, weekly from Monday,
monthly across month ends of 28, 29, 30 and 31 days, quarterly, a year end) a read straddling a boundary is split by
time exactly; each certificate's Wh, carry and period are what a user computes by hand from the inputs."""

from datetime import UTC, datetime, timedelta

import pytest

from opendrec_certificates import services

from .helpers import ids, register, reservation
from .test_issuance import deliver, interval_reads, invariants

pytestmark = pytest.mark.asyncio(loop_scope="session")
KWH = 1000
US = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (frequency, the period before the boundary [first, boundary), the one after [boundary, last), how long the read
# runs before and after the boundary) — the calendar written out by hand, not computed by the code under test.
CASES = [
    (
        "hourly",
        utc(2024, 3, 10, 13),
        utc(2024, 3, 10, 14),
        utc(2024, 3, 10, 15),
        timedelta(minutes=17),
        timedelta(minutes=43),
    ),
    ("daily", utc(2024, 3, 10), utc(2024, 3, 11), utc(2024, 3, 12), timedelta(hours=7), timedelta(hours=5)),
    ("daily", utc(2024, 2, 28), utc(2024, 2, 29), utc(2024, 3, 1), timedelta(hours=1), timedelta(hours=23)),  # leap day
    # 2024-03-11 is a Monday: weeks [Mon 4, Mon 11) and [Mon 11, Mon 18)
    ("weekly", utc(2024, 3, 4), utc(2024, 3, 11), utc(2024, 3, 18), timedelta(days=2, hours=3), timedelta(days=1)),
    # a week across a year end: 2024-12-30 is a Monday
    ("weekly", utc(2024, 12, 23), utc(2024, 12, 30), utc(2025, 1, 6), timedelta(hours=30), timedelta(hours=50)),
    ("monthly", utc(2024, 1, 1), utc(2024, 2, 1), utc(2024, 3, 1), timedelta(days=1), timedelta(days=2)),  # 31 days
    # February of a leap year (29 days), the read starting on the leap day itself
    ("monthly", utc(2024, 2, 1), utc(2024, 3, 1), utc(2024, 4, 1), timedelta(hours=30), timedelta(hours=6)),
    ("monthly", utc(2023, 2, 1), utc(2023, 3, 1), utc(2023, 4, 1), timedelta(hours=20), timedelta(hours=4)),  # 28 days
    ("monthly", utc(2024, 4, 1), utc(2024, 5, 1), utc(2024, 6, 1), timedelta(hours=36), timedelta(hours=12)),  # 30 days
    ("quarterly", utc(2024, 1, 1), utc(2024, 4, 1), utc(2024, 7, 1), timedelta(days=3), timedelta(days=4)),
    ("quarterly", utc(2024, 7, 1), utc(2024, 10, 1), utc(2025, 1, 1), timedelta(days=1), timedelta(hours=1)),
    ("quarterly", utc(2024, 10, 1), utc(2025, 1, 1), utc(2025, 4, 1), timedelta(days=5), timedelta(days=2)),  # year end
]


@pytest.mark.parametrize(("frequency", "first", "boundary", "last", "before", "after"), CASES)
@pytest.mark.parametrize("energy_wh", [123_457, 2_999])
async def test_a_read_straddling_a_boundary_is_split_by_time_exactly(
    service, frequency, first, boundary, last, before, after, energy_wh
):
    runtime, _client, _issuer = service
    dev, res = ids()
    buyer, owner = 960001, 960002
    await register(runtime, dev, owner)  # certified only once known here
    # the reservation holds exactly the two periods: its window is theirs
    assert await deliver(runtime, reservation(res, dev, buyer, start=first, end=last, frequency=frequency))
    start, end = boundary - before, boundary + after
    assert await deliver(runtime, interval_reads(dev, owner, [(start, end, energy_wh)]))
    settlement = runtime.app.state.settlement
    await services.certify_due(runtime.uow(), settlement.settle, settlement.clock())  # both periods closed long ago

    # by hand: Wh in proportion to time, rounded down in the first period (whole microseconds), the rest after
    in_first = energy_wh * (before // US) // ((before + after) // US)
    in_second = energy_wh - in_first
    issued_first = in_first // KWH * KWH  # whole kWh; the remainder carried to the next period
    carry = in_first - issued_first
    issued_second = (carry + in_second) // KWH * KWH
    expected_rounds = [
        (first, boundary, in_first, 0, issued_first, carry),
        (boundary, last, in_second, carry, issued_second, carry + in_second - issued_second),
    ]
    got_rounds = await runtime.pool.fetch(
        """SELECT period_start, period_end, allocated_wh, carry_in_wh, issued_wh, carry_out_wh FROM issuance_rounds
           WHERE reservation_id = $1 AND kind = 'period' ORDER BY period_start""",
        res,
    )
    assert [tuple(r) for r in got_rounds] == expected_rounds

    got = await runtime.pool.fetch(
        """SELECT c.period_start, c.period_end, c.energy_wh, p.generation_start, p.generation_end, p.energy_wh AS part
           FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
           WHERE c.reservation_id = $1 ORDER BY c.period_start""",
        res,
    )
    expected = [
        (p_first, p_last, wh, gen_start, gen_end, wh)
        for p_first, p_last, wh, gen_start, gen_end in (
            (first, boundary, issued_first, start, boundary),
            (boundary, last, issued_second, boundary, end),
        )
        if wh > 0  # under 1 kWh: no certificate, all carried
    ]
    assert [tuple(r) for r in got] == expected
    # the read's allocations meet at the boundary, neither overlapping nor leaving a gap
    allocations = await runtime.pool.fetch(
        "SELECT start_at, end_at, energy_wh FROM allocations WHERE reservation_id = $1 ORDER BY start_at", res
    )
    assert [tuple(a) for a in allocations] == [(start, boundary, in_first), (boundary, end, in_second)]
    await invariants(runtime, res)
