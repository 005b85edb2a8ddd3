"""The rest of D-REC's identity surface (issue 15): reading a user, one's invitations, the admin's users and
organizations, role and user grants, the ACL module paths, and the retired private-key token endpoint."""

import logging
import uuid

import pytest

from opendrec_kit.testing import TokenIssuer

from .accounts import PASSWORD, add_member, grant_to_user, headers_for, login, new_organization
from .test_api_users import api_user_headers, approved_api_user, organization_under
from .test_api_users import register as register_api_user

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def fields(resp) -> set[str]:
    return {d["field"] for d in resp.json().get("details", [])}


@pytest.fixture(scope="module")
def issuer(runtime):
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    return issuer


# -- GET /api/user/{id} ----------------------------------------------------------------------------------------


async def test_a_user_reads_themself_and_an_organization_admin_its_members(client, runtime):
    owner, headers = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "User")

    mine = await client.get(f"/api/user/{owner['id']}", headers=headers)
    assert mine.status_code == 200, mine.text
    assert {k: mine.json()[k] for k in ("id", "email", "role")} == {
        "id": owner["id"],
        "email": owner["email"],
        "role": "OrganizationAdmin",
    }
    assert (mine.json()["apiUserId"], mine.json()["permission_status"]) == (None, None)
    assert mine.json()["organization"]["id"] == owner["organization"]["id"]
    assert "password" not in mine.text.lower()

    theirs = await client.get(f"/api/user/{member['id']}", headers=headers)
    assert theirs.status_code == 200 and theirs.json()["email"] == member["email"]
    # /api/user/me is still answered by its own route
    assert (await client.get("/api/user/me", headers=headers)).json()["id"] == owner["id"]


async def test_a_buyer_reads_its_members(client, runtime):
    owner, headers = await new_organization(client, "Buyer")
    member = await add_member(runtime, owner["organization"]["id"], "SubBuyer")
    assert (await client.get(f"/api/user/{member['id']}", headers=headers)).status_code == 200


async def test_a_member_reads_no_colleague_and_nobody_another_organizations_user(client, runtime, admin):
    owner, owner_headers = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "User")
    member_headers = await headers_for(client, member["email"])
    other, _ = await new_organization(client)

    colleague = await client.get(f"/api/user/{owner['id']}", headers=member_headers)
    assert colleague.status_code == 403 and owner["email"] not in colleague.text
    # another organization's user: the answer of a user that does not exist
    foreign = await client.get(f"/api/user/{other['id']}", headers=owner_headers)
    missing = await client.get("/api/user/987654321", headers=owner_headers)
    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert foreign.json()["message"] == f"User {other['id']} does not exist" and other["email"] not in foreign.text
    # the Admin reads anyone
    assert (await client.get(f"/api/user/{other['id']}", headers=admin)).json()["email"] == other["email"]


async def test_an_api_user_is_read_with_its_request_state(client, admin):
    api_user = await register_api_user(client)
    resp = await client.get(f"/api/user/{api_user['id']}", headers=admin)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["apiUserId"], resp.json()["permission_status"]) == (api_user["apiUserId"], "Request")


async def test_reading_a_user_is_checked(client, admin, issuer):
    assert (await client.get("/api/user/1")).status_code == 401
    bad = await client.get("/api/user/abc", headers=admin)
    assert bad.status_code == 400 and fields(bad) == {"id"}
    refused = await client.get("/api/user/1", headers=issuer.headers(role="User", permissions={}))
    assert refused.status_code == 403 and "USER_MANAGEMENT_CRUDL" in refused.json()["message"]


# -- GET /api/invitation/By_email --------------------------------------------------------------------------------


