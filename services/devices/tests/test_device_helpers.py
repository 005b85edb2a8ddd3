"""D-REC's device helpers: ungrouped devices grouped for a reservation, certified totals, autocomplete, the
certified log of a reservation, the onboarding date (disabled by default) and the SDG benefit lists: success,
each validation error and each permission denial."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_devices import handlers
from opendrec_kit.testing import dispatch

from .test_api import dev, new_org, payload
from .test_api_users import api_users, as_api_user, refused  # noqa: F401 - api_users is a fixture used here
from .test_changes import issued, reservation

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONSUMER = "devices.test-device-helpers"
NOW = datetime.now(UTC)


async def register(client, headers, **changes):
    r = await client.post("/api/device", json=payload(**changes), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def follow(client, handler, event):
    runtime = client.runtime
    assert await dispatch(runtime.pool, runtime.name, handler, event, consumer=CONSUMER)


async def reserve(client, device_ids, buyer=None, start=NOW - timedelta(days=1), end=NOW + timedelta(days=30)):
    created = reservation(device_ids, start, end)
    if buyer is not None:
        created = created.model_copy(update={"buyer_organization_id": buyer})
    await follow(client, handlers.on_reservation_created, created)
    return created


async def certify(client, created, device_id, owner, start, end, wh):
    await follow(client, handlers.on_certificate_issued, issued(created, device_id, owner, start, end, wh))


def buyer(issuer, org, role="Buyer"):
    return issuer.headers(
        organization_id=org, organization_type="Buyer", role=role, permissions={"DEVICE_MANAGEMENT_CRUDL": "R"}
    )


# ---------------------------------------------------------------- GET /api/device/ungrouped


async def test_ungrouped_devices_are_the_free_ones_grouped_by_the_fields_asked(service):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    solar = await register(client, headers, fuelCode="ES100", countryCode="IND", capacity=0.5)
    wind = await register(client, headers, fuelCode="ES200", countryCode="IND", capacity=60)
    solar_ke = await register(client, headers, fuelCode="ES100", countryCode="KEN", capacity=6000)
    held = await register(client, headers, fuelCode="ES100", countryCode="IND")
    await register(client, dev(issuer, new_org()), fuelCode="ES100")  # another organization's
    await reserve(client, [held["id"]])

    r = await client.get("/api/device/ungrouped", params={"orderBy": ["Fuel code", "Country"]}, headers=headers)
    assert r.status_code == 200, r.text
    groups = {g["name"]: g["devices"] for g in r.json()}
    assert sorted(groups) == ["Solar,IND", "Solar,KEN", "Wind,IND"]
    assert [d["id"] for d in groups["Solar,IND"]] == [solar["id"]]  # the reserved one is left out
    assert [d["id"] for d in groups["Wind,IND"]] == [wind["id"]]
    device = groups["Solar,KEN"][0]
    assert device["id"] == solar_ke["id"]
    assert device["externalId"] == solar_ke["externalId"]
    assert device["capacityRange"] == "5MW+"
    assert device["selected"] is True
    years = NOW.year - 2021  # the Postman payload's commissioningDate is 2021-01-02
    assert device["commissioningDateRange"] == (f"Year {years + 1}" if years <= 4 else "6 - 10 years")
    assert groups["Solar,IND"][0]["capacityRange"] == "0.1W - 1kW"
    assert groups["Wind,IND"][0]["capacityRange"] == "51kW - 500kW"

    # commas, any case; the listing filters narrow
    r = await client.get(
        "/api/device/ungrouped",
        params={"orderBy": "offtaker,grid interconnection", "fuelCode": "ES200"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert [(g["name"], [d["id"] for d in g["devices"]]) for g in r.json()] == [("Residential,true", [wind["id"]])]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "orderBy is required"),
        ({"orderBy": "Colour"}, "orderBy 'Colour' is not one of Offtaker, Fuel code"),
        ({"orderBy": "Country", "fuelCode": "XX1"}, "fuelCode"),
        ({"orderBy": "Country", "organizationId": "x"}, "organizationId"),
    ],
)
async def test_ungrouped_devices_validation(service, params, fragment):
    client, issuer = service
    refused(await client.get("/api/device/ungrouped", params=params, headers=dev(issuer, new_org())), 400, fragment)


async def test_ungrouped_devices_permissions(service, api_users):  # noqa: F811 - the fixture
    client, issuer = service
    me, them = api_users
    path, params = "/api/device/ungrouped", {"orderBy": "Country"}
    assert (await client.get(path, params=params)).status_code == 401
    refused(await client.get(path, params=params, headers=buyer(issuer, new_org())), 403, "Only Admin or")
    no_read = issuer.headers(organization_id=new_org(), role="DeviceOwner", permissions={})
    refused(await client.get(path, params=params, headers=no_read), 403, "Read permission on DEVICE_MANAGEMENT_CRUDL")
    other = {**params, "organizationId": new_org()}
    refused(await client.get(path, params=other, headers=dev(issuer, new_org())), 403, "your own organization")
    # an API user: its Developer organizations only
    device = await register(client, as_api_user(issuer, me), organizationId=me.developers[0])
    r = await client.get(path, params={**params, "organizationId": me.developers[0]}, headers=as_api_user(issuer, me))
    assert r.status_code == 200, r.text
    assert [d["id"] for g in r.json() for d in g["devices"]] == [device["id"]]
    refused(
        await client.get(
            path, params={**params, "organizationId": them.developers[0]}, headers=as_api_user(issuer, me)
        ),
        403,
        "not one of your organizations",
    )


# ---------------------------------------------------------------- GET /api/device/my/totalamountread


async def test_total_amount_read_is_the_certified_energy_per_device(service):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    first = await register(client, headers)
    second = await register(client, headers)
    await register(client, dev(issuer, new_org()))  # another organization's
    created = await reserve(client, [first["id"], second["id"]])
    await certify(client, created, first["id"], org, NOW - timedelta(days=30), NOW - timedelta(days=20), 1500)
    await certify(client, created, first["id"], org, NOW - timedelta(days=20), NOW - timedelta(days=10), 500)

    r = await client.get("/api/device/my/totalamountread", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"externalId": first["externalId"], "totalcertifiedReadValue": 2000, "totalReadValue": None, "id": first["id"]},
        {"externalId": second["externalId"], "totalcertifiedReadValue": 0, "totalReadValue": None, "id": second["id"]},
    ]


async def test_total_amount_read_validation_and_permissions(service):
    client, issuer = service
    path = "/api/device/my/totalamountread"
    assert (await client.get(path)).status_code == 401
    refused(await client.get(path, params={"organizationId": 0}, headers=dev(issuer, new_org())), 400, "organizationId")
    refused(
        await client.get(path, params={"organizationId": new_org()}, headers=dev(issuer, new_org())),
        403,
        "your own organization",
    )
    no_read = issuer.headers(organization_id=new_org(), permissions={"DEVICE_BULK_MANAGEMENT_CRUDL": "RW"})
    refused(await client.get(path, headers=no_read), 403, "Read permission on DEVICE_MANAGEMENT_CRUDL")


# ---------------------------------------------------------------- GET /api/device/my/autocomplete


async def test_autocomplete_finds_devices_by_the_start_of_their_external_id(service):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    tag = uuid.uuid4().hex[:8]
    b = await register(client, headers, externalId=f"{tag}_b")
    a = await register(client, headers, externalId=f"{tag}_a")
    await register(client, headers, externalId=f"{tag}xa")  # `_` is taken literally, not as any character
    await register(client, dev(issuer, new_org()), externalId=f"{tag}_c")  # another organization's

    r = await client.get("/api/device/my/autocomplete", params={"externalId": f"{tag}_"}, headers=headers)
    assert r.status_code == 200, r.text
    assert [d["id"] for d in r.json()] == [a["id"], b["id"]]
    assert r.json()[0]["externalId"] == f"{tag}_a"
    r = await client.get("/api/device/my/autocomplete", params={"externalId": f"{tag}_a"}, headers=headers)
    assert [d["id"] for d in r.json()] == [a["id"]]
    r = await client.get("/api/device/my/autocomplete", params={"externalId": tag, "limit": 1}, headers=headers)
    assert len(r.json()) == 1


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "externalId is required"),
        ({"externalId": "  "}, "externalId is required"),
        ({"externalId": "x" * 201}, "externalId"),
        ({"externalId": "x", "limit": 0}, "limit"),
        ({"externalId": "x", "limit": 1001}, "limit"),
    ],
)
async def test_autocomplete_validation(service, params, fragment):
    client, issuer = service
    refused(
        await client.get("/api/device/my/autocomplete", params=params, headers=dev(issuer, new_org())), 400, fragment
    )


async def test_autocomplete_permissions(service):
    client, issuer = service
    path, params = "/api/device/my/autocomplete", {"externalId": "x"}
    assert (await client.get(path, params=params)).status_code == 401
    no_read = issuer.headers(organization_id=new_org(), permissions={})
    refused(await client.get(path, params=params, headers=no_read), 403, "Read permission on DEVICE_MANAGEMENT_CRUDL")
    other = {**params, "organizationId": new_org()}
    refused(await client.get(path, params=other, headers=dev(issuer, new_org())), 403, "your own organization")


# ---------------------------------------------------------------- GET /api/device/certifiedlog/first&lastdate

LOG = "/api/device/certifiedlog/first&lastdate"


async def test_certified_log_of_a_reservation(service):
    client, issuer = service
    developer, buyer_org = new_org(), new_org()
    headers = dev(issuer, developer)
    first = await register(client, headers)
    second = await register(client, headers)
    uncertified = await register(client, headers)
    created = await reserve(client, [first["id"], second["id"], uncertified["id"]], buyer=buyer_org)
    t = datetime(2024, 1, 1, tzinfo=UTC)
    await certify(client, created, first["id"], developer, t, t + timedelta(days=10), 100)
    await certify(client, created, first["id"], developer, t + timedelta(days=10), t + timedelta(days=20), 100)
    await certify(client, created, second["id"], developer, t + timedelta(days=5), t + timedelta(days=6), 100)
    other = await reserve(client, [first["id"]], buyer=buyer_org)  # another reservation's certificate: not counted
    await certify(client, other, first["id"], developer, t - timedelta(days=50), t + timedelta(days=90), 100)
    uid = str(created.reservation_uid)

    r = await client.get(LOG, params={"groupUid": uid}, headers=buyer(issuer, buyer_org))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "certifieddevices_startToend": [
            {
                "externalId": first["externalId"],
                "firstcertifiedstartdate": "2024-01-01T00:00:00.000Z",
                "lastcertifiedenddate": "2024-01-21T00:00:00.000Z",
                "deviceId": first["id"],
            },
            {
                "externalId": second["externalId"],
                "firstcertifiedstartdate": "2024-01-06T00:00:00.000Z",
                "lastcertifiedenddate": "2024-01-07T00:00:00.000Z",
                "deviceId": second["id"],
            },
        ],
        "totalItems": 2,
        "currentPage": 1,
        "totalPages": 1,
    }
    r = await client.get(
        LOG, params={"groupUid": uid, "pagenumber": 2, "limit": 1}, headers=buyer(issuer, buyer_org, "SubBuyer")
    )
    assert r.status_code == 200, r.text
    assert [d["deviceId"] for d in r.json()["certifieddevices_startToend"]] == [second["id"]]
    assert (r.json()["currentPage"], r.json()["totalPages"]) == (2, 2)

    r = await client.get(LOG, params={"groupUid": uid, "externalId": first["id"]}, headers=buyer(issuer, buyer_org))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "firstcertifiedstartdate": "2024-01-01T00:00:00.000Z",
        "lastcertifiedenddate": "2024-01-21T00:00:00.000Z",
        "extenalId": first["externalId"],
        "externalId": first["externalId"],
        "deviceId": first["id"],
    }
    r = await client.get(
        LOG, params={"groupUid": uid, "externalId": uncertified["id"]}, headers=buyer(issuer, buyer_org)
    )
    assert r.status_code == 200, r.text
    assert (r.json()["firstcertifiedstartdate"], r.json()["lastcertifiedenddate"]) == (None, None)
    admin = issuer.headers(organization_id=new_org(), role="Admin")
    assert (await client.get(LOG, params={"groupUid": uid}, headers=admin)).json()["totalItems"] == 2


async def test_certified_log_validation_and_permissions(service, api_users):  # noqa: F811 - the fixture
    client, issuer = service
    me, _ = api_users
    developer, buyer_org = new_org(), new_org()
    device = await register(client, dev(issuer, developer))
    created = await reserve(client, [device["id"]], buyer=buyer_org)
    uid = str(created.reservation_uid)
    headers = buyer(issuer, buyer_org)

    refused(await client.get(LOG, headers=headers), 400, "groupUid is required")
    refused(await client.get(LOG, params={"groupUid": "not-a-uid"}, headers=headers), 400, "is not a reservation uid")
    refused(await client.get(LOG, params={"groupUid": uid, "externalId": "x"}, headers=headers), 400, "externalId")
    refused(await client.get(LOG, params={"groupUid": uid, "pagenumber": 0}, headers=headers), 400, "pagenumber")
    refused(await client.get(LOG, params={"groupUid": str(uuid.uuid4())}, headers=headers), 404, "No reservation")
    refused(
        await client.get(LOG, params={"groupUid": uid, "externalId": device["id"] + 1}, headers=headers),
        404,
        "is not in reservation",
    )
    # another buyer: as if it did not exist
    refused(await client.get(LOG, params={"groupUid": uid}, headers=buyer(issuer, new_org())), 404, "No reservation")
    assert (await client.get(LOG, params={"groupUid": uid})).status_code == 401
    refused(await client.get(LOG, params={"groupUid": uid}, headers=dev(issuer, developer)), 403, "Only Admin or Buyer")
    no_read = issuer.headers(organization_id=buyer_org, organization_type="Buyer", role="Buyer", permissions={})
    refused(await client.get(LOG, params={"groupUid": uid}, headers=no_read), 403, "Read permission")
    refused(
        await client.get(LOG, params={"groupUid": uid, "organizationId": new_org()}, headers=headers),
        403,
        "your own organization",
    )
    # an API user names its Buyer organization; another's reservation is not found
    api = as_api_user(issuer, me)
    refused(
        await client.get(LOG, params={"groupUid": uid, "organizationId": me.buyer}, headers=api), 404, "No reservation"
    )
    refused(
        await client.get(LOG, params={"groupUid": uid, "organizationId": me.developers[0]}, headers=api),
        403,
        "this needs a Buyer organization",
    )
    mine = await reserve(client, [device["id"]], buyer=me.buyer)
    r = await client.get(LOG, params={"groupUid": str(mine.reservation_uid), "organizationId": me.buyer}, headers=api)
    assert r.status_code == 200, r.text
    assert r.json()["totalItems"] == 0


# ---------------------------------------------------------------- PUT /api/device/my/deviceOnBoardingDate


async def refused_without_write_or_for_another_org(client, path, params, headers, read_only):
    """PUT `path` is refused (403) with headers lacking Write, and naming another organization than the caller's."""
    refused(
        await client.put(path, params=params, headers=read_only), 403, "Write permission on DEVICE_MANAGEMENT_CRUDL"
    )
    refused(
        await client.put(path, params={**params, "organizationId": new_org()}, headers=headers),
        403,
        "your own organization",
    )


