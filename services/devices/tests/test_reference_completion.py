"""The last D-REC device endpoints (issue 15): POST /api/buyer-reservation/process-creation-bulk-devices-csv,
GET /api/admin/devices/autocomplete, and the refused POST /api/admin/add/device-into-Irec/{id} and
POST /api/sdgbenefit: success, each validation error and each permission denial."""

import uuid

import pytest

from .test_api import ALL, dev, new_org
from .test_api_users import api_users, as_api_user, refused  # noqa: F401 - api_users is a fixture used here
from .test_bulk import BULK, developer, finished, good
from .test_device_helpers import register
from .test_files import csv_file
from .test_files import upload as upload_files

pytestmark = pytest.mark.asyncio(loop_scope="session")

DREC_BULK = "/api/buyer-reservation/process-creation-bulk-devices-csv"
ADMIN_AUTOCOMPLETE = "/api/admin/devices/autocomplete"


def admin(issuer):
    return issuer.headers(organization_id=new_org(), role="Admin")


async def job_count(client, org) -> int:
    return await client.runtime.pool.fetchval("SELECT count(*) FROM bulk_jobs WHERE organization_id = $1", org)


# ---------------------------------------------------------------- POST /api/buyer-reservation/process-creation-...


async def test_drec_bulk_upload_of_an_uploaded_file_for_the_own_organization(service):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    tag = uuid.uuid4().hex[:8]
    key = (await upload_files(client, headers, csv_file(rows=[good(f"{tag}-1"), good(f"{tag}-2")]))).json()[0]

    r = await client.post(DREC_BULK, json={"fileName": key}, headers=headers)
    assert r.status_code == 202, r.text
    job = r.json()
    # D-REC's DeviceCsvFileProcessingJobsEntity beside ours
    assert (job["fileId"], job["fileName"], job["userId"], job["organizationId"]) == (key, key, 7, org)
    assert job["api_user_id"] is None
    assert job["updatedAt"] == job["createdAt"]
    assert isinstance(job["jobId"], int) and job["totalRows"] == 2
    done = await finished(client, headers, job["jobId"])
    assert done["createdRows"] == 2
    r = await client.get("/api/device/my/autocomplete", params={"externalId": tag}, headers=dev(issuer, org))
    assert sorted(d["externalId"] for d in r.json()) == [f"{tag}-1", f"{tag}-2"]
    # D-REC's job listing shows it
    r = await client.get(
        "/api/buyer-reservation/bulk-upload/get-all-csv-jobs-of-organization", params={"orgId": org}, headers=headers
    )
    assert [j["jobId"] for j in r.json()["csvJobs"]] == [job["jobId"]]


async def test_drec_bulk_upload_by_an_api_user_and_an_admin_names_the_organization(service, api_users):  # noqa: F811 - the fixture
    client, issuer = service
    user = api_users[0]
    api = as_api_user(issuer, user)
    developer_org = user.developers[0]
    key = (await upload_files(client, api, csv_file())).json()[0]

    r = await client.post(DREC_BULK, params={"organizationId": developer_org}, json={"fileName": key}, headers=api)
    assert r.status_code == 202, r.text
    assert (r.json()["organizationId"], r.json()["api_user_id"]) == (developer_org, user.api_user_id)
    refused(await client.post(DREC_BULK, json={"fileName": key}, headers=api), 400, "organizationId")
    refused(
        await client.post(DREC_BULK, params={"organizationId": user.buyer}, json={"fileName": key}, headers=api),
        403,
        "",
    )
    other = api_users[1].developers[0]
    refused(
        await client.post(DREC_BULK, params={"organizationId": other}, json={"fileName": key}, headers=api), 403, ""
    )

    # an admin names a Developer organization (its own is refused), and reads any organization's file
    org = api_users[1].developers[1]
    key = (await upload_files(client, developer(issuer, org), csv_file())).json()[0]
    boss = admin(issuer)
    refused(await client.post(DREC_BULK, json={"fileName": key}, headers=boss), 400, "organizationId is required")
    r = await client.post(DREC_BULK, params={"organizationId": org}, json={"fileName": key}, headers=boss)
    assert r.status_code == 202, r.text
    assert r.json()["organizationId"] == org


