"""Read-your-writes (issue 15): a charger linked to a device registered a moment ago, before device.registered
reached the gateway: devices (here a stand-in) is asked on the caller's behalf and its answer taken as the event
would be; against a real Postgres and broker."""

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from opendrec_charger_gateway import handlers
from opendrec_charger_gateway.app import build
from opendrec_charger_gateway.settings import Settings
from opendrec_contracts import DeviceRegistered, DeviceUpdated, envelope_for
from opendrec_kit.testing import OwnerStandIn, TokenIssuer, dispatch, settings_for_test, started

from .conftest import chargers_exist_on_the_platform

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALL = {"DEVICE_MANAGEMENT_CRUDL": "RWUD"}


class Gateway:
    def __init__(self, runtime, client, issuer, devices: OwnerStandIn) -> None:
        self.runtime, self.client, self.issuer, self.devices = runtime, client, issuer, devices

    def headers(self, org: int) -> dict[str, str]:
        return self.issuer.headers(organization_id=org, organization_type="Developer", permissions=ALL)

    async def link(self, org: int, external_id: str, headers: dict[str, str] | None = None):
        charger = f"ch{uuid.uuid4().hex[:8]}"
        body = {"chargerId": charger, "externalId": external_id}
        return await self.client.post("/api/charger", json=body, headers=headers or self.headers(org))

    async def device_row(self, device_id: int) -> dict:
        row = await self.runtime.pool.fetchrow("SELECT * FROM devices WHERE device_id = $1", device_id)
        return dict(row) if row else {}

    async def deliver(self, event: DeviceRegistered, occurred_at: datetime) -> None:
        """The real event from devices, as the consumer hands it to its handler."""
        handler = handlers.on_device_updated if isinstance(event, DeviceUpdated) else handlers.on_device_registered
        envelope = envelope_for(event, "devices").model_copy(update={"occurred_at": occurred_at})
        assert await dispatch(self.runtime.pool, "charger-gateway", handler, event, envelope=envelope)

    def asked(self, path: str) -> int:
        return sum(1 for asked, _ in self.devices.asked if asked == f"/internal{path}")


@pytest.fixture(scope="module")
async def gateway(postgres_url, kafka_bootstrap, kazam_sim):
    devices = OwnerStandIn().start()
    sim_url, sim_token = kazam_sim
    settings = settings_for_test(
        Settings,
        postgres_url,
        kafka_bootstrap,
        service_name="charger-gateway-ryw",
        kazam_poll_seconds=3600,  # no polls here: Kazam only proves that a charger may be linked
        kazam_url=sim_url,
        kazam_token=sim_token,
        identity_url=devices.url,
        devices_url=devices.url,
    )
    runtime = build(settings)
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    try:
        async with started(runtime) as client:
            chargers_exist_on_the_platform(client, sim_url, sim_token)
            yield Gateway(runtime, client, issuer, devices)
    finally:
        devices.stop()


def new_device(external_id: str | None = None) -> DeviceRegistered:
    device_id = uuid.uuid4().int % 10**9 + 1
    return DeviceRegistered(
        device_id=device_id,
        device_uuid=uuid.uuid4(),
        external_id=external_id or f"ev-{device_id}",
        organization_id=device_id + 1,
        capacity_kw=7.4,
        country_code="IND",
        fuel_code="ES100",
        device_type_code="TC120",
        commissioning_date=datetime(2023, 1, 1, tzinfo=UTC),
        onboarded_at=datetime.now(UTC),
    )


def by_external_id(device: DeviceRegistered) -> str:
    return f"/devices/by-external-id?organizationId={device.organization_id}&externalId={quote(device.external_id)}"


async def test_a_charger_is_linked_to_a_device_registered_a_moment_ago_and_the_event_changes_nothing(gateway):
    device = new_device(f"EV bay 3&{uuid.uuid4().hex[:6]}+x")  # quoted when asked
    registered_at = datetime.now(UTC) - timedelta(seconds=1)
    gateway.devices.knows(by_external_id(device), [(device, registered_at)], producer="devices")
    headers = gateway.headers(device.organization_id)

    linked = await gateway.link(device.organization_id, device.external_id, headers)
    assert linked.status_code == 201, linked.text
    assert linked.json()["deviceId"] == device.device_id
    assert (f"/internal{by_external_id(device)}", headers["Authorization"]) in gateway.devices.asked
    learned = await gateway.device_row(device.device_id)
    assert learned["state_at"] == registered_at
    # Known now: nobody is asked again.
    assert (await gateway.link(device.organization_id, device.external_id)).status_code == 201
    assert gateway.asked(by_external_id(device)) == 1

    # device.registered arrives afterwards, stamped a moment before the owner's row changed: nothing changes.
    await gateway.deliver(device, registered_at - timedelta(milliseconds=30))
    assert await gateway.device_row(device.device_id) == learned
    links = await gateway.runtime.pool.fetchval(
        "SELECT count(*) FROM charger_links WHERE device_id = $1", device.device_id
    )
    assert links == 2


async def test_an_older_event_does_not_overwrite_the_learned_state_and_a_newer_one_does(gateway):
    device = new_device()
    now = datetime.now(UTC)
    renamed = device.model_copy(update={"external_id": f"{device.external_id}-renamed"})  # renamed at the owner
    gateway.devices.knows(by_external_id(renamed), [(renamed, now - timedelta(seconds=1))], producer="devices")
    assert (await gateway.link(device.organization_id, renamed.external_id)).status_code == 201

    await gateway.deliver(device, now - timedelta(seconds=5))  # the original registration, read late
    assert (await gateway.device_row(device.device_id))["external_id"] == renamed.external_id
    again = DeviceUpdated.model_validate({**device.model_dump(), "external_id": f"{device.external_id}-again"})
    await gateway.deliver(again, now)  # a later device.updated wins
    assert (await gateway.device_row(device.device_id))["external_id"] == again.external_id


async def test_a_device_the_owner_does_not_know_or_show_stays_a_404(gateway):
    device = new_device()
    response = await gateway.link(device.organization_id, device.external_id)
    assert response.status_code == 404 and "No device" in response.json()["message"]
    assert gateway.asked(by_external_id(device)) == 1
    assert await gateway.device_row(device.device_id) == {}


async def test_an_owner_that_fails_is_a_503_and_nothing_is_linked(gateway):
    device = new_device()
    gateway.devices.answers[f"/internal{by_external_id(device)}"] = (500, {"message": "boom"})
    response = await gateway.link(device.organization_id, device.external_id)
    assert response.status_code == 503 and "devices" in response.json()["message"]
    assert await gateway.device_row(device.device_id) == {}
