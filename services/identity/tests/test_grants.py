"""ACL modules and grants an Admin administers; how grants reach (and leave) access tokens; identity's OpenAPI access rules."""

import uuid

import jwt
import pytest

from .accounts import add_member, grant_to_user, headers_for, new_organization

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture(scope="module")
async def organization(client, runtime):
    """A Developer organization: (its admin's registration answer, their headers, a plain User member)."""
    owner, headers = await new_organization(client)
    member = await add_member(runtime, owner["organization"]["id"], "User")
    return owner, headers, member


def perms(headers) -> dict:
    return jwt.decode(headers["Authorization"][7:], options={"verify_signature": False})["perms"]


async def new_module(client, admin, permissions=("Read", "Write", "Update", "Delete"), **overrides) -> dict:
    body = {
        "name": f"TEST_{uuid.uuid4().hex[:8].upper()}_CRUDL",
        "description": "a module for one test",
        "permissions": list(permissions),
        **overrides,
    }
    resp = await client.post("/api/aclmodules", headers=admin, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def is_live(client, headers) -> bool:
    status = (await client.get("/api/user/me", headers=headers)).status_code
    assert status in (200, 401)
    return status == 200


# -- ACL modules --------------------------------------------------------------------------------------------------


async def test_admin_creates_lists_and_changes_modules(client, admin):
    created = await new_module(client, admin, ["Write", "Read"])
    assert (created["permissions"], created["status"], created["description"]) == (
        ["Read", "Write"],
        "Enable",
        "a module for one test",
    )
    assert (await client.get(f"/api/aclmodules/{created['id']}", headers=admin)).json() == created

    first = (await client.get("/api/aclmodules?limit=100", headers=admin)).json()
    names = [m["name"] for m in first["aclmodules"]]
    assert names[:2] == ["USER_MANAGEMENT_CRUDL", "DEVICE_MANAGEMENT_CRUDL"] and created["name"] in names
    assert first["totalCount"] == len(names) and first["totalPages"] == 1
    second = (await client.get("/api/aclmodules?limit=2&pageNumber=2", headers=admin)).json()
    assert [m["name"] for m in second["aclmodules"]] == names[2:4]

    changed = await client.put(
        f"/api/aclmodules/{created['id']}", headers=admin, json={"permissions": ["Read", "Update"], "status": "Disable"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["permissions"], changed.json()["status"], changed.json()["description"]) == (
        ["Read", "Update"],
        "Disable",
        "a module for one test",
    )
    described = await client.put(
        f"/api/aclmodules/{created['id']}", headers=admin, json={"description": "now described"}
    )
    assert (described.json()["description"], described.json()["permissions"]) == ("now described", ["Read", "Update"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "lower_case", "permissions": ["Read"]}, "name"),
        ({"name": "X", "permissions": ["Read"]}, "name"),
        ({"name": "GOOD_NAME_CRUDL", "permissions": []}, "permissions"),
        ({"name": "GOOD_NAME_CRUDL", "permissions": ["Fly"]}, "permissions.0"),
        ({"name": "GOOD_NAME_CRUDL", "permissions": ["Read"], "status": "Maybe"}, "status"),
        ({"permissions": ["Read"]}, "name"),
    ],
)
async def test_module_validation(client, admin, body, field):
    resp = await client.post("/api/aclmodules", headers=admin, json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"][0]["field"] == field


async def test_module_conflicts_and_unknown_ids(client, admin):
    created = await new_module(client, admin)
    duplicate = await client.post(
        "/api/aclmodules", headers=admin, json={"name": created["name"], "permissions": ["Read"]}
    )
    assert duplicate.status_code == 409 and created["name"] in duplicate.json()["message"]
    assert (
        await client.post(
            "/api/aclmodules", headers=admin, json={"name": "USER_MANAGEMENT_CRUDL", "permissions": ["Read"]}
        )
    ).status_code == 409
    assert (await client.get("/api/aclmodules/987654", headers=admin)).status_code == 404
    assert (await client.put("/api/aclmodules/987654", headers=admin, json={"status": "Disable"})).status_code == 404
    empty = await client.put(f"/api/aclmodules/{created['id']}", headers=admin, json={})
    assert empty.status_code == 400 and "give description, permissions or status" in empty.text
    assert (
        await client.put(f"/api/aclmodules/{created['id']}", headers=admin, json={"permissions": []})
    ).status_code == 400


# -- grants ----------------------------------------------------------------------------------------------------------


async def test_a_user_grant_shows_in_the_next_token_and_a_reduction_revokes_the_old_one(client, admin, organization):
    _, _, member = organization
    before = await headers_for(client, member["email"])
    assert perms(before)["DEVICE_MANAGEMENT_CRUDL"] == "R"  # a User only reads devices

    resp = await grant_to_user(client, admin, member["id"], "DEVICE_MANAGEMENT_CRUDL", ["Write", "Update"])
    assert resp.status_code == 201, resp.text
    grant = resp.json()
    assert (
        grant["moduleName"],
        grant["aclmodulesId"],
        grant["entityType"],
        grant["entityId"],
        grant["permissions"],
    ) == ("DEVICE_MANAGEMENT_CRUDL", 2, "User", member["id"], ["Write", "Update"])
    assert await is_live(client, before)  # an addition ends no session
    granted = await headers_for(client, member["email"])
    assert perms(granted)["DEVICE_MANAGEMENT_CRUDL"] == "RWU"
    me = (await client.get("/api/user/me", headers=granted)).json()
    assert me["permissions"]["DEVICE_MANAGEMENT_CRUDL"] == ["Read", "Write", "Update"]
    listed = (await client.get(f"/api/permission?entityType=User&entityId={member['id']}", headers=admin)).json()
    assert listed["permissions"] == [grant] and listed["totalCount"] == 1

    # Reduced: the token holding Update is refused at once; the next one carries what is left.
    reduced = await client.put(f"/api/permission/{grant['id']}", headers=admin, json={"permissions": ["Write"]})
    assert reduced.status_code == 200 and reduced.json()["permissions"] == ["Write"]
    assert not await is_live(client, granted)
    after = await headers_for(client, member["email"])
    assert perms(after)["DEVICE_MANAGEMENT_CRUDL"] == "RW"

    # Widened again: no session ends. Removed: sessions end, the role's grant is all that is left.
    assert (
        await client.put(f"/api/permission/{grant['id']}", headers=admin, json={"permissions": ["Write", "Delete"]})
    ).status_code == 200
    assert await is_live(client, after)
    removed = await client.delete(f"/api/permission/{grant['id']}", headers=admin)
    assert removed.status_code == 200, removed.text
    assert not await is_live(client, after)
    assert perms(await headers_for(client, member["email"]))["DEVICE_MANAGEMENT_CRUDL"] == "R"
    assert (await client.delete(f"/api/permission/{grant['id']}", headers=admin)).status_code == 404


async def test_a_role_grant_reaches_every_holder_of_the_role(client, admin, runtime, organization):
    owner, _, member = organization
    other = await add_member(runtime, owner["organization"]["id"], "User")
    module = await new_module(client, admin, ["Read", "Write"])
    resp = await client.post(
        "/api/permission",
        headers=admin,
        json={"aclmodulesId": module["id"], "entityType": "Role", "entityId": "User", "permissions": ["Read"]},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["entityId"] == "User"
    tokens = [await headers_for(client, u["email"]) for u in (member, other)]
    assert all(perms(t)[module["name"]] == "R" for t in tokens)
    by_module = (await client.get(f"/api/permission?moduleName={module['name']}", headers=admin)).json()
    assert [g["id"] for g in by_module["permissions"]] == [resp.json()["id"]]
    assert (
        await client.get(f"/api/permission?aclmodulesId={module['id']}&entityType=Role", headers=admin)
    ).json() == by_module

    owner_headers = await headers_for(client, owner["email"])  # an OrganizationAdmin: not a holder
    assert (await client.delete(f"/api/permission/{resp.json()['id']}", headers=admin)).status_code == 200
    assert [await is_live(client, t) for t in tokens] == [False, False]
    assert await is_live(client, owner_headers)
    assert module["name"] not in perms(await headers_for(client, member["email"]))


async def test_a_module_offering_less_or_disabled_revokes_its_holders(client, admin, runtime, organization):
    owner, _, _ = organization
    member = await add_member(runtime, owner["organization"]["id"], "DeviceOwner")
    module = await new_module(client, admin)
    grant = (await grant_to_user(client, admin, str(member["id"]), module["name"], ["Read", "Write", "Delete"])).json()
    holder = await headers_for(client, member["email"])
    bystander = await headers_for(client, owner["email"])
    assert perms(holder)[module["name"]] == "RWD"

    # No longer offering Update takes nothing from anyone; no longer offering Delete does.
    assert (
        await client.put(
            f"/api/aclmodules/{module['id']}", headers=admin, json={"permissions": ["Read", "Write", "Delete"]}
        )
    ).status_code == 200
    assert await is_live(client, holder)
    assert (
        await client.put(f"/api/aclmodules/{module['id']}", headers=admin, json={"permissions": ["Read", "Write"]})
    ).status_code == 200
    assert not await is_live(client, holder) and await is_live(client, bystander)
    assert (await client.get(f"/api/permission?entityType=User&entityId={member['id']}", headers=admin)).json()[
        "permissions"
    ][0]["permissions"] == ["Read", "Write"]
    holder = await headers_for(client, member["email"])
    assert perms(holder)[module["name"]] == "RW"

    assert (
        await client.put(f"/api/aclmodules/{module['id']}", headers=admin, json={"status": "Disable"})
    ).status_code == 200
    assert not await is_live(client, holder)
    holder = await headers_for(client, member["email"])
    assert module["name"] not in perms(holder)
    assert (
        await client.put(f"/api/aclmodules/{module['id']}", headers=admin, json={"status": "Enable"})
    ).status_code == 200
    assert await is_live(client, holder)  # enabling adds
    assert perms(await headers_for(client, member["email"]))[module["name"]] == "RW"
    assert grant["id"] in [
        g["id"]
        for g in (await client.get(f"/api/permission?moduleName={module['name']}", headers=admin)).json()["permissions"]
    ]


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        (
            {"moduleName": "NO_SUCH_MODULE", "entityType": "Role", "entityId": "User"},
            "moduleName",
            "no such ACL module",
        ),
        ({"aclmodulesId": 987654, "entityType": "Role", "entityId": "User"}, "aclmodulesId", "no such ACL module"),
        (
            {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "entityType": "Role", "entityId": "Nobody"},
            "entityId",
            "one of OrganizationAdmin",
        ),
        (
            {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "entityType": "Role", "entityId": "Admin"},
            "entityId",
            "Admin holds every action",
        ),
        (
            {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "entityType": "Role", "entityId": "ApiUser"},
            "entityId",
            "admin's approval",
        ),
        (
            {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "entityType": "User", "entityId": 987654321},
            "entityId",
            "no user with id 987654321",
        ),
        ({"moduleName": "DEVICE_MANAGEMENT_CRUDL", "entityType": "User", "entityId": "someone"}, "entityId", "user id"),
        ({"moduleName": "DEVICE_MANAGEMENT_CRUDL", "entityType": "Group", "entityId": "User"}, "entityType", ""),
        (
            {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "aclmodulesId": 2, "entityType": "Role", "entityId": "User"},
            "body",
            "one of them",
        ),
        ({"entityType": "Role", "entityId": "User"}, "body", "one of them"),
    ],
)
async def test_grant_validation(client, admin, body, field, text):
    resp = await client.post("/api/permission", headers=admin, json={"permissions": ["Read"], **body})
    assert resp.status_code == 400, resp.text
    detail = resp.json()["details"][0]
    assert detail["field"] == field and text in detail["message"]