async def test_a_caller_lists_the_invitations_sent_to_its_email(client, runtime):
    first, first_headers = await new_organization(client)
    second, second_headers = await new_organization(client)
    invited = await add_member(runtime, first["organization"]["id"], "DeviceOwner")
    bystander = await add_member(runtime, first["organization"]["id"], "User")
    sent = []
    for org, headers in ((second, second_headers), (first, first_headers)):
        target = org["organization"]["id"]
        email = invited["email"] if org is second else bystander["email"]
        resp = await client.post(
            f"/api/invitation?organizationId={target}", headers=headers, json={"email": email, "role": "User"}
        )
        assert resp.status_code in (201, 409), resp.text  # inviting one's own member is refused (409)
        sent.append(resp)
    third, third_headers = await new_organization(client)
    later = await client.post(
        f"/api/invitation?organizationId={third['organization']['id']}",
        headers=third_headers,
        json={"email": invited["email"], "role": "DeviceOwner"},
    )
    assert later.status_code == 201

    resp = await client.get("/api/invitation/By_email", headers=await headers_for(client, invited["email"]))
    assert resp.status_code == 200, resp.text
    assert [i["id"] for i in resp.json()] == [later.json()["id"], sent[0].json()["id"]]  # newest first
    assert {i["organization"]["id"] for i in resp.json()} == {second["organization"]["id"], third["organization"]["id"]}
    assert all(i["email"] == invited["email"] and i["status"] == "Pending" for i in resp.json())

    nothing = await client.get("/api/invitation/By_email", headers=await headers_for(client, bystander["email"]))
    assert nothing.status_code == 200 and nothing.json() == []


async def test_listing_ones_invitations_needs_a_login(client):
    assert (await client.get("/api/invitation/By_email")).status_code == 401


# -- POST /api/Organization ----------------------------------------------------------------------------------------


def new_organization_body(**changes) -> dict:
    return {
        "name": f"Org-{uuid.uuid4().hex[:8]}",
        "address": "Main street 1",
        "zipCode": "500001",
        "city": "Hyderabad",
        "country": "IN",
        "organizationType": "Developer",
        "orgEmail": "org@example.org",
        **changes,
    }


async def test_creating_an_organization_is_refused_as_every_account_has_one(client):
    _, headers = await new_organization(client)
    resp = await client.post("/api/Organization", headers=headers, json=new_organization_body())
    assert resp.status_code == 400, resp.text
    assert resp.json()["message"] == "There is already an organization assigned to this account"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": " "}, "name"),
        ({"country": "India"}, "country"),
        ({"orgEmail": "not-an-email"}, "orgEmail"),
        ({"zipCode": "1" * 21}, "zipCode"),
        ({"documentIds": ["d"] * 21}, "documentIds"),
        ({"city": None}, "city"),
    ],
)
async def test_the_new_organization_body_is_checked(client, changes, field):
    _, headers = await new_organization(client)
    resp = await client.post("/api/Organization", headers=headers, json=new_organization_body(**changes))
    assert resp.status_code == 400, resp.text
    assert field in fields(resp)


async def test_only_an_organization_admin_may_create_an_organization(client, runtime, admin):
    owner, _ = await new_organization(client)
    owner_of_devices = await add_member(runtime, owner["organization"]["id"], "DeviceOwner")
    _, buyer = await new_organization(client, "Buyer")
    for headers in (admin, buyer, await headers_for(client, owner_of_devices["email"])):
        resp = await client.post("/api/Organization", headers=headers, json=new_organization_body())
        assert resp.status_code == 403, resp.text
    assert (await client.post("/api/Organization", json=new_organization_body())).status_code == 401


# -- POST /api/admin/users -----------------------------------------------------------------------------------------


def admin_user_body(kind: str = "Developer", **changes) -> dict:
    tag = uuid.uuid4().hex[:8]
    return {
        "firstName": "Made",
        "lastName": "ByAdmin",
        "email": f"made-{tag}@example.org",
        "organizationType": kind,
        "password": PASSWORD,
        "confirmPassword": PASSWORD,
        "orgName": f"AdminMade-{tag}",
        "orgAddress": "Pune",
        **changes,
    }


