"""API users add and read meter reads for their own organizations only (D-REC API-user manual, 5.x):
`organizationId` names the organization, as the device and reservation modules do."""

from __future__ import annotations

import uuid

import pytest

from opendrec_contracts import OrganizationRegistered, ReservationCreated, ReservationEnded
from opendrec_kit.testing import announce_organizations, eventually, publish_events
from opendrec_kit.timestamps import iso

from .test_service import H, delta, new_device, new_id, running

pytestmark = pytest.mark.asyncio(loop_scope="session")

READS = {"READS_MANAGEMENT_CRUDL": "RW"}


class ApiUserSide:
    """One API user with a Developer and a Buyer organization, and a stranger API user with a Developer one."""

    def __init__(self, runtime, client, issuer, bootstrap):
        self.runtime, self.client, self.issuer, self.bootstrap = runtime, client, issuer, bootstrap
        self.api_user_id, self.other_api_user_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.developer, self.buyer, self.foreign = new_id(), new_id(), new_id()

    async def announce_organizations(self) -> None:
        mine, theirs = self.api_user_id, self.other_api_user_id
        organizations = (
            ("d", self.developer, "Developer", mine),
            ("b", self.buyer, "Buyer", mine),
            ("f", self.foreign, "Developer", theirs),
        )
        await announce_organizations(
            self.bootstrap,
            self.runtime,
            [
                OrganizationRegistered(organization_id=o, name=f"{p}{o}", organization_type=kind, api_user_id=who)
                for p, o, kind, who in organizations
            ],
        )

    def headers(self, **extra) -> dict[str, str]:
        return (
            self.issuer.headers(
                user_id=77,
                organization_id=new_id(),
                organization_type="ApiUser",
                role="ApiUser",
                permissions=READS,
                apiUserId=self.api_user_id,
            )
            | extra
        )

    async def device_of(self, organization_id: int):
        device = new_device().model_copy(update={"organization_id": organization_id})
        await publish_events(self.bootstrap, [device])
        await eventually(
            lambda: self.runtime.pool.fetch("SELECT 1 FROM devices WHERE device_id = $1", device.device_id)
        )
        return device

    async def post(self, device, body: dict, organization_id: int | None = None):
        # The manual: organizationId in the body payload
        body = body if organization_id is None else {**body, "organizationId": organization_id}
        return await self.client.post(f"/api/meter-reads/new/{device.external_id}", json=body, headers=self.headers())


@pytest.fixture(scope="module")
async def side(postgres_url, kafka_bootstrap):
    settings = {"service_name": "readings-apiusers", "import_poll_interval_s": 0.2}
    async with running(postgres_url, kafka_bootstrap, **settings) as (runtime, client, issuer):
        side = ApiUserSide(runtime, client, issuer, kafka_bootstrap)
        await side.announce_organizations()
        yield side


async def test_an_api_user_adds_reads_for_a_device_of_its_developer_organization(side):
    device = await side.device_of(side.developer)
    added = await side.post(device, delta(device, [1, 2]), side.developer)
    assert added.status_code == 201, added.text
    rows = await side.runtime.pool.fetch("SELECT wh FROM intervals WHERE device_id = $1", device.device_id)
    assert sum(r["wh"] for r in rows) == 2000
    latest = await side.client.get(
        f"/api/meter-reads/latestread/{device.external_id}",
        params={"organizationId": side.developer},
        headers=side.headers(),
    )
    assert latest.status_code == 200, latest.text


async def test_an_api_user_must_name_one_of_its_own_developer_organizations(side):
    device = await side.device_of(side.developer)
    missing = await side.post(device, delta(device, [1]))
    assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
    foreign_device = await side.device_of(side.foreign)
    foreign = await side.post(foreign_device, delta(foreign_device, [1]), side.foreign)
    assert foreign.status_code == 403 and "not one of your organizations" in foreign.json()["message"]
    buyer = await side.post(device, delta(device, [1]), side.buyer)
    assert buyer.status_code == 403 and "Buyer organization" in buyer.json()["message"]
    # its own organization, another organization's device: not found there
    assert (await side.post(foreign_device, delta(foreign_device, [1]), side.developer)).status_code == 404
    for d in (device, foreign_device):
        assert await side.runtime.pool.fetch("SELECT 1 FROM intervals WHERE device_id = $1", d.device_id) == []