async def test_onboarding_date_changes_are_disabled_by_default(service):
    client, issuer = service
    org = new_org()
    headers = dev(issuer, org)
    device = await register(client, headers)
    path = "/api/device/my/deviceOnBoardingDate"
    params = {"deviceId": device["externalId"], "givenDate": "2020-01-01T00:00:00Z"}
    refused(await client.put(path, params=params, headers=headers), 400, "not enabled here")
    assert (await client.put(path, params=params)).status_code == 401
    read_only = issuer.headers(
        organization_id=org, organization_type="Developer", permissions={"DEVICE_MANAGEMENT_CRUDL": "R"}
    )
    await refused_without_write_or_for_another_org(client, path, params, headers, read_only)
    r = await client.get(f"/api/device/{device['id']}", headers=headers)
    assert r.json()["createdAt"] == device["createdAt"]


# ---------------------------------------------------------------- GET /api/sdgbenefit, /api/sdgbenefit/code


async def test_sdg_benefit_lists_are_public(service):
    client, _ = service
    r = await client.get("/api/sdgbenefit/code")
    assert r.status_code == 200, r.text
    codes = r.json()
    assert len(codes) == 17
    assert codes[0] == {"name": "SDG1", "value": "No Poverty"}
    assert codes[6] == {"name": "SDG7", "value": "Affordable and Clean Energy"}
    r = await client.get("/api/sdgbenefit")
    assert r.status_code == 200, r.text
    assert r.json()[12] == {
        "id": 13,
        "SdgbenefitName": "SDG13",
        "sdgbenefitdescription": "Climate Action",
        "sdgbenefitBitposition": 13,
    }
    assert len(r.json()) == 17
    # a token is not needed, and a bad one is not looked at either
    assert (await client.get("/api/sdgbenefit", headers={"Authorization": "Bearer nonsense"})).status_code == 200


