"""What the API fuzzer (tests/fuzz) made identity answer with a 500, each now refused (or served) as it should."""

import logging

import pytest

from .test_grants import new_module

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

BEYOND_BIGINT = 2**63  # ids are Postgres bigints: 1 .. 2^63-1


def refused(resp, field: str) -> None:
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    assert answer["statusCode"] == 400 and field in resp.text, answer


async def test_a_nul_character_in_a_login_name_is_a_400(client):
    # It became a login-throttle key, which Postgres cannot store.
    refused(await client.post("/api/auth/login", json={"username": "a\x00b@example.org", "password": "x"}), "username")


async def test_a_nul_character_in_a_name_is_a_400(client):
    body = {
        "firstName": "Nul",
        "lastName": "Char\x00",
        "email": "nul-char@example.org",
        "organizationType": "Developer",
        "password": "MNO133",
        "confirmPassword": "MNO133",
        "orgName": "Nul\x00Org",
        "orgAddress": "Pune",
        "secretKey": "AZ1234",
    }
    resp = await client.post("/api/user/registerWithOrganization", json=body)
    refused(resp, "orgName")
    assert "lastName" in resp.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/Organization/user/{id}"),
        ("GET", "/api/user/{id}"),
        ("GET", "/api/Organization/{organizationId}"),
        ("GET", "/api/aclmodules/{id}"),
        ("GET", "/api/permission/user/{id}"),
        ("DELETE", "/api/admin/user/{id}"),
    ],
)
async def test_an_id_beyond_a_bigint_is_a_400(client, admin, method, path):
    field = path.rsplit("{", 1)[1].rstrip("}")
    for bad in (BEYOND_BIGINT, 0):
        refused(await client.request(method, path.replace(f"{{{field}}}", str(bad)), headers=admin), f'"{field}"')


BEYOND_SERIAL = 2**31  # ACL modules are numbered by a Postgres serial: 1 .. 2^31-1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/aclmodules/{id}"),
        ("PUT", "/api/aclmodules/{id}"),
        ("PUT", "/api/access-control-layer-module-service/update/{id}"),
    ],
)
async def test_a_module_id_beyond_a_serial_is_a_400(client, admin, method, path):
    body = {"permissions": ["Read"]} if method == "PUT" else None
    for bad in (BEYOND_SERIAL, BEYOND_BIGINT - 2):
        refused(await client.request(method, path.format(id=bad), headers=admin, json=body), '"id"')


async def test_a_module_filter_or_choice_beyond_a_serial_is_a_400(client, admin):
    for bad in (BEYOND_SERIAL, BEYOND_BIGINT):
        resp = await client.get("/api/permission", params={"aclmodulesId": bad}, headers=admin)
        refused(resp, "aclmodulesId")
    grant = {"aclmodulesId": BEYOND_SERIAL, "entityType": "Role", "entityId": "User", "permissions": ["Read"]}
    refused(await client.post("/api/permission", json=grant, headers=admin), "aclmodulesId")


async def test_acl_module_changes_are_logged_without_clobbering_the_log_record(client, admin, caplog):
    # extra={"module": ...} collides with LogRecord.module: every logged change was a 500 (after its commit).
    with caplog.at_level(logging.INFO):
        module = await new_module(client, admin)
        changed = await client.put(f"/api/aclmodules/{module['id']}", headers=admin, json={"status": "Disable"})
    assert changed.status_code == 200, changed.text
    assert any(r.getMessage() == "acl module changed" and r.acl_module == module["name"] for r in caplog.records)
