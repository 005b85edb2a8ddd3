"""Read-your-writes (issue 15): a device registered a moment ago, before device.registered reached readings, is
asked of devices (here a stand-in) on the caller's behalf and taken as the event would be; against a real
Postgres and broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from opendrec_contracts import DeviceDeleted, DeviceRegistered, DeviceUpdated, ReservationCreated, envelope_for
from opendrec_kit.testing import OwnerStandIn, dispatch
from opendrec_readings.handlers import Handlers

from .test_service import H, Service, delta, new_device, new_id, running

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Side(Service):
    devices: OwnerStandIn

    async def device_row(self, device_id: int) -> dict:
        rows = await self.fetch("SELECT * FROM devices WHERE device_id = $1", device_id)
        return {k: v for k, v in dict(rows[0]).items() if k != "updated_at"} if rows else {}

    async def deliver(self, event: DeviceRegistered | DeviceDeleted, occurred_at: datetime) -> None:
        """The real event from devices, as the consumer hands it to its handler."""
        handlers = Handlers(self.runtime.settings)
        handler = {
            DeviceRegistered: handlers.on_device_registered,
            DeviceUpdated: handlers.on_device_updated,
            DeviceDeleted: handlers.on_device_deleted,
        }[type(event)]
        envelope = envelope_for(event, "devices").model_copy(update={"occurred_at": occurred_at})
        assert await dispatch(self.runtime.pool, "readings", handler, event, envelope=envelope)

    def asked(self, path: str) -> int:
        return sum(1 for asked, _ in self.devices.asked if asked == f"/internal{path}")


@pytest.fixture(scope="module")
async def side(postgres_url, kafka_bootstrap):
    devices = OwnerStandIn().start()
    try:
        async with running(postgres_url, kafka_bootstrap, service_name="readings-ryw", devices_url=devices.url) as (
            runtime,
            client,
            issuer,
        ):
            s = Side(runtime, client, issuer, kafka_bootstrap)
            s.devices = devices
            yield s
    finally:
        devices.stop()


def by_external_id(device: DeviceRegistered) -> str:
    return f"/devices/by-external-id?organizationId={device.organization_id}&externalId={quote(device.external_id)}"


async def test_the_first_read_right_after_the_registration_is_taken_and_the_event_changes_nothing(side):
    device = new_device().model_copy(update={"external_id": f"Roof 7&{new_id()}+b"})  # quoted when asked
    registered_at = datetime.now(UTC) - timedelta(seconds=1)
    side.devices.knows(by_external_id(device), [(device, registered_at)], producer="devices")

    headers = side.headers(device.organization_id)
    first = await side.client.post(
        f"/api/meter-reads/new/{device.external_id}", json=delta(device, [1]), headers=headers
    )
    assert first.status_code == 201, first.text
    assert (f"/internal{by_external_id(device)}", headers["Authorization"]) in side.devices.asked
    learned = await side.device_row(device.device_id)
    assert learned["external_id"] == device.external_id and learned["state_at"] == registered_at
    # Known now: the next batch costs one lookup, nobody is asked.
    assert (await side.post(device, delta(device, [2]))).status_code == 201
    assert side.asked(by_external_id(device)) == 1

    # device.registered arrives afterwards (stamped when it happened, a moment before the row's last change).
    await side.deliver(device, registered_at - timedelta(milliseconds=30))
    assert await side.device_row(device.device_id) == learned
    assert len(await side.intervals(device.device_id)) == 2
    assert len(await side.fetch("SELECT 1 FROM last_reads WHERE device_id = $1", device.device_id)) == 1
    # Delivered again, or at the very same time: still nothing new.
    await side.deliver(device, registered_at)
    assert {**await side.device_row(device.device_id), "state_at": None} == {**learned, "state_at": None}


async def test_an_older_event_does_not_overwrite_the_learned_state_and_a_newer_one_does(side):
    device = new_device(capacity_kw=100)
    now = datetime.now(UTC)
    current = device.model_copy(update={"capacity_kw": 250.0})  # updated at the owner since registration
    side.devices.knows(by_external_id(device), [(current, now - timedelta(seconds=1))], producer="devices")
    response = await side.client.get(
        f"/api/meter-reads/{device.external_id}", headers=side.headers(device.organization_id)
    )
    assert (response.status_code, response.json()) == (200, [])

    await side.deliver(device, now - timedelta(seconds=5))  # device.registered, older than what was learned
    assert (await side.device_row(device.device_id))["capacity_kw"] == 250
    updated = DeviceUpdated.model_validate({**device.model_dump(), "capacity_kw": 300.0})
    await side.deliver(updated, now)  # a later device.updated wins
    assert (await side.device_row(device.device_id))["capacity_kw"] == 300


async def test_a_device_the_owner_does_not_know_or_show_stays_a_404(side):
    device = new_device()
    response = await side.post(device, delta(device, [1]))
    assert response.status_code == 404
    assert response.json()["message"] == (
        f"No device with external id {device.external_id!r} in organization {device.organization_id}"
    )
    assert side.asked(by_external_id(device)) == 1
    assert await side.device_row(device.device_id) == {}


async def test_an_owner_that_fails_is_a_503_and_nothing_is_stored(side):
    device = new_device()
    side.devices.answers[f"/internal{by_external_id(device)}"] = (500, {"message": "boom"})
    response = await side.post(device, delta(device, [1]))
    assert response.status_code == 503 and "devices" in response.json()["message"]
    assert await side.device_row(device.device_id) == {}


async def test_an_external_id_registered_again_after_a_deletion_takes_reads_at_once(side):
    old = new_device()
    await side.deliver(old, datetime.now(UTC) - timedelta(hours=1))
    gone = DeviceDeleted(device_id=old.device_id, external_id=old.external_id, organization_id=old.organization_id)
    await side.deliver(gone, datetime.now(UTC) - timedelta(minutes=1))
    again = new_device().model_copy(update={"external_id": old.external_id, "organization_id": old.organization_id})
    side.devices.knows(by_external_id(again), [(again, datetime.now(UTC))], producer="devices")

    response = await side.post(again, delta(again, [1]))
    assert response.status_code == 201, response.text
    assert len(await side.intervals(again.device_id)) == 1 and await side.intervals(old.device_id) == []


async def test_a_deleted_device_the_owner_no_longer_shows_is_still_refused_as_deleted(side):
    device = new_device()
    await side.deliver(device, datetime.now(UTC) - timedelta(hours=1))
    gone = DeviceDeleted(
        device_id=device.device_id, external_id=device.external_id, organization_id=device.organization_id
    )
    await side.deliver(gone, datetime.now(UTC))
    response = await side.post(device, delta(device, [1]))
    assert response.status_code == 409 and "deleted" in response.json()["message"]


async def test_a_buyer_reads_a_reserved_device_whose_registration_has_not_arrived(side):
    device, buyer = new_device(), new_id()
    reservation = ReservationCreated(
        reservation_id=new_id(),
        reservation_uid=uuid.uuid4(),
        name="r",
        buyer_organization_id=buyer,
        device_ids=[device.device_id],
        reservation_start=device.onboarded_at,
        reservation_end=device.onboarded_at + 24 * H,
        frequency="daily",
    )
    handlers = Handlers(side.runtime.settings)
    assert await dispatch(side.runtime.pool, "readings", handlers.on_reservation_created, reservation)
    as_buyer = side.issuer.headers(
        organization_id=buyer, organization_type="Buyer", role="Buyer", permissions={"READS_MANAGEMENT_CRUDL": "R"}
    )
    path = f"/api/meter-reads/new/{device.device_id}"
    assert (await side.client.get(path, headers=as_buyer)).status_code == 404  # devices (the stand-in) says no
    assert side.asked(f"/devices?id={device.device_id}") == 1

    side.devices.knows(f"/devices?id={device.device_id}", [(device, datetime.now(UTC))], producer="devices")
    seen = await side.client.get(path, headers=as_buyer)
    assert seen.status_code == 200, seen.text
    assert seen.json()["numberOfReads"] == 0
    assert (await side.device_row(device.device_id))["organization_id"] == device.organization_id
