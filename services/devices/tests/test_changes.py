"""PATCH and DELETE of a device, and the read models (reservations, certificates) that guard deletion."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import CertificateIssued, CertificatePart, ReservationCreated, ReservationEnded
from opendrec_kit.testing import eventually, publish_envelopes, publish_events, wait_for_event

from .test_api import dev, fields, new_org, payload

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def register(client, issuer, org, **changes):
    r = await client.post("/api/device", json=payload(**changes), headers=dev(issuer, org))
    assert r.status_code == 201, r.text
    return r.json()


def admin(issuer):
    return issuer.headers(organization_id=1, organization_type="Admin", role="Admin")


async def test_patch_changes_only_given_fields_and_publishes_full_state(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    device = await register(client, issuer, org, timezone="Asia/Kolkata")
    ext = device["externalId"]
    r = await client.patch(
        f"/api/device/{ext}",
        json={"capacity": 310.5, "countryCode": "KE", "latitude": "1°17'S", "projectName": "renamed", "groupId": 9},
        headers=dev(issuer, org),
    )
    assert r.status_code == 200, r.text
    after = r.json()
    assert (after["capacity"], after["countryCode"], after["latitude"], after["projectName"]) == (
        310.5,
        "KEN",
        "-1.2833333",
        "renamed",
    )
    unchanged = {
        "id",
        "deviceUuid",
        "externalId",
        "fuelCode",
        "deviceTypeCode",
        "commissioningDate",
        "offTaker",
        "longitude",
        "timezone",
        "energyStorageCapacity",
        "images",
        "createdAt",
    }
    assert {k: after[k] for k in unchanged} == {k: device[k] for k in unchanged}
    assert after["updatedAt"] > device["updatedAt"]
    assert (await client.get(f"/api/device/{device['id']}", headers=dev(issuer, org))).json() == after

    envelope, _ = await wait_for_event(
        kafka_bootstrap, "device.updated", lambda e: e["payload"]["device_id"] == device["id"]
    )
    p = envelope["payload"]
    assert (p["capacity_kw"], p["country_code"], p["external_id"], p["fuel_code"]) == (310.5, "KEN", ext, "ES430")
    assert p["timezone"] == "Asia/Kolkata" and p["device_uuid"] == device["deviceUuid"]
    onboarded = datetime.fromisoformat(p["onboarded_at"])
    assert abs(onboarded - datetime.fromisoformat(device["createdAt"])) < timedelta(milliseconds=1)


async def test_patch_can_rename_external_id_but_not_onto_a_used_one(service):
    client, issuer = service
    org = new_org()
    a, b = await register(client, issuer, org), await register(client, issuer, org)
    clash = await client.patch(
        f"/api/device/{a['externalId']}", json={"externalId": b["externalId"]}, headers=dev(issuer, org)
    )
    assert clash.status_code == 409 and b["externalId"] in clash.json()["message"]
    new_ext = f"renamed-{uuid.uuid4().hex[:8]}"
    r = await client.patch(f"/api/device/{a['externalId']}", json={"externalId": new_ext}, headers=dev(issuer, org))
    assert r.status_code == 200 and r.json()["externalId"] == new_ext
    assert (await client.get(f"/api/device/externalId/{new_ext}", headers=dev(issuer, org))).json()["id"] == a["id"]


@pytest.mark.parametrize(
    ("patch", "bad"),
    [
        ({"capacity": 0}, {"capacity"}),
        ({"countryCode": "XX", "fuelCode": "fuel8"}, {"countryCode", "fuelCode"}),
        ({"commissioningDate": "2999-01-01T00:00:00Z"}, {"commissioningDate"}),
        ({"latitude": "91"}, {"latitude"}),
        ({"offTaker": "Spaceport"}, {"offTaker"}),
        ({"projectName": None}, {"projectName"}),
        ({"timezone": "Mars/Olympus"}, {"timezone"}),
        # storage capacity stays on a device that would no longer have storage: the cross-field rule holds
        ({"energyStorage": False}, {"energyStorageCapacity"}),
    ],
)
async def test_patch_is_validated_like_registration(service, patch, bad):
    client, issuer = service
    org = new_org()
    device = await register(client, issuer, org)
    r = await client.patch(f"/api/device/{device['externalId']}", json=patch, headers=dev(issuer, org))
    assert r.status_code == 400, r.text
    assert fields(r) == bad
    assert (await client.get(f"/api/device/{device['id']}", headers=dev(issuer, org))).json() == device


async def test_patch_refusals(service):
    client, issuer = service
    org, other = new_org(), new_org()
    device = await register(client, issuer, org)
    path = f"/api/device/{device['externalId']}"
    empty = await client.patch(path, json={"groupId": 3}, headers=dev(issuer, org))
    assert empty.status_code == 400 and "Nothing to change" in empty.json()["message"]
    assert (await client.patch(path, json=[1], headers=dev(issuer, org))).status_code == 400
    assert (await client.patch(path, json={"capacity": 5}, headers=dev(issuer, other))).status_code == 404
    assert (await client.patch(path, json={"capacity": 5})).status_code == 401
    read_write = issuer.headers(organization_id=org, permissions={"DEVICE_MANAGEMENT_CRUDL": "RW"})
    denied = await client.patch(path, json={"capacity": 5}, headers=read_write)
    assert denied.status_code == 403 and "Update permission" in denied.json()["message"]
    by_admin = await client.patch(path, json={"capacity": 5}, params={"organizationId": org}, headers=admin(issuer))
    assert by_admin.status_code == 200 and by_admin.json()["capacity"] == 5


async def test_delete_publishes_device_deleted(service, kafka_bootstrap):
    client, issuer = service
    org, other = new_org(), new_org()
    device = await register(client, issuer, org)
    path = f"/api/device/{device['id']}"
    assert (await client.delete(path, headers=dev(issuer, other))).status_code == 404
    no_delete = issuer.headers(organization_id=org, permissions={"DEVICE_MANAGEMENT_CRUDL": "RWU"})
    assert (await client.delete(path, headers=no_delete)).status_code == 403
    r = await client.delete(path, headers=dev(issuer, org))
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert (await client.get(path, headers=dev(issuer, org))).status_code == 404
    assert (await client.delete(path, headers=dev(issuer, org))).status_code == 404
    envelope, _ = await wait_for_event(
        kafka_bootstrap, "device.deleted", lambda e: e["payload"]["device_id"] == device["id"]
    )
    assert envelope["payload"] == {
        "device_id": device["id"],
        "external_id": device["externalId"],
        "organization_id": org,
    }
    # the externalId is free again
    await register(client, issuer, org, externalId=device["externalId"])


async def _true(value):
    return value


async def followed(client, sql, *args):
    """Wait until the service's read model has taken in the events (its handlers run in the background)."""
    await eventually(lambda: client.runtime.pool.fetchval(sql, *args))


