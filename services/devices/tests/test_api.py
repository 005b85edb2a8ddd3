"""The device API against a real Postgres and a real broker (the service runs in-process)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import OrganizationRegistered
from opendrec_devstack.drec_samples import DEVICE_REQUIRED_FIELDS, device_body
from opendrec_kit.organizations import find_organization
from opendrec_kit.testing import eventually, publish_events, wait_for_event

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALL = {"DEVICE_MANAGEMENT_CRUDL": "RWUD"}

# "Register Device" of the D-REC STAGE Postman collection, verbatim but for externalId.
POSTMAN = device_body("UAT_STAGE_Drec4")

# "Device Registration" of the D-REC STAGE API guide, verbatim (its degree signs arrive as U+FFFD).
GUIDE = {
    "externalId": "uattesting12",
    "projectName": "uattesting",
    "address": "nexus",
    "latitude": "19\ufffd20'50.97\"S",
    "longitude": "46\ufffd 3'3.21\"W",
    "countryCode": "IN",
    "fuelCode": "fuel8",
    "deviceTypeCode": "type3",
    "capacity": 25,
    "commissioningDate": "2022-08-09T19:00:00",
    "gridInterconnection": True,
    "offTaker": "School",
    "yieldValue": 0,
    "labels": "demoo",
    "impactStory": "Demo impact story",
    "data": "",
    "images": ["string"],
    "deviceDescription": "Rooftop Solar",
    "energyStorage": True,
    "energyStorageCapacity": 0,
    "qualityLabels": "quality labels",
    "groupId": 0,
    "SDGBenefits": 1,
}


def new_org() -> int:
    return uuid.uuid4().int % 10**9


def dev(issuer, org, **kw):
    return issuer.headers(organization_id=org, organization_type="Developer", permissions=ALL, **kw)


async def known_organizations(client, kafka_bootstrap, *organizations):
    """Organizations as identity announces them (organization.registered), once the service has taken them in.
    Each is (organization id, type) or (organization id, type, API user id)."""
    events = [
        OrganizationRegistered(
            organization_id=o[0], name=f"org {o[0]}", organization_type=o[1], api_user_id=o[2] if len(o) > 2 else None
        )
        for o in organizations
    ]
    await publish_events(kafka_bootstrap, events, producer="identity")
    for event in events:
        await eventually(lambda e=event: find_organization(client.runtime.pool, e.organization_id))


def payload(base=POSTMAN, **changes):
    body = {**base, "externalId": f"ext-{uuid.uuid4().hex[:12]}", **changes}
    return {k: v for k, v in body.items() if v is not ...}


def fields(response) -> set[str]:
    return {d["field"] for d in response.json()["details"]}


async def test_postman_payload_registers_and_announces_the_device(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    body = payload()
    r = await client.post("/api/device", json=body, headers=dev(issuer, org, user_id=42))
    assert r.status_code == 201, r.text
    device = r.json()
    assert isinstance(device["id"], int) and uuid.UUID(device["deviceUuid"])
    assert device["externalId"] == body["externalId"] and device["organizationId"] == org
    assert (device["countryCode"], device["fuelCode"], device["deviceTypeCode"]) == ("IND", "ES430", "TC120")
    assert (device["latitude"], device["longitude"]) == ("45.67", "78.99")
    assert device["capacity"] == 200 and device["commissioningDate"] == "2021-01-02T11:35:27.740Z"
    assert device["offTaker"] == "Residential" and device["energyStorageCapacity"] == 90
    assert device["SDGBenefits"] == [] and device["images"] == ["string"] and device["timezone"] is None

    envelope, _ = await wait_for_event(
        kafka_bootstrap, "device.registered", lambda e: e.get("payload", {}).get("external_id") == body["externalId"]
    )
    assert envelope["producer"] == "devices" and envelope["version"] == 1
    p = envelope["payload"]
    assert p["device_id"] == device["id"] and p["device_uuid"] == device["deviceUuid"]
    assert p["organization_id"] == org and p["capacity_kw"] == 200
    assert (p["country_code"], p["fuel_code"], p["device_type_code"]) == ("IND", "ES430", "TC120")
    assert datetime.fromisoformat(p["commissioning_date"]) == datetime(2021, 1, 2, 11, 35, 27, 740000, tzinfo=UTC)
    onboarded = datetime.fromisoformat(p["onboarded_at"])
    assert abs(onboarded - datetime.fromisoformat(device["createdAt"])) < timedelta(milliseconds=1)
    assert abs(onboarded - datetime.now(UTC)) < timedelta(minutes=1)
    assert p["timezone"] is None and p["yield_value"] is None


async def test_guide_payload_with_dms_coordinates_and_alpha2_country(service):
    client, issuer = service
    body = payload(GUIDE, fuelCode="ES100", deviceTypeCode="TC120", timezone="Asia/Kolkata")
    r = await client.post("/api/device", json=body, headers=dev(issuer, new_org()))
    assert r.status_code == 201, r.text
    device = r.json()
    assert (device["latitude"], device["longitude"]) == ("-19.3474917", "-46.0508917")
    assert device["countryCode"] == "IND" and device["offTaker"] == "School" and device["timezone"] == "Asia/Kolkata"
    # no offset in the payload: local time of the device (IST = UTC+5:30)
    assert device["commissioningDate"] == "2022-08-09T13:30:00.000Z"


async def test_guide_payload_as_published_is_refused_for_its_pre_irec_codes_only(service):
    client, issuer = service
    r = await client.post("/api/device", json=payload(GUIDE), headers=dev(issuer, new_org()))
    assert r.status_code == 400
    assert fields(r) == {"fuelCode", "deviceTypeCode"}
    messages = " ".join(d["message"] for d in r.json()["details"])
    assert "'fuel8' is not an I-REC fuel code" in messages and "ES100" in messages and "TC120" in messages


async def test_every_bad_field_is_reported_at_once(service):
    client, issuer = service
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    body = payload(
        projectName=...,
        capacity=0,
        commissioningDate=future,
        latitude="95",
        longitude="46°3'3\"N",
        countryCode="XX",
        fuelCode="ES999",
        offTaker="Spaceport",
        energyStorage=False,
        energyStorageCapacity=5,
        timezone="Mars/Olympus",
    )
    r = await client.post("/api/device", json=body, headers=dev(issuer, new_org()))
    assert r.status_code == 400
    expected = {
        "projectName",
        "capacity",
        "commissioningDate",
        "latitude",
        "longitude",
        "countryCode",
        "fuelCode",
        "offTaker",
        "energyStorageCapacity",
        "timezone",
    }
    assert fields(r) == expected
    assert all(f in r.json()["message"] for f in expected)


@pytest.mark.parametrize("field", DEVICE_REQUIRED_FIELDS)
async def test_required_fields(service, field):
    client, issuer = service
    r = await client.post("/api/device", json=payload(**{field: ...}), headers=dev(issuer, new_org()))
    assert r.status_code == 400 and fields(r) == {field}
    assert r.json()["details"][0]["message"] == "Field required"


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"capacity": 0}, "capacity", "from 0.001 kW (1 W) to 1e+06 kW"),
        ({"capacity": -3.5}, "capacity", "from 0.001 kW (1 W) to 1e+06 kW"),
        ({"capacity": 1e308}, "capacity", "from 0.001 kW (1 W) to 1e+06 kW"),  # defeated read plausibility (issue 12)
        ({"capacity": 1_000_000.5}, "capacity", "to 1e+06 kW"),
        ({"yieldValue": 8760.5}, "yieldValue", "less than or equal to 8760"),
        ({"capacity": "lots"}, "capacity", "valid number"),
        ({"commissioningDate": "2199-01-01T00:00:00Z"}, "commissioningDate", "in the future"),
        ({"commissioningDate": "last spring"}, "commissioningDate", "ISO 8601"),
        ({"commissioningDate": "0001-01-01T00:00:00+14:00"}, "commissioningDate", "years 1900 to 2199"),  # was a 500
        ({"latitude": "-90.5"}, "latitude", "out of range"),
        ({"longitude": "180.01"}, "longitude", "out of range"),
        ({"latitude": "19°20'50.97\"E"}, "latitude", "takes N or S"),
        ({"longitude": "north-ish"}, "longitude", "neither decimal degrees"),
        ({"countryCode": "ZZZ"}, "countryCode", "not an ISO 3166 country code"),
        ({"fuelCode": "fuel8"}, "fuelCode", "Valid codes: ES100"),
        ({"deviceTypeCode": "type3"}, "deviceTypeCode", "Valid codes: TC110"),
        ({"offTaker": "Spaceport"}, "offTaker", "Residential"),
        ({"energyStorage": False, "energyStorageCapacity": 10}, "energyStorageCapacity", "energyStorage is not true"),
        ({"energyStorageCapacity": -1}, "energyStorageCapacity", "greater than or equal to 0"),
        ({"timezone": "IST"}, "timezone", "IANA"),
        ({"externalId": "a/b"}, "externalId", "URL paths"),
        ({"externalId": "   "}, "externalId", "must not be empty"),
        ({"gridInterconnection": "sometimes"}, "gridInterconnection", "valid boolean"),
        ({"yieldValue": -1}, "yieldValue", "greater than or equal to 0"),
    ],
)
async def test_each_validation_error(service, change, field, fragment):
    client, issuer = service
    r = await client.post("/api/device", json=payload(**change), headers=dev(issuer, new_org()))
    assert r.status_code == 400, r.text
    assert fields(r) == {field}
    assert fragment in r.json()["details"][0]["message"]


async def test_a_capacity_is_judged_at_the_cap_on_registration_and_again_on_update(service):
    """Reads are judged against the capacity (issue 12): the largest capacity passes, past it is refused, also when a
    device is changed afterwards, and the device keeps what it had."""
    client, issuer = service
    org = new_org()
    body = payload(capacity=1_000_000)
    r = await client.post("/api/device", json=body, headers=dev(issuer, org))
    assert r.status_code == 201 and r.json()["capacity"] == 1_000_000
    path = f"/api/device/{body['externalId']}"
    for capacity in (1e308, 1_000_001, 0.0005):
        changed = await client.patch(path, json={"capacity": capacity}, headers=dev(issuer, org))
        assert changed.status_code == 400 and fields(changed) == {"capacity"}, changed.text
    again = await client.get(f"/api/device/{r.json()['id']}", headers=dev(issuer, org))
    assert again.json()["capacity"] == 1_000_000


async def test_external_id_is_unique_within_an_organization(service):
    client, issuer = service
    org, other = new_org(), new_org()
    body = payload()
    assert (await client.post("/api/device", json=body, headers=dev(issuer, org))).status_code == 201
    again = await client.post("/api/device", json={**body, "projectName": "again"}, headers=dev(issuer, org))
    assert again.status_code == 409
    assert body["externalId"] in again.json()["message"]
    # another organization may use the same externalId
    assert (await client.post("/api/device", json=body, headers=dev(issuer, other))).status_code == 201


@pytest.mark.parametrize("org_type", ["Buyer", "ApiUser", "Admin"])
async def test_only_developer_organizations_register_devices(service, org_type):
    client, issuer = service
    headers = issuer.headers(organization_id=new_org(), organization_type=org_type, permissions=ALL)
    r = await client.post("/api/device", json=payload(), headers=headers)
    assert r.status_code == 403
    assert "Only Developer organizations" in r.json()["message"] and org_type in r.json()["message"]
    # the organization check comes before the payload's: no 400 leaks to a non-developer
    assert (await client.post("/api/device", json={}, headers=headers)).status_code == 403


async def test_registration_needs_a_token_and_write_permission(service):
    client, issuer = service
    assert (await client.post("/api/device", json=payload())).status_code == 401
    read_only = issuer.headers(organization_id=new_org(), permissions={"DEVICE_MANAGEMENT_CRUDL": "R"})
    r = await client.post("/api/device", json=payload(), headers=read_only)
    assert r.status_code == 403 and "Write permission on DEVICE_MANAGEMENT_CRUDL" in r.json()["message"]


async def test_my_devices_pages_and_isolation(service):
    client, issuer = service
    org, other = new_org(), new_org()
    mine = []
    for i in range(25):
        r = await client.post("/api/device", json=payload(projectName=f"p{i}"), headers=dev(issuer, org))
        assert r.status_code == 201
        mine.append(r.json()["id"])
    theirs = [
        (await client.post("/api/device", json=payload(), headers=dev(issuer, other))).json()["id"] for _ in range(3)
    ]

    page1 = (await client.get("/api/device/my", headers=dev(issuer, org))).json()
    assert (page1["currentPage"], page1["totalPages"], page1["totalCount"]) == (1, 2, 25)
    assert [d["id"] for d in page1["devices"]] == mine[::-1][:20]  # newest first, 20 a page by default
    page2 = (await client.get("/api/device/my", params={"pagenumber": 2}, headers=dev(issuer, org))).json()
    assert [d["id"] for d in page2["devices"]] == mine[::-1][20:]

    seen = []
    for n in (1, 2, 3):
        r = await client.get("/api/device/my", params={"pagenumber": n, "limit": 10}, headers=dev(issuer, org))
        seen += [d["id"] for d in r.json()["devices"]]
        assert r.json()["totalPages"] == 3
    assert seen == mine[::-1]
    beyond = (
        await client.get("/api/device/my", params={"pagenumber": 4, "limit": 10}, headers=dev(issuer, org))
    ).json()
    assert beyond["devices"] == [] and beyond["totalCount"] == 25

    other_page = (await client.get("/api/device/my", headers=dev(issuer, other))).json()
    assert [d["id"] for d in other_page["devices"]] == theirs[::-1] and other_page["totalCount"] == 3
    assert all(d["organizationId"] == other for d in other_page["devices"])

    for bad in ({"limit": 101}, {"limit": 0}, {"pagenumber": 0}, {"pagenumber": "x"}):
        r = await client.get("/api/device/my", params=bad, headers=dev(issuer, org))
        assert r.status_code == 400, bad
    assert (await client.get("/api/device/my", headers=issuer.headers(organization_id=org))).status_code == 403


async def test_single_device_is_visible_to_its_organization_and_admins_only(service):
    client, issuer = service
    org, other = new_org(), new_org()
    body = payload()
    device = (await client.post("/api/device", json=body, headers=dev(issuer, org))).json()
    ext = body["externalId"]
    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")

    for path in (f"/api/device/{device['id']}", f"/api/device/externalId/{ext}"):
        assert (await client.get(path, headers=dev(issuer, org))).json()["deviceUuid"] == device["deviceUuid"]
        assert (await client.get(path, headers=admin)).json()["id"] == device["id"]
        hidden = await client.get(path, headers=dev(issuer, other))
        assert hidden.status_code == 404, path
    # another organization's device looks exactly like a device that does not exist
    missing = await client.get("/api/device/999999999", headers=dev(issuer, other))
    hidden = await client.get(f"/api/device/{device['id']}", headers=dev(issuer, other))
    assert missing.status_code == hidden.status_code == 404
    assert hidden.json()["message"] == f"No device {device['id']}"
    assert (await client.get("/api/device/externalId/nope", headers=dev(issuer, org))).status_code == 404

    # the same externalId in two organizations: an admin has to say which one
    twin = (await client.post("/api/device", json=body, headers=dev(issuer, other))).json()
    ambiguous = await client.get(f"/api/device/externalId/{ext}", headers=admin)
    assert ambiguous.status_code == 400 and "organizationId" in ambiguous.json()["message"]
    chosen = await client.get(f"/api/device/externalId/{ext}", params={"organizationId": other}, headers=admin)
    assert chosen.json()["id"] == twin["id"]
    # a non-admin's organizationId is not a way into another organization
    for path in (f"/api/device/{device['id']}", f"/api/device/externalId/{ext}"):
        foreign = await client.get(path, params={"organizationId": other}, headers=dev(issuer, org))
        assert foreign.status_code == 403 and f"own organization ({org})" in foreign.json()["message"]
    named = await client.get(f"/api/device/externalId/{ext}", params={"organizationId": org}, headers=dev(issuer, org))
    assert named.json()["id"] == device["id"]


async def test_public_code_lists(service):
    client, _ = service
    fuels = (await client.get("/api/device/fuel-type")).json()
    assert {"code": "ES100", "name": "Solar"} in fuels and any(f["code"] == "ES430" for f in fuels)
    types = (await client.get("/api/device/device-type")).json()
    assert any(t["code"] == "TC120" for t in types)
    countries = (await client.get("/api/countrycode/list")).json()
    assert len(countries) > 240
    india = next(c for c in countries if c["countryCode"] == "IND")
    assert india["alpha2"] == "IN" and "Asia/Kolkata" in india["timezones"]
    found = (await client.get("/api/countrycode/list", params={"searchKeyWord": "kenya"})).json()
    assert [c["countryCode"] for c in found] == ["KEN"]
