"""PUT /api/device/my/deviceOnBoardingDate where it is enabled (D-REC: dev mode): the onboarding date moves
back by up to six months and device.updated announces it; each validation error and permission denial."""

from datetime import datetime, timedelta

import pytest

from opendrec_kit.testing import wait_for_event
from opendrec_kit.timestamps import iso

from .test_api import dev, new_org
from .test_api_users import refused
from .test_device_helpers import NOW, certify, refused_without_write_or_for_another_org, register, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")

PATH = "/api/device/my/deviceOnBoardingDate"


@pytest.fixture(scope="module")
def settings_overrides() -> dict:
    return {"onboarding_date_changes_enabled": True}


async def test_the_onboarding_date_moves_back_and_is_announced(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    device = await register(client, headers)
    onboarded = datetime.fromisoformat(device["createdAt"])
    given = (onboarded - timedelta(days=60)).replace(microsecond=0)

    r = await client.put(PATH, params={"deviceId": device["externalId"], "givenDate": iso(given)}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == f"Changed createdAt date from {iso(onboarded)} to {iso(given)}"
    assert (await client.get(f"/api/device/{device['id']}", headers=headers)).json()["createdAt"] == iso(given)
    envelope, _ = await wait_for_event(
        kafka_bootstrap,
        "device.updated",
        lambda e: (
            e["payload"]["device_id"] == device["id"] and datetime.fromisoformat(e["payload"]["onboarded_at"]) == given
        ),
    )
    assert envelope["payload"]["external_id"] == device["externalId"]

    # an admin names the organization, or finds the device in all; no offset means UTC
    admin = issuer.headers(organization_id=new_org(), role="Admin")
    earlier = given - timedelta(days=1)
    r = await client.put(
        PATH,
        params={"deviceId": device["externalId"], "givenDate": earlier.strftime("%Y-%m-%dT%H:%M:%S")},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.text.endswith(f"to {iso(earlier)}")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"givenDate": "2024-01-01"}, "deviceId is required"),
        ({"deviceId": "{ext}"}, "givenDate is required"),
        ({"deviceId": "{ext}", "givenDate": "yesterday"}, "is not an ISO 8601 date"),
        ({"deviceId": "{ext}", "givenDate": "{later}"}, "must be before the onboarding date"),
        ({"deviceId": "{ext}", "givenDate": "{onboarded}"}, "must be before the onboarding date"),
        ({"deviceId": "{ext}", "givenDate": "{too_early}"}, "not more than 6 months before it"),
        ({"deviceId": "{ext}", "givenDate": "x" * 65}, "givenDate"),
        ({"deviceId": "x" * 201, "givenDate": "2024-01-01"}, "deviceId"),
    ],
)
async def test_onboarding_date_validation(service, params, fragment):
    client, issuer = service
    headers = dev(issuer, new_org())
    device = await register(client, headers)
    onboarded = datetime.fromisoformat(device["createdAt"])
    values = {
        "ext": device["externalId"],
        "later": iso(onboarded + timedelta(seconds=1)),
        "onboarded": iso(onboarded),
        "too_early": iso(onboarded - timedelta(days=186)),
    }
    r = await client.put(PATH, params={k: v.format(**values) for k, v in params.items()}, headers=headers)
    refused(r, 400, fragment)
    assert (await client.get(f"/api/device/{device['id']}", headers=headers)).json()["createdAt"] == device["createdAt"]


async def test_onboarding_date_refusals(service):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    device = await register(client, headers)
    given = iso(datetime.fromisoformat(device["createdAt"]) - timedelta(days=1))
    params = {"deviceId": device["externalId"], "givenDate": given}

    refused(await client.put(PATH, params={**params, "deviceId": "no-such-device"}, headers=headers), 404, "No device")
    refused(await client.put(PATH, params=params, headers=dev(issuer, new_org())), 404, "No device")  # not theirs
    assert (await client.put(PATH, params=params)).status_code == 401
    read_only = issuer.headers(organization_id=org, permissions={"DEVICE_MANAGEMENT_CRUDL": "RUD"})
    await refused_without_write_or_for_another_org(client, PATH, params, headers, read_only)
    # certified energy: its reads were judged against the current date
    created = await reserve(client, [device["id"]])
    await certify(client, created, device["id"], org, NOW - timedelta(days=3), NOW - timedelta(days=2), 10)
    refused(await client.put(PATH, params=params, headers=headers), 409, "has certified energy (10 Wh)")
    assert (await client.get(f"/api/device/{device['id']}", headers=headers)).json()["createdAt"] == device["createdAt"]
