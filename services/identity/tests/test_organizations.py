"""My organization and its members, role changes, removals, and the admin's paginated listings."""

import pytest

from opendrec_kit.testing import TokenIssuer

from .accounts import add_member, headers_for, login, new_organization

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


# -- my organization ----------------------------------------------------------------------------------------


async def test_my_organization(client):
    owner, headers = await new_organization(client)
    resp = await client.get("/api/Organization/me", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**owner["organization"], "createdAt": resp.json()["createdAt"]}
    assert resp.json()["organizationType"] == "Developer"


async def test_my_organization_needs_login_and_permission(client, runtime):
    assert (await client.get("/api/Organization/me")).status_code == 401
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    resp = await client.get(
        "/api/Organization/me", headers=issuer.headers(role="ApiUser", organization_type="ApiUser", permissions={})
    )
    assert resp.status_code == 403 and "ORGANIZATION_MANAGEMENT_CRUDL" in resp.json()["message"]


async def test_my_organization_users_are_paginated_and_only_mine(client, runtime):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    members = [await add_member(runtime, org_id, role) for role in ("DeviceOwner", "User", "User")]
    other, _ = await new_organization(client)
    await add_member(runtime, other["organization"]["id"], "User")

    first = (await client.get("/api/Organization/users?pageNumber=1&limit=3", headers=headers)).json()
    second = (await client.get("/api/Organization/users?pageNumber=2&limit=3", headers=headers)).json()
    assert (first["currentPage"], first["totalPages"], first["totalCount"]) == (1, 2, 4)
    assert (second["currentPage"], len(second["users"])) == (2, 1)
    ids = [u["id"] for u in first["users"] + second["users"]]
    assert ids == [owner["id"], *[m["id"] for m in members]]
    assert all(u["organization"]["id"] == org_id for u in first["users"] + second["users"])
    assert "password" not in str(first).lower()

    # Any member may look (USER_MANAGEMENT_CRUDL Read); the same list by id.
    member_headers = await headers_for(client, members[1]["email"])
    by_id = await client.get(f"/api/Organization/{org_id}/users?limit=10", headers=member_headers)
    assert [u["id"] for u in by_id.json()["users"]] == ids