async def guards_known(client, reservations: list[ReservationCreated], certificate: CertificateIssued):
    """Wait until the read models that guard deletion hold every device of the reservations and the certificate."""
    await followed(
        client,
        "SELECT count(*) = $2 FROM reservation_devices WHERE reservation_id = ANY($1)",
        [r.reservation_id for r in reservations],
        sum(len(r.device_ids) for r in reservations),
    )
    await followed(
        client, "SELECT count(*) = 1 FROM certified_energy WHERE device_id = $1", certificate.parts[0].device_id
    )


async def refused_deletion(client, issuer, org, device) -> str:
    """DELETE of the device, refused with 409: the message."""
    r = await client.delete(f"/api/device/{device['id']}", headers=dev(issuer, org))
    assert r.status_code == 409, r.text
    return r.json()["message"]


def reservation(device_ids, start, end):
    return ReservationCreated(
        reservation_id=uuid.uuid4().int % 10**9,
        reservation_uid=uuid.uuid4(),
        name="r",
        buyer_organization_id=new_org(),
        device_ids=device_ids,
        reservation_start=start,
        reservation_end=end,
        frequency="monthly",
    )


def issued(
    created: ReservationCreated, device_id: int, owner: int, start: datetime, end: datetime, energy_wh: int
) -> CertificateIssued:
    """certificate.issued for a device of a reservation, as the certificates service announces it."""
    return CertificateIssued(
        certificate_id=uuid.uuid4(),
        reservation_id=created.reservation_id,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=created.buyer_organization_id,
        period_start=start,
        period_end=end,
        generation_start=start,
        generation_end=end,
        energy_wh=energy_wh,
        parts=[CertificatePart(device_id=device_id, owner_organization_id=owner, energy_wh=energy_wh)],
    )