async def test_grant_refusals_name_what_is_valid(client, admin, runtime, organization):
    owner, _, member = organization
    module = await new_module(client, admin, ["Read"])
    offered = await client.post(
        "/api/permission",
        headers=admin,
        json={
            "moduleName": module["name"],
            "entityType": "Role",
            "entityId": "DeviceOwner",
            "permissions": ["Read", "Delete"],
        },
    )
    assert offered.status_code == 400 and offered.json()["details"] == [
        {"field": "permissions", "message": f"{module['name']} offers only Read"}
    ]

    body = {"moduleName": module["name"], "entityType": "User", "entityId": member["id"], "permissions": ["Read"]}
    first = await client.post("/api/permission", headers=admin, json=body)
    assert first.status_code == 201
    again = await client.post("/api/permission", headers=admin, json=body)
    assert again.status_code == 409 and f"PUT /api/permission/{first.json()['id']}" in again.json()["message"]
    assert (
        await client.post(
            "/api/permission", headers=admin, json={**body, "entityType": "Role", "entityId": "DeviceOwner"}
        )
    ).status_code == 201
    assert (
        await client.post(
            "/api/permission", headers=admin, json={**body, "entityType": "Role", "entityId": "DeviceOwner"}
        )
    ).status_code == 409

    wider = await client.put(f"/api/permission/{first.json()['id']}", headers=admin, json={"permissions": ["Write"]})
    assert wider.status_code == 400 and "offers only Read" in wider.text
    assert (
        await client.put("/api/permission/987654321", headers=admin, json={"permissions": ["Read"]})
    ).status_code == 404
    assert (
        await client.put(f"/api/permission/{first.json()['id']}", headers=admin, json={"permissions": []})
    ).status_code == 400
    assert (await client.get("/api/permission?entityType=Group", headers=admin)).status_code == 400

    # An API user's modules come from its approved request: not granted or changed here.
    api_user = await add_member(runtime, owner["organization"]["id"], "ApiUser")
    refused = await client.post("/api/permission", headers=admin, json={**body, "entityId": api_user["id"]})
    assert refused.status_code == 400 and "approval" in refused.json()["details"][0]["message"]
    approved = await runtime.pool.fetchval(
        "INSERT INTO user_permissions (user_id, module, actions) VALUES ($1, 'DEVICE_MANAGEMENT_CRUDL', 'R') RETURNING id",
        api_user["id"],
    )
    assert (
        await client.put(f"/api/permission/{approved}", headers=admin, json={"permissions": ["Read"]})
    ).status_code == 409
    assert (await client.delete(f"/api/permission/{approved}", headers=admin)).status_code == 409