async def test_the_admin_creates_an_organization_with_its_first_user(client, runtime, admin):
    for kind, role in (("Developer", "OrganizationAdmin"), ("buyer", "Buyer")):
        body = admin_user_body(kind)
        resp = await client.post("/api/admin/users", headers=admin, json=body)
        assert resp.status_code == 201, resp.text
        created = resp.json()
        assert (created["role"], created["status"], created["emailConfirmed"]) == (role, "Active", False)
        assert (created["organization"]["name"], created["organization"]["organizationType"]) == (
            body["orgName"],
            kind.capitalize(),
        )
        assert "password" not in resp.text.lower()
        assert (await login(client, body["email"])).status_code == 200  # with the password the admin chose
        stored = await runtime.pool.fetchrow(
            "SELECT secret_key_hash, api_user_id FROM organizations WHERE id = $1", created["organization"]["id"]
        )
        assert (stored["secret_key_hash"], stored["api_user_id"]) == (None, None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "nope"}, "email"),
        ({"confirmPassword": "Other1234"}, "confirmPassword"),
        ({"password": "short", "confirmPassword": "short"}, "password"),
        ({"organizationType": "ApiUser"}, "organizationType"),
        ({"orgName": ""}, "orgName"),
        ({"firstName": "x" * 101}, "firstName"),
    ],
)
async def test_the_admins_new_user_is_checked(client, admin, changes, field):
    resp = await client.post("/api/admin/users", headers=admin, json=admin_user_body(**changes))
    assert resp.status_code == 400, resp.text
    assert field in fields(resp)


async def test_the_admins_new_user_may_not_take_an_email_or_organization_name(client, admin):
    owner, _ = await new_organization(client)
    taken = await client.post("/api/admin/users", headers=admin, json=admin_user_body(email=owner["email"]))
    assert taken.status_code == 409 and fields(taken) == {"email"}
    name = await client.post(
        "/api/admin/users", headers=admin, json=admin_user_body(orgName=owner["organization"]["name"].upper())
    )
    assert name.status_code == 409 and fields(name) == {"orgName"}


async def test_only_the_admin_creates_users(client):
    _, headers = await new_organization(client)
    assert (await client.post("/api/admin/users", headers=headers, json=admin_user_body())).status_code == 403
    assert (await client.post("/api/admin/users", json=admin_user_body())).status_code == 401


# -- PUT /api/admin/users/{id} -------------------------------------------------------------------------------------


async def test_the_admin_changes_a_users_names_email_and_status(client, runtime, admin):
    owner, _ = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "DeviceOwner")
    member_headers = await headers_for(client, member["email"])

    renamed = await client.put(
        f"/api/admin/users/{member['id']}", headers=admin, json={"firstName": "Asha", "lastName": "Rao"}
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["firstName"], renamed.json()["lastName"]) == ("Asha", "Rao")
    assert (await client.get("/api/user/me", headers=member_headers)).status_code == 200  # names: tokens stay

    new_email = f"Moved-{uuid.uuid4().hex[:8]}@Example.org"
    moved = await client.put(f"/api/admin/users/{member['id']}", headers=admin, json={"email": new_email})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["email"], moved.json()["emailConfirmed"]) == (new_email.lower(), False)
    assert (await client.get("/api/user/me", headers=member_headers)).status_code == 401  # its tokens are revoked
    assert (await login(client, member["email"])).status_code == 401
    assert (await login(client, new_email)).status_code == 200
    mailed = await runtime.pool.fetchval(
        "SELECT count(*) FROM user_tokens WHERE user_id = $1 AND purpose = 'confirm_email'", member["id"]
    )
    assert mailed == 1

    suspended = await client.put(f"/api/admin/users/{member['id']}", headers=admin, json={"status": "Suspended"})
    assert suspended.status_code == 200 and suspended.json()["status"] == "Suspended"
    refused = await login(client, new_email)
    assert refused.status_code == 403 and "suspended" in refused.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"status": "Gone"}, "status"),
        ({"email": "not-an-email"}, "email"),
        ({"firstName": " "}, "firstName"),
    ],
)
async def test_a_user_change_is_checked(client, runtime, admin, body, field):
    owner, _ = await new_organization(client)
    resp = await client.put(f"/api/admin/users/{owner['id']}", headers=admin, json=body)
    assert resp.status_code == 400, resp.text
    assert field in fields(resp)


