"""A reservation's expiry (nothing certified from then on) and its changed terms (reservation.updated)."""

import pytest

from opendrec_contracts import ReservationUpdated
from opendrec_kit.testing import eventually, publish_events

from .helpers import T0, H, certificates, ids, reads, register, reservation, reservation_log, total_certified

pytestmark = pytest.mark.asyncio(loop_scope="session")


def updated(created, revision, **kw):
    return ReservationUpdated(
        reservation_id=created.reservation_id,
        reservation_uid=created.reservation_uid,
        revision=revision,
        name=kw.get("name", created.name),
        buyer_organization_id=created.buyer_organization_id,
        device_ids=created.device_ids,
        reservation_start=created.reservation_start,
        reservation_end=kw.get("end", created.reservation_end),
        target_capacity_wh=kw.get("target", created.target_capacity_wh),
        authority_to_exceed=kw.get("exceed", created.authority_to_exceed),
        reservation_expiry=kw.get("expiry", created.reservation_expiry),
    )


async def total_is(client, issuer, reservation_id, buyer, value):
    return await total_certified(client, issuer, reservation_id, buyer) == value


async def test_an_expired_reservation_gets_no_certificate(service, kafka_bootstrap):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, other_buyer, owner = 920001, 920002, 920003
    await register(runtime, dev, owner)  # certified only once known here
    # The first reservation's expiry has passed (T0 is long ago); the second has none.
    expired = reservation(res, dev, buyer, end=T0 + 2 * H).model_copy(update={"reservation_expiry": T0 + 3 * H})
    live = reservation(res + 10**9, dev, other_buyer, start=T0 + 2 * H, end=T0 + 4 * H)
    await publish_events(kafka_bootstrap, [expired, live])
    await eventually(lambda: _known(client, issuer, res + 10**9, other_buyer))
    await eventually(lambda: _known(client, issuer, res, buyer))
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000, 2000, 3000, 4000])])
    # One batch is certified in one transaction: once the live one has its share, the expired one had its chance.
    await eventually(lambda: total_is(client, issuer, res + 10**9, other_buyer, 7000))
    assert await total_certified(client, issuer, res, buyer) == 0


async def test_a_later_end_and_a_higher_target_are_certified_when_the_change_comes(service, kafka_bootstrap):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 920011, 920012
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, end=T0 + 2 * H, target=4000, exceed=False)
    await publish_events(kafka_bootstrap, [created, reads(dev, owner, [1000, 2000, 3000, 4000])])
    await eventually(lambda: total_is(client, issuer, res, buyer, 3000))  # hours 0, 1: the window's end
    await publish_events(kafka_bootstrap, [updated(created, 1, end=T0 + 3 * H, target=5000)])
    # hour 2 up to the new target: the certificate that reaches it is cut to exactly what remains
    await eventually(lambda: total_is(client, issuer, res, buyer, 5000))
    body = (await reservation_log(client, issuer, created.reservation_uid, buyer)).json()
    assert [(c["energyWh"], c["targetReached"]) for c in body["certificates"]] == [
        (1000, False),
        (2000, False),
        (2000, True),
    ]
    assert body["reservationEndDate"] == "2025-03-01T13:00:00.000Z"
    # The reservation ends there (the reservations service ends it on target_reached): a later change giving it
    # the authority to exceed and a later end issues nothing more for it.
    await publish_events(kafka_bootstrap, [updated(created, 2, end=T0 + 4 * H, exceed=True, target=5000)])
    await eventually(lambda: _named_end(client, issuer, created.reservation_uid, buyer, "2025-03-01T14:00:00.000Z"))
    assert await total_certified(client, issuer, res, buyer) == 5000


async def _named_end(client, issuer, uid, buyer, end):
    r = await reservation_log(client, issuer, uid, buyer)
    return r.status_code == 200 and r.json()["reservationEndDate"] == end


async def test_a_change_heard_before_the_reservation_and_a_stale_one_are_handled(service, kafka_bootstrap):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 920021, 920022
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, end=T0 + 4 * H)
    newest = updated(created, 2, end=T0 + H, name="shortened")
    stale = updated(created, 1, end=T0 + 4 * H, name="stale")
    # reservation.updated travels on its own topic: it may come before reservation.created, and out of order.
    await publish_events(kafka_bootstrap, [newest, stale])
    await publish_events(kafka_bootstrap, [created])
    await eventually(lambda: _named(client, issuer, created.reservation_uid, buyer, "shortened"))
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000, 2000, 3000, 4000])])
    await eventually(lambda: total_is(client, issuer, res, buyer, 1000))  # hour 0 only: the newest end holds


async def _known(client, issuer, reservation_id, buyer):
    return (await certificates(client, issuer, reservation_id, buyer)).status_code == 200


async def _named(client, issuer, uid, buyer, name):
    r = await reservation_log(client, issuer, uid, buyer)
    return r.status_code == 200 and r.json()["reservationName"] == name
