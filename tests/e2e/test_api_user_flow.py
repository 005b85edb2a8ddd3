"""The integrator's (API user's) journey of the D-REC API-user manual, every call through the gateway
to the whole platform running as processes: register and download the key, ask for modules, get
approved, create a Developer and a Buyer organization, register a device, send reads, reserve it
for the Buyer organization, send History reads and see their certificates, end the reservation early
and see the certificate of its last period; and a second API user who reaches none of it.

The steps are separate tests sharing one journey (module scope), in file order, so that a failing
step still lets the independent ones run; a step whose input an earlier step failed to make skips.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opendrec_devstack.drec_samples import access_token, bearer, registration_body, reservation_body
from opendrec_devstack.smtp_sink import read_mails
from opendrec_identity.client import ASSERTION_TYPE, ApiUserClient, client_assertion
from opendrec_kit.periods import next_period_start, period_of_end, period_start
from opendrec_kit.testing import eventually
from opendrec_kit.timestamps import iso

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

PEM = "application/x-pem-file"
# What the integrator asks for (manual 3.1). ORGANIZATION_MANAGEMENT_CRUDL is needed to create and list
# its Developer/Buyer organizations (identity README); Update on reservations to end one early.
MODULES = {
    "ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"],
    "DEVICE_MANAGEMENT_CRUDL": ["Read", "Write"],
    "READS_MANAGEMENT_CRUDL": ["Read", "Write"],
    "BUYER_RESERVATION_MANAGEMENT_CRUDL": ["Read", "Write", "Update"],
    "CERTIFICATE_LOG_MANAGEMENT_CRUDL": ["Read"],
    "DEVICE_BULK_MANAGEMENT_CRUDL": ["Read", "Write"],
}
CERTIFICATE_LOG = "/api/certificate-log/by-reservation-groupId"
NOT_YOURS = "not one of your organizations"


# ---------------------------------------------------------------- journey state


@dataclass
class ApiUser:
    api_user_id: str
    email: str
    private_pem: str
    client: ApiUserClient | None = None  # the client helper, made anew after each approval

    async def headers(self) -> dict[str, str]:
        assert self.client is not None, "no token client yet"
        token = await asyncio.to_thread(self.client.token)  # the helper is synchronous (urllib)
        return {"Authorization": f"Bearer {token}"}


@dataclass
class Journey:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    api_user: ApiUser | None = None
    approved: bool = False
    helper_before_approval: ApiUserClient | None = None
    developer_org: int | None = None
    buyer_org: int | None = None
    device: dict[str, Any] | None = None
    read_ends: list[datetime] = field(default_factory=list)
    read_wh: int = 0  # Delta energy sent so far
    reservation: dict[str, Any] | None = None
    history: list[tuple[datetime, datetime, int]] = field(default_factory=list)  # History reads sent (start, end, Wh)

    def need(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            pytest.skip(f"an earlier step did not provide {', '.join(missing)}")


@pytest.fixture(scope="module")
def journey() -> Journey:
    return Journey()


@pytest.fixture(scope="module")
async def http(platform):
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def admin(http, platform) -> dict[str, str]:
    return bearer(await access_token(http, platform.admin_email, platform.admin_password))


# ---------------------------------------------------------------- helpers


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def now_ms() -> datetime:
    # whole milliseconds, as sent: a read end is then exactly what we compare with
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


async def clock_past(moment: datetime) -> None:
    """Wait for the clock (not a fixed time): a Delta read's energy is bounded by its interval's length."""

    async def passed() -> bool:
        return datetime.now(UTC) > moment

    await eventually(passed, timeout=5, interval=0.02)


def refused(r: httpx.Response, status: int, fragment: str = "") -> None:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"
    body = r.json()
    assert isinstance(body.get("message"), str) and fragment in body["message"], body


def registration(kind: str, tag: str, **extra: Any) -> dict[str, Any]:
    unique = f"{tag}{uuid.uuid4().hex[:6]}"
    return registration_body(
        kind,
        password="Integr8tor",
        firstName="Integrator",
        lastName=kind,
        email=f"e2e-{kind.lower()}-{unique}@example.org",
        orgName=f"E2E {kind} {unique}",
        orgAddress="Pune",
        secretKey="E2E123",
        **extra,
    )


async def register_api_user(http: httpx.AsyncClient, tag: str) -> ApiUser:
    """Manual 1.1.1 with the one-time PEM download: the answer is the key file itself."""
    body = registration("ApiUser", tag)
    r = await http.post("/api/user/register", json=body, headers={"Accept": PEM})
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith(PEM)
    api_user_id = r.headers["x-api-user-id"]
    assert str(uuid.UUID(api_user_id)) == api_user_id
    assert r.headers["content-disposition"] == f'attachment; filename="opendrec-apiuser-{api_user_id}.pem"'
    assert r.headers["cache-control"] == "no-store"
    assert r.text.startswith("-----BEGIN PRIVATE KEY-----")
    assert isinstance(serialization.load_pem_private_key(r.text.encode(), password=None), Ed25519PrivateKey)
    return ApiUser(api_user_id, body["email"], r.text)


async def ask_and_get_approved(http: httpx.AsyncClient, admin: dict, user: ApiUser) -> None:
    user.client = ApiUserClient(str(http.base_url), user.api_user_id, user.private_pem)
    r = await http.post(
        "/api/permission/module/apiuser/request", json=as_request(MODULES), headers=await user.headers()
    )
    assert r.status_code == 200, r.text
    r = await http.put(
        f"/api/permission/module/verify/ByAdmin/{user.api_user_id}", json={"status": "Active"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["status"] == "Active", r.text
    user.client = ApiUserClient(
        str(http.base_url), user.api_user_id, user.private_pem
    )  # approval revoked the old token


def as_request(modules: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"moduleName": m, "permissions": actions} for m, actions in modules.items()]


def device_payload(external_id: str, organization_id: int) -> dict[str, Any]:
    # The manual's "Register Device" payload (4.1): an API user names the Developer organization.
    return {
        "externalId": external_id,
        "organizationId": organization_id,
        "projectName": f"{external_id} rooftop",
        "address": "Pune",
        "latitude": "18.52",
        "longitude": "73.85",
        "countryCode": "IND",
        "fuelCode": "ES100",
        "deviceTypeCode": "TC110",
        "capacity": 2000,
        "commissioningDate": "2021-01-02T11:35:27.740Z",
        "gridInterconnection": True,
        "offTaker": "Residential",
        "impactStory": "e2e",
        "data": "",
        "images": [],
        "deviceDescription": "Rooftop Solar",
        "energyStorage": False,
        "energyStorageCapacity": 0,
        "qualityLabels": "none",
        "SDGBenefits": [],
        "version": "1.0",
    }


def delta_reads(organization_id: int, reads: list[tuple[datetime, int]]) -> dict[str, Any]:
    return {
        "type": "Delta",
        "unit": "Wh",
        "organizationId": organization_id,
        "reads": [{"starttimestamp": " ", "endtimestamp": iso(end), "value": wh} for end, wh in reads],
    }


async def ungrouped_has(http: httpx.AsyncClient, headers: dict, buyer_org: int, device_id: int) -> bool:
    """Is the device in the buyer's list of devices it may reserve? (keyset page starting at it)"""
    r = await http.get(
        "/api/device/ungrouped/buyerreservation",
        params={"organizationId": buyer_org, "afterId": device_id + 1, "limit": 1, "pagenumber": 1},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["devices"]] == [device_id]