async def test_a_user_change_refusals(client, admin, identity_settings):
    owner, _ = await new_organization(client)
    other, _ = await new_organization(client)
    taken = await client.put(f"/api/admin/users/{owner['id']}", headers=admin, json={"email": other["email"]})
    assert taken.status_code == 409 and fields(taken) == {"email"}
    me = (await client.get("/api/user/me", headers=admin)).json()
    own = await client.put(f"/api/admin/users/{me['id']}", headers=admin, json={"status": "Suspended"})
    assert own.status_code == 400 and "own status" in own.json()["message"]
    assert (await client.put("/api/admin/users/987654321", headers=admin, json={"firstName": "X"})).status_code == 404
    assert (await client.put("/api/admin/users/abc", headers=admin, json={"firstName": "X"})).status_code == 400


async def test_an_api_user_changes_only_the_users_of_its_organizations(client, admin):
    modules = {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"], "USER_MANAGEMENT_CRUDL": ["Read", "Update"]}
    api_user, headers = await approved_api_user(client, admin, modules)
    created = await client.post("/api/user/register", headers=headers, json=organization_under(api_user))
    assert created.status_code == 201, created.text
    changed = await client.put(f"/api/admin/users/{created.json()['id']}", headers=headers, json={"lastName": "Api"})
    assert changed.status_code == 200 and changed.json()["lastName"] == "Api"

    stranger, _ = await new_organization(client)
    foreign = await client.put(f"/api/admin/users/{stranger['id']}", headers=headers, json={"lastName": "Hijack"})
    assert foreign.status_code == 404 and stranger["email"] not in foreign.text
    empty = await client.put(f"/api/admin/users/{stranger['id']}", headers=headers, json={})
    assert empty.status_code == 404  # the stranger is not told the body is empty: it may change nothing there

    unapproved = await api_user_headers(client, await register_api_user(client))
    resp = await client.put(f"/api/admin/users/{created.json()['id']}", headers=unapproved, json={"lastName": "X"})
    assert resp.status_code == 403


async def test_organization_admins_change_no_user_here(client):
    owner, headers = await new_organization(client)
    assert (
        await client.put(f"/api/admin/users/{owner['id']}", headers=headers, json={"firstName": "X"})
    ).status_code == 403
    assert (await client.put(f"/api/admin/users/{owner['id']}", json={"firstName": "X"})).status_code == 401


# -- PATCH /api/admin/organizations/{id} --------------------------------------------------------------------------


async def test_the_admin_changes_an_organization(client, admin):
    owner, _ = await new_organization(client)
    org_id = owner["organization"]["id"]
    name = f"Renamed-{uuid.uuid4().hex[:8]}"
    resp = await client.patch(
        f"/api/admin/organizations/{org_id}",
        headers=admin,
        json={"name": name, "address": "New address", "status": "Denied", "organizationType": "developer"},
    )
    assert resp.status_code == 200, resp.text
    assert {k: resp.json()[k] for k in ("id", "name", "address", "status", "organizationType")} == {
        "id": org_id,
        "name": name,
        "address": "New address",
        "status": "Denied",
        "organizationType": "Developer",
    }
    assert (await client.get(f"/api/Organization/{org_id}", headers=admin)).json()["name"] == name
    cleared = await client.patch(f"/api/admin/organizations/{org_id}", headers=admin, json={"address": ""})
    assert cleared.status_code == 200 and cleared.json()["address"] is None and cleared.json()["name"] == name


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"status": "Deleted"}, "status"),
        ({"name": " "}, "name"),
        ({"zipCode": "500001"}, "zipCode"),
        ({"name": "Fine", "documentIds": ["a"]}, "documentIds"),
        ({"organizationType": "Buyer"}, "organizationType"),
    ],
)
async def test_an_organization_change_is_checked(client, admin, body, field):
    owner, _ = await new_organization(client)
    resp = await client.patch(f"/api/admin/organizations/{owner['organization']['id']}", headers=admin, json=body)
    assert resp.status_code == 400, resp.text
    assert field in fields(resp)


