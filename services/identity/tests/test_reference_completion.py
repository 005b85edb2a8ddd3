"""The last of D-REC's identity surface (issue 15): an Admin's read of one organization and removal of a user, an
organization's invitations, a member's removal by user id, D-REC's grant paths, and the refused endpoints (the
key export, the blockchain address, the development seeding)."""

import uuid

import pytest

from opendrec_kit.testing import TokenIssuer

from .accounts import add_member, grant_to_user, headers_for, login, new_organization
from .test_api_users import api_user_headers, approved_api_user, organization_under
from .test_api_users import register as register_api_user
from .test_grants import new_module

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def fields(resp) -> set[str]:
    return {d["field"] for d in resp.json().get("details", [])}


async def is_live(client, headers) -> bool:
    status = (await client.get("/api/user/me", headers=headers)).status_code
    assert status in (200, 401)
    return status == 200


@pytest.fixture(scope="module")
def issuer(runtime):
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    return issuer


async def invite(client, headers, organization_id: int, role: str = "User") -> dict:
    resp = await client.post(
        f"/api/invitation?organizationId={organization_id}",
        headers=headers,
        json={"email": f"invited-{uuid.uuid4().hex[:8]}@example.org", "role": role},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


# -- GET /api/admin/organizations/{id} ---------------------------------------------------------------------------


async def test_the_admin_reads_any_organization(client, admin):
    owner, headers = await new_organization(client, "Buyer")
    org_id = owner["organization"]["id"]
    resp = await client.get(f"/api/admin/organizations/{org_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json() == (await client.get(f"/api/Organization/{org_id}", headers=headers)).json()
    assert (resp.json()["id"], resp.json()["organizationType"]) == (org_id, "Buyer")

    assert (await client.delete(f"/api/admin/organizations/{org_id}", headers=admin)).status_code == 200
    deleted = await client.get(f"/api/admin/organizations/{org_id}", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["status"] == "Deleted"


async def test_reading_an_organization_as_admin_is_checked(client, admin):
    bad = await client.get("/api/admin/organizations/abc", headers=admin)
    assert bad.status_code == 400 and fields(bad) == {"organizationId"}
    missing = await client.get("/api/admin/organizations/987654321", headers=admin)
    assert missing.status_code == 404 and "987654321" in missing.json()["message"]
    owner, headers = await new_organization(client)
    own = await client.get(f"/api/admin/organizations/{owner['organization']['id']}", headers=headers)
    assert own.status_code == 403  # its own organization, still the Admin's path only
    assert (await client.get(f"/api/admin/organizations/{owner['organization']['id']}")).status_code == 401


# -- DELETE /api/admin/user/{id} ------------------------------------------------------------------------------


async def test_the_admin_removes_a_user_and_their_tokens(client, runtime, admin):
    owner, owner_headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "DeviceOwner")
    member_headers = await headers_for(client, member["email"])

    resp = await client.delete(f"/api/admin/user/{member['id']}", headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "success": True,
        "message": f"User {member['id']} has been removed from organization {org_id}",
    }
    assert not await is_live(client, member_headers)
    refused = await login(client, member["email"])
    assert refused.status_code == 403 and "deleted" in refused.json()["message"]
    users = (await client.get(f"/api/admin/organizations/user/{org_id}", headers=admin)).json()["users"]
    assert {u["id"]: u["status"] for u in users} == {owner["id"]: "Active", member["id"]: "Deleted"}

    # the last member too: the organization stays (DELETE /api/admin/organizations/{id} deletes it)
    last = await client.delete(f"/api/admin/user/{owner['id']}", headers=admin)
    assert last.status_code == 200 and not await is_live(client, owner_headers)
    assert (await client.get(f"/api/admin/organizations/{org_id}", headers=admin)).json()["status"] == "Active"


async def test_removing_a_user_as_admin_is_checked(client, runtime, admin):
    me = (await client.get("/api/user/me", headers=admin)).json()
    own = await client.delete(f"/api/admin/user/{me['id']}", headers=admin)
    assert own.status_code == 400 and "your own" in own.json()["message"]
    bad = await client.delete("/api/admin/user/abc", headers=admin)
    assert bad.status_code == 400 and fields(bad) == {"id"}
    assert (await client.delete("/api/admin/user/987654321", headers=admin)).status_code == 404

    owner, headers = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "User")
    assert (await client.delete(f"/api/admin/user/{member['id']}", headers=headers)).status_code == 403
    assert (await client.delete(f"/api/admin/user/{member['id']}")).status_code == 401
    assert (await login(client, member["email"])).status_code == 200  # untouched by the refusals
    assert (await client.delete(f"/api/admin/user/{member['id']}", headers=admin)).status_code == 200
    again = await client.delete(f"/api/admin/user/{member['id']}", headers=admin)
    assert again.status_code == 404  # already removed


# -- GET /api/Organization/{id}/invitations -----------------------------------------------------------------------


async def test_members_read_their_organizations_invitations(client, runtime, admin):
    owner, owner_headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    first = await invite(client, owner_headers, org_id, "DeviceOwner")
    second = await invite(client, owner_headers, org_id, "User")
    member = await add_member(runtime, org_id, "User")  # any member, as D-REC (ORGANIZATION_MANAGEMENT_CRUDL Read)

    for headers in (owner_headers, await headers_for(client, member["email"]), admin):
        resp = await client.get(f"/api/Organization/{org_id}/invitations", headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json() == [second, first]  # newest first, the shape of POST /api/invitation's answer
    assert {"id", "email", "role", "status", "sender", "organization", "createdAt"} <= set(first)

    other, _ = await new_organization(client)
    none = await client.get(f"/api/Organization/{other['organization']['id']}/invitations", headers=admin)
    assert none.status_code == 200 and none.json() == []


async def test_an_api_user_reads_the_invitations_of_its_organizations(client, admin):
    api_user, headers = await approved_api_user(client, admin, {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"]})
    created = await client.post("/api/user/register", headers=headers, json=organization_under(api_user))
    assert created.status_code == 201, created.text
    org_id = created.json()["organization"]["id"]
    resp = await client.get(f"/api/Organization/{org_id}/invitations", headers=headers)
    assert resp.status_code == 200 and resp.json() == []
    stranger, _ = await new_organization(client)
    other = await client.get(f"/api/Organization/{stranger['organization']['id']}/invitations", headers=headers)
    assert other.status_code == 403


async def test_an_organizations_invitations_are_checked(client, admin, issuer):
    owner, owner_headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    sent = await invite(client, owner_headers, org_id)
    bad = await client.get("/api/Organization/abc/invitations", headers=admin)
    assert bad.status_code == 400 and fields(bad) == {"organizationId"}
    assert (await client.get("/api/Organization/987654321/invitations", headers=admin)).status_code == 404
    _, stranger_headers = await new_organization(client)
    foreign = await client.get(f"/api/Organization/{org_id}/invitations", headers=stranger_headers)
    assert foreign.status_code == 403 and sent["email"] not in foreign.text
    no_module = issuer.headers(role="User", organization_id=org_id, permissions={})
    refused = await client.get(f"/api/Organization/{org_id}/invitations", headers=no_module)
    assert refused.status_code == 403 and "ORGANIZATION_MANAGEMENT_CRUDL" in refused.json()["message"]
    assert (await client.get(f"/api/Organization/{org_id}/invitations")).status_code == 401


# -- DELETE /api/Organization/user/{id} ---------------------------------------------------------------------------


async def test_an_organization_admin_removes_a_member_by_user_id(client, runtime):
    owner, owner_headers = await new_organization(client, "Buyer")
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "SubBuyer")
    member_headers = await headers_for(client, member["email"])

    resp = await client.delete(f"/api/Organization/user/{member['id']}", headers=owner_headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "success": True,
        "message": f"User {member['id']} has been removed from organization {org_id}",
    }
    assert not await is_live(client, member_headers)
    users = (await client.get("/api/Organization/users", headers=owner_headers)).json()["users"]
    assert [u["id"] for u in users] == [owner["id"]]
    assert (await client.delete(f"/api/Organization/user/{member['id']}", headers=owner_headers)).status_code == 404


async def test_an_api_user_removes_a_user_of_its_organizations(client, admin):
    modules = {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write", "Update"], "USER_MANAGEMENT_CRUDL": ["Read"]}
    api_user, headers = await approved_api_user(client, admin, modules)
    created = await client.post("/api/user/register", headers=headers, json=organization_under(api_user))
    assert created.status_code == 201, created.text
    user_id, org_id = created.json()["id"], created.json()["organization"]["id"]
    resp = await client.delete(f"/api/Organization/user/{user_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    users = (await client.get(f"/api/admin/organizations/user/{org_id}", headers=headers)).json()["users"]
    assert [(u["id"], u["status"]) for u in users] == [(user_id, "Deleted")]


async def test_removing_a_member_by_user_id_is_checked(client, runtime, admin):
    owner, owner_headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "DeviceOwner")
    member_headers = await headers_for(client, member["email"])
    other, _ = await new_organization(client)

    own = await client.delete(f"/api/Organization/user/{owner['id']}", headers=owner_headers)
    assert own.status_code == 400 and "your own" in own.json()["message"]
    bad = await client.delete("/api/Organization/user/abc", headers=owner_headers)
    assert bad.status_code == 400 and fields(bad) == {"id"}
    missing = await client.delete("/api/Organization/user/987654321", headers=owner_headers)
    # another organization's user: the answer of a user that does not exist
    foreign = await client.delete(f"/api/Organization/user/{other['id']}", headers=owner_headers)
    assert (missing.status_code, foreign.status_code) == (404, 404)
    assert foreign.json()["message"] == f"User {other['id']} does not exist in your organization"
    assert (await login(client, other["email"])).status_code == 200
    # a DeviceOwner reads its organization but does not change it
    refused = await client.delete(f"/api/Organization/user/{owner['id']}", headers=member_headers)
    assert refused.status_code == 403 and "ORGANIZATION_MANAGEMENT_CRUDL" in refused.json()["message"]
    assert (await client.delete(f"/api/Organization/user/{member['id']}")).status_code == 401
    assert await is_live(client, owner_headers) and await is_live(client, member_headers)


# -- POST /api/permission/module, PUT /api/permission/update/{id} -----------------------------------------------


async def test_drecs_grant_paths_take_drecs_bodies(client, runtime, admin):
    module = await new_module(client, admin, ["Read", "Write"])
    by_role_id = await client.post(
        "/api/permission/module",
        headers=admin,
        json={
            "aclmodulesId": module["id"],
            "entityType": "Role",
            "entityId": 3,  # D-REC's id of DeviceOwner
            "permissions": ["Read", "Write"],
            "permissionValue": 3,
            "status": 1,
        },
    )
    assert by_role_id.status_code == 201, by_role_id.text
    grant = by_role_id.json()
    assert {k: grant[k] for k in ("aclmodulesId", "entityType", "entityId", "permissions", "permissionValue")} == {
        "aclmodulesId": module["id"],
        "entityType": "Role",
        "entityId": "DeviceOwner",
        "permissions": ["Read", "Write"],
        "permissionValue": 3,
    }
    assert grant["status"] == 1
    listed = await client.get(f"/api/permission?aclmodulesId={module['id']}", headers=admin)
    assert listed.json()["permissions"] == [grant]

    changed = await client.put(
        f"/api/permission/update/{grant['id']}", headers=admin, json={"permissions": ["Read"], "status": 1}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["permissions"], changed.json()["permissionValue"]) == (["Read"], 1)

    # a reduction of a user's grant revokes their sessions, as PUT /api/permission/{id}
    owner, _ = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "User")
    user_grant = await grant_to_user(client, admin, member["id"], module["name"], ["Read", "Write"])
    assert user_grant.status_code == 201
    member_headers = await headers_for(client, member["email"])
    cut = await client.put(
        f"/api/permission/update/{user_grant.json()['id']}", headers=admin, json={"permissions": ["Read"]}
    )
    assert cut.status_code == 200 and not await is_live(client, member_headers)


@pytest.mark.parametrize(
    ("entity_id", "text"),
    [(99, "entityId must be a role"), (1, "Admin holds every action"), (6, "admin's approval")],
)
async def test_drecs_grant_path_checks_the_role_id(client, admin, entity_id, text):
    body = {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "entityType": "Role", "entityId": entity_id}
    resp = await client.post("/api/permission/module", headers=admin, json={**body, "permissions": ["Read"]})
    assert resp.status_code == 400 and fields(resp) == {"entityId"} and text in resp.json()["details"][0]["message"]


async def test_drecs_grant_paths_are_checked(client, admin):
    module = await new_module(client, admin, ["Read"])
    body = {"aclmodulesId": module["id"], "entityType": "Role", "entityId": 5, "permissions": ["Read"]}
    for wrong, field in (({"permissions": []}, "permissions"), ({"permissions": ["Delete"]}, "permissions")):
        resp = await client.post("/api/permission/module", headers=admin, json={**body, **wrong})
        assert resp.status_code == 400 and fields(resp) == {field}, resp.text
    assert (
        await client.post("/api/permission/module", headers=admin, json={**body, "entityType": "Group"})
    ).status_code == 400
    created = await client.post("/api/permission/module", headers=admin, json=body)
    assert created.status_code == 201, created.text
    grant_id = created.json()["id"]
    again = await client.post("/api/permission/module", headers=admin, json=body)
    assert again.status_code == 409

    assert (
        await client.put("/api/permission/update/abc", headers=admin, json={"permissions": ["Read"]})
    ).status_code == 400
    assert (
        await client.put("/api/permission/update/987654321", headers=admin, json={"permissions": ["Read"]})
    ).status_code == 404
    empty = await client.put(f"/api/permission/update/{grant_id}", headers=admin, json={"permissions": []})
    assert empty.status_code == 400 and fields(empty) == {"permissions"}
    not_offered = await client.put(f"/api/permission/update/{grant_id}", headers=admin, json={"permissions": ["Write"]})
    assert not_offered.status_code == 400 and fields(not_offered) == {"permissions"}

    _, headers = await new_organization(client)  # an OrganizationAdmin: D-REC lets it grant to users, not here
    user_body = {**body, "entityType": "User", "entityId": 1}
    for method, path, payload in (
        ("POST", "/api/permission/module", user_body),
        ("PUT", f"/api/permission/update/{grant_id}", {"permissions": ["Read"]}),
    ):
        assert (await client.request(method, path, json=payload)).status_code == 401
        refused = await client.request(method, path, headers=headers, json=payload)
        assert refused.status_code == 403 and "Only Admin" in refused.json()["message"], refused.text


# -- refused: GET /api/user/export-accesskey/{id}, POST /api/Organization/chain-address, the seeding -------------


async def test_the_key_export_is_retired_and_changes_no_key(client, admin):
    api_user = await register_api_user(client)
    path = f"/api/user/export-accesskey/{api_user['apiUserId']}"
    for headers in (await api_user_headers(client, api_user), admin):
        resp = await client.get(path, headers=headers)
        assert resp.status_code == 410, resp.text
        message = resp.json()["message"]
        assert "POST /api/user/apiuser/rotate-key" in message and "POST /api/auth/token" in message
        assert "PRIVATE KEY" not in resp.text
    too_long = await client.get(f"/api/user/export-accesskey/{'x' * 101}", headers=admin)
    assert too_long.status_code == 400 and fields(too_long) == {"apiuserId"}
    assert (await client.get(path)).status_code == 401  # the gateway asks a token of this path
    # the API user's key is the one it registered with
    assert (await api_user_headers(client, api_user))["Authorization"]


async def test_the_blockchain_address_is_refused(client, runtime):
    owner, headers = await new_organization(client)
    body = {"signedMessage": "0x" + "ab" * 65}
    resp = await client.post("/api/Organization/chain-address", headers=headers, json=body)
    assert resp.status_code == 410, resp.text
    assert "no blockchain" in resp.json()["message"] and body["signedMessage"] not in resp.text
    member = await add_member(runtime, owner["organization"]["id"], "DeviceOwner")  # Read only
    refused = await client.post(
        "/api/Organization/chain-address", headers=await headers_for(client, member["email"]), json=body
    )
    assert refused.status_code == 403
    assert (await client.post("/api/Organization/chain-address", json=body)).status_code == 401


async def test_the_development_seeding_is_refused_and_creates_nothing(client, runtime, admin):
    email = f"seeded-{uuid.uuid4().hex[:8]}@example.org"
    name = f"Seeded-{uuid.uuid4().hex[:8]}"
    users = [{"firstName": "S", "lastName": "U", "email": email, "password": "Seed1234", "organizationId": 1}]
    organizations = [{"name": name, "address": "x", "organizationType": "Developer"}]
    _, headers = await new_organization(client)
    for path, body, names in (
        ("/api/admin/seed/users", users, ("POST /api/admin/users", "POST /api/invitation")),
        ("/api/admin/seed/organizations", organizations, ("POST /api/admin/users",)),
    ):
        resp = await client.post(path, headers=admin, json=body)
        assert resp.status_code == 410, resp.text
        assert all(n in resp.json()["message"] for n in names)
        assert (await client.post(path, headers=headers, json=body)).status_code == 403
        assert (await client.post(path, json=body)).status_code == 401
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0
        assert await conn.fetchval("SELECT count(*) FROM organizations WHERE name = $1", name) == 0