@pytest.mark.parametrize(
    ("body", "status", "message", "detail"),
    [
        ({}, 409, "File Not Found", "fileName is required"),
        ({"fileName": ""}, 409, "File Not Found", "fileName is required"),
        ({"fileName": "   "}, 409, "File Not Found", "fileName is required"),
        ({"fileName": 7}, 409, "File Not Found", "fileName is required"),
        ({"fileName": None}, 409, "File Not Found", "fileName is required"),
        ([], 409, "File Not Found", "fileName is required"),
        ({"fileName": "photo.png"}, 409, "Invalid file", "does not name a CSV file"),
        ({"fileName": "x" * 300 + ".csv"}, 400, "longer than 300", "longer than 300"),
        ({"fileName": "nothing-here.csv"}, 404, "No uploaded file 'nothing-here.csv'", None),
        (b"{not json", 400, "not JSON", None),
        (b"", 400, "not JSON", None),
        (b'{"fileName": "' + b"x" * 9000 + b'.csv"}', 413, "larger than 8192 bytes", None),
    ],
)
async def test_drec_bulk_upload_body_validation(service, body, status, message, detail):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    if isinstance(body, bytes):
        r = await client.post(DREC_BULK, content=body, headers={**headers, "Content-Type": "application/json"})
    else:
        r = await client.post(DREC_BULK, json=body, headers=headers)
    assert r.status_code == status, r.text
    answer = r.json()
    assert message in answer["message"], answer
    assert answer["success"] is False
    if detail:
        assert answer["details"][0]["field"] == "fileName" and detail in answer["details"][0]["message"], answer
    assert await job_count(client, org) == 0


async def test_drec_bulk_upload_of_a_file_that_is_no_csv_makes_no_job(service):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    bad = (await upload_files(client, headers, ("bad.csv", b"\x89PNG\r\n\x1a\n\x00\x00", "text/csv"))).json()[0]
    refused(await client.post(DREC_BULK, json={"fileName": bad}, headers=headers), 400, "not UTF-8")
    empty = (await upload_files(client, headers, ("empty.csv", b"externalId,projectName\n", "text/csv"))).json()[0]
    refused(await client.post(DREC_BULK, json={"fileName": empty}, headers=headers), 400, "Unusable CSV file")
    assert await job_count(client, org) == 0


async def test_drec_bulk_upload_refusals(service):
    client, issuer = service
    org, other = new_org(), new_org()
    headers = developer(issuer, org)
    key = (await upload_files(client, developer(issuer, other), csv_file())).json()[0]
    assert (await client.post(DREC_BULK, json={"fileName": key})).status_code == 401
    # another organization's file: not found, like a missing one
    refused(await client.post(DREC_BULK, json={"fileName": key}, headers=headers), 404, "No uploaded file")
    # another organization named
    refused(
        await client.post(DREC_BULK, params={"organizationId": other}, json={"fileName": key}, headers=headers),
        403,
        "your own organization",
    )
    no_write = issuer.headers(organization_id=org, organization_type="Developer", permissions=ALL)
    refused(await client.post(DREC_BULK, json={}, headers=no_write), 403, "Write permission on DEVICE_BULK")
    buyer = issuer.headers(organization_id=org, organization_type="Buyer", role="Buyer", permissions=BULK)
    refused(await client.post(DREC_BULK, json={"fileName": key}, headers=buyer), 403, "Only Developer organizations")
    refused(
        await client.post(DREC_BULK, params={"organizationId": "abc"}, json={"fileName": key}, headers=headers),
        400,
        "organizationId",
    )
    assert await job_count(client, org) == 0 and await job_count(client, other) == 0


# ---------------------------------------------------------------- GET /api/admin/devices/autocomplete


async def test_admin_autocomplete_in_any_organization(service):
    client, issuer = service
    first, second = new_org(), new_org()
    tag = uuid.uuid4().hex[:8]
    b = await register(client, dev(issuer, first), externalId=f"{tag}_b")
    a = await register(client, dev(issuer, second), externalId=f"{tag}_a")
    await register(client, dev(issuer, second), externalId=f"{tag}xa")  # `_` taken literally
    boss = admin(issuer)

    r = await client.get(ADMIN_AUTOCOMPLETE, params={"externalId": f"{tag}_"}, headers=boss)
    assert r.status_code == 200, r.text
    assert [d["id"] for d in r.json()] == [a["id"], b["id"]]
    assert r.json()[0]["externalId"] == f"{tag}_a" and r.json()[0]["organizationId"] == second
    r = await client.get(ADMIN_AUTOCOMPLETE, params={"externalId": f"{tag}_", "organizationId": first}, headers=boss)
    assert [d["id"] for d in r.json()] == [b["id"]]
    r = await client.get(ADMIN_AUTOCOMPLETE, params={"externalId": tag, "limit": 1}, headers=boss)
    assert len(r.json()) == 1
    r = await client.get(
        ADMIN_AUTOCOMPLETE, params={"externalId": f"{tag}_", "organizationId": new_org()}, headers=boss
    )
    assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "externalId is required"),
        ({"externalId": "  "}, "externalId is required"),
        ({"externalId": "x" * 201}, "externalId"),
        ({"externalId": "x", "limit": 0}, "limit"),
        ({"externalId": "x", "limit": 1001}, "limit"),
        ({"externalId": "x", "limit": "many"}, "limit"),
        ({"externalId": "x", "organizationId": "abc"}, "organizationId"),
        ({"externalId": "x", "organizationId": 0}, "organizationId"),
    ],
)
async def test_admin_autocomplete_validation(service, params, fragment):
    client, issuer = service
    refused(await client.get(ADMIN_AUTOCOMPLETE, params=params, headers=admin(issuer)), 400, fragment)