async def test_an_organization_change_refusals(client, admin):
    owner, headers = await new_organization(client)
    other, _ = await new_organization(client)
    org_id = owner["organization"]["id"]
    taken = await client.patch(
        f"/api/admin/organizations/{org_id}", headers=admin, json={"name": other["organization"]["name"]}
    )
    assert taken.status_code == 409 and fields(taken) == {"name"}
    assert (
        await client.patch("/api/admin/organizations/987654321", headers=admin, json={"name": "X"})
    ).status_code == 404
    assert (
        await client.patch(f"/api/admin/organizations/{org_id}", headers=headers, json={"name": "Mine"})
    ).status_code == 403
    assert (await client.patch(f"/api/admin/organizations/{org_id}", json={"name": "Mine"})).status_code == 401


# -- DELETE /api/admin/organizations/{id} -------------------------------------------------------------------------


async def test_deleting_an_organization_removes_its_users_at_once(client, runtime, admin):
    owner, owner_headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "DeviceOwner")
    member_headers = await headers_for(client, member["email"])
    invited = await client.post(
        f"/api/invitation?organizationId={org_id}",
        headers=owner_headers,
        json={"email": f"later-{uuid.uuid4().hex[:8]}@example.org", "role": "User"},
    )
    assert invited.status_code == 201

    resp = await client.delete(f"/api/admin/organizations/{org_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["success"] is True and "2 user(s)" in resp.json()["message"]

    for headers in (owner_headers, member_headers):  # their tokens are revoked
        assert (await client.get("/api/user/me", headers=headers)).status_code == 401
    refused = await login(client, member["email"])
    assert refused.status_code == 403 and "deleted" in refused.json()["message"]
    assert (await client.get(f"/api/Organization/{org_id}", headers=admin)).json()["status"] == "Deleted"
    users = (await client.get(f"/api/admin/organizations/user/{org_id}", headers=admin)).json()["users"]
    assert {u["status"] for u in users} == {"Deleted"} and len(users) == 2
    expired = await runtime.pool.fetchval(
        "SELECT expires_at <= now() FROM invitations WHERE id = $1", invited.json()["id"]
    )
    assert expired is True

    # Deleted: no more changes, no new invitations
    again = await client.delete(f"/api/admin/organizations/{org_id}", headers=admin)
    assert again.status_code == 409 and "already deleted" in again.json()["message"]
    assert (
        await client.patch(f"/api/admin/organizations/{org_id}", headers=admin, json={"name": "Back"})
    ).status_code == 409
    reinvite = await client.post(
        f"/api/invitation?organizationId={org_id}",
        headers=admin,
        json={"email": f"x-{uuid.uuid4().hex[:8]}@example.org", "role": "User"},
    )
    assert reinvite.status_code == 409


async def test_deleting_an_organization_refusals(client, admin):
    me = (await client.get("/api/user/me", headers=admin)).json()
    own = await client.delete(f"/api/admin/organizations/{me['organization']['id']}", headers=admin)
    assert own.status_code == 409 and "own organization" in own.json()["message"]

    api_user, headers = await approved_api_user(client, admin, {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"]})
    under = await client.post("/api/user/register", headers=headers, json=organization_under(api_user))
    assert under.status_code == 201
    busy = await client.delete(f"/api/admin/organizations/{api_user['organization']['id']}", headers=admin)
    assert busy.status_code == 409 and "registered under it" in busy.json()["message"]
    # nothing was half-done: the API user still gets tokens
    assert (await api_user_headers(client, api_user))["Authorization"]

    assert (await client.delete("/api/admin/organizations/987654321", headers=admin)).status_code == 404
    assert (await client.delete("/api/admin/organizations/abc", headers=admin)).status_code == 400
    owner, owner_headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    assert (await client.delete(f"/api/admin/organizations/{org_id}", headers=owner_headers)).status_code == 403
    assert (await client.delete(f"/api/admin/organizations/{org_id}")).status_code == 401
    assert (await client.get("/api/user/me", headers=owner_headers)).status_code == 200


# -- GET /api/admin/organizations/user/{organizationId} ----------------------------------------------------------


async def test_the_admin_lists_every_user_of_an_organization(client, runtime, admin):
    owner, owner_headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "User")
    removed = await client.post(f"/api/Organization/{org_id}/remove-member/{member['id']}", headers=owner_headers)
    assert removed.status_code == 200
    resp = await client.get(f"/api/admin/organizations/user/{org_id}?limit=1&pageNumber=2", headers=admin)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["totalCount"], resp.json()["totalPages"], resp.json()["currentPage"]) == (2, 2, 2)
    assert [(u["id"], u["status"]) for u in resp.json()["users"]] == [(member["id"], "Deleted")]


async def test_listing_an_organizations_users_is_checked(client, admin):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    assert (await client.get(f"/api/admin/organizations/user/{org_id}?limit=0", headers=admin)).status_code == 400
    assert (await client.get("/api/admin/organizations/user/abc", headers=admin)).status_code == 400
    assert (await client.get("/api/admin/organizations/user/987654321", headers=admin)).status_code == 404
    assert (await client.get(f"/api/admin/organizations/user/{org_id}", headers=headers)).status_code == 403
    assert (await client.get(f"/api/admin/organizations/user/{org_id}")).status_code == 401


async def test_an_api_user_lists_the_users_of_its_organizations_only(client, admin):
    modules = {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"], "USER_MANAGEMENT_CRUDL": ["Read"]}
    api_user, headers = await approved_api_user(client, admin, modules)
    created = await client.post("/api/user/register", headers=headers, json=organization_under(api_user))
    org_id = created.json()["organization"]["id"]
    mine = await client.get(f"/api/admin/organizations/user/{org_id}", headers=headers)
    assert mine.status_code == 200 and [u["email"] for u in mine.json()["users"]] == [created.json()["email"]]
    stranger, _ = await new_organization(client)
    other = await client.get(f"/api/admin/organizations/user/{stranger['organization']['id']}", headers=headers)
    assert other.status_code == 403 and stranger["email"] not in other.text


# -- GET /api/permission/role/{id}, GET /api/permission/user/{id} ------------------------------------------------


async def test_the_admin_reads_a_roles_grants_by_drec_id_or_name(client, admin):
    by_id = await client.get("/api/permission/role/2", headers=admin)
    assert by_id.status_code == 200, by_id.text
    assert {g["moduleName"] for g in by_id.json()} >= {"DEVICE_MANAGEMENT_CRUDL", "USER_MANAGEMENT_CRUDL"}
    assert {(g["entityType"], g["entityId"]) for g in by_id.json()} == {("Role", "OrganizationAdmin")}
    ids = [g["id"] for g in by_id.json()]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert (await client.get("/api/permission/role/OrganizationAdmin", headers=admin)).json() == by_id.json()
    assert (await client.get("/api/permission/role/1", headers=admin)).json() == []  # Admin needs no grants


async def test_reading_a_roles_grants_is_checked(client, admin):
    for role in ("99", "0", "Owner"):
        assert (await client.get(f"/api/permission/role/{role}", headers=admin)).status_code == 404
    too_long = await client.get(f"/api/permission/role/{'9' * 21}", headers=admin)
    assert too_long.status_code == 400 and fields(too_long) == {"id"}
    _, headers = await new_organization(client)
    assert (await client.get("/api/permission/role/2", headers=headers)).status_code == 403
    assert (await client.get("/api/permission/role/2")).status_code == 401


async def test_a_users_grants_are_read_by_them_their_organization_admin_and_the_admin(client, runtime, admin):
    owner, owner_headers = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "User")
    granted = await grant_to_user(client, admin, member["id"], "DEVICE_MANAGEMENT_CRUDL", ["Read", "Write"])
    assert granted.status_code == 201, granted.text
    member_headers = await headers_for(client, member["email"])
    for headers in (admin, owner_headers, member_headers):
        resp = await client.get(f"/api/permission/user/{member['id']}", headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json() == [granted.json()]
    assert (await client.get(f"/api/permission/user/{owner['id']}", headers=owner_headers)).json() == []


async def test_reading_a_users_grants_is_checked(client, runtime):
    owner, owner_headers = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "User")
    member_headers = await headers_for(client, member["email"])
    other, _ = await new_organization(client)
    assert (await client.get(f"/api/permission/user/{owner['id']}", headers=member_headers)).status_code == 403
    assert (await client.get(f"/api/permission/user/{other['id']}", headers=owner_headers)).status_code == 404
    bad = await client.get("/api/permission/user/abc", headers=owner_headers)
    assert bad.status_code == 400 and fields(bad) == {"id"}
    assert (await client.get(f"/api/permission/user/{owner['id']}")).status_code == 401


# -- /api/access-control-layer-module-service: D-REC's paths of /api/aclmodules ------------------------------------

ACL = "/api/access-control-layer-module-service"


async def test_the_reference_acl_module_paths_are_the_same_operations(client, admin):
    listed = await client.get(ACL, headers=admin, params={"limit": 100})
    assert listed.status_code == 200, listed.text
    assert listed.json() == (await client.get("/api/aclmodules", headers=admin, params={"limit": 100})).json()

    name = f"ALIAS_{uuid.uuid4().hex[:8].upper()}"
    created = await client.post(
        ACL,
        headers=admin,
        json={"name": name, "description": "x", "permissions": ["Read", "Write"], "status": "Enable"},
    )
    assert created.status_code == 201, created.text
    module_id = created.json()["id"]
    assert (await client.get(f"/api/aclmodules/{module_id}", headers=admin)).json()["name"] == name

    changed = await client.put(f"{ACL}/update/{module_id}", headers=admin, json={"permissions": ["Read"]})
    assert changed.status_code == 200 and changed.json()["permissions"] == ["Read"]


async def test_the_reference_acl_module_paths_are_checked(client, admin):
    bad = await client.post(ACL, headers=admin, json={"name": "lower", "permissions": ["Read"]})
    assert bad.status_code == 400 and fields(bad) == {"name"}
    assert (await client.put(f"{ACL}/update/abc", headers=admin, json={"status": "Disable"})).status_code == 400
    assert (await client.put(f"{ACL}/update/987654", headers=admin, json={"status": "Disable"})).status_code == 404
    assert (await client.put(f"{ACL}/update/1", headers=admin, json={})).status_code == 400
    _, headers = await new_organization(client)
    assert (await client.get(ACL, headers=headers)).status_code == 403
    assert (
        await client.post(ACL, headers=headers, json={"name": "NOPE_X", "permissions": ["Read"]})
    ).status_code == 403
    assert (await client.put(f"{ACL}/update/1", headers=headers, json={"status": "Disable"})).status_code == 403
    assert (await client.get(ACL)).status_code == 401


# -- POST /api/auth/getAccess: retired ---------------------------------------------------------------------------------


async def test_the_private_key_endpoint_is_retired_and_the_key_goes_nowhere(client, caplog):
    api_user = await register_api_user(client)
    key_line = api_user["privateKey"].splitlines()[1]
    with caplog.at_level(logging.DEBUG):
        resp = await client.post(
            "/api/auth/getAccess",
            params={"privateKey": api_user["privateKey"]},
            json={"username": api_user["email"], "password": "ApiUser123"},
        )
        bare = await client.post("/api/auth/getAccess")
    assert resp.status_code == 410, resp.text
    assert "POST /api/auth/token" in resp.json()["message"] and resp.json()["path"] == "/api/auth/getAccess"
    assert key_line not in resp.text and "ApiUser123" not in resp.text
    assert bare.status_code == 410
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name not in ("httpx",))
    assert key_line not in logged and "ApiUser123" not in logged