async def test_openapi_shows_who_reaches_the_helpers(service):
    client, _ = service
    paths = client.runtime.app.openapi()["paths"]
    assert paths["/api/device/ungrouped"]["get"]["x-roles"] == ["Admin", "OrganizationAdmin", "DeviceOwner", "ApiUser"]
    assert paths["/api/device/certifiedlog/first&lastdate"]["get"]["x-roles"] == [
        "Admin",
        "Buyer",
        "SubBuyer",
        "ApiUser",
    ]
    onboarding = paths["/api/device/my/deviceOnBoardingDate"]["put"]
    assert onboarding["x-permissions"] == [{"module": "DEVICE_MANAGEMENT_CRUDL", "action": "Write"}]
    for path in ("/api/sdgbenefit", "/api/sdgbenefit/code"):
        assert paths[path]["get"]["x-access"] == "public"
    assert paths["/api/file"]["post"]["x-permissions"] == [
        {"module": "DEVICE_BULK_MANAGEMENT_CRUDL", "action": "Write"}
    ]
    assert set(paths["/api/file"]["post"]["requestBody"]["content"]) == {"multipart/form-data"}
    assert paths["/api/file/{id}"]["get"]["x-permissions"] == [{"module": "DEVICE_MANAGEMENT_CRUDL", "action": "Read"}]
    for path in ("/api/device/ungrouped", "/api/device/my/totalamountread", "/api/device/my/autocomplete"):
        assert not [p for p in paths[path]["get"]["parameters"] if p.get("required")], path  # checked in the use case