async def certificate_log(http: httpx.AsyncClient, headers: dict, group_id: int, buyer_org: int) -> httpx.Response:
    return await http.get(
        CERTIFICATE_LOG, params={"groupId": group_id, "organizationId": buyer_org, "limit": 1000}, headers=headers
    )


async def certified(http: httpx.AsyncClient, headers: dict, journey: Journey, total_wh: int) -> httpx.Response | None:
    """The reservation's per-device issue log (D-REC's bare array) once it holds `total_wh`."""
    r = await certificate_log(http, headers, journey.reservation["id"], journey.buyer_org)
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), list), r.text
    return r if sum(c["readvalue_watthour"] for c in r.json()) == total_wh else None


async def issuer_log(http: httpx.AsyncClient, headers: dict, journey: Journey) -> dict[str, Any]:
    """GET .../issuer/certified/{groupUid}: the reservation, our certificates and D-REC's certificatelog."""
    uid = journey.reservation["devicegroup_uid"]
    r = await http.get(
        f"/api/certificate-log/issuer/certified/{uid}",
        params={"organizationId": journey.buyer_org, "limit": 1000},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    log = r.json()
    assert (log["groupId"], log["devicegroup_uid"]) == (journey.reservation["id"], uid)
    return log


def check_part(part: dict[str, Any], journey: Journey) -> None:
    """An entry of the per-device issue log: the device's part of a certificate of the reservation."""
    device = journey.device
    assert (part["groupId"], part["deviceId"], part["externalId"]) == (
        journey.reservation["id"],
        device["id"],
        device["externalId"],
    )
    assert (part["ownerOrganizationId"], part["buyerOrganizationId"], part["status"]) == (
        journey.developer_org,
        journey.buyer_org,
        "Issued",
    )
    assert part["readvalue_watthour"] == part["energyWh"] > 0 and part["energyWh"] % 1000 == 0
    assert (part["certificate_issuance_startdate"], part["certificate_issuance_enddate"]) == (
        part["certificateStartDate"],
        part["certificateEndDate"],
    )
    assert part["certificateTransactionUID"] == part["certificateId"]
    assert part["devicegroup_uid"] == journey.reservation["devicegroup_uid"]


def check_issuer_log(log: dict[str, Any], journey: Journey) -> None:
    """Our certificates (one part each: one device) and D-REC's certificatelog of the same certificates."""
    device, group_id = journey.device, journey.reservation["id"]
    assert log["totalCount"] == log["totalItems"] == len(log["certificates"]) == len(log["certificatelog"])
    assert log["totalEnergyWh"] == sum(c["energyWh"] for c in log["certificates"])
    for c, entry in zip(log["certificates"], log["certificatelog"], strict=True):
        assert c["energyWh"] % 1000 == 0 and c["countryCode"] == "IND" and not c["targetReached"]
        assert c["allocatedWh"] + c["carryInWh"] == c["energyWh"] + c["carryOutWh"]
        [part] = c["parts"]
        assert (part["deviceId"], part["ownerOrganizationId"], part["energyWh"]) == (
            device["id"],
            journey.developer_org,
            c["energyWh"],
        )
        assert (entry["id"], entry["deviceId"], entry["energyWh"]) == (c["id"], str(group_id), c["energyWh"])
        assert entry["metadata"] == {
            "groupId": str(group_id),
            "buyerReservationId": journey.reservation["devicegroup_uid"],
            "deviceIds": [device["externalId"]],
            "certificateTransactionUID": c["id"],
        }
        [per_device] = entry["perDeviceCertificateLog"]
        assert (per_device["id"], per_device["readvalue_watthour"]) == (part["id"], c["energyWh"])
        check_part(per_device, journey)


# ---------------------------------------------------------------- the journey


async def test_1_register_an_api_user_and_download_its_key(http, platform, journey):
    user = await register_api_user(http, journey.tag)

    # The key signs client assertions (RFC 7523): a token for the API user, no password involved.
    signed = client_assertion(user.api_user_id, user.private_pem)
    r = await http.post(
        "/api/auth/token",
        data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed},
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (
        answer["token_type"] == "Bearer"
        and answer["expires_in"] > 0
        and answer["access_token"] == answer["accessToken"]
    )
    assert r.headers["cache-control"] == "no-store"
    replay = await http.post(
        "/api/auth/token",
        data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed},
    )
    refused(replay, 401, "already used")
    token = {"Authorization": f"Bearer {answer['access_token']}"}

    me = await http.get("/api/user/me", headers=token)
    assert me.status_code == 200, me.text
    assert (me.json()["email"], me.json()["role"], me.json()["organization"]["organizationType"]) == (
        user.email.lower(),
        "ApiUser",
        "ApiUser",
    )
    assert me.json()["permissions"] == {}  # nothing until an admin approves
    assert "PRIVATE" not in me.text

    # The confirmation mail (login does not wait for it, but an integrator confirms its address).
    async def mail():
        found = read_mails(platform.mail_dir, to=user.email)
        return found[-1] if found else None

    message = await eventually(mail)
    assert message["Subject"] == "Confirm your OpenDREC e-mail address"
    confirm = re.search(r"/api/user/confirm-email/(\S+)", message.get_body(("plain",)).get_content())
    assert confirm, message.get_body(("plain",)).get_content()
    r = await http.put(f"/api/user/confirm-email/{confirm.group(1)}")
    assert r.status_code == 200, r.text
    assert (await http.get("/api/user/me", headers=token)).json()["emailConfirmed"] is True
    journey.api_user = user