async def test_admin_autocomplete_is_for_admins_only(service, api_users):  # noqa: F811 - the fixture
    client, issuer = service
    params = {"externalId": "x"}
    assert (await client.get(ADMIN_AUTOCOMPLETE, params=params)).status_code == 401
    org = new_org()
    for headers in (
        dev(issuer, org),
        dev(issuer, org, role="OrganizationAdmin"),
        issuer.headers(organization_id=org, organization_type="Buyer", role="Buyer", permissions=ALL),
        as_api_user(issuer, api_users[0]),
    ):
        refused(await client.get(ADMIN_AUTOCOMPLETE, params=params, headers=headers), 403, "Only Admin")


# ---------------------------------------------------------------- refused: I-REC registration, adding SDG benefits


async def test_irec_registration_is_refused_for_admins_and_hidden_from_others(service):
    client, issuer = service
    device = await register(client, dev(issuer, new_org()), externalId=f"irec-{uuid.uuid4().hex[:8]}")
    path = f"/api/admin/add/device-into-Irec/{device['id']}"
    r = await client.post(path, headers=admin(issuer))
    refused(r, 410, "no I-REC registry client")
    assert r.json()["success"] is False
    # the same for any id: nothing is looked up
    refused(await client.post("/api/admin/add/device-into-Irec/123", headers=admin(issuer)), 410, "I-REC")
    r = await client.get(f"/api/device/{device['id']}", headers=admin(issuer))
    assert r.status_code == 200 and r.json()["updatedAt"] == device["updatedAt"]
    # malformed ids
    for bad in ("0", "abc", str(2**63)):
        refused(await client.post(f"/api/admin/add/device-into-Irec/{bad}", headers=admin(issuer)), 400, "id")
    # nobody else learns anything, the device's own organization neither
    assert (await client.post(path)).status_code == 401
    for headers in (dev(issuer, device["organizationId"]), dev(issuer, new_org(), role="OrganizationAdmin")):
        refused(await client.post(path, headers=headers), 403, "Only Admin")


async def test_adding_an_sdg_benefit_is_refused_the_list_is_fixed(service):
    client, issuer = service
    body = {"SdgbenefitName": "SDG18", "sdgbenefitdescription": "More", "sdgbenefitBitposition": 18}
    r = await client.post("/api/sdgbenefit", json=body, headers=admin(issuer))
    refused(r, 410, "17 UN Sustainable Development Goals")
    # the body is not read: any body is refused alike
    refused(await client.post("/api/sdgbenefit", content=b"{not json", headers=admin(issuer)), 410, "fixed list")
    assert len((await client.get("/api/sdgbenefit")).json()) == 17
    # D-REC asks no token here; OpenDREC does, and only admins are told why
    assert (await client.post("/api/sdgbenefit", json=body)).status_code == 401
    refused(await client.post("/api/sdgbenefit", json=body, headers=dev(issuer, new_org())), 403, "Only Admin")


async def test_openapi_declares_the_new_operations(service):
    client, _ = service
    paths = client.runtime.app.openapi()["paths"]
    upload = paths[DREC_BULK]["post"]
    assert upload["x-permissions"] == [{"module": "DEVICE_BULK_MANAGEMENT_CRUDL", "action": "Write"}]
    assert set(upload["requestBody"]["content"]) == {"application/json"}
    assert {"202", "404", "409"} <= set(upload["responses"])
    assert paths[ADMIN_AUTOCOMPLETE]["get"]["x-roles"] == ["Admin"]
    assert {p["name"] for p in paths[ADMIN_AUTOCOMPLETE]["get"]["parameters"]} == {
        "externalId",
        "organizationId",
        "limit",
    }
    for path, method in (("/api/admin/add/device-into-Irec/{id}", "post"), ("/api/sdgbenefit", "post")):
        operation = paths[path][method]
        assert (operation["x-access"], operation["x-roles"]) == ("signed-in", ["Admin"]), path
        assert "410" in operation["responses"], path
    assert paths["/api/sdgbenefit"]["get"]["x-access"] == "public"
