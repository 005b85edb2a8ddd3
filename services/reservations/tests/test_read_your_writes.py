"""Read-your-writes (issue 15): devices not heard of yet are asked of the devices service (a stand-in here) when a
reservation names them; other services ask this one for a reservation's state (GET /internal/reservations/...)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import (
    DeviceDeleted,
    Envelope,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
    envelope_for,
    parse_event,
)
from opendrec_kit.testing import dispatch
from opendrec_reservations import handlers

from .helpers import buyer, devices, payload, registered, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")

T_LATER = (datetime.now(UTC) + timedelta(days=120)).replace(hour=0, minute=0, second=0, microsecond=0)


def new_ids(n):
    """Device ids nobody announced, ascending (the order the service asks in)."""
    return sorted(uuid.uuid4().int % 10**9 + 10**9 for _ in range(n))


def question(ids):
    return "/devices?" + "&".join(f"id={i}" for i in ids)


async def device_row(runtime, device_id):
    return await runtime.pool.fetchrow(
        "SELECT capacity_kw, organization_id, state_since FROM devices WHERE device_id = $1", device_id
    )


async def deliver(runtime, event, at):
    """The real device.registered (or .deleted) arriving as the consumer takes it, stamped `at`."""
    envelope = envelope_for(event, "devices").model_copy(update={"occurred_at": at})
    handler = handlers.on_device_deleted if isinstance(event, DeviceDeleted) else handlers.on_device_registered
    return await dispatch(runtime.pool, "reservations", handler, event, envelope=envelope)


# -- consumer: devices named before device.registered arrives ------------------------------------------------


@pytest.mark.parametrize("path", ["/api/buyer-reservation", "/api/device-group"])
async def test_devices_registered_a_moment_ago_are_learned_with_one_question_and_reserved(service, devices_owner, path):
    runtime, client, issuer = service
    ids = new_ids(2)
    since = datetime.now(UTC)
    devices_owner.knows(question(ids), [(registered(i), since) for i in ids], producer="devices")
    devices_owner.asked.clear()
    headers = buyer(issuer)
    r = await client.post(path, json=payload(ids), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["deviceIds"] == ids and r.json()["unavailableDevices"] == []
    assert devices_owner.asked == [(f"/internal{question(ids)}", headers["Authorization"])]  # one, the caller's token
    assert (await device_row(runtime, ids[0]))["state_since"] == since


async def test_only_the_devices_not_heard_of_are_asked_about(service, devices_owner, kafka_bootstrap):
    runtime, client, issuer = service
    [heard] = await devices(runtime, kafka_bootstrap, n=1)
    [new] = new_ids(1)
    devices_owner.knows(question([new]), [(registered(new), datetime.now(UTC))])
    devices_owner.asked.clear()
    created = await reserve(client, buyer(issuer), [heard, new])
    assert sorted(created["deviceIds"]) == sorted([heard, new])
    assert [p for p, _ in devices_owner.asked] == [f"/internal{question([new])}"]
    devices_owner.asked.clear()
    await reserve(client, buyer(issuer), [heard, new], start=T_LATER, end=T_LATER + timedelta(days=5))
    assert devices_owner.asked == []  # both known now: nobody asked


async def test_a_device_the_devices_service_does_not_know_or_show_stays_unknown(service, devices_owner):
    _, client, issuer = service
    [unknown] = new_ids(1)
    devices_owner.asked.clear()
    r = await client.post("/api/device-group", json=payload([unknown]), headers=buyer(issuer))
    assert r.status_code == 400
    assert r.json()["details"] == [{"deviceId": unknown, "reason": "unknown device"}]
    assert [p for p, _ in devices_owner.asked] == [f"/internal{question([unknown])}"]


async def test_a_device_whose_deletion_was_heard_is_not_asked_about(service, devices_owner):
    runtime, client, issuer = service
    [gone] = new_ids(1)
    deleted = DeviceDeleted(device_id=gone, external_id=f"d{gone}", organization_id=500)
    assert await deliver(runtime, deleted, datetime.now(UTC))
    devices_owner.knows(question([gone]), [(registered(gone), datetime.now(UTC))])  # would be wrong to take
    devices_owner.asked.clear()
    r = await client.post("/api/device-group", json=payload([gone]), headers=buyer(issuer))
    assert r.status_code == 400 and devices_owner.asked == []


async def test_a_devices_service_that_fails_is_a_503_and_nothing_is_reserved(service, devices_owner):
    runtime, client, issuer = service
    [device] = new_ids(1)
    devices_owner.answers[f"/internal{question([device])}"] = (500, {"message": "boom"})
    r = await client.post("/api/device-group", json=payload([device]), headers=buyer(issuer, org=730))
    assert r.status_code == 503 and "devices" in r.json()["message"]
    assert await device_row(runtime, device) is None
    assert await runtime.pool.fetchval("SELECT count(*) FROM reservations WHERE buyer_organization_id = 730") == 0


async def test_the_real_registration_arriving_later_changes_nothing_and_an_older_one_never_wins(service, devices_owner):
    runtime, client, issuer = service
    [device] = new_ids(1)
    learned_at = datetime.now(UTC)
    # The devices service answers with the device's current state (capacity changed since its registration).
    current = registered(device).model_copy(update={"capacity_kw": 150})
    devices_owner.knows(question([device]), [(current, learned_at)])
    made = await reserve(client, buyer(issuer), [device])
    # device.registered (as first announced, an hour earlier) arrives now: the learned, newer state stands.
    assert await deliver(runtime, registered(device), learned_at - timedelta(hours=1))
    row = await device_row(runtime, device)
    assert (row["capacity_kw"], row["state_since"]) == (150, learned_at)
    # The very state learned arriving again changes nothing; no second device, the reservation as it was.
    assert await deliver(runtime, current, learned_at)
    assert await runtime.pool.fetchval("SELECT count(*) FROM devices WHERE device_id = $1", device) == 1
    shown = await client.get(f"/api/device-group/{made['id']}", headers=buyer(issuer))
    assert shown.json()["deviceIds"] == [device]
    # A state newer than the learned one is taken as before.
    assert await deliver(
        runtime, registered(device).model_copy(update={"capacity_kw": 90}), learned_at + timedelta(hours=1)
    )
    assert (await device_row(runtime, device))["capacity_kw"] == 90


# -- owner: a reservation's state for the services that learn of it -----------------------------------------------


def events_of(answer):
    return [(parse_event(e), e.occurred_at) for e in (Envelope.model_validate(x) for x in answer["events"])]


async def test_a_reservation_s_state_is_its_created_terms_then_its_change_then_its_end(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2, org=520)
    made = await reserve(client, buyer(issuer, org=740), ids)
    created_at = await runtime.pool.fetchval("SELECT created_at FROM reservations WHERE id = $1", made["id"])
    by_uid = f"/internal/reservations/{made['devicegroup_uid']}"
    by_id = f"/internal/reservations/by-id/{made['id']}"

    r = await client.get(by_uid, headers=buyer(issuer, org=740))
    assert r.status_code == 200, r.text
    [(created, at)] = events_of(r.json())
    assert isinstance(created, ReservationCreated) and at == created_at
    assert created.reservation_id == made["id"] and str(created.reservation_uid) == made["devicegroup_uid"]
    assert created.device_ids == sorted(ids) and created.buyer_organization_id == 740
    assert created.target_capacity_wh == 20_000_000 and created.frequency == "hourly"
    assert r.json()["events"][0]["producer"] == "reservations"
    assert events_of((await client.get(by_id, headers=buyer(issuer, org=740))).json()) == [(created, at)]

    changed = await client.patch(
        f"/api/buyer-reservation/{made['id']}", json={"name": "renamed"}, headers=buyer(issuer, org=740)
    )
    assert changed.status_code == 200, changed.text
    [(created, _), (updated, changed_at)] = events_of((await client.get(by_id, headers=buyer(issuer, org=740))).json())
    assert isinstance(updated, ReservationUpdated) and updated.revision == 1 and updated.name == "renamed"
    assert created.name == "renamed"  # only the current terms are kept: the revision says they changed
    assert created_at < changed_at <= datetime.now(UTC)

    ended = await client.post(f"/api/device-group/{made['id']}/end", headers=buyer(issuer, org=740))
    assert ended.status_code == 200, ended.text
    states = events_of((await client.get(by_uid, headers=buyer(issuer, org=740))).json())
    assert [type(e) for e, _ in states] == [ReservationCreated, ReservationUpdated, ReservationEnded]
    end, end_at = states[2]
    assert end.reason == "ended_by_buyer" and end.device_ids == sorted(ids) and end_at == end.ended_at


async def test_a_reservation_s_state_is_shown_to_whom_the_public_api_shows_it_and_no_one_else(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=1, org=521)
    made = await reserve(client, buyer(issuer, org=741), ids)
    paths = [f"/internal/reservations/{made['devicegroup_uid']}", f"/internal/reservations/by-id/{made['id']}"]
    admin = issuer.headers(role="Admin", organization_type="Admin", organization_id=1)
    developer = issuer.headers(organization_id=521, organization_type="Developer", role="User")
    # The public GET needs BUYER_RESERVATION_MANAGEMENT_CRUDL; this answer needs any token of one who may see it.
    no_module = issuer.headers(organization_id=741, organization_type="Buyer", role="Buyer")
    for path in paths:
        for seer in (buyer(issuer, org=741), admin, developer, no_module):
            r = await client.get(path, headers=seer)
            assert r.status_code == 200 and len(r.json()["events"]) == 1, (path, r.text)
        other_developer = issuer.headers(organization_id=522, organization_type="Developer", role="User")
        for other in (buyer(issuer, org=742), other_developer):
            assert (await client.get(path, headers=other)).status_code == 404
        assert (await client.get(path)).status_code == 401
    for unknown in (f"/internal/reservations/{uuid.uuid4()}", "/internal/reservations/by-id/987654321"):
        assert (await client.get(unknown, headers=admin)).status_code == 404
    assert (await client.get("/internal/reservations/by-id/0", headers=admin)).status_code == 400
    assert not [p for p in (await client.get("/openapi.json")).json()["paths"] if p.startswith("/internal")]
