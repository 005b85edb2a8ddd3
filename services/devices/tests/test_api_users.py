"""API users act for their own Developer and Buyer organizations (D-REC API-user manual, section 4 and 7.4):
for each endpoint, success, a missing organizationId, another API user's organization, and the wrong type."""

import uuid
from dataclasses import dataclass

import pytest

from .test_api import ALL, dev, known_organizations, new_org, payload
from .test_bulk import BULK, finished, good, to_csv

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class ApiUser:
    api_user_id: str
    own: int  # the ApiUser organization of its account
    developers: list[int]
    buyer: int


@pytest.fixture(scope="module")
async def api_users(service, kafka_bootstrap):
    """Two API users, each with two Developer organizations and a Buyer one (as identity announces them)."""
    client, _ = service
    users = [ApiUser(str(uuid.uuid4()), new_org(), [new_org(), new_org()], new_org()) for _ in range(2)]
    await known_organizations(
        client,
        kafka_bootstrap,
        *[
            entry
            for u in users
            for entry in [
                (u.own, "ApiUser", u.api_user_id),
                *[(d, "Developer", u.api_user_id) for d in u.developers],
                (u.buyer, "Buyer", u.api_user_id),
            ]
        ],
    )
    return users


def as_api_user(issuer, user: ApiUser, perms=None):
    return issuer.headers(
        role="ApiUser",
        organization_type="ApiUser",
        organization_id=user.own,
        permissions=perms or {**ALL, **BULK},
        apiUserId=user.api_user_id,
        user_id=77,
    )


def message(r) -> str:
    return r.json()["message"]


def refused(r, status, fragment):
    assert r.status_code == status, r.text
    assert fragment in message(r), message(r)


async def register(client, issuer, user: ApiUser, organization_id, **changes):
    r = await client.post(
        "/api/device", json=payload(organizationId=organization_id, **changes), headers=as_api_user(issuer, user)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_an_api_user_registers_devices_for_its_developer_organizations(service, api_users):
    client, issuer = service
    me, them = api_users
    headers = as_api_user(issuer, me)
    device = await register(client, issuer, me, me.developers[0])
    assert device["organizationId"] == me.developers[0]
    # D-REC clients also send the id as a string
    assert (await register(client, issuer, me, str(me.developers[1])))["organizationId"] == me.developers[1]
    stored = await client.get(
        f"/api/device/{device['id']}", params={"organizationId": me.developers[0]}, headers=headers
    )
    assert stored.json()["externalId"] == device["externalId"]

    refused(await client.post("/api/device", json=payload(), headers=headers), 400, "organizationId is required")
    refused(
        await client.post("/api/device", json=payload(organizationId=them.developers[0]), headers=headers),
        403,
        "not one of your organizations",
    )
    refused(
        await client.post("/api/device", json=payload(organizationId=me.buyer), headers=headers),
        403,
        "is a Buyer organization; this needs a Developer organization",
    )
    refused(
        await client.post("/api/device", json=payload(organizationId="twelve"), headers=headers),
        400,
        "not an organization id",
    )
    # the organization is judged before the device: no 400 about the payload for another's organization
    refused(
        await client.post("/api/device", json={"organizationId": them.developers[0]}, headers=headers),
        403,
        "not one of your organizations",
    )
    refused(
        await client.post(
            "/api/device",
            json=payload(organizationId=me.developers[0]),
            headers=as_api_user(issuer, me, {"DEVICE_MANAGEMENT_CRUDL": "R"}),
        ),
        403,
        "Write permission on DEVICE_MANAGEMENT_CRUDL",
    )


async def test_an_admin_registers_for_a_developer_organization_it_names(service, api_users):
    client, issuer = service
    me, _ = api_users
    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
    r = await client.post("/api/device", json=payload(organizationId=me.developers[1]), headers=admin)
    assert r.status_code == 201 and r.json()["organizationId"] == me.developers[1]
    refused(await client.post("/api/device", json=payload(), headers=admin), 400, "organizationId is required")
    refused(
        await client.post("/api/device", json=payload(organizationId=me.buyer), headers=admin),
        403,
        "Buyer organization",
    )
    # a developer naming another organization than its own
    org = new_org()
    refused(
        await client.post("/api/device", json=payload(organizationId=me.developers[0]), headers=dev(issuer, org)),
        403,
        f"own organization ({org})",
    )
    own = await client.post("/api/device", json=payload(organizationId=org), headers=dev(issuer, org))
    assert own.status_code == 201 and own.json()["organizationId"] == org


async def test_my_devices_of_an_api_user(service, api_users):
    client, issuer = service
    me, them = api_users
    mine = [
        (await register(client, issuer, me, org, projectName=f"mine {i}"))["id"]
        for i, org in enumerate([me.developers[0], me.developers[1], me.developers[0]])
    ]
    theirs = (await register(client, issuer, them, them.developers[0]))["id"]
    headers = as_api_user(issuer, me)

    async def listed(**params):
        r = await client.get("/api/device/my", params={"pagenumber": 1, "limit": 100, **params}, headers=headers)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()["devices"]]

    every = await listed()  # without organizationId: every Developer organization of this API user
    assert set(mine) <= set(every) and theirs not in every
    assert {
        d["organizationId"]
        for d in (await client.get("/api/device/my", params={"limit": 100}, headers=headers)).json()["devices"]
    } == set(me.developers)
    first = await listed(organizationId=me.developers[0])
    assert mine[0] in first and mine[2] in first and mine[1] not in first
    assert first == sorted(first, reverse=True)
    page = (await client.get("/api/device/my", params={"pagenumber": 2, "limit": 1}, headers=headers)).json()
    assert page["currentPage"] == 2 and page["totalCount"] == len(every) and page["devices"][0]["id"] == every[1]

    refused(
        await client.get("/api/device/my", params={"organizationId": me.buyer}, headers=headers),
        403,
        "Buyer organization",
    )
    refused(
        await client.get("/api/device/my", params={"organizationId": them.developers[0]}, headers=headers),
        403,
        "not one of your organizations",
    )
    assert theirs in [
        d["id"] for d in (await client.get("/api/device/my", headers=as_api_user(issuer, them))).json()["devices"]
    ]


