"""How a reservation's issuance closes (issue 14): the sub-kWh carry left when it takes no more energy is shown,
never silently dropped (D-REC's whole-kWh rule: never issued as a fraction); a reservation.ended arriving after
periods past its end were issued leaves those certificates as they are, issues nothing after the end from then on,
and says so. Real database, events handed to the handlers as the consumer does."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_certificates import handlers

from .helpers import PERMS, T0, H, ids, reads, register, reservation, reservation_log
from .test_issuance import SETTLE, certificates_of, clocked, deliver, invariants, sweep  # noqa: F401 (clocked: a fixture)
from .test_reservation_end import ended

pytestmark = pytest.mark.asyncio(loop_scope="session")
KWH = 1000


def by_hand(values):
    """Hourly certificates of `values` (one read an hour) by D-REC's rule: whole kWh, the rest carried on."""
    carry, issued = 0, []
    for wh in values:
        whole = (carry + wh) // KWH * KWH
        issued.append(whole)
        carry = carry + wh - whole
    return [wh for wh in issued if wh], carry


async def deliver_end(runtime, event):
    from opendrec_kit.testing import dispatch

    return await dispatch(runtime.pool, "certificates", handlers.on_reservation_ended, event)


async def test_the_carry_left_when_a_reservation_ends_is_shown_not_dropped(service):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 961001, 961002
    await register(runtime, dev, owner)  # certified only once known here
    values = [1500, 1200, 800]
    created = reservation(res, dev, buyer, end=T0 + len(values) * H)  # its window holds exactly the reads
    assert await deliver(runtime, created)
    assert await deliver(runtime, reads(dev, owner, values))
    issued, carry = by_hand(values)
    assert carry > 0  # the inputs leave a remainder under 1 kWh
    assert [c["energy_wh"] for c in await certificates_of(runtime, res)] == issued
    body = (await reservation_log(client, issuer, created.reservation_uid, buyer)).json()
    assert body["totalEnergyWh"] == sum(issued) == sum(values) - carry
    # the window closed long ago: nothing more comes, the carry stays uncertified, and the answer says how much
    assert (body["carryWh"], body["carryFinal"]) == (carry, True)
    assert body["carry"] == [{"countryCode": "IND", "deviceId": dev, "carryWh": carry}]
    # the device's owner sees its device's carry; another organization's view of it does not exist
    mine = await client.get(
        f"/api/certificate-log/issuer/certified/{created.reservation_uid}",
        headers=issuer.headers(organization_id=owner, permissions=PERMS),
    )
    assert mine.status_code == 200 and mine.json()["carryWh"] == carry
    await invariants(runtime, res)


async def test_a_carry_still_waiting_for_the_next_period_is_not_final(clocked):  # noqa: F811 (the fixture)
    runtime, clock, client, issuer = clocked
    clock.now = datetime(2031, 3, 5, 12, tzinfo=UTC)
    dev, res = ids()
    buyer, owner = 961011, 961012
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, start=clock.now - 6 * H, end=clock.now + 24 * H)
    assert await deliver(runtime, created)
    values = [700, 900]
    assert await deliver(runtime, reads(dev, owner, values, start=clock.now - 4 * H))
    await sweep(runtime, clock)
    issued, carry = by_hand(values)
    body = (await reservation_log(client, issuer, created.reservation_uid, buyer)).json()
    assert body["totalEnergyWh"] == sum(issued) and (body["carryWh"], body["carryFinal"]) == (carry, False)
    # once the window has closed and settled, the same carry is final
    clock.now = created.reservation_end + SETTLE
    await sweep(runtime, clock)
    body = (await reservation_log(client, issuer, created.reservation_uid, buyer)).json()
    assert (body["carryWh"], body["carryFinal"], body["totalEnergyWh"]) == (carry, True, sum(issued))


async def test_an_end_arriving_after_its_periods_were_issued_reopens_nothing_and_stops_issuance(
    clocked,  # noqa: F811 (the fixture)
    caplog,
):
    runtime, clock, client, issuer = clocked
    day = timedelta(days=1)
    d0 = datetime(2031, 1, 7, tzinfo=UTC)
    clock.now = d0 + 3 * day + 12 * H  # January 10, noon
    dev, res = ids()
    buyer, owner = 961021, 961022
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, start=d0, end=d0 + 8 * day, frequency="daily")
    assert await deliver(runtime, created)
    assert await deliver(runtime, reads(dev, owner, [1000, 2000], start=d0 + 10 * H))  # January 7, 10:00-12:00
    assert await deliver(runtime, reads(dev, owner, [3000], start=d0 + day + 10 * H))  # January 8
    assert await deliver(runtime, reads(dev, owner, [4000], start=d0 + 3 * day + 8 * H))  # today: day still open
    await sweep(runtime, clock)
    before = [dict(c) for c in await certificates_of(runtime, res)]
    assert [(c["period_start"], c["energy_wh"]) for c in before] == [(d0, 3000), (d0 + day, 3000)]
    today = await runtime.pool.fetchval(
        "SELECT sum(energy_wh) FROM allocations WHERE reservation_id = $1 AND round_id IS NULL", res
    )
    assert today == 4000  # allocated, waiting for its day to close

    # the buyer's end, at January 7 11:00, is heard only now (after both days were issued)
    end_at = d0 + 11 * H
    with caplog.at_level(logging.WARNING, logger="opendrec_certificates.services"):
        assert await deliver_end(runtime, ended(created, end_at))
    assert any("arrived after certificates" in r.getMessage() for r in caplog.records)
    # the issued certificates stay as they were, never reopened
    assert [dict(c) for c in await certificates_of(runtime, res)] == before
    # what waited for today, after the end, went back to its read, uncertified
    assert not await runtime.pool.fetchval(
        "SELECT count(*) FROM allocations WHERE reservation_id = $1 AND round_id IS NULL", res
    )
    assert (
        await runtime.pool.fetchval(
            "SELECT certified_wh FROM reads WHERE device_id = $1 AND start_at = $2", dev, d0 + 3 * day + 8 * H
        )
        == 0
    )

    # from now on nothing is issued after the end: today closes, new reads after the end come; nothing more
    assert await deliver(runtime, reads(dev, owner, [5000], start=d0 + 3 * day + 13 * H))
    clock.now = d0 + 4 * day + SETTLE
    await sweep(runtime, clock)
    await sweep(runtime, clock)
    assert [dict(c) for c in await certificates_of(runtime, res)] == before
    assert not await runtime.pool.fetchval(
        "SELECT count(*) FROM allocations WHERE reservation_id = $1 AND round_id IS NULL", res
    )

    body = (await reservation_log(client, issuer, created.reservation_uid, buyer)).json()
    assert body["reservationEndedAt"] is not None and body["endArrivedLate"] is True
    # both days' certificates are of periods ending after 11:00 on January 7
    assert body["certifiedAfterEndWh"] == sum(c["energy_wh"] for c in before if c["period_end"] > end_at)
    await invariants(runtime, res)


async def test_an_end_known_in_time_is_not_late(service):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 961031, 961032
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer)
    assert await deliver(runtime, created)
    assert await deliver_end(runtime, ended(created, T0 + 2 * H))
    assert await deliver(runtime, reads(dev, owner, [1000, 2000, 3000]))  # hours 0-2: the last after the end
    body = (await reservation_log(client, issuer, created.reservation_uid, buyer)).json()
    assert (body["endArrivedLate"], body["certifiedAfterEndWh"], body["totalEnergyWh"]) == (False, 0, 3000)