def ended(created: ReservationCreated, reason="ended_by_buyer") -> ReservationEnded:
    """reservation.ended for a reservation, as the reservations service announces it."""
    return ReservationEnded(
        reservation_id=created.reservation_id,
        reservation_uid=created.reservation_uid,
        buyer_organization_id=created.buyer_organization_id,
        device_ids=created.device_ids,
        ended_at=datetime.now(UTC),
        reason=reason,
    )


async def test_delete_is_refused_while_reserved_or_certified(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    now = datetime.now(UTC)
    active, ended, certified, free = [await register(client, issuer, org) for _ in range(4)]
    current = reservation([active["id"]], now - timedelta(days=10), now + timedelta(days=30))
    past = reservation([ended["id"], certified["id"]], now - timedelta(days=60), now - timedelta(days=1))
    certificate = issued(past, certified["id"], org, now - timedelta(days=60), now - timedelta(days=30), 12_345)
    envelopes = await publish_events(kafka_bootstrap, [current, past, certificate])
    await guards_known(client, [current, past], certificate)

    async def refused(device):
        return await refused_deletion(client, issuer, org, device)

    assert f"active reservation(s) {current.reservation_id}" in await refused(active)
    message = await refused(certified)
    assert "certified energy (12345 Wh)" in message and "reservation" not in message
    # a certificate redelivered counts once
    stats = client.runtime.consumer_stats["certificate.issued"]
    duplicates = stats["duplicates"]
    await publish_envelopes(
        kafka_bootstrap, [("certificate.issued", certificate.key(), envelopes[2].model_dump_json().encode())]
    )
    await eventually(lambda: _true(stats["duplicates"] > duplicates))
    assert "(12345 Wh)" in await refused(certified)
    assert (await client.get(f"/api/device/{active['id']}", headers=dev(issuer, org))).status_code == 200
    # a reservation whose window has ended does not hold its devices
    assert (await client.delete(f"/api/device/{ended['id']}", headers=dev(issuer, org))).status_code == 200
    assert (await client.delete(f"/api/device/{free['id']}", headers=dev(issuer, org))).status_code == 200


async def test_delete_is_allowed_again_once_the_reservation_ended(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    now = datetime.now(UTC)
    twice, certified, held = [await register(client, issuer, org) for _ in range(3)]
    first = reservation([twice["id"], certified["id"]], now - timedelta(days=5), now + timedelta(days=60))
    second = reservation([twice["id"], held["id"]], now - timedelta(days=5), now + timedelta(days=60))
    certificate = issued(first, certified["id"], org, now - timedelta(days=5), now - timedelta(days=1), 500)
    await publish_events(kafka_bootstrap, [first, second, certificate])
    await guards_known(client, [first, second], certificate)

    async def refusal(device):
        return await refused_deletion(client, issuer, org, device)

    both = ", ".join(str(i) for i in sorted([first.reservation_id, second.reservation_id]))
    assert f"active reservation(s) {both}" in await refusal(twice)

    await publish_events(kafka_bootstrap, [ended(first)])
    # the ended reservation no longer holds its devices; the other one still does
    await eventually(
        lambda: _is(
            refusal(twice), f"The device cannot be deleted: it is in active reservation(s) {second.reservation_id}"
        )
    )
    # certified energy is not undone by the end of its reservation
    assert await refusal(certified) == "The device cannot be deleted: it has certified energy (500 Wh)"

    await publish_events(kafka_bootstrap, [ended(second, reason="expired")])

    async def deleted(device):
        r = await client.delete(f"/api/device/{device['id']}", headers=dev(issuer, org))
        assert r.status_code in (200, 409), r.text
        return r.status_code == 200

    await eventually(lambda: deleted(twice))
    assert await deleted(held)
    assert (await client.get(f"/api/device/{twice['id']}", headers=dev(issuer, org))).status_code == 404


async def _is(value, expected):
    return await value == expected
