"""After a reservation ends (reservation.ended), energy generated after its end is not certified for it."""

from datetime import timedelta

import pytest

from opendrec_contracts import ReservationEnded
from opendrec_kit.testing import eventually, publish_events

from .helpers import T0, H, certificates, ids, reads, register, reservation, reservation_log, total_certified, z

pytestmark = pytest.mark.asyncio(loop_scope="session")


def ended(created, at, reason="ended_by_buyer"):
    return ReservationEnded(
        reservation_id=created.reservation_id,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=created.buyer_organization_id,
        device_ids=created.device_ids,
        ended_at=at,
        reason=reason,
    )


async def end_known(client, issuer, created, buyer, at):
    """The certificate log shows the end once the service took reservation.ended in."""
    r = await reservation_log(client, issuer, created.reservation_uid, buyer)
    return r.status_code == 200 and r.json()["reservationEndedAt"] == z(at)


async def first_total(client, issuer, reservation_id, buyer):
    # One read.ingested event is certified in one transaction: the first non-zero total is the final one.
    return await eventually(lambda: total_certified(client, issuer, reservation_id, buyer))


async def test_reads_after_an_early_end_go_to_the_next_reservation_not_the_ended_one(service, kafka_bootstrap):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, next_buyer, owner = 910001, 910002, 910003
    await register(runtime, dev, owner)  # certified only once known here
    first = reservation(res, dev, buyer)  # T0 .. T0+24h
    await publish_events(kafka_bootstrap, [first, ended(first, T0 + 2 * H)])
    await eventually(lambda: end_known(client, issuer, first, buyer, T0 + 2 * H))
    # The buyer ended it early, so the device was reserved again from then on.
    successor = res + 10**9
    await publish_events(kafka_bootstrap, [reservation(successor, dev, next_buyer, start=T0 + 2 * H)])
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000, 2000, 3000, 4000])])  # hours 0..3
    assert await first_total(client, issuer, res, buyer) == 3000  # hours 0 and 1 only
    assert await first_total(client, issuer, successor, next_buyer) == 7000
    entries = (await certificates(client, issuer, res, buyer)).json()
    assert max(c["certificateEndDate"] for c in entries) == z(T0 + 2 * H)
    assert max(c["certificate_issuance_enddate"] for c in entries) == z(T0 + 2 * H)
    body = (await reservation_log(client, issuer, first.reservation_uid, buyer)).json()
    assert body["reservationEndDate"] == z(T0 + 24 * H)


async def test_an_end_heard_before_the_reservation_itself_still_counts(service, kafka_bootstrap):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 910011, 910012
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer)
    at = T0 + timedelta(minutes=90)
    await publish_events(kafka_bootstrap, [ended(created, at)])  # another topic: may well come first
    await publish_events(kafka_bootstrap, [created])
    await eventually(lambda: end_known(client, issuer, created, buyer, at))
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000, 2000])])
    assert await first_total(client, issuer, res, buyer) == 2000  # hour 0 whole, half of hour 1


async def test_expiry_at_the_end_date_changes_nothing_and_a_repeated_end_is_ignored(service, kafka_bootstrap):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 910021, 910022
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, end=T0 + 3 * H)
    await publish_events(kafka_bootstrap, [created, ended(created, T0 + 3 * H, "expired")])
    await eventually(lambda: end_known(client, issuer, created, buyer, T0 + 3 * H))
    # A later, different end for the same reservation is not taken: a reservation ends once.
    await publish_events(kafka_bootstrap, [ended(created, T0 + H)])
    marker_dev, marker_res = ids()
    marker = reservation(marker_res, marker_dev, buyer)
    await publish_events(kafka_bootstrap, [marker, ended(marker, T0 + 5 * H)])  # same topic, after the repeat
    await eventually(lambda: end_known(client, issuer, marker, buyer, T0 + 5 * H))
    assert await end_known(client, issuer, created, buyer, T0 + 3 * H)
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000, 2000, 3000, 4000])])
    assert await first_total(client, issuer, res, buyer) == 6000