async def test_only_the_admin_administers_modules_and_grants(client, admin, organization):
    owner, headers, _ = organization
    # Even a PERMISSION/ACL module grant does not make someone an Admin.
    for module in ("PERMISSION_MANAGEMENT_CRUDL", "ACL_MODULE_MANAGEMENT_CRUDL"):
        body = {
            "moduleName": module,
            "entityType": "User",
            "entityId": owner["id"],
            "permissions": ["Read", "Write", "Update", "Delete"],
        }
        assert (await client.post("/api/permission", headers=admin, json=body)).status_code == 201
    powerful = await headers_for(client, owner["email"])
    assert perms(powerful)["PERMISSION_MANAGEMENT_CRUDL"] == "RWUD"
    calls = [
        ("POST", "/api/aclmodules", {"name": "SNEAKY_CRUDL", "permissions": ["Read"]}),
        ("GET", "/api/aclmodules", None),
        ("GET", "/api/aclmodules/1", None),
        ("PUT", "/api/aclmodules/1", {"status": "Disable"}),
        (
            "POST",
            "/api/permission",
            {
                "moduleName": "DEVICE_MANAGEMENT_CRUDL",
                "entityType": "Role",
                "entityId": "User",
                "permissions": ["Delete"],
            },
        ),
        ("GET", "/api/permission", None),
        ("PUT", "/api/permission/1", {"permissions": ["Read"]}),
        ("DELETE", "/api/permission/1", None),
    ]
    for method, path, body in calls:
        assert (await client.request(method, path, json=body)).status_code == 401, (method, path)
        for who in (headers, powerful):
            resp = await client.request(method, path, headers=who, json=body)
            assert resp.status_code == 403 and "Only Admin" in resp.json()["message"], (method, path, resp.text)
    assert (await client.get("/api/aclmodules/1", headers=admin)).json()["status"] == "Enable"


