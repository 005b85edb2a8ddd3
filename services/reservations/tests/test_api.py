"""Reserving devices over HTTP, against the real database and broker."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import DeviceDeleted
from opendrec_kit.testing import eventually, publish_events, wait_for_event

from .helpers import PERMS, T0, buyer, devices, payload, registered

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_buyer_reserves_devices_and_the_event_is_published(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap)
    r = await client.post("/api/device-group", json=payload(ids), headers=buyer(issuer))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["deviceIds"] == ids and body["organizationId"] == 700 and body["targetCapacityInMegaWattHour"] == 20
    # Timestamps as D-REC writes them (UTC, milliseconds, Z).
    assert body["reservationStartDate"] == T0.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["createdAt"]) and body["endedAt"] is None
    event, _headers = await wait_for_event(
        kafka_bootstrap, "reservation.created", lambda e: e["payload"]["reservation_uid"] == body["devicegroup_uid"]
    )
    assert event["payload"]["device_ids"] == ids and event["payload"]["target_capacity_wh"] == 20_000_000
    assert event["payload"]["reservation_id"] == body["id"]
    mine = (await client.get("/api/device-group/my", headers=buyer(issuer))).json()
    assert body["id"] in [g["id"] for g in mine["deviceGroups"]]
    assert (await client.get(f"/api/device-group/{body['id']}", headers=buyer(issuer, org=701))).status_code == 404


async def test_a_device_cannot_be_reserved_twice_in_overlapping_windows(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap)
    assert (await client.post("/api/device-group", json=payload(ids[:1]), headers=buyer(issuer))).status_code == 201
    strict = payload(ids, continueWithReservationIfOneOrMoreDevicesUnavailableForReservation=False)
    refused = await client.post("/api/device-group", json=strict, headers=buyer(issuer, org=702))
    assert refused.status_code == 400
    assert refused.json()["details"] == [{"deviceId": ids[0], "reason": "already reserved in an overlapping window"}]
    lenient = await client.post("/api/device-group", json=payload(ids), headers=buyer(issuer, org=702))
    assert lenient.status_code == 201 and lenient.json()["deviceIds"] == [ids[1]]
    later = payload(
        ids[:1],
        reservationStartDate=(T0 + timedelta(days=30)).isoformat(),
        reservationEndDate=(T0 + timedelta(days=60)).isoformat(),
    )
    assert (await client.post("/api/device-group", json=later, headers=buyer(issuer))).status_code == 201


async def test_invalid_payloads_are_refused_with_every_field_named(service):
    _, client, issuer = service
    r = await client.post(
        "/api/device-group", json={"name": "", "deviceIds": [], "frequency": "yearly"}, headers=buyer(issuer)
    )
    assert r.status_code == 400
    fields = {d["field"] for d in r.json()["details"]}
    assert {"name", "deviceIds", "frequency", "reservationStartDate", "reservationEndDate"} <= fields
    backwards = payload(
        [1], reservationStartDate=T0.isoformat(), reservationEndDate=(T0 - timedelta(days=1)).isoformat()
    )
    r = await client.post("/api/device-group", json=backwards, headers=buyer(issuer))
    assert r.status_code == 400 and "reservationEndDate must be after" in r.text
    unknown = await client.post("/api/device-group", json=payload([123456789012]), headers=buyer(issuer))
    assert unknown.status_code == 400 and unknown.json()["details"][0]["reason"] == "unknown device"


async def test_only_buyers_with_permission_reserve(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=1)
    developer = issuer.headers(organization_id=500, organization_type="Developer", permissions=PERMS)
    assert (await client.post("/api/device-group", json=payload(ids), headers=developer)).status_code == 403
    no_perm = issuer.headers(organization_id=700, organization_type="Buyer", role="Buyer")
    assert (await client.post("/api/device-group", json=payload(ids), headers=no_perm)).status_code == 403
    assert (await client.post("/api/device-group", json=payload(ids))).status_code == 401
    other_org = payload(ids, organizationId=999)
    assert (await client.post("/api/device-group", json=other_org, headers=buyer(issuer))).status_code == 403


async def test_out_of_range_numbers_are_refused_not_failed(service):
    _, client, issuer = service
    huge = payload([2**64], targetCapacityInMegaWattHour=10**15, organizationId=2**64)
    r = await client.post("/api/device-group", json=huge, headers=buyer(issuer))
    assert r.status_code == 400
    assert {"deviceIds.0", "targetCapacityInMegaWattHour", "organizationId"} <= {
        d["field"] for d in r.json()["details"]
    }
    assert (await client.get(f"/api/device-group/{2**64}", headers=buyer(issuer))).status_code == 400


def deleted(device_id, org=500):
    return DeviceDeleted(device_id=device_id, external_id=f"d{device_id}", organization_id=org)


async def test_a_deleted_device_is_refused_like_other_unavailable_devices(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap)
    await publish_events(kafka_bootstrap, [deleted(ids[0])])
    await eventually(
        lambda: runtime.pool.fetchval("SELECT deleted_at IS NOT NULL FROM devices WHERE device_id = $1", ids[0])
    )
    strict = payload(ids, continueWithReservationIfOneOrMoreDevicesUnavailableForReservation=False)
    r = await client.post("/api/device-group", json=strict, headers=buyer(issuer))
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "Some devices are not available for this reservation"
    assert r.json()["details"] == [{"deviceId": ids[0], "reason": "device deleted"}]
    lenient = await client.post("/api/device-group", json=payload(ids), headers=buyer(issuer))
    assert lenient.status_code == 201 and lenient.json()["deviceIds"] == [ids[1]]
    assert lenient.json()["unavailableDevices"] == [{"deviceId": ids[0], "reason": "device deleted"}]


async def test_a_deletion_heard_before_the_registration_still_counts(service, kafka_bootstrap):
    runtime, client, issuer = service
    device = uuid.uuid4().int % 10**9
    await publish_events(kafka_bootstrap, [deleted(device)])  # another topic: it may well come first
    await eventually(lambda: runtime.pool.fetchval("SELECT true FROM deleted_devices WHERE device_id = $1", device))
    await publish_events(kafka_bootstrap, [registered(device)])
    await eventually(lambda: runtime.pool.fetchval("SELECT true FROM devices WHERE device_id = $1", device))
    r = await client.post("/api/device-group", json=payload([device]), headers=buyer(issuer))
    assert r.status_code == 400 and r.json()["details"] == [{"deviceId": device, "reason": "device deleted"}]


async def test_a_past_window_is_reserved_for_its_history_energy_up_to_three_years_back(service, kafka_bootstrap):
    runtime, client, issuer = service
    [device] = await devices(runtime, kafka_bootstrap, n=1)
    now = datetime.now(UTC)
    past = payload([device], start=now - timedelta(days=400), end=now - timedelta(hours=1))
    made = await client.post("/api/device-group", json=past, headers=buyer(issuer))
    assert made.status_code == 201, made.text
    # Its window has passed: it is shown ended at its end date; certificates certify its History energy until
    # its expiry (end + 60 days by default).
    body = made.json()
    assert body["state"] == "ended" and body["endReason"] == "expired" and body["deviceIds"] == [device]
    end = datetime.fromisoformat(body["reservationEndDate"])
    assert datetime.fromisoformat(body["reservationExpiryDate"]) == end + timedelta(days=60)
    too_old = payload([device], start=now - timedelta(days=1200), end=now - timedelta(days=1100))
    r = await client.post("/api/device-group", json=too_old, headers=buyer(issuer))
    assert r.status_code == 400 and "3 year" in r.json()["message"]
    assert [d["field"] for d in r.json()["details"]] == ["reservationStartDate", "reservationEndDate"]
