"""Reservations end once, when their end date passes or their buyer ends them; reservation.ended tells the others."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_kit.testing import all_events, eventually, wait_for_event
from opendrec_reservations import services

from .helpers import buyer, devices, outbox_drained, payload, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = timedelta(days=1)


async def end_expired(runtime, now, batch_size):
    """A sweep as the expiry worker runs it: batch after batch until one is not full; how many it ended."""
    ended = 0
    while True:
        n = await services.end_expired(runtime.uow(), now, batch_size)
        ended += n
        if n < batch_size:
            return ended


def ended_for(uids):
    # By uid: reservation ids restart in every test database, the broker is shared by the whole session.
    return lambda e: e["payload"]["reservation_uid"] in uids


async def test_expired_reservations_end_exactly_once_even_when_swept_concurrently(service, kafka_bootstrap):
    runtime, client, issuer = service
    now = datetime.now(UTC)
    ids = await devices(runtime, kafka_bootstrap, n=7)
    # Ending tomorrow: the background sweep (real clock) leaves them alone; the sweeps below look from later.
    made = [await reserve(client, buyer(issuer, org=710), [d], start=now - DAY, end=now + DAY) for d in ids]
    uids = {r["devicegroup_uid"] for r in made}
    later = now + 2 * DAY
    # Four sweeps at once (as four service instances would), small batches so they contend row by row, then again.
    counts = await asyncio.gather(*(end_expired(runtime, later, batch_size=2) for _ in range(4)))
    assert sum(counts) == len(made)
    assert await end_expired(runtime, later, batch_size=2) == 0

    await eventually(lambda: outbox_drained(runtime))
    events = await all_events(kafka_bootstrap, "reservation.ended", ended_for(uids))
    assert sorted(e["payload"]["reservation_uid"] for e in events) == sorted(uids)  # one each
    by_uid = {e["payload"]["reservation_uid"]: e["payload"] for e in events}
    for r in made:
        p = by_uid[r["devicegroup_uid"]]
        assert p["reservation_id"] == r["id"]
        assert p["reason"] == "expired" and p["device_ids"] == r["deviceIds"] and p["buyer_organization_id"] == 710
        assert datetime.fromisoformat(p["ended_at"]) == datetime.fromisoformat(r["reservationEndDate"])
    shown = (await client.get(f"/api/device-group/{made[0]['id']}", headers=buyer(issuer, org=710))).json()
    assert shown["state"] == "ended" and shown["endReason"] == "expired" and shown["reservationActive"] is False


async def test_a_buyer_ending_while_a_sweep_runs_ends_each_reservation_once(service, kafka_bootstrap):
    runtime, client, issuer = service
    now = datetime.now(UTC)
    ids = await devices(runtime, kafka_bootstrap, n=4)
    made = [await reserve(client, buyer(issuer, org=716), [d], start=now - DAY, end=now + DAY) for d in ids]
    ends = [client.post(f"/api/device-group/{r['id']}/end", headers=buyer(issuer, org=716)) for r in made]
    *answers, swept = await asyncio.gather(*ends, end_expired(runtime, now + 2 * DAY, batch_size=1))
    assert {a.status_code for a in answers} <= {200, 409}
    assert sum(a.status_code == 200 for a in answers) + swept == len(made)
    await eventually(lambda: outbox_drained(runtime))
    events = await all_events(kafka_bootstrap, "reservation.ended", ended_for({r["devicegroup_uid"] for r in made}))
    assert len(events) == len(made) and len({e["payload"]["reservation_uid"] for e in events}) == len(made)
    by_uid = {e["payload"]["reservation_uid"]: e["payload"]["reason"] for e in events}
    for r, a in zip(made, answers, strict=True):
        assert by_uid[r["devicegroup_uid"]] == ("ended_by_buyer" if a.status_code == 200 else "expired")


async def test_the_background_sweep_ends_a_reservation_whose_end_date_passed(service, kafka_bootstrap):
    runtime, client, issuer = service
    [device] = await devices(runtime, kafka_bootstrap, n=1)
    now = datetime.now(UTC)
    end = now + timedelta(seconds=2)  # a reservation must end after now: this one ends while we wait
    past = await reserve(client, buyer(issuer, org=711), [device], start=now - DAY, end=end)
    event, _ = await wait_for_event(kafka_bootstrap, "reservation.ended", ended_for({past["devicegroup_uid"]}))
    assert event["payload"]["reason"] == "expired" and datetime.fromisoformat(event["payload"]["ended_at"]) == end
    again = await client.post(f"/api/device-group/{past['id']}/end", headers=buyer(issuer, org=711))
    assert (
        again.status_code == 409
        and "already ended" in again.json()["message"]
        and "end date passed" in again.json()["message"]
    )


async def test_a_buyer_ends_its_reservation_early_once_and_the_devices_are_free_again(service, kafka_bootstrap):
    runtime, client, issuer = service
    now = datetime.now(UTC)
    ids = await devices(runtime, kafka_bootstrap, n=2)
    res = await reserve(client, buyer(issuer, org=712), ids, start=now - DAY, end=now + 30 * DAY)
    assert res["state"] == "active" and res["endedAt"] is None
    follow_on = payload(
        ids,
        start=now + 2 * DAY,
        end=now + 5 * DAY,
        continueWithReservationIfOneOrMoreDevicesUnavailableForReservation=False,
    )
    taken = await client.post("/api/device-group", json=follow_on, headers=buyer(issuer, org=713))
    assert taken.status_code == 400  # still reserved by the first

    r = await client.post(f"/api/device-group/{res['id']}/end", headers=buyer(issuer, org=712))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "ended" and body["endReason"] == "ended_by_buyer" and body["reservationActive"] is False
    ended_at = datetime.fromisoformat(body["endedAt"])
    assert now <= ended_at <= datetime.now(UTC)
    event, _ = await wait_for_event(kafka_bootstrap, "reservation.ended", ended_for({res["devicegroup_uid"]}))
    assert event["payload"]["reason"] == "ended_by_buyer" and event["payload"]["device_ids"] == sorted(ids)
    assert datetime.fromisoformat(event["payload"]["ended_at"]) == ended_at
    assert event["payload"]["reservation_uid"] == res["devicegroup_uid"]

    twice = await client.post(f"/api/device-group/{res['id']}/end", headers=buyer(issuer, org=712))
    assert twice.status_code == 409 and f"Reservation {res['id']} already ended" in twice.json()["message"]
    assert "ended by its buyer" in twice.json()["message"]
    shown = (await client.get(f"/api/device-group/{res['id']}", headers=buyer(issuer, org=712))).json()
    assert shown["state"] == "ended" and shown["endedAt"] == body["endedAt"]
    # After the early end the devices can be reserved again for the rest of the old window.
    assert (await client.post("/api/device-group", json=follow_on, headers=buyer(issuer, org=713))).status_code == 201
    await eventually(lambda: outbox_drained(runtime))
    assert len(await all_events(kafka_bootstrap, "reservation.ended", ended_for({res["devicegroup_uid"]}))) == 1


async def test_only_the_buyer_organization_or_an_admin_ends_a_reservation(service, kafka_bootstrap):
    runtime, client, issuer = service
    now = datetime.now(UTC)
    ids = await devices(runtime, kafka_bootstrap, n=2)
    res = await reserve(client, buyer(issuer, org=714), ids[:1], start=now, end=now + 30 * DAY)
    path = f"/api/device-group/{res['id']}/end"
    other = await client.post(path, headers=buyer(issuer, org=715))
    assert other.status_code == 404 and other.json()["message"] == f"No reservation {res['id']}"
    naming = await client.post(path, params={"organizationId": 714}, headers=buyer(issuer, org=715))
    assert naming.status_code == 403
    read_only = await client.post(
        path, headers=buyer(issuer, org=714, permissions={"BUYER_RESERVATION_MANAGEMENT_CRUDL": "RW"})
    )
    assert (
        read_only.status_code == 403
        and "Update permission on BUYER_RESERVATION_MANAGEMENT_CRUDL" in read_only.json()["message"]
    )
    developer = issuer.headers(
        organization_id=714,
        organization_type="Developer",
        role="OrganizationAdmin",
        permissions={"BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWUD"},
    )
    assert (await client.post(path, headers=developer)).status_code == 403
    assert (await client.post(path)).status_code == 401
    assert (await client.post("/api/device-group/999999999999/end", headers=buyer(issuer, org=714))).status_code == 404
    assert (await client.post("/api/device-group/abc/end", headers=buyer(issuer, org=714))).status_code == 400
    assert (await client.get(f"/api/device-group/{res['id']}", headers=buyer(issuer, org=714))).json()[
        "state"
    ] == "active"

    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
    ended = await client.post(path, headers=admin)
    assert ended.status_code == 200 and ended.json()["state"] == "ended"
    # The other reservation on a device it never touched is untouched.
    second = await reserve(client, buyer(issuer, org=714), ids[1:], start=now, end=now + 30 * DAY)
    assert (await client.get(f"/api/device-group/{second['id']}", headers=buyer(issuer, org=714))).json()[
        "state"
    ] == "active"


async def test_openapi_shows_who_may_end_a_reservation(service):
    runtime, _, _ = service
    op = runtime.app.openapi()["paths"]["/api/device-group/{reservation_id}/end"]["post"]
    assert op["x-permissions"] == [{"module": "BUYER_RESERVATION_MANAGEMENT_CRUDL", "action": "Update"}]
    assert op["x-roles"] == ["Admin", "Buyer", "SubBuyer", "ApiUser"]


async def test_the_expiry_sweep_runs_as_a_kit_worker(service):
    runtime, _, _ = service
    [worker] = [w for w in runtime.workers if w.name == "reservation-expiry"]
    assert worker.interval_s == 0.2
    await eventually(lambda: _true(worker.status == "ok" and worker.steps >= 1))


async def _true(value):
    return value
