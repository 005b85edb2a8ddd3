"""The reference's other reads endpoints, against a real Postgres and broker: the time zones, the reads of a
device as a time series (GET /api/meter-reads/{externalId}), the sums per day of a month or per month of a
year (accumulationType), and an admin adding reads for any organization (addByAdmin/new/{id})."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import OrganizationRegistered, ReservationCreated
from opendrec_kit.testing import announce_organizations, eventually, publish_events
from opendrec_kit.timestamps import iso

from .test_service import ONBOARDED, RW, H, Service, _fixed_device, delta, new_device, new_id, running

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Side(Service):
    """The service with a Developer and a Buyer organization known to its organization directory."""

    developer: int
    buyer: int

    def as_admin(self) -> dict[str, str]:
        return self.issuer.headers(user_id=1, organization_id=self.admin_org, role="Admin", permissions={})

    def as_role(self, role: str, organization_id: int, permissions: dict[str, str] | None = None) -> dict[str, str]:
        return self.issuer.headers(
            user_id=9,
            organization_id=organization_id,
            role=role,
            permissions=RW if permissions is None else permissions,
        )

    async def device_of(self, organization_id: int):
        device = new_device().model_copy(update={"organization_id": organization_id})
        await publish_events(self.bootstrap, [device])
        await eventually(lambda: self.fetch("SELECT 1 FROM devices WHERE device_id = $1", device.device_id))
        return device


@pytest.fixture(scope="module")
async def side(postgres_url, kafka_bootstrap):
    async with running(postgres_url, kafka_bootstrap, service_name="readings-reference") as (runtime, client, issuer):
        s = Side(runtime, client, issuer, kafka_bootstrap)
        s.developer, s.buyer, s.admin_org = new_id(), new_id(), new_id()
        await announce_organizations(
            kafka_bootstrap,
            runtime,
            [
                OrganizationRegistered(organization_id=s.developer, name="dev", organization_type="Developer"),
                OrganizationRegistered(organization_id=s.buyer, name="buyer", organization_type="Buyer"),
            ],
        )
        yield s


def _field(response) -> str:
    return response.json()["details"][0]["field"]


# -- GET /api/meter-reads/time-zones -------------------------------------------------------------


async def test_time_zones_are_the_iana_names_a_read_accepts(side):
    everything = await side.client.get("/api/meter-reads/time-zones", headers=side.headers(new_id()))
    assert everything.status_code == 200, everything.text
    names = everything.json()
    assert names == sorted(names) and "Asia/Kolkata" in names and "UTC" in names and "localtime" not in names
    assert len(names) > 400
    found = await side.client.get(
        "/api/meter-reads/time-zones", params={"timezoneSearchKeyword": "KOLK"}, headers=side.headers(new_id())
    )
    assert found.json() == ["Asia/Kolkata"]
    empty = await side.client.get(
        "/api/meter-reads/time-zones", params={"timezoneSearchKeyword": ""}, headers=side.headers(new_id())
    )
    assert empty.json() == names
    none = await side.client.get(
        "/api/meter-reads/time-zones", params={"timezoneSearchKeyword": "Mars"}, headers=side.headers(new_id())
    )
    assert none.status_code == 200 and none.json() == []


async def test_time_zones_refuse_a_long_keyword_and_callers_without_read(side):
    long = await side.client.get(
        "/api/meter-reads/time-zones", params={"timezoneSearchKeyword": "a" * 101}, headers=side.headers(new_id())
    )
    assert long.status_code == 400 and _field(long) == "timezoneSearchKeyword"
    no_read = side.as_role("OrganizationAdmin", new_id(), permissions={"DEVICE_MANAGEMENT_CRUDL": "RW"})
    assert (await side.client.get("/api/meter-reads/time-zones", headers=no_read)).status_code == 403
    assert (await side.client.get("/api/meter-reads/time-zones")).status_code == 401


# -- GET /api/meter-reads/{externalId} -----------------------------------------------------------


async def test_reads_of_a_device_as_a_time_series(side):
    device = await _fixed_device(side, None)  # 30 hourly reads of 100 Wh ending ONBOARDED + 1..30 h
    path, headers = f"/api/meter-reads/{device.external_id}", side.headers(device.organization_id)
    everything = await side.client.get(path, headers=headers)
    assert everything.status_code == 200, everything.text
    assert everything.json() == [{"timestamp": iso(ONBOARDED + h * H), "value": 100} for h in range(1, 31)]
    page = await side.client.get(path, params={"limit": 5, "offset": 2}, headers=headers)
    assert [r["timestamp"] for r in page.json()] == [iso(ONBOARDED + h * H) for h in range(3, 8)]
    # reads ending in (start, end]; a time without offset is UTC
    window = await side.client.get(
        path, params={"start": iso(ONBOARDED + 2 * H), "end": "2025-02-01T01:00:00"}, headers=headers
    )
    assert [r["timestamp"] for r in window.json()] == [iso(ONBOARDED + h * H) for h in (3, 4, 5)]
    # the static paths next to it still answer as before
    jobs = await side.client.get("/api/meter-reads/bulk-upload", headers=headers)
    assert jobs.status_code == 200 and "jobs" in jobs.json()


async def test_reads_of_a_device_refuse_bad_windows_and_pages(side):
    device = await _fixed_device(side, None)
    path, headers = f"/api/meter-reads/{device.external_id}", side.headers(device.organization_id)
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"start": "yesterday"}, "start"),
        ({"start": "0001-01-01T00:00:00+14:00"}, "start"),  # no UTC: was a 500 (issue 12)
        ({"end": "9999-12-31T23:59:59-14:00"}, "end"),
    ):
        response = await side.client.get(path, params=params, headers=headers)
        assert response.status_code == 400 and _field(response) == field, (params, response.text)
    backwards = await side.client.get(
        path, params={"start": iso(ONBOARDED + 2 * H), "end": iso(ONBOARDED)}, headers=headers
    )
    assert backwards.status_code == 400 and backwards.json()["message"] == "start must be before end"


async def test_reads_of_a_device_only_for_its_organization_and_reservations(side):
    device = await _fixed_device(side, None)
    path = f"/api/meter-reads/{device.external_id}"
    assert (await side.client.get(path)).status_code == 401
    no_read = side.as_role("OrganizationAdmin", device.organization_id, permissions={"DEVICE_MANAGEMENT_CRUDL": "R"})
    assert (await side.client.get(path, headers=no_read)).status_code == 403
    assert (await side.client.get(path, headers=side.headers(new_id()))).status_code == 404
    named = await side.client.get(
        path, params={"organizationId": new_id()}, headers=side.headers(device.organization_id)
    )
    assert named.status_code == 403
    assert (
        await side.client.get("/api/meter-reads/no-such-device", headers=side.headers(device.organization_id))
    ).status_code == 404

    buyer = new_id()
    reservation = ReservationCreated(
        reservation_id=new_id(),
        reservation_uid=uuid.uuid4(),
        name="r",
        buyer_organization_id=buyer,
        device_ids=[device.device_id],
        reservation_start=ONBOARDED + 2 * H,
        reservation_end=ONBOARDED + 5 * H,
        frequency="daily",
    )
    await publish_events(side.bootstrap, [reservation])
    await eventually(
        lambda: side.fetch("SELECT 1 FROM reservations WHERE reservation_id = $1", reservation.reservation_id)
    )
    as_buyer = side.issuer.headers(
        organization_id=buyer, organization_type="Buyer", role="Buyer", permissions={"READS_MANAGEMENT_CRUDL": "R"}
    )
    seen = await side.client.get(f"/api/meter-reads/{device.device_id}", headers=as_buyer)
    assert [r["timestamp"] for r in seen.json()] == [iso(ONBOARDED + h * H) for h in (3, 4, 5)]
    assert (await side.client.get(path, headers=as_buyer)).status_code == 404  # a buyer names the device id


# -- GET /api/meter-reads/new/{externalId}?readType=accumulated&accumulationType= ---------------


async def _calendar(side, device, headers=None, path=None, **params):
    response = await side.client.get(
        f"/api/meter-reads/new/{path or device.external_id}",
        params={"readType": "accumulated", **params},
        headers=headers or side.headers(device.organization_id),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_monthly_and_yearly_sums_list_every_day_or_month(side):
    device = await _fixed_device(side, None)
    february = await _calendar(side, device, accumulationType="Monthly", Month=2, Year=2025)
    assert february["aggregateType"] == "Monthly" and february["timezone"] == "UTC"
    assert february["externalId"] == device.external_id and february["totalWh"] == 2600
    days = february["accumulatedReads"]
    assert (
        len(days) == 28 and [d["value"] for d in days[:3]] == [2400, 200, 0] and sum(d["value"] for d in days) == 2600
    )
    assert (days[0]["startTime"], days[0]["endTime"]) == ("2025-02-01T00:00:00.000Z", "2025-02-02T00:00:00.000Z")
    assert days[-1]["endTime"] == "2025-03-01T00:00:00.000Z"
    january = (await _calendar(side, device, accumulationType="Monthly", Month=1, Year=2025))["accumulatedReads"]
    assert len(january) == 31 and january[-1]["value"] == 400 and sum(d["value"] for d in january) == 400

    year = await _calendar(side, device, accumulationType="Yearly", Year=2025)
    assert year["aggregateType"] == "Yearly" and year["totalWh"] == 3000
    assert [(m["startTime"], m["value"]) for m in year["accumulatedReads"][:3]] == [
        ("2025-01-01T00:00:00.000Z", 400),
        ("2025-02-01T00:00:00.000Z", 2600),
        ("2025-03-01T00:00:00.000Z", 0),
    ]
    assert len(year["accumulatedReads"]) == 12 and year["accumulatedReads"][-1]["endTime"] == "2026-01-01T00:00:00.000Z"
    before = await _calendar(side, device, accumulationType="Yearly", Year=2024)
    assert before["totalWh"] == 0 and {m["value"] for m in before["accumulatedReads"]} == {0}

    # start/end narrow the reads counted (ending in (start, end]); the days listed stay the month's
    narrowed = await _calendar(
        side, device, accumulationType="Monthly", Month=2, Year=2025, start="2025-02-01T12:00:00Z"
    )
    assert [d["value"] for d in narrowed["accumulatedReads"][:2]] == [1200, 200]
    # granularity answers as before
    assert (await _calendar(side, device, granularity="month"))["granularity"] == "month"


async def test_monthly_sums_follow_the_devices_timezone(side):
    device = await _fixed_device(side, "Asia/Kolkata")  # UTC+05:30: the first read ends 02:30 on 1 February
    february = await _calendar(side, device, accumulationType="Monthly", Month=2, Year=2025)
    assert february["timezone"] == "Asia/Kolkata"
    days = february["accumulatedReads"]
    assert (days[0]["startTime"], days[0]["endTime"]) == ("2025-01-31T18:30:00.000Z", "2025-02-01T18:30:00.000Z")
    assert [d["value"] for d in days[:3]] == [2200, 800, 0]
    january = await _calendar(side, device, accumulationType="Monthly", Month=1, Year=2025)
    assert january["totalWh"] == 0 and january["accumulatedReads"][-1]["endTime"] == "2025-01-31T18:30:00.000Z"


async def test_calendar_sums_refuse_incomplete_or_contradictory_parameters(side):
    device = await _fixed_device(side, None)
    path, headers = f"/api/meter-reads/new/{device.external_id}", side.headers(device.organization_id)
    accumulated = {"readType": "accumulated"}
    for params, field in (
        ({**accumulated, "accumulationType": "Monthly", "Month": 2}, "Year"),
        ({**accumulated, "accumulationType": "Monthly", "Year": 2025}, "Month"),
        ({**accumulated, "accumulationType": "Yearly"}, "Year"),
        ({**accumulated, "accumulationType": "Yearly", "Year": 2025, "Month": 2}, "Month"),
        ({**accumulated, "accumulationType": "Monthly", "Month": 13, "Year": 2025}, "Month"),
        ({**accumulated, "accumulationType": "Yearly", "Year": 1969}, "Year"),
        ({**accumulated, "accumulationType": "Weekly", "Year": 2025}, "accumulationType"),
        ({**accumulated, "accumulationType": "Yearly", "Year": 2025, "granularity": "day"}, "accumulationType"),
        ({"accumulationType": "Yearly", "Year": 2025}, "accumulationType"),  # readType meterReads
        ({"Month": 2}, "Year"),  # as the reference: Year is required when month is given
    ):
        response = await side.client.get(path, params=params, headers=headers)
        assert response.status_code == 400 and _field(response) == field, (params, response.text)


async def test_calendar_sums_only_for_the_devices_organization(side):
    device = await _fixed_device(side, None)
    params = {"readType": "accumulated", "accumulationType": "Yearly", "Year": 2025}
    path = f"/api/meter-reads/new/{device.external_id}"
    no_read = side.as_role("OrganizationAdmin", device.organization_id, permissions={})
    assert (await side.client.get(path, params=params, headers=no_read)).status_code == 403
    assert (await side.client.get(path, params=params, headers=side.headers(new_id()))).status_code == 404
    assert (await side.client.get(path, params=params)).status_code == 401


# -- POST /api/meter-reads/addByAdmin/new/{id} ----------------------------------------------------


async def _intervals_wh(side, device) -> int:
    rows = await side.fetch("SELECT wh FROM intervals WHERE device_id = $1", device.device_id)
    return sum(r["wh"] for r in rows)


async def test_an_admin_adds_reads_for_a_device_of_any_organization(side):
    device = await side.device_of(side.developer)
    path = f"/api/meter-reads/addByAdmin/new/{device.external_id}"
    by_query = await side.client.post(
        path, params={"organizationId": side.developer}, json=delta(device, [1, 2]), headers=side.as_admin()
    )
    assert by_query.status_code == 201, by_query.text
    assert by_query.json()["count"] == 2 and by_query.json()["totalWh"] == 2000
    # the reference's body field names the organization too; the same content again is not added twice
    body = {**delta(device, [3]), "organizationId": side.developer}
    by_body = await side.client.post(path, json=body, headers=side.as_admin())
    assert by_body.status_code == 201, by_body.text
    again = await side.client.post(path, json=body, headers=side.as_admin())
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await _intervals_wh(side, device) == 3000
    # an organization's own admin or device owner adds reads to its own devices here too
    own = await side.client.post(path, json=delta(device, [4]), headers=side.as_role("DeviceOwner", side.developer))
    assert own.status_code == 201, own.text
    assert await _intervals_wh(side, device) == 4000


async def test_admin_reads_follow_the_rules_of_new_reads(side):
    device = await side.device_of(side.developer)
    path = f"/api/meter-reads/addByAdmin/new/{device.external_id}"
    params = {"organizationId": side.developer}
    future = delta(device, [1])
    future["reads"][0]["endtimestamp"] = iso(datetime.now(UTC) + timedelta(days=1))
    refused = await side.client.post(path, params=params, json=future, headers=side.as_admin())
    assert refused.status_code == 400 and "in the future" in refused.json()["details"][0]["reason"]
    history = {
        "type": "History",
        "unit": "Wh",
        "reads": [
            {
                "starttimestamp": iso(device.onboarded_at + H),
                "endtimestamp": iso(device.onboarded_at + 2 * H),
                "value": 5,
            }
        ],
    }
    late = await side.client.post(path, params=params, json=history, headers=side.as_admin())
    assert late.status_code == 400 and late.json()["details"][0]["index"] == 0
    assert await _intervals_wh(side, device) == 0


async def test_admin_reads_refuse_malformed_requests(side):
    device = await side.device_of(side.developer)
    path = f"/api/meter-reads/addByAdmin/new/{device.external_id}"
    params = {"organizationId": side.developer}
    empty = await side.client.post(path, params=params, json={}, headers=side.as_admin())
    assert empty.status_code == 400 and empty.json()["details"]
    bad_unit = await side.client.post(
        path, params=params, json={**delta(device, [1]), "unit": "kW"}, headers=side.as_admin()
    )
    assert bad_unit.status_code == 400 and _field(bad_unit) == "unit"
    disagree = await side.client.post(
        path, params=params, json={**delta(device, [1]), "organizationId": side.buyer}, headers=side.as_admin()
    )
    assert disagree.status_code == 400 and _field(disagree) == "organizationId"
    zero = await side.client.post(path, params={"organizationId": 0}, json=delta(device, [1]), headers=side.as_admin())
    assert zero.status_code == 400 and _field(zero) == "organizationId"
    long_id = await side.client.post(
        f"/api/meter-reads/addByAdmin/new/{'x' * 201}", params=params, json=delta(device, [1]), headers=side.as_admin()
    )
    assert long_id.status_code == 400 and _field(long_id) == "id"
    missing = await side.client.post(
        "/api/meter-reads/addByAdmin/new/no-such-device",
        params=params,
        json=delta(device, [1]),
        headers=side.as_admin(),
    )
    assert missing.status_code == 404
    assert await _intervals_wh(side, device) == 0


async def test_admin_reads_are_refused_to_other_roles_and_organizations(side):
    device = await side.device_of(side.developer)
    path = f"/api/meter-reads/addByAdmin/new/{device.external_id}"
    body = delta(device, [1])
    assert (await side.client.post(path, json=body)).status_code == 401
    api_user = side.issuer.headers(
        organization_id=new_id(),
        organization_type="ApiUser",
        role="ApiUser",
        permissions=RW,
        apiUserId=str(uuid.uuid4()),
    )
    for headers in (
        api_user,  # not one of the reference's roles here
        side.as_role("Buyer", side.buyer),
        side.as_role("User", side.developer),
        side.as_role("OrganizationAdmin", side.developer, permissions={"READS_MANAGEMENT_CRUDL": "R"}),
    ):
        response = await side.client.post(path, params={"organizationId": side.developer}, json=body, headers=headers)
        assert response.status_code == 403, response.text
    outsider = side.as_role("OrganizationAdmin", new_id())
    # another organization named in the query: refused before the body is even read
    for payload in (body, {}):
        named = await side.client.post(path, params={"organizationId": side.developer}, json=payload, headers=outsider)
        assert named.status_code == 403, named.text
    in_body = await side.client.post(path, json={**body, "organizationId": side.developer}, headers=outsider)
    assert in_body.status_code == 403
    assert (await side.client.post(path, json=body, headers=outsider)).status_code == 404  # its own: no such device
    # the admin: a Buyer organization takes no reads, an unknown one does not exist
    buyer = await side.client.post(path, params={"organizationId": side.buyer}, json=body, headers=side.as_admin())
    assert buyer.status_code == 403 and "Buyer organization" in buyer.json()["message"]
    unknown = await side.client.post(path, params={"organizationId": new_id()}, json=body, headers=side.as_admin())
    assert unknown.status_code == 404
    assert await _intervals_wh(side, device) == 0
