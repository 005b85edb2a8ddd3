"""Read-your-writes (opendrec_kit.owners): a reservation's log read right after the reservation was created, before
reservation.created reached this service, is answered: the reservation is asked of its owner (a stand-in here) on
the caller's behalf and taken as its events would be; the real events, arriving afterwards, change nothing."""

import asyncio
from datetime import UTC, datetime
from functools import partial

import pytest

from opendrec_certificates import handlers
from opendrec_contracts import ReservationEnded
from opendrec_kit.testing import dispatch, handling

from .helpers import PERMS, T0, H, certificates, ids, reads, register, reservation
from .test_reservation_terms import updated

pytestmark = pytest.mark.asyncio(loop_scope="session")
NOW = datetime.now(UTC)


def on(runtime, handler):
    """The handler as the consumer calls it (the certifying ones with the service's settlement)."""
    if handler is handlers.on_reservation_ended:
        return handler
    return partial(handler, settlement=runtime.app.state.settlement)


async def deliver(runtime, handler, event):
    return await dispatch(runtime.pool, "certificates", on(runtime, handler), event)


async def by_uid(client, issuer, uid, org, new=False):
    path = f"/api/certificate-log/issuer/certified/{'new/' if new else ''}{uid}"
    return await client.get(path, headers=issuer.headers(organization_id=org, permissions=PERMS))


async def stored(runtime, reservation_id):
    """(reservation rows, reservation_devices rows, certificates, certified Wh of the reads) of the reservation."""
    return tuple(
        await runtime.pool.fetchrow(
            """SELECT (SELECT count(*) FROM reservations WHERE reservation_id = $1) AS reservations,
                      (SELECT count(*) FROM reservation_devices WHERE reservation_id = $1) AS devices,
                      (SELECT count(*) FROM certificates WHERE reservation_id = $1) AS certificates,
                      (SELECT coalesce(sum(energy_wh), 0) FROM allocations WHERE reservation_id = $1) AS wh""",
            reservation_id,
        )
    )


async def test_a_log_read_before_reservation_created_arrives_is_learned_certified_and_not_doubled_by_the_event(
    service, reservations_owner
):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 930001, 930002
    await register(runtime, dev, owner)  # certified only once known here
    assert await deliver(runtime, handlers.on_read_ingested, reads(dev, owner, [1000, 2000]))
    created = reservation(res, dev, buyer)
    reservations_owner.knows(f"/reservations/{created.reservation_uid}", [(created, NOW)], producer="reservations")
    r = await by_uid(client, issuer, created.reservation_uid, buyer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["groupId"], body["devicegroup_uid"], body["reservationName"]) == (
        res,
        str(created.reservation_uid),
        f"res-{res}",
    )
    assert [c["energyWh"] for c in body["certificates"]] == [1000, 2000]  # certified as the event would have
    assert body["totalEnergyWh"] == 3000 and body["reservationEndedAt"] is None
    path, authorization = reservations_owner.asked[-1]
    assert path == f"/internal/reservations/{created.reservation_uid}" and authorization.startswith("Bearer ")
    assert await stored(runtime, res) == (1, 1, 2, 3000)
    # The real reservation.created (its own event id) comes afterwards: nothing doubles.
    assert await deliver(runtime, handlers.on_reservation_created, created)
    assert await stored(runtime, res) == (1, 1, 2, 3000)
    asked = len(reservations_owner.asked)
    assert (await by_uid(client, issuer, created.reservation_uid, buyer)).json() == body
    assert len(reservations_owner.asked) == asked  # known now: nobody is asked again


async def test_a_log_read_while_reservation_created_is_being_taken_waits_for_it_and_adds_nothing(
    service, reservations_owner
):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 930061, 930062
    await register(runtime, dev, owner)  # certified only once known here
    assert await deliver(runtime, handlers.on_read_ingested, reads(dev, owner, [5000]))
    created = reservation(res, dev, buyer)
    reservations_owner.knows(f"/reservations/{created.reservation_uid}", [(created, NOW)], producer="reservations")
    on_created = on(runtime, handlers.on_reservation_created)
    async with handling(runtime.pool, "certificates", on_created, created):  # the event's unit, not committed
        reading = asyncio.create_task(by_uid(client, issuer, created.reservation_uid, buyer))
        await asyncio.sleep(0.5)
        assert not reading.done()  # it learned the reservation and waits on the event's row
    r = await reading
    assert r.status_code == 200, r.text
    assert r.json()["totalEnergyWh"] == 5000
    assert await stored(runtime, res) == (1, 1, 1, 5000)


