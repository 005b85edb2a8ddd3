"""Uploaded files (POST /api/file, GET /api/file/{id}) and the bulk onboarding that names one
(`{"fileName": key}`): success, each validation error and each permission denial."""

import re
import uuid

import pytest

from .test_api import dev, new_org
from .test_api_users import refused
from .test_bulk import BULK, developer, finished, good, to_csv

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_BYTES = 50_000


@pytest.fixture(scope="module")
def settings_overrides() -> dict:
    return {"file_max_bytes": MAX_BYTES, "file_max_files": 3}


def key_of(name_stem: str, extension: str) -> re.Pattern:
    return re.compile(rf"{re.escape(name_stem)}-[0-9a-f-]{{36}}{re.escape(extension)}")


async def upload(client, headers, *files):
    return await client.post("/api/file", headers=headers, files=[("files", f) for f in files])


def csv_file(name="devices.csv", rows=None):
    return (name, to_csv(rows or [good(f"f-{uuid.uuid4().hex[:8]}")]), "text/csv")


async def test_files_are_stored_and_read_back_by_their_organization(service):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    r = await upload(client, headers, csv_file("my devices.csv"), ("C:\\photos\\site.PNG", png, "image/png"))
    assert r.status_code == 201, r.text
    csv_key, png_key = r.json()
    assert key_of("my_devices", ".csv").fullmatch(csv_key), csv_key
    assert key_of("site", ".png").fullmatch(png_key), png_key

    r = await client.get(f"/api/file/{png_key}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.content == png
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "site.PNG" in r.headers["content-disposition"]
    # anyone of the organization with Read on devices, and admins
    reader = issuer.headers(organization_id=org, role="User", permissions={"DEVICE_MANAGEMENT_CRUDL": "R"})
    assert (await client.get(f"/api/file/{csv_key}", headers=reader)).status_code == 200
    admin = issuer.headers(organization_id=new_org(), role="Admin")
    r = await client.get(f"/api/file/{csv_key}", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    # an unlabelled part is judged by its name
    r = await upload(client, headers, ("report.pdf", b"%PDF-1.4 ...", "application/octet-stream"))
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/file/{r.json()[0]}", headers=headers)
    assert r.headers["content-type"] == "application/pdf"


@pytest.mark.parametrize(
    ("request_kwargs", "status", "fragment"),
    [
        ({"files": [("files", ("a.csv", b"x", "text/csv"))] * 4}, 400, "at most 3"),
        ({"files": [("files", ("big.csv", b"x" * (MAX_BYTES + 1), "text/csv"))]}, 413, "larger than 50000 bytes"),
        ({"files": [("files", ("page.html", b"<html>", "text/html"))]}, 415, "unsupported file type text/html"),
        ({"files": [("files", ("run.exe", b"MZ", "application/octet-stream"))]}, 415, "unsupported file type"),
        ({"data": {"note": "no file"}, "files": [("other", ("", b"", ""))]}, 400, "No files added"),
        ({"content": b"a,b\n1,2\n", "headers": {"Content-Type": "text/csv"}}, 415, "multipart/form-data"),
        ({"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 400, "no boundary"),
        ({"content": b"a,b\n1,2\n", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 400, "malformed"),
        (
            {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
            400,
            "cut short",
        ),
        ({}, 415, "multipart/form-data"),
    ],
)
async def test_bad_uploads_store_nothing(service, request_kwargs, status, fragment):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    kwargs = dict(request_kwargs)
    headers = {**headers, **kwargs.pop("headers", {})}
    r = await client.post("/api/file", headers=headers, **kwargs)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"], r.json()["message"]
    assert await client.runtime.pool.fetchval("SELECT count(*) FROM files WHERE organization_id = $1", org) == 0


async def test_who_may_upload_and_read_files(service):
    client, issuer = service
    org = new_org()
    assert (await upload(client, {}, csv_file())).status_code == 401
    read_only = issuer.headers(organization_id=org, permissions={"DEVICE_BULK_MANAGEMENT_CRUDL": "R"})
    refused(await upload(client, read_only, csv_file()), 403, "Write permission on DEVICE_BULK_MANAGEMENT_CRUDL")
    buyer = issuer.headers(
        organization_id=org, organization_type="Buyer", role="Buyer", permissions={"DEVICE_MANAGEMENT_CRUDL": "R"}
    )
    refused(await upload(client, buyer, csv_file()), 403, "Write permission on DEVICE_BULK_MANAGEMENT_CRUDL")

    r = await upload(client, developer(issuer, org), csv_file())
    key = r.json()[0]
    file_id = await client.runtime.pool.fetchval("SELECT id FROM files WHERE key = $1", key)
    assert (await client.get(f"/api/file/{file_id}", headers=dev(issuer, org))).status_code == 200  # by its uuid too
    assert (await client.get(f"/api/file/{key}")).status_code == 401
    no_read = issuer.headers(organization_id=org, permissions={"DEVICE_BULK_MANAGEMENT_CRUDL": "RW"})
    refused(await client.get(f"/api/file/{key}", headers=no_read), 403, "Read permission on DEVICE_MANAGEMENT_CRUDL")
    # another organization's file is not found, like a missing one
    refused(await client.get(f"/api/file/{key}", headers=dev(issuer, new_org())), 404, "No uploaded file")
    refused(await client.get(f"/api/file/{uuid.uuid4()}", headers=dev(issuer, org)), 404, "No uploaded file")
    refused(await client.get(f"/api/file/{'k' * 301}", headers=dev(issuer, org)), 400, "id")


# ---------------------------------------------------------------- bulk onboarding of an uploaded file


def bulk_path(org):
    return f"/api/device/addByAdmin/process-creation-bulk-devices-csv/{org}"


async def test_bulk_onboarding_of_an_uploaded_file_named_in_the_body(service):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    tag = uuid.uuid4().hex[:8]
    key = (await upload(client, headers, csv_file(rows=[good(f"{tag}-1"), good(f"{tag}-2")]))).json()[0]

    r = await client.post(bulk_path(org), json={"fileName": key}, headers=headers)
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["fileName"], job["organizationId"], job["totalRows"]) == (key, org, 2)
    done = await finished(client, headers, job["jobId"])
    assert done["createdRows"] == 2
    r = await client.get("/api/device/my/autocomplete", params={"externalId": tag}, headers=dev(issuer, org))
    assert sorted(d["externalId"] for d in r.json()) == [f"{tag}-1", f"{tag}-2"]

    # the direct upload is unchanged on the same route
    r = await client.post(
        bulk_path(org), headers=headers, files={"file": ("d.csv", to_csv([good(f"{tag}-3")]), "text/csv")}
    )
    assert r.status_code == 202, r.text
    assert r.json()["fileName"] == "d.csv"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "fileName is required"),
        ({"fileName": ""}, 400, "fileName is required"),
        ({"fileName": 7}, 400, "fileName is required"),
        ([], 400, "fileName is required"),
        ({"fileName": "photo.png"}, 400, "Invalid file"),
        ({"fileName": "x" * 300 + ".csv"}, 400, "longer than 300"),
        ({"fileName": "nothing-here.csv"}, 404, "No uploaded file 'nothing-here.csv'"),
        (b"{not json", 400, "not JSON"),
        (b'{"fileName": "' + b"x" * 9000 + b'.csv"}', 413, "larger than 8192 bytes"),
    ],
)
async def test_bulk_onboarding_body_validation(service, body, status, fragment):
    client, issuer = service
    org = new_org()
    headers = developer(issuer, org)
    if isinstance(body, bytes):
        r = await client.post(bulk_path(org), content=body, headers={**headers, "Content-Type": "application/json"})
    else:
        r = await client.post(bulk_path(org), json=body, headers=headers)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"], r.json()["message"]
    assert (await client.get("/api/device/bulk-jobs", headers=headers)).json()["totalCount"] == 0


async def test_bulk_onboarding_of_a_file_refusals(service):
    client, issuer = service
    org, other = new_org(), new_org()
    headers = developer(issuer, org)
    key = (await upload(client, developer(issuer, other), csv_file())).json()[0]
    # another organization's file: not found
    refused(await client.post(bulk_path(org), json={"fileName": key}, headers=headers), 404, "No uploaded file")
    # not a CSV after all
    bad = (await upload(client, headers, ("bad.csv", b"\x89PNG\r\n\x1a\n\x00\x00", "text/csv"))).json()[0]
    refused(await client.post(bulk_path(org), json={"fileName": bad}, headers=headers), 400, "not UTF-8")
    # who may onboard where is settled first
    refused(await client.post(bulk_path(other), json={"fileName": key}, headers=headers), 403, "your own organization")
    no_write = issuer.headers(
        organization_id=org, organization_type="Developer", permissions={"DEVICE_MANAGEMENT_CRUDL": "RWUD"}
    )
    refused(await client.post(bulk_path(org), json={}, headers=no_write), 403, "Write permission on DEVICE_BULK")
    buyer = issuer.headers(organization_id=org, organization_type="Buyer", permissions=BULK)
    refused(
        await client.post(bulk_path(org), json={"fileName": key}, headers=buyer), 403, "Only Developer organizations"
    )
    assert (await client.post(bulk_path(org), json={"fileName": key})).status_code == 401
    assert (await client.get("/api/device/bulk-jobs", headers=headers)).json()["totalCount"] == 0