async def test_an_api_user_reads_the_reserved_devices_of_its_buyer_organization(side):
    device = await side.device_of(new_id())
    t = device.onboarded_at
    owner = side.issuer.headers(organization_id=device.organization_id, permissions=READS)
    added = await side.client.post(
        f"/api/meter-reads/new/{device.external_id}", json=delta(device, [1, 2, 3]), headers=owner
    )
    assert added.status_code == 201, added.text
    reservation = ReservationCreated(
        reservation_id=new_id(), reservation_uid=uuid.uuid4(), name="r", buyer_organization_id=side.buyer,
        device_ids=[device.device_id], reservation_start=t, reservation_end=t + 10 * H, frequency="daily",
    )  # fmt: skip
    await publish_events(side.bootstrap, [reservation])
    await eventually(
        lambda: side.runtime.pool.fetch(
            "SELECT 1 FROM reservations WHERE reservation_id = $1", reservation.reservation_id
        )
    )

    path = f"/api/meter-reads/new/{device.device_id}"
    seen = await side.client.get(path, params={"organizationId": side.buyer, "limit": 100}, headers=side.headers())
    assert seen.status_code == 200, seen.text
    assert [r["enddate"] for r in seen.json()["ongoing"]] == [iso(t + h * H) for h in (1, 2, 3)]
    # Through its developer organization (no reservation there) or a stranger's: nothing.
    assert (
        await side.client.get(path, params={"organizationId": side.developer}, headers=side.headers())
    ).status_code == 404
    assert (
        await side.client.get(path, params={"organizationId": side.foreign}, headers=side.headers())
    ).status_code == 403

    # The buyer ends the reservation early: what it sees stops there.
    ended = ReservationEnded(
        reservation_id=reservation.reservation_id, reservation_uid=reservation.reservation_uid, buyer_organization_id=side.buyer,
        device_ids=[device.device_id], ended_at=t + 2 * H, reason="ended_by_buyer",
    )  # fmt: skip
    await publish_events(side.bootstrap, [ended])

    async def clipped():
        seen = await side.client.get(path, params={"organizationId": side.buyer, "limit": 100}, headers=side.headers())
        return seen.json()["ongoing"] if len(seen.json()["ongoing"]) == 2 else None

    assert [r["enddate"] for r in await eventually(clipped)] == [iso(t + h * H) for h in (1, 2)]


async def test_an_api_user_imports_a_csv_as_a_multipart_form(side):
    device = await side.device_of(side.developer)
    t = device.onboarded_at
    text = "deviceExternalId,timezone,type,unit,value,startDate,endDate\n" + "".join(
        f"{device.external_id},,Delta,Wh,{100 * h},,{iso(t + h * H)}\n" for h in (1, 2)
    )
    response = await side.client.post(
        "/api/meter-reads/bulk-upload", params={"organizationId": side.developer},
        files={"file": ("meter reads.csv", text.encode(), "text/csv")}, headers=side.headers(),
    )  # fmt: skip
    assert response.status_code == 202, response.text
    assert response.json()["fileName"] == "meter reads.csv"

    async def done():
        job = await side.client.get(
            f"/api/meter-reads/bulk-upload/{response.json()['jobId']}",
            params={"organizationId": side.developer},
            headers=side.headers(),
        )
        return job.json() if job.json()["status"] == "done" else None

    job = await eventually(done, timeout=30)
    assert (job["accepted"], job["rejected"]) == (2, 0)
    refused = await side.client.post(
        "/api/meter-reads/bulk-upload", params={"organizationId": side.buyer},
        files={"file": ("x.csv", text.encode(), "text/csv")}, headers=side.headers(),
    )  # fmt: skip
    assert refused.status_code == 403
    not_csv = await side.client.post(
        "/api/meter-reads/bulk-upload", params={"organizationId": side.developer},
        files={"file": ("x.json", b"{}", "application/json")}, headers=side.headers(),
    )  # fmt: skip
    assert not_csv.status_code == 415


async def test_an_organization_id_out_of_range_is_refused_in_the_envelope(side):
    """Found by the API fuzzer (tests/fuzz): organizationId 0 (or false) was asked of identity, whose 400 became
    a 503 here; one past a bigint would fail the query. Ids are 1 .. 2^63-1: anything else is a 400."""
    device = await side.device_of(side.developer)
    for bad in (0, False, -1, 2**63):
        resp = await side.post(device, delta(device, [1]), bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["statusCode"] == 400 and "organizationId" in resp.text
    assert await side.runtime.pool.fetch("SELECT 1 FROM intervals WHERE device_id = $1", device.device_id) == []