async def test_a_reservation_just_created_without_energy_answers_its_empty_log_by_id_and_on_the_new_path(
    service, reservations_owner
):
    runtime, client, issuer = service
    dev, res = ids()
    buyer = 930011
    created = reservation(res, dev, buyer)
    reservations_owner.knows(f"/reservations/by-id/{res}", [(created, NOW)], producer="reservations")
    r = await certificates(client, issuer, res, buyer)
    assert r.status_code == 200, r.text
    assert r.json() == [] and r.headers["X-Total-Count"] == "0"
    assert reservations_owner.asked[-1][0] == f"/internal/reservations/by-id/{res}"
    asked = len(reservations_owner.asked)
    r = await by_uid(client, issuer, created.reservation_uid, buyer)  # learned: nobody is asked again
    assert len(reservations_owner.asked) == asked
    assert r.json() == {
        "groupId": res,
        "devicegroup_uid": str(created.reservation_uid),
        "reservationName": f"res-{res}",
        "reservationStartDate": "2025-03-01T10:00:00.000Z",
        "reservationEndDate": "2025-03-02T10:00:00.000Z",
        "reservationEndedAt": None,
        "endArrivedLate": False,
        "certifiedAfterEndWh": 0,
        "carryWh": 0,
        "carryFinal": True,  # its window (2025) closed long ago: nothing more comes
        "carry": [],
        "certificates": [],
        "certificatelog": [],
        "totalEnergyWh": 0,
        "currentPage": 1,
        "totalPages": 0,
        "totalCount": 0,
        "totalItems": 0,
    }
    # By uid on the D-REC .../certified/new/ path: another reservation, learned the same way.
    dev2, res2 = ids()
    other = reservation(res2, dev2, buyer)
    reservations_owner.knows(f"/reservations/{other.reservation_uid}", [(other, NOW)], producer="reservations")
    r = await by_uid(client, issuer, other.reservation_uid, buyer, new=True)
    assert r.status_code == 200, r.text
    assert (r.json()["groupId"], r.json()["totalCount"]) == (res2, 0)
    assert await stored(runtime, res2) == (1, 1, 0, 0)


async def test_learned_changes_and_end_hold_and_older_or_replayed_events_change_nothing(service, reservations_owner):
    runtime, client, issuer = service
    dev, res = ids()
    buyer = 930021
    created = reservation(res, dev, buyer, end=T0 + 4 * H)
    newest = updated(created, 2, end=T0 + 2 * H, name="shortened")
    ended = ReservationEnded(
        reservation_id=res,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=buyer,
        device_ids=[dev],
        ended_at=T0 + H,
        reason="ended_by_buyer",
    )
    reservations_owner.knows(
        f"/reservations/{created.reservation_uid}",
        [(created, NOW), (newest, NOW), (ended, NOW)],
        producer="reservations",
    )
    body = (await by_uid(client, issuer, created.reservation_uid, buyer)).json()
    assert (body["reservationName"], body["reservationEndDate"], body["reservationEndedAt"]) == (
        "shortened",
        "2025-03-01T12:00:00.000Z",
        "2025-03-01T11:00:00.000Z",
    )
    # The real events afterwards, and an older change: the learned state stands.
    stale = updated(created, 1, end=T0 + 4 * H, name="stale")
    for handler, event in [
        (handlers.on_reservation_created, created),
        (handlers.on_reservation_updated, stale),
        (handlers.on_reservation_updated, newest),
        (handlers.on_reservation_ended, ended.model_copy(update={"ended_at": T0 + 3 * H})),
    ]:
        assert await deliver(runtime, handler, event)
    assert (await by_uid(client, issuer, created.reservation_uid, buyer)).json() == body
    assert await stored(runtime, res) == (1, 1, 0, 0)


async def test_a_reservation_its_owner_does_not_know_or_show_stays_a_404(service, reservations_owner):
    _runtime, client, issuer = service
    dev, res = ids()
    unknown = reservation(res, dev, 930031).reservation_uid
    r = await by_uid(client, issuer, unknown, 930031)
    assert r.status_code == 404
    assert r.json()["message"] == f"No reservation {unknown} is known to the certificate log (yet)"
    assert reservations_owner.asked[-1][0] == f"/internal/reservations/{unknown}"
    r = await certificates(client, issuer, res, 930031)
    assert r.status_code == 404
    assert r.json()["message"] == f"No reservation {res} is known to the certificate log (yet)"
    assert reservations_owner.asked[-1][0] == f"/internal/reservations/by-id/{res}"


async def test_a_learned_reservation_is_still_shown_only_to_whom_it_may_be(service, reservations_owner):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, stranger = 930041, 930042
    created = reservation(res, dev, buyer)
    # Were the owner to answer (it applies its own rule), this service's rule still holds: another buyer sees nothing.
    reservations_owner.knows(f"/reservations/{created.reservation_uid}", [(created, NOW)], producer="reservations")
    r = await by_uid(client, issuer, created.reservation_uid, stranger)
    assert r.status_code == 404
    assert r.json()["message"] == f"No reservation {created.reservation_uid} is known to the certificate log (yet)"
    # An answer about another reservation than the one asked is not taken.
    dev2, res2 = ids()
    elsewhere = reservation(res2, dev2, buyer)
    reservations_owner.knows(f"/reservations/by-id/{res2 + 7}", [(elsewhere, NOW)], producer="reservations")
    assert (await certificates(client, issuer, res2 + 7, buyer)).status_code == 404
    assert await stored(runtime, res2) == (0, 0, 0, 0)


async def test_an_owner_that_fails_is_a_503_not_a_404(service, reservations_owner):
    _runtime, client, issuer = service
    _dev, res = ids()
    reservations_owner.answers[f"/internal/reservations/by-id/{res}"] = (500, {"message": "boom"})
    r = await certificates(client, issuer, res, 930051)
    assert r.status_code == 503
    assert "reservations" in r.json()["message"]