@pytest.mark.parametrize("query", ["pageNumber=0", "limit=0", "limit=101", "pageNumber=x"])
async def test_paging_parameters_are_checked(client, query):
    _, headers = await new_organization(client)
    resp = await client.get(f"/api/Organization/users?{query}", headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"][0]["field"] == query.split("=")[0]


async def test_another_organization_is_out_of_reach_but_not_for_the_admin(client, admin):
    _, headers = await new_organization(client)
    other, _ = await new_organization(client, "Buyer")
    other_id = other["organization"]["id"]
    for path in (f"/api/Organization/{other_id}", f"/api/Organization/{other_id}/users"):
        resp = await client.get(path, headers=headers)
        assert resp.status_code == 403 and "your own organization" in resp.json()["message"]
        assert (await client.get(path, headers=admin)).status_code == 200
    assert (await client.get(f"/api/Organization/{other_id}", headers=admin)).json()["organizationType"] == "Buyer"
    assert (await client.get("/api/Organization/987654321", headers=admin)).status_code == 404


# -- change a member's role ------------------------------------------------------------------------------------


async def test_change_role_applies_at_next_login_and_revokes_the_old_tokens(client, runtime):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "DeviceOwner")
    member_headers = await headers_for(client, member["email"])

    resp = await client.put(
        f"/api/Organization/{org_id}/change-role/{member['id']}", headers=headers, json={"role": "User"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["role"] == "User"
    assert (await client.get("/api/user/me", headers=member_headers)).status_code == 401
    me = (await client.get("/api/user/me", headers=await headers_for(client, member["email"]))).json()
    assert me["role"] == "User" and me["permissions"]["DEVICE_MANAGEMENT_CRUDL"] == ["Read"]


@pytest.mark.parametrize(
    ("kind", "role"),
    [("Developer", "SubBuyer"), ("Developer", "Admin"), ("Buyer", "OrganizationAdmin"), ("Buyer", "Nobody")],
)
async def test_change_role_to_a_role_outside_the_organization_type_is_400(client, runtime, kind, role):
    owner, headers = await new_organization(client, kind)
    member = await add_member(runtime, owner["organization"]["id"], "User")
    resp = await client.put(
        f"/api/Organization/{owner['organization']['id']}/change-role/{member['id']}",
        headers=headers,
        json={"role": role},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"][0]["field"] == "role" and kind in resp.json()["details"][0]["message"]


async def test_change_role_refusals(client, runtime):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "DeviceOwner")
    other, other_headers = await new_organization(client)
    outsider = await add_member(runtime, other["organization"]["id"], "User")
    url = f"/api/Organization/{org_id}/change-role"

    assert (await client.put(f"{url}/{member['id']}", json={})).status_code == 401
    missing = await client.put(f"{url}/{member['id']}", headers=headers, json={})
    assert missing.status_code == 400 and missing.json()["details"][0]["field"] == "role"
    own = await client.put(f"{url}/{owner['id']}", headers=headers, json={"role": "User"})
    assert own.status_code == 400 and "your own" in own.json()["message"]
    not_member = await client.put(f"{url}/{outsider['id']}", headers=headers, json={"role": "User"})
    assert not_member.status_code == 404
    assert (await client.put(f"{url}/987654321", headers=headers, json={"role": "User"})).status_code == 404
    foreign = await client.put(f"{url}/{member['id']}", headers=other_headers, json={"role": "User"})
    assert foreign.status_code == 403
    device_owner = await client.put(
        f"{url}/{member['id']}", headers=await headers_for(client, member["email"]), json={"role": "OrganizationAdmin"}
    )
    assert device_owner.status_code == 403 and "ORGANIZATION_MANAGEMENT_CRUDL" in device_owner.json()["message"]
    assert await runtime.pool.fetchval("SELECT role FROM users WHERE id = $1", member["id"]) == "DeviceOwner"


# -- remove a member -------------------------------------------------------------------------------------------


async def test_remove_member_revokes_their_tokens_and_login(client, runtime):
    owner, headers = await new_organization(client, "Buyer")
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "SubBuyer")
    member_headers = await headers_for(client, member["email"])

    resp = await client.post(f"/api/Organization/{org_id}/remove-member/{member['id']}", headers=headers)
    assert resp.status_code == 200, resp.text
    assert (await client.get("/api/user/me", headers=member_headers)).status_code == 401
    assert (await login(client, member["email"])).status_code == 403
    listed = (await client.get("/api/Organization/users", headers=headers)).json()
    assert [u["id"] for u in listed["users"]] == [owner["id"]]
    again = await client.post(f"/api/Organization/{org_id}/remove-member/{member['id']}", headers=headers)
    assert again.status_code == 404


async def test_remove_member_refusals(client, runtime):
    owner, headers = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "User")
    _, other_headers = await new_organization(client)
    url = f"/api/Organization/{org_id}/remove-member"

    assert (await client.post(f"{url}/{member['id']}")).status_code == 401
    assert (await client.post(f"{url}/{owner['id']}", headers=headers)).status_code == 400
    assert (await client.post(f"{url}/{member['id']}", headers=other_headers)).status_code == 403
    assert (
        await client.post(f"{url}/{owner['id']}", headers=await headers_for(client, member["email"]))
    ).status_code == 403
    assert await runtime.pool.fetchval("SELECT status FROM users WHERE id = $1", member["id"]) == "Active"


# -- admin listings ----------------------------------------------------------------------------------------------


async def test_admin_lists_every_user_a_page_at_a_time(client, admin, runtime):
    owner, _ = await new_organization(client)
    org_id = owner["organization"]["id"]
    member = await add_member(runtime, org_id, "User")
    everyone = (await client.get("/api/admin/users?limit=100", headers=admin)).json()
    assert everyone["totalCount"] >= 3 and everyone["currentPage"] == 1
    assert everyone["totalPages"] == (everyone["totalCount"] + 99) // 100
    one_org = (await client.get(f"/api/admin/users?organizationId={org_id}", headers=admin)).json()
    assert [u["id"] for u in one_org["users"]] == [owner["id"], member["id"]] and one_org["totalCount"] == 2
    second = (await client.get(f"/api/admin/users?organizationId={org_id}&pageNumber=2&limit=1", headers=admin)).json()
    assert [u["id"] for u in second["users"]] == [member["id"]] and second["totalPages"] == 2


async def test_admin_lists_organizations_filtered_by_type(client, admin):
    buyer, _ = await new_organization(client, "Buyer")
    resp = await client.get("/api/admin/organizations?organizationType=Buyer&limit=100", headers=admin)
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert {o["organizationType"] for o in page["organizations"]} == {"Buyer"}
    assert buyer["organization"]["id"] in [o["id"] for o in page["organizations"]]
    assert (await client.get("/api/admin/organizations?organizationType=Seller", headers=admin)).status_code == 400


@pytest.mark.parametrize("path", ["/api/admin/users", "/api/admin/organizations"])
async def test_admin_listings_are_for_the_admin_only(client, path):
    _, headers = await new_organization(
        client
    )  # an OrganizationAdmin holds USER/ORGANIZATION Read, but not the Admin role
    assert (await client.get(path)).status_code == 401
    resp = await client.get(path, headers=headers)
    assert resp.status_code == 403 and "Admin" in resp.json()["message"]