async def test_2_modules_need_an_admins_approval(http, admin, journey):
    journey.need("api_user")
    user = journey.api_user
    user.client = ApiUserClient(str(http.base_url), user.api_user_id, user.private_pem)
    before = await user.headers()

    r = await http.post("/api/permission/module/apiuser/request", json=as_request(MODULES), headers=before)
    assert r.status_code == 200, r.text
    assert r.json() == {"apiUserId": user.api_user_id, "status": "Request", "modules": MODULES}

    # Asked, not granted: a device registration and the organization listing are refused.
    r = await http.post("/api/device", json=device_payload(f"E2E-{journey.tag}-early", 1), headers=before)
    refused(r, 403, "DEVICE_MANAGEMENT_CRUDL")
    refused(
        await http.get("/api/Organization/apiuser/all_organization", headers=before),
        403,
        "ORGANIZATION_MANAGEMENT_CRUDL",
    )
    # Only an admin approves, not the API user itself.
    refused(
        await http.put(
            f"/api/permission/module/verify/ByAdmin/{user.api_user_id}", json={"status": "Active"}, headers=before
        ),
        403,
    )

    journey.helper_before_approval = user.client
    r = await http.put(
        f"/api/permission/module/verify/ByAdmin/{user.api_user_id}", json={"status": "Active"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"apiUserId": user.api_user_id, "status": "Active", "modules": MODULES}
    # The approval revoked the token that held none of the modules ...
    assert (await http.get("/api/user/me", headers=before)).status_code == 401
    # ... and a fresh one from the client helper carries them.
    user.client = ApiUserClient(str(http.base_url), user.api_user_id, user.private_pem)
    me = await http.get("/api/user/me", headers=await user.headers())
    assert me.status_code == 200, me.text
    assert me.json()["permissions"] == MODULES
    status, page = await asyncio.to_thread(user.client.call, "GET", "/api/Organization/apiuser/all_organization")
    assert status == 200 and page["organizations"] == [] and page["totalCount"] == 0, page
    journey.approved = True


async def test_3_developer_and_buyer_organizations_under_the_api_user(http, journey):
    journey.need("api_user", "approved")
    user = journey.api_user
    headers = await user.headers()
    made = {}
    for kind in ("Developer", "Buyer"):
        body = registration(kind, journey.tag, api_user_id=user.api_user_id)
        r = await http.post("/api/user/register", json=body, headers=headers)
        assert r.status_code == 201, r.text
        created = r.json()
        assert (
            created["organization"]["organizationType"] == kind and created["organization"]["name"] == body["orgName"]
        )
        assert created["role"] == {"Developer": "OrganizationAdmin", "Buyer": "Buyer"}[kind]
        assert created["apiUserId"] == user.api_user_id and created["privateKey"] is None
        made[kind] = created["organization"]

    r = await http.get("/api/Organization/apiuser/all_organization", params={"limit": 100}, headers=headers)
    assert r.status_code == 200, r.text
    listed = {o["id"]: (o["name"], o["organizationType"]) for o in r.json()["organizations"]}
    assert listed == {o["id"]: (o["name"], o["organizationType"]) for o in made.values()}
    assert r.json()["totalCount"] == 2
    r = await http.get(
        "/api/Organization/apiuser/all_organization",
        params={"organizationName": made["Buyer"]["name"].upper()},
        headers=headers,
    )
    assert r.status_code == 200 and [o["id"] for o in r.json()["organizations"]] == [made["Buyer"]["id"]], r.text

    # Without the bearer token nobody registers organizations under this API user.
    anonymous = await http.post(
        "/api/user/register", json=registration("Developer", journey.tag, api_user_id=user.api_user_id)
    )
    assert anonymous.status_code in (401, 403), anonymous.text
    journey.developer_org, journey.buyer_org = made["Developer"]["id"], made["Buyer"]["id"]


async def test_4_a_device_for_the_developer_organization_only(http, journey):
    journey.need("api_user", "developer_org", "buyer_org")
    headers = await journey.api_user.headers()
    dev, buyer = journey.developer_org, journey.buyer_org

    # organization.registered reaches devices asynchronously: wait until it lists the organization.
    async def devices_knows(org: int, path: str) -> bool:
        r = await http.get(path, params={"organizationId": org}, headers=headers)
        if r.status_code == 403 and NOT_YOURS in r.text:
            return False
        assert r.status_code == 200, r.text
        return True

    await eventually(lambda: devices_knows(dev, "/api/device/my"))
    await eventually(lambda: devices_knows(buyer, "/api/device/ungrouped/buyerreservation"))

    external_id = f"E2E-{journey.tag}"
    refused(
        await http.post(
            "/api/device", json={**device_payload(external_id, dev), "organizationId": None}, headers=headers
        ),
        400,
        "organizationId is required",
    )
    r = await http.post("/api/device", json=device_payload(external_id, dev), headers=headers)
    assert r.status_code == 201, r.text
    device = r.json()
    assert (device["externalId"], device["organizationId"], device["countryCode"], device["capacity"]) == (
        external_id,
        dev,
        "IND",
        2000,
    )

    # The manual's 4.1: a Buyer organization's id is refused.
    refused(
        await http.post("/api/device", json=device_payload(f"{external_id}-b", buyer), headers=headers),
        403,
        "Buyer organization",
    )

    r = await http.get("/api/device/my", params={"organizationId": dev, "pagenumber": 1}, headers=headers)
    assert r.status_code == 200, r.text
    assert [(d["id"], d["externalId"]) for d in r.json()["devices"]] == [(device["id"], external_id)] and r.json()[
        "totalCount"
    ] == 1
    r = await http.get(
        f"/api/device/{device['id']}",
        params={"organizationId": dev, "apiUserId": journey.api_user.api_user_id},
        headers=headers,
    )
    assert r.status_code == 200 and r.json()["externalId"] == external_id, r.text
    refused(
        await http.get("/api/device/my", params={"organizationId": buyer}, headers=headers), 403, "Buyer organization"
    )
    journey.device = device


async def test_5_delta_reads_for_the_device(http, journey):
    journey.need("api_user", "developer_org", "device")
    headers = await journey.api_user.headers()
    dev, device = journey.developer_org, journey.device
    path = f"/api/meter-reads/new/{device['externalId']}"

    # readings learns the organization and the device from events: wait until it answers for them.
    async def readings_knows() -> bool:
        r = await http.get(path, params={"organizationId": dev}, headers=headers)
        if r.status_code in (403, 404):
            return False
        assert r.status_code == 200, r.text
        return True

    await eventually(readings_knows)
    assert (await http.get(path, params={"organizationId": dev}, headers=headers)).json()["numberOfReads"] == 0

    # The Buyer organization sees no reads of a device none of its reservations holds (manual 5.2: by device id).
    async def readings_knows_the_buyer():
        r = await http.get(
            f"/api/meter-reads/new/{device['id']}", params={"organizationId": journey.buyer_org}, headers=headers
        )
        return r if not (r.status_code == 403 and NOT_YOURS in r.text) else None

    refused(await eventually(readings_knows_the_buyer), 404, "in a reservation of organization")
    # Reads are added for the Developer organization only (manual 5.1).
    refused(
        await http.post(path, json=delta_reads(journey.buyer_org, [(now_ms(), 1)]), headers=headers),
        403,
        "Buyer organization",
    )

    # Two Delta reads in one batch, each over half the time since onboarding. Small values: the
    # plausibility rule bounds what 2 MW make in a fraction of a second (~120 Wh/s), so let at least
    # half a second pass since onboarding.
    onboarded = parse(device["createdAt"])
    await clock_past(onboarded + timedelta(milliseconds=500))
    end = now_ms()
    middle = onboarded + (end - onboarded) / 2
    middle = middle.replace(microsecond=middle.microsecond // 1000 * 1000)
    r = await http.post(path, json=delta_reads(dev, [(middle, 2), (end, 3)]), headers=headers)
    assert r.status_code == 201, r.text
    summary = r.json()
    assert (summary["externalId"], summary["type"], summary["count"], summary["totalWh"]) == (
        device["externalId"],
        "Delta",
        2,
        5,
    )
    journey.read_ends, journey.read_wh = [middle, end], 5

    r = await http.get(path, params={"organizationId": dev, "limit": 10}, headers=headers)
    assert r.status_code == 200, r.text
    back = r.json()
    assert back["numberOfReads"] == 2 and back["historyread"] == []
    assert [x["value"] for x in back["ongoing"]] == [2, 3]
    assert [parse(x["enddate"]) for x in back["ongoing"]] == [middle, end]
    # a Delta read runs from the previous end; the first from onboarding
    assert abs(parse(back["ongoing"][0]["startdate"]) - onboarded) < timedelta(milliseconds=1)
    assert parse(back["ongoing"][1]["startdate"]) == middle
    r = await http.get(
        f"/api/meter-reads/latestread/{device['externalId']}", params={"organizationId": dev}, headers=headers
    )
    assert r.status_code == 200 and (r.json()["value"], parse(r.json()["enddate"])) == (3, end), r.text


async def test_6_reserve_the_device_for_the_buyer_organization(http, journey):
    journey.need("api_user", "buyer_org", "device")
    headers = await journey.api_user.headers()
    buyer, device_id = journey.buyer_org, journey.device["id"]

    assert await eventually(lambda: ungrouped_has(http, headers, buyer, device_id))

    # from an hour ago (before the device's first read) to a day from now
    payload = reservation_body(f"E2E-RES-{journey.tag}", [device_id])
    refused(
        await http.post(
            "/api/buyer-reservation", params={"orgId": journey.developer_org}, json=payload, headers=headers
        ),
        403,
    )

    async def reserved():
        r = await http.post("/api/buyer-reservation", params={"orgId": buyer}, json=payload, headers=headers)
        # reservations learns the organization and the device from events
        if (r.status_code == 403 and NOT_YOURS in r.text) or (r.status_code == 400 and "unknown device" in r.text):
            return None
        return r

    r = await eventually(reserved)
    assert r.status_code == 201, r.text
    reservation = r.json()
    assert (
        reservation["organizationId"] == buyer
        and reservation["deviceIds"] == [device_id]
        and reservation["name"] == payload["name"]
    )
    assert (reservation["state"], reservation["reservationActive"], reservation["frequency"]) == (
        "active",
        True,
        "hourly",
    )
    assert reservation["targetCapacityInMegaWattHour"] == 20 and reservation["unavailableDevices"] == []
    journey.reservation = reservation

    # The device is no longer offered to buyers ...
    assert await eventually(lambda: _not(ungrouped_has(http, headers, buyer, device_id)))
    # ... and reserving it again over the same window is refused.
    again = await http.post(
        "/api/buyer-reservation",
        params={"orgId": buyer},
        json={**payload, "name": f"{payload['name']}-2"},
        headers=headers,
    )
    assert again.status_code == 400 and again.json()["details"] == [
        {"deviceId": device_id, "reason": "already reserved in an overlapping window"}
    ], again.text

    r = await http.get(
        "/api/buyer-reservation", params={"organizationId": buyer, "pageNumber": 1, "limit": 10}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert [g["id"] for g in r.json()["deviceGroups"]] == [reservation["id"]] and r.json()["totalCount"] == 1
    r = await http.get("/api/buyer-reservation", params={"apiuserId": journey.api_user.api_user_id}, headers=headers)
    assert r.status_code == 200 and reservation["id"] in [g["id"] for g in r.json()["deviceGroups"]], r.text
    r = await http.get(f"/api/buyer-reservation/{reservation['id']}", params={"organizationId": buyer}, headers=headers)
    assert r.status_code == 200 and r.json()["devicegroup_uid"] == reservation["devicegroup_uid"], r.text

    # The Buyer organization now sees the reserved device's reads, by device id (manual 5.2).
    async def buyer_sees_reads():
        r = await http.get(f"/api/meter-reads/new/{device_id}", params={"organizationId": buyer}, headers=headers)
        return r if r.status_code != 404 else None

    r = await eventually(buyer_sees_reads)
    assert r.status_code == 200 and [x["value"] for x in r.json()["ongoing"]] == [2, 3], r.text


async def test_7_certificates_for_the_reservation(http, journey):
    """D-REC's issuance (certificates README, "How energy becomes certificates"): whole kWh, one certificate per
    reservation, country and period once the period closed and settled; a History read inside the window gets a
    certificate of its own, its remainder carried. The Delta reads (5 Wh) lie in the open hour: nothing for them."""
    journey.need("api_user", "buyer_org", "developer_org", "device", "reservation", "read_ends")
    headers = await journey.api_user.headers()
    group_id, buyer, device = journey.reservation["id"], journey.buyer_org, journey.device

    # The log is there at once (the certificates service learns a reservation it misses); nothing issued.
    r = await certificate_log(http, headers, group_id, buyer)
    assert r.status_code == 200 and r.json() == [] and r.headers["X-Total-Count"] == "0", r.text

    # Two History reads (energy before onboarding) inside the window, which began an hour before the reservation:
    # 2,600 Wh -> 2,000 issued, 600 carried; 1,397 Wh -> 1,000 issued, 397 carried (997 in all).
    window_start = parse(journey.reservation["reservationStartDate"])
    history = [
        (window_start + timedelta(minutes=5), window_start + timedelta(minutes=15), 2600),
        (window_start + timedelta(minutes=20), window_start + timedelta(minutes=30), 1397),
    ]
    assert history[-1][1] <= parse(device["createdAt"]) - timedelta(milliseconds=1)  # before onboarding
    r = await http.post(
        f"/api/meter-reads/new/{device['externalId']}",
        json={
            "type": "History",
            "unit": "Wh",
            "organizationId": journey.developer_org,
            "reads": [{"starttimestamp": iso(a), "endtimestamp": iso(b), "value": wh} for a, b, wh in history],
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["type"], r.json()["count"], r.json()["totalWh"]) == ("History", 2, 3997)
    journey.history = history

    r = await eventually(lambda: certified(http, headers, journey, 3000))
    parts = r.json()
    assert int(r.headers["X-Total-Count"]) == len(parts) == 2
    for part, (start, end, _) in zip(parts, history, strict=True):
        check_part(part, journey)
        assert (part["kind"], parse(part["periodStart"]), parse(part["periodEnd"])) == ("history", start, end)
        assert (parse(part["certificate_issuance_startdate"]), parse(part["certificate_issuance_enddate"])) == (
            start,
            end,
        )
    # one certificate per History read, each the first (sequence 1) of its own period: the read's interval
    assert [(p["sequence"], p["readvalue_watthour"]) for p in parts] == [(1, 2000), (1, 1000)]

    log = await issuer_log(http, headers, journey)
    assert log["groupId"] == group_id and log["reservationEndedAt"] is None and log["totalEnergyWh"] == 3000
    assert [(c["allocatedWh"], c["carryInWh"], c["energyWh"], c["carryOutWh"]) for c in log["certificates"]] == [
        (2600, 0, 2000, 600),
        (1397, 0, 1000, 397),
    ]
    check_issuer_log(log, journey)

    # Another Delta read, a quarter second after the last one (for plausibility): still in the open hour.
    await clock_past(journey.read_ends[-1] + timedelta(milliseconds=250))
    end = now_ms()
    r = await http.post(
        f"/api/meter-reads/new/{device['externalId']}",
        json=delta_reads(journey.developer_org, [(end, 4)]),
        headers=headers,
    )
    assert r.status_code == 201, r.text
    journey.read_ends.append(end)
    journey.read_wh += 4
    looked = datetime.now(UTC)
    r = await certificate_log(http, headers, group_id, buyer)
    assert r.status_code == 200, r.text
    if looked < next_period_start(period_start(parse(device["createdAt"]), "hourly"), "hourly"):
        # the hour of the Delta reads (from onboarding on) has not closed: 997 carried + 9 Wh allocated wait for it
        assert [p["kind"] for p in r.json()] == ["history", "history"], r.text

    # An API user must say which organization it acts for.
    refused(
        await http.get(CERTIFICATE_LOG, params={"groupId": group_id}, headers=headers),
        400,
        "organizationId is required",
    )


async def test_8_end_the_reservation_early(http, journey):
    journey.need("api_user", "buyer_org", "device", "reservation")
    headers = await journey.api_user.headers()
    group_id, buyer, device_id = journey.reservation["id"], journey.buyer_org, journey.device["id"]
    path = f"/api/device-group/{group_id}/end"

    refused(await http.post(path, headers=headers), 400, "organizationId is required")
    r = await http.post(path, params={"organizationId": buyer}, headers=headers)
    assert r.status_code == 200, r.text
    ended = r.json()
    assert (ended["id"], ended["state"], ended["reservationActive"], ended["endReason"]) == (
        group_id,
        "ended",
        False,
        "ended_by_buyer",
    )
    ended_at = parse(ended["endedAt"])
    assert ended_at < parse(journey.reservation["reservationEndDate"])
    refused(await http.post(path, params={"organizationId": buyer}, headers=headers), 409, "already ended")

    r = await http.get(f"/api/buyer-reservation/{group_id}", params={"organizationId": buyer}, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], parse(r.json()["endedAt"])) == ("ended", ended_at)
    # The device is offered to buyers again.
    assert await eventually(lambda: ungrouped_has(http, headers, buyer, device_id))

    # The certificate log records the end; what was certified stays.
    async def log_knows_the_end():
        log = await issuer_log(http, headers, journey)
        return log if log["reservationEndedAt"] else None

    log = await eventually(log_knows_the_end)
    assert parse(log["reservationEndedAt"]) == ended_at
    if not journey.history:
        return
    # The end closes the last hourly period (cut at the end): its certificate takes the carry of the History
    # reads and the Delta reads' energy, 997 + 9 = 1,006 Wh -> 1,000 issued, 6 carried (uncertified: it ended).
    # In all the whole kWh of the energy: 4,000 of 4,006 Wh.
    total_wh = sum(wh for _, _, wh in journey.history) + journey.read_wh
    assert total_wh == 4006
    r = await eventually(lambda: certified(http, headers, journey, total_wh // 1000 * 1000))
    parts = r.json()
    for part in parts:
        check_part(part, journey)
    log = await issuer_log(http, headers, journey)
    check_issuer_log(log, journey)
    assert log["totalEnergyWh"] == 4000 and int(r.headers["X-Total-Count"]) == len(parts) == log["totalCount"]
    periods = [c for c in log["certificates"] if c["kind"] == "period"]
    # the log is in period order: a History read's period may fall before or after the first hourly one
    assert sorted(c["kind"] for c in log["certificates"]) == ["history", "history"] + ["period"] * len(periods)
    assert periods and sum(c["energyWh"] for c in periods) == 1000
    window_start = parse(journey.reservation["reservationStartDate"])
    for c in periods:  # hourly periods, cut by the window: from its start to the end
        hour = period_start(parse(c["periodStart"]), "hourly")
        assert parse(c["periodStart"]) == max(hour, window_start)
        assert parse(c["periodEnd"]) == min(next_period_start(hour, "hourly"), ended_at)
    onboarded = parse(journey.device["createdAt"])
    if period_start(onboarded, "hourly") == period_of_end(ended_at, "hourly"):
        # the usual case: the Delta reads and the end in one hour, so one period certificate, cut at the end
        [last] = periods
        assert (last["allocatedWh"], last["carryInWh"], last["energyWh"], last["carryOutWh"]) == (9, 997, 1000, 6)
        assert parse(last["periodEnd"]) == ended_at
        assert abs(parse(last["certificateStartDate"]) - onboarded) < timedelta(milliseconds=1)
        assert parse(last["certificateEndDate"]) == journey.read_ends[-1]


async def test_9_another_api_user_reaches_none_of_it(http, admin, journey):
    journey.need("api_user", "developer_org", "buyer_org")
    other = await register_api_user(http, journey.tag)
    await ask_and_get_approved(http, admin, other)
    headers = await other.headers()
    dev, buyer = journey.developer_org, journey.buyer_org
    external_id = journey.device["externalId"] if journey.device else "E2E-none"
    group_id = journey.reservation["id"] if journey.reservation else 1

    r = await http.get("/api/Organization/apiuser/all_organization", headers=headers)
    assert r.status_code == 200 and r.json()["organizations"] == [], r.text
    refused(
        await http.post(
            "/api/user/register",
            json=registration("Developer", journey.tag, api_user_id=journey.api_user.api_user_id),
            headers=headers,
        ),
        403,
    )

    # Devices: listing, one device, registration, the buyer's list of reservable devices.
    refused(await http.get("/api/device/my", params={"organizationId": dev}, headers=headers), 403, NOT_YOURS)
    if journey.device:
        refused(
            await http.get(f"/api/device/{journey.device['id']}", params={"organizationId": dev}, headers=headers),
            403,
            NOT_YOURS,
        )
    refused(
        await http.post("/api/device", json=device_payload(f"E2E-{journey.tag}-other", dev), headers=headers),
        403,
        NOT_YOURS,
    )
    refused(
        await http.get("/api/device/ungrouped/buyerreservation", params={"organizationId": buyer}, headers=headers),
        403,
        NOT_YOURS,
    )
    # Its own listing shows none of the first API user's devices.
    r = await http.get("/api/device/my", headers=headers)
    assert r.status_code == 200 and r.json()["devices"] == [], r.text

    # Reads: read back, latest read, add (organizationId in the body), and as the buyer.
    path = f"/api/meter-reads/new/{external_id}"
    refused(await http.get(path, params={"organizationId": dev}, headers=headers), 403, NOT_YOURS)
    refused(
        await http.get(f"/api/meter-reads/latestread/{external_id}", params={"organizationId": dev}, headers=headers),
        403,
        NOT_YOURS,
    )
    refused(await http.post(path, json=delta_reads(dev, [(now_ms(), 1)]), headers=headers), 403, NOT_YOURS)
    if journey.device:
        refused(
            await http.get(
                f"/api/meter-reads/new/{journey.device['id']}", params={"organizationId": buyer}, headers=headers
            ),
            403,
            NOT_YOURS,
        )

    # Reservations: list, one, create, end; the other's apiuserId.
    refused(await http.get("/api/buyer-reservation", params={"organizationId": buyer}, headers=headers), 403, NOT_YOURS)
    refused(
        await http.get("/api/buyer-reservation", params={"apiuserId": journey.api_user.api_user_id}, headers=headers),
        403,
        "another API user",
    )
    refused(
        await http.get(f"/api/buyer-reservation/{group_id}", params={"organizationId": buyer}, headers=headers),
        403,
        NOT_YOURS,
    )
    reservation = {
        "name": f"E2E-RES-{journey.tag}-other",
        "deviceIds": [journey.device["id"] if journey.device else 1],
        "reservationStartDate": iso(datetime.now(UTC)),
        "reservationEndDate": iso(datetime.now(UTC) + timedelta(days=1)),
        "frequency": "hourly",
    }
    refused(
        await http.post("/api/buyer-reservation", params={"orgId": buyer}, json=reservation, headers=headers),
        403,
        NOT_YOURS,
    )
    refused(
        await http.post(f"/api/device-group/{group_id}/end", params={"organizationId": buyer}, headers=headers),
        403,
        NOT_YOURS,
    )
    r = await http.get("/api/buyer-reservation", headers=headers)
    assert r.status_code == 200 and r.json()["deviceGroups"] == [], r.text

    # Certificates of the first one's reservation.
    refused(await certificate_log(http, headers, group_id, buyer), 403, NOT_YOURS)
    if journey.reservation:
        r = await http.get(
            f"/api/certificate-log/issuer/certified/{journey.reservation['devicegroup_uid']}",
            params={"organizationId": buyer},
            headers=headers,
        )
        refused(r, 403, NOT_YOURS)


async def test_10_users_of_an_api_users_organizations_do_not_log_in(http, journey):
    """Manual 2.1: "Developer and Buyer of an apiuser is unauthorized to access this api" (login)."""
    journey.need("api_user", "approved")
    body = registration("Developer", journey.tag, api_user_id=journey.api_user.api_user_id)
    r = await http.post("/api/user/register", json=body, headers=await journey.api_user.headers())
    assert r.status_code == 201, r.text
    login = await http.post("/api/auth/login", json={"username": body["email"], "password": body["password"]})
    assert login.status_code in (401, 403), (
        f"login answered {login.status_code}: the user of an API user's Developer organization got a token"
    )


async def test_11_the_client_helper_keeps_working_after_the_approval(journey):
    """The identity README's example: one ApiUserClient asks for modules and, "once an admin approved",
    calls the API. The approval revoked the token it holds, so it must fetch a new one."""
    journey.need("helper_before_approval", "developer_org")
    client = journey.helper_before_approval
    status, page = await asyncio.to_thread(client.call, "GET", "/api/Organization/apiuser/all_organization")
    assert status == 200, (status, page)
    assert journey.developer_org in [o["id"] for o in page["organizations"]]


async def _not(check) -> bool:
    return not await check