async def test_single_device_endpoints_for_an_api_user(service, api_users):
    client, issuer = service
    me, them = api_users
    headers = as_api_user(issuer, me)
    org = me.developers[0]
    device = await register(client, issuer, me, org)
    theirs = await register(client, issuer, them, them.developers[0])
    by_id, by_ext = f"/api/device/{device['id']}", f"/api/device/externalId/{device['externalId']}"
    patch_path = f"/api/device/{device['externalId']}"

    assert (
        await client.get(by_id, params={"organizationId": org, "apiUserId": me.api_user_id}, headers=headers)
    ).json()["id"] == device["id"]
    assert (await client.get(by_ext, params={"organizationId": org}, headers=headers)).json()["id"] == device["id"]
    patched = await client.patch(patch_path, params={"organizationId": org}, json={"capacity": 41}, headers=headers)
    assert patched.status_code == 200 and patched.json()["capacity"] == 41
    in_body = await client.patch(patch_path, json={"organizationId": org, "capacity": 42}, headers=headers)
    assert in_body.status_code == 200 and in_body.json()["capacity"] == 42

    calls = [
        lambda p: client.get(by_id, params=p, headers=headers),
        lambda p: client.get(by_ext, params=p, headers=headers),
        lambda p: client.patch(patch_path, params=p, json={"capacity": 7}, headers=headers),
        lambda p: client.delete(by_id, params=p, headers=headers),
    ]
    for call in calls:
        refused(await call({}), 400, "organizationId is required")
        refused(await call({"organizationId": them.developers[0]}), 403, "not one of your organizations")
        refused(await call({"organizationId": me.buyer}), 403, "Buyer organization")
        # its other Developer organization does not hold this device
        refused(await call({"organizationId": me.developers[1]}), 404, "No device")
    # another API user's device, named with its own organization, stays hidden
    refused(
        await client.get(f"/api/device/{theirs['id']}", params={"organizationId": org}, headers=headers),
        404,
        "No device",
    )
    refused(
        await client.get(by_id, params={"organizationId": org, "apiUserId": them.api_user_id}, headers=headers),
        403,
        "apiUserId is not yours",
    )
    assert (await client.get(by_id, params={"organizationId": org}, headers=headers)).json()["capacity"] == 42

    deleted = await client.delete(by_id, params={"organizationId": org}, headers=headers)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    refused(await client.get(by_id, params={"organizationId": org}, headers=headers), 404, "No device")