# -- OpenAPI ------------------------------------------------------------------------------------------------------------


async def test_openapi_states_every_endpoints_access_rule(runtime):
    operations = {
        (method.upper(), path): op for path, ops in runtime.app.openapi()["paths"].items() for method, op in ops.items()
    }
    missing = [key for key, op in operations.items() if op.get("x-access") not in ("public", "signed-in")]
    assert missing == []
    admin_only = [
        ("GET", "/api/admin/users"),
        ("GET", "/api/admin/organizations"),
        ("GET", "/api/admin/apiusers"),
        ("POST", "/api/aclmodules"),
        ("GET", "/api/aclmodules"),
        ("GET", "/api/aclmodules/{id}"),
        ("PUT", "/api/aclmodules/{id}"),
        ("POST", "/api/permission"),
        ("GET", "/api/permission"),
        ("PUT", "/api/permission/{id}"),
        ("DELETE", "/api/permission/{id}"),
        ("PUT", "/api/permission/module/verify/ByAdmin/{apiuserId}"),
    ]
    for key in admin_only:
        assert operations[key]["x-roles"] == ["Admin"], key
    for key in [("POST", "/api/permission/module/apiuser/request"), ("POST", "/api/user/apiuser/rotate-key")]:
        assert operations[key]["x-roles"] == ["ApiUser"], key
    assert operations[("GET", "/api/Organization/apiuser/all_organization")]["x-roles"] == ["Admin", "ApiUser"]
    assert operations[("POST", "/api/permission")]["x-permissions"] == [
        {"module": "PERMISSION_MANAGEMENT_CRUDL", "action": "Write"}
    ]
    for key in [
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/token"),
        ("POST", "/api/user/registerWithOrganization"),
        ("GET", "/.well-known/jwks.json"),
    ]:
        assert operations[key]["x-access"] == "public", key
    assert operations[("GET", "/api/user/me")]["x-access"] == "signed-in"