async def test_devices_to_reserve_for_an_api_users_buyer_organization(service, api_users):
    client, issuer = service
    me, them = api_users
    marker = f"free-{uuid.uuid4().hex[:6]}"
    device = await register(client, issuer, them, them.developers[1], projectName=marker, fuelCode="ES520")
    headers = as_api_user(issuer, me)
    path = "/api/device/ungrouped/buyerreservation"

    r = await client.get(
        path, params={"organizationId": me.buyer, "pagenumber": 1, "fuelCode": "ES520", "limit": 100}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert device["id"] in [d["id"] for d in r.json()["devices"]]  # every developer's free devices
    refused(await client.get(path, headers=headers), 400, "organizationId is required")
    refused(
        await client.get(path, params={"organizationId": them.buyer}, headers=headers),
        403,
        "not one of your organizations",
    )
    refused(
        await client.get(path, params={"organizationId": me.developers[0]}, headers=headers),
        403,
        "is a Developer organization; this needs a Buyer organization",
    )


async def test_bulk_onboarding_and_jobs_of_an_api_user(service, api_users):
    client, issuer = service
    me, them = api_users
    headers = as_api_user(issuer, me)
    org = me.developers[1]
    tag = uuid.uuid4().hex[:6]

    def path(organization_id):
        return f"/api/device/addByAdmin/process-creation-bulk-devices-csv/{organization_id}"

    def upload(organization_id, who=headers):
        return client.post(
            path(organization_id), headers=who, files={"file": (f"{tag}.csv", to_csv([good(f"{tag}-1")]), "text/csv")}
        )

    r = await upload(org)
    assert r.status_code == 202, r.text
    job = await finished(client, headers, r.json()["jobId"])
    assert (job["organizationId"], job["createdRows"]) == (org, 1)
    device = await client.get(f"/api/device/externalId/{tag}-1", params={"organizationId": org}, headers=headers)
    assert device.status_code == 200

    refused(await upload(me.buyer), 403, "Buyer organization")
    refused(await upload(them.developers[0]), 403, "not one of your organizations")
    refused(
        await client.post("/api/device/bulk", headers=headers, files={"file": ("x.csv", b"externalId\n", "text/csv")}),
        400,
        "organizationId is required",
    )

    jobs = "/api/buyer-reservation/bulk-upload/get-all-csv-jobs-of-organization"
    status = f"/api/buyer-reservation/bulk-upload-status/{job['jobId']}"
    listed = (await client.get(jobs, params={"orgId": org, "pageNumber": 1}, headers=headers)).json()
    assert [j["jobId"] for j in listed["csvJobs"]] == [job["jobId"]]
    every = (await client.get(jobs, headers=headers)).json()  # no orgId: all its Developer organizations
    assert job["jobId"] in [j["jobId"] for j in every["csvJobs"]]
    assert (await client.get(status, params={"orgId": org}, headers=headers)).json()["status"] == "completed"
    assert (await client.get(f"/api/device/bulk-jobs/{job['jobId']}", headers=headers)).json()["jobId"] == job["jobId"]
    refused(await client.get(jobs, params={"orgId": me.buyer}, headers=headers), 403, "Buyer organization")
    refused(
        await client.get(jobs, params={"orgId": them.developers[0]}, headers=headers),
        403,
        "not one of your organizations",
    )
    refused(await client.get(status, params={"orgId": me.developers[0]}, headers=headers), 404, "No bulk job")
    # the other API user neither lists nor reads this job
    other = as_api_user(issuer, them)
    assert job["jobId"] not in [j["jobId"] for j in (await client.get(jobs, headers=other)).json()["csvJobs"]]
    refused(await client.get(f"/api/device/bulk-jobs/{job['jobId']}", headers=other), 404, "No bulk job")
    refused(await client.get(status, params={"orgId": org}, headers=other), 403, "not one of your organizations")


async def test_openapi_shows_who_reaches_each_endpoint(service):
    client, _ = service
    spec = client.runtime.app.openapi()
    paths = spec["paths"]
    assert paths["/api/device/ungrouped/buyerreservation"]["get"]["x-roles"] == [
        "Admin",
        "Buyer",
        "SubBuyer",
        "ApiUser",
    ]
    assert paths["/api/device"]["get"]["x-roles"] == ["Admin"]
    register = paths["/api/device"]["post"]
    assert register["x-roles"] == ["Admin", "OrganizationAdmin", "DeviceOwner", "ApiUser"]
    assert "organizationId" in spec["components"]["schemas"]["DeviceRegistration"]["properties"]
    bulk = paths["/api/device/addByAdmin/process-creation-bulk-devices-csv/{organizationId}"]["post"]
    # the CSV itself, or D-REC's {"fileName": key} of a file uploaded with POST /api/file
    assert set(bulk["requestBody"]["content"]) == {"application/json", "text/csv", "multipart/form-data"}
    assert bulk["x-permissions"] == [{"module": "DEVICE_BULK_MANAGEMENT_CRUDL", "action": "Write"}]
    for path in ("/api/device/my", "/api/device/{id}", "/api/device/externalId/{externalId}"):
        params = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert "organizationId" in params, path
