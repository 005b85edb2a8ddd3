"""API users: the private key once, private_key_jwt client assertions, admin-approved module permissions."""

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opendrec_kit.testing import wait_for_event

from .accounts import new_organization

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def registration(**overrides) -> dict:
    tag = uuid.uuid4().hex[:10]
    return {
        "firstName": "Api",
        "lastName": "User",
        "email": f"apiuser-{tag}@example.org",
        "organizationType": "apiuser",
        "password": "ApiUser123",
        "confirmPassword": "ApiUser123",
        "orgName": f"Integrator-{tag}",
        "orgAddress": "Pune",
        "secretKey": "AP1234",
        **overrides,
    }


async def register(client) -> dict:
    resp = await client.post("/api/user/register", json=registration())
    assert resp.status_code == 201, resp.text
    return resp.json()


def assertion(api_user: dict, key=None, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": api_user["apiUserId"],
        "sub": api_user["apiUserId"],
        "aud": "opendrec-identity",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    key = key or serialization.load_pem_private_key(api_user["privateKey"].encode(), password=None)
    return jwt.encode(claims, key, algorithm="EdDSA")


async def token_call(client, signed: str, **overrides):
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **overrides,
    }
    return await client.post("/api/auth/token", data=form)


async def test_registration_returns_the_private_key_once_and_stores_only_the_public_key(
    client, runtime, kafka_bootstrap
):
    body = registration()
    resp = await client.post("/api/user/register", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.headers["cache-control"] == "no-store"
    created = resp.json()
    assert (created["role"], created["organization"]["organizationType"]) == ("ApiUser", "ApiUser")
    assert created["privateKey"].startswith("-----BEGIN PRIVATE KEY-----")
    stored = await runtime.pool.fetchrow("SELECT * FROM api_users WHERE id = $1", uuid.UUID(created["apiUserId"]))
    assert stored["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in str(dict(stored))
    private = serialization.load_pem_private_key(created["privateKey"].encode(), password=None)
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert public == stored["public_key_pem"]

    login = await client.post("/api/auth/login", json={"username": body["email"], "password": body["password"]})
    token = login.json()["accessToken"]
    me = await client.get("/api/user/me", headers={"Authorization": f"Bearer {token}"})
    assert "privateKey" not in me.text and "PRIVATE" not in me.text
    assert jwt.decode(token, options={"verify_signature": False})["apiUserId"] == created["apiUserId"]

    envelope, _ = await wait_for_event(
        kafka_bootstrap, "organization.registered", lambda e: e["payload"].get("name") == body["orgName"]
    )
    assert (
        envelope["payload"]["organization_type"] == "ApiUser"
        and envelope["payload"]["api_user_id"] == created["apiUserId"]
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"organizationType": "Seller"}, "organizationType"),
        ({"organizationType": "Developer"}, "body"),  # without api_user_id
        ({"api_user_id": "00000000-0000-0000-0000-000000000001"}, "body"),  # an ApiUser is under nobody
        ({"email": "x"}, "email"),
        ({"secretKey": "abc"}, "secretKey"),
        ({"confirmPassword": "Other123"}, "confirmPassword"),
    ],
)
async def test_registration_validation(client, overrides, field):
    resp = await client.post("/api/user/register", json=registration(**overrides))
    assert resp.status_code == 400, resp.text
    assert [d["field"] for d in resp.json()["details"]] == [field]


async def test_registration_conflicts(client):
    # A known e-mail is answered as a fresh registration (test_registration_disclosure); a taken name is refused.
    created = await register(client)
    resp = await client.post("/api/user/register", json=registration(orgName=created["organization"]["name"].upper()))
    assert resp.status_code == 409 and [d["field"] for d in resp.json()["details"]] == ["orgName"]


async def test_a_signed_assertion_gets_a_token_once(client):
    api_user = await register(client)
    signed = assertion(api_user)
    resp = await token_call(client, signed)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert (
        answer["token_type"] == "Bearer"
        and answer["expires_in"] == 3600
        and answer["access_token"] == answer["accessToken"]
    )
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert (claims["role"], claims["apiUserId"], claims["sub"]) == (
        "ApiUser",
        api_user["apiUserId"],
        str(api_user["id"]),
    )
    assert claims["perms"] == {}  # nothing approved yet
    me = await client.get("/api/user/me", headers={"Authorization": f"Bearer {answer['access_token']}"})
    assert me.status_code == 200

    replay = await token_call(client, signed)
    assert replay.status_code == 401 and "already used" in replay.json()["message"]


async def test_an_assertion_id_is_spent_per_api_user_only(client):
    first, second = await register(client), await register(client)
    jti = uuid.uuid4().hex
    assert (await token_call(client, assertion(first, jti=jti))).status_code == 200
    # the same id, used by another API user (reused or guessed): theirs is not a replay
    assert (await token_call(client, assertion(second, jti=jti))).status_code == 200
    again = await token_call(client, assertion(first, jti=jti))
    assert again.status_code == 401 and "already used" in again.json()["message"]


async def test_json_bodies_work_too(client):
    api_user = await register(client)
    resp = await client.post(
        "/api/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(api_user),
        },
    )
    assert resp.status_code == 200, resp.text


async def test_bad_assertions_are_refused(client):
    api_user = await register(client)
    other = await register(client)
    now = int(time.time())
    cases = {
        "another key": assertion(api_user, key=Ed25519PrivateKey.generate()),
        "another user's key": assertion(
            api_user, key=serialization.load_pem_private_key(other["privateKey"].encode(), password=None)
        ),
        "expired": assertion(api_user, iat=now - 120, exp=now - 60),
        "too long-lived": assertion(api_user, exp=now + 3600),
        "wrong audience": assertion(api_user, aud="somebody-else"),
        "sub is not iss": assertion(api_user, sub=other["apiUserId"]),
        "unknown client": assertion(api_user, iss=str(uuid.uuid4())),
        "not a uuid": assertion(api_user, iss="nobody"),
        "garbage": "not-a-jwt",
    }
    for name, signed in cases.items():
        resp = await token_call(client, signed)
        assert resp.status_code == 401, (name, resp.text)
        assert resp.json()["message"].startswith("invalid_client"), name
    no_jti = assertion(api_user)
    claims = jwt.decode(no_jti, options={"verify_signature": False})
    del claims["jti"]
    signed = jwt.encode(
        claims, serialization.load_pem_private_key(api_user["privateKey"].encode(), password=None), algorithm="EdDSA"
    )
    assert (await token_call(client, signed)).status_code == 401


async def test_the_token_request_itself_is_checked(client):
    api_user = await register(client)
    assert (await token_call(client, assertion(api_user), grant_type="password")).status_code == 400
    assert (await token_call(client, assertion(api_user), client_assertion_type="basic")).status_code == 400
    missing = await client.post("/api/auth/token", data={"grant_type": "client_credentials"})
    assert missing.status_code == 400
    assert {d["field"] for d in missing.json()["details"]} == {"client_assertion_type", "client_assertion"}


async def api_user_headers(client, api_user) -> dict[str, str]:
    resp = await token_call(client, assertion(api_user))
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def perms(headers) -> dict:
    return jwt.decode(headers["Authorization"][7:], options={"verify_signature": False})["perms"]


async def test_requested_modules_are_granted_only_once_an_admin_approves(client, admin):
    api_user = await register(client)
    headers = await api_user_headers(client, api_user)
    request = [
        {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "permissions": ["Read", "Write"]},
        {"aclmodulesId": 3, "permissions": ["Read"]},
    ]
    resp = await client.post("/api/permission/module/apiuser/request", headers=headers, json=request)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "apiUserId": api_user["apiUserId"],
        "status": "Request",
        "modules": {"DEVICE_MANAGEMENT_CRUDL": ["Read", "Write"], "READS_MANAGEMENT_CRUDL": ["Read"]},
    }
    assert perms(await api_user_headers(client, api_user)) == {}  # asked, not granted

    url = f"/api/permission/module/verify/ByAdmin/{api_user['apiUserId']}"
    approved = await client.put(url, headers=admin, json={"status": "Active"})
    assert approved.status_code == 200 and approved.json()["status"] == "Active"
    assert (
        await client.get("/api/user/me", headers=headers)
    ).status_code == 401  # tokens with the old permissions are revoked
    granted = await api_user_headers(client, api_user)
    assert perms(granted) == {"DEVICE_MANAGEMENT_CRUDL": "RW", "READS_MANAGEMENT_CRUDL": "R"}

    # A later edit withdraws everything until it is approved again.
    edit = await client.post(
        "/api/permission/module/apiuser/request",
        headers=granted,
        json=[{"moduleName": "DEVICE_MANAGEMENT_CRUDL", "permissions": ["Read", "Write", "Update"]}],
    )
    assert edit.status_code == 200 and edit.json()["status"] == "Request"
    assert perms(await api_user_headers(client, api_user)) == {}
    assert (await client.put(url, headers=admin, json={"status": "Active"})).status_code == 200
    assert perms(await api_user_headers(client, api_user)) == {"DEVICE_MANAGEMENT_CRUDL": "RWU"}

    deactivated = await client.put(url, headers=admin, json={"status": "Deactive"})
    assert deactivated.status_code == 200
    assert perms(await api_user_headers(client, api_user)) == {}


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ([{"moduleName": "NO_SUCH_MODULE", "permissions": ["Read"]}], "0"),
        ([{"aclmodulesId": 987, "permissions": ["Read"]}], "0"),
        ([{"moduleName": "DEVICE_MANAGEMENT_CRUDL", "permissions": ["Fly"]}], "0.permissions.0"),
        ([{"moduleName": "DEVICE_MANAGEMENT_CRUDL", "permissions": []}], "0.permissions"),
        ([{"permissions": ["Read"]}], "0"),
        ([], "body"),
        # access administration is for admins only
        (
            [
                {"moduleName": "DEVICE_MANAGEMENT_CRUDL", "permissions": ["Read"]},
                {"moduleName": "PERMISSION_MANAGEMENT_CRUDL", "permissions": ["Read"]},
            ],
            "1",
        ),
        ([{"moduleName": "ACL_MODULE_MANAGEMENT_CRUDL", "permissions": ["Write"]}], "0"),
    ],
)
async def test_permission_request_validation(client, request_body, field):
    headers = await api_user_headers(client, await register(client))
    resp = await client.post("/api/permission/module/apiuser/request", headers=headers, json=request_body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["details"][0]["field"] == field


async def test_permission_refusals(client, admin):
    api_user = await register(client)
    headers = await api_user_headers(client, api_user)
    body = [{"moduleName": "DEVICE_MANAGEMENT_CRUDL", "permissions": ["Read"]}]
    assert (await client.post("/api/permission/module/apiuser/request", json=body)).status_code == 401
    assert (
        await client.post("/api/permission/module/apiuser/request", headers=admin, json=body)
    ).status_code == 403  # not an API user

    url = f"/api/permission/module/verify/ByAdmin/{api_user['apiUserId']}"
    assert (await client.put(url, json={"status": "Active"})).status_code == 401
    assert (
        await client.put(url, headers=headers, json={"status": "Active"})
    ).status_code == 403  # an API user cannot approve itself
    nothing = await client.put(url, headers=admin, json={"status": "Active"})
    assert nothing.status_code == 409
    assert (await client.put(url, headers=admin, json={"status": "Maybe"})).status_code == 400
    assert (
        await client.put(
            f"/api/permission/module/verify/ByAdmin/{uuid.uuid4()}", headers=admin, json={"status": "Active"}
        )
    ).status_code == 404
    assert (
        await client.put("/api/permission/module/verify/ByAdmin/not-a-uuid", headers=admin, json={"status": "Active"})
    ).status_code == 400


async def test_key_rotation_invalidates_the_old_key_and_tokens(client):
    api_user = await register(client)
    headers = await api_user_headers(client, api_user)
    resp = await client.post("/api/user/apiuser/rotate-key", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    rotated = {**api_user, "privateKey": resp.json()["privateKey"]}
    assert rotated["privateKey"] != api_user["privateKey"]
    assert (await client.get("/api/user/me", headers=headers)).status_code == 401
    assert (await token_call(client, assertion(api_user))).status_code == 401  # old key
    assert (await token_call(client, assertion(rotated))).status_code == 200


async def test_the_private_key_downloads_as_a_pem_file_that_signs_accepted_assertions(client, runtime):
    resp = await client.post("/api/user/register", headers={"Accept": "application/x-pem-file"}, json=registration())
    assert resp.status_code == 201, resp.text
    api_user_id = resp.headers["x-api-user-id"]
    assert resp.headers["content-type"].startswith("application/x-pem-file")
    assert resp.headers["content-disposition"] == f'attachment; filename="opendrec-apiuser-{api_user_id}.pem"'
    assert resp.headers["cache-control"] == "no-store"
    assert resp.text.startswith("-----BEGIN PRIVATE KEY-----")
    assert await runtime.pool.fetchval("SELECT count(*) FROM api_users WHERE id = $1", uuid.UUID(api_user_id)) == 1
    downloaded = {"apiUserId": api_user_id, "privateKey": resp.text}
    token = await token_call(client, assertion(downloaded))
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    rotated = await client.post("/api/user/apiuser/rotate-key?download=pem", headers=headers)
    assert rotated.status_code == 200, rotated.text
    assert (
        rotated.headers["content-type"].startswith("application/x-pem-file")
        and rotated.headers["x-api-user-id"] == api_user_id
    )
    assert "attachment" in rotated.headers["content-disposition"] and rotated.text != resp.text
    assert (await token_call(client, assertion(downloaded))).status_code == 401
    assert (
        await token_call(client, assertion({"apiUserId": api_user_id, "privateKey": rotated.text}))
    ).status_code == 200


async def test_only_an_api_user_registration_downloads_a_key(client, runtime, admin):
    api_user = await register(client)
    body = organization_under(api_user)
    resp = await client.post("/api/user/register?download=pem", headers=admin, json=body)
    assert resp.status_code == 400 and "ApiUser" in resp.json()["message"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM users WHERE email = $1", body["email"]) == 0
    assert (await client.post("/api/user/register?download=zip", json=registration())).status_code == 400


async def test_key_rotation_is_for_api_users_only(client, admin):
    assert (await client.post("/api/user/apiuser/rotate-key")).status_code == 401
    assert (await client.post("/api/user/apiuser/rotate-key", headers=admin)).status_code == 403


async def test_no_private_key_or_assertion_reaches_the_logs(client, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        api_user = await register(client)
        signed = assertion(api_user)
        await token_call(client, signed)
        await token_call(client, signed)  # a replay
        rotated = (
            await client.post("/api/user/apiuser/rotate-key", headers=await api_user_headers(client, api_user))
        ).json()
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name not in ("httpx", "mail.log"))
    assert "registered with /api/user/register" in logged
    body = api_user["privateKey"].splitlines()[1]
    for secret in (body, rotated["privateKey"].splitlines()[1], signed, signed.split(".")[2], "ApiUser123"):
        assert secret not in logged


# -- organizations under an API user ------------------------------------------------------------------------


async def approved_api_user(client, admin, modules) -> tuple[dict, dict]:
    api_user = await register(client)
    headers = await api_user_headers(client, api_user)
    request = [{"moduleName": m, "permissions": p} for m, p in modules.items()]
    assert (
        await client.post("/api/permission/module/apiuser/request", headers=headers, json=request)
    ).status_code == 200
    assert (
        await client.put(
            f"/api/permission/module/verify/ByAdmin/{api_user['apiUserId']}", headers=admin, json={"status": "Active"}
        )
    ).status_code == 200
    return api_user, await api_user_headers(client, api_user)


def organization_under(api_user: dict, kind: str = "Developer", **overrides) -> dict:
    return registration(organizationType=kind, api_user_id=api_user["apiUserId"], secretKey="DV0001", **overrides)


async def test_an_approved_api_user_registers_and_lists_its_organizations(client, admin, kafka_bootstrap):
    api_user, headers = await approved_api_user(client, admin, {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"]})
    dev = organization_under(api_user, "developer", orgName=f"Solar-{uuid.uuid4().hex[:8]}")
    resp = await client.post("/api/user/register", headers=headers, json=dev)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert (created["role"], created["organization"]["organizationType"], created["privateKey"]) == (
        "OrganizationAdmin",
        "Developer",
        None,
    )
    buyer = await client.post(
        "/api/user/register",
        headers=headers,
        json=organization_under(api_user, "Buyer", orgName=f"Wind-{uuid.uuid4().hex[:8]}"),
    )
    assert buyer.status_code == 201 and buyer.json()["role"] == "Buyer"

    for name, kind in ((dev["orgName"], "Developer"), (buyer.json()["organization"]["name"], "Buyer")):
        envelope, _ = await wait_for_event(
            kafka_bootstrap, "organization.registered", lambda e, name=name: e["payload"].get("name") == name
        )
        assert (envelope["payload"]["api_user_id"], envelope["payload"]["organization_type"]) == (
            api_user["apiUserId"],
            kind,
        )

    listed = (await client.get("/api/Organization/apiuser/all_organization", headers=headers)).json()
    assert [o["name"] for o in listed["organizations"]] == [dev["orgName"], buyer.json()["organization"]["name"]]
    assert listed["totalCount"] == 2
    filtered = (
        await client.get("/api/Organization/apiuser/all_organization?organizationName=SOLAR", headers=headers)
    ).json()
    assert [o["name"] for o in filtered["organizations"]] == [dev["orgName"]]
    paged = (
        await client.get("/api/Organization/apiuser/all_organization?limit=1&pageNumber=2", headers=headers)
    ).json()
    assert (paged["totalPages"], [o["name"] for o in paged["organizations"]]) == (
        2,
        [buyer.json()["organization"]["name"]],
    )

    # Another API user sees none of them; the admin sees them all.
    _, other_headers = await approved_api_user(client, admin, {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read"]})
    assert (await client.get("/api/Organization/apiuser/all_organization", headers=other_headers)).json()[
        "totalCount"
    ] == 0
    everyone = (await client.get("/api/Organization/apiuser/all_organization?limit=100", headers=admin)).json()
    assert dev["orgName"] in [o["name"] for o in everyone["organizations"]]


async def test_registering_under_an_api_user_refusals(client, admin, kafka_bootstrap):
    api_user = await register(client)
    unapproved = await api_user_headers(client, api_user)
    body = organization_under(api_user)
    assert (await client.post("/api/user/register", json=body)).status_code == 401
    denied = await client.post("/api/user/register", headers=unapproved, json=body)
    assert denied.status_code == 403 and "ORGANIZATION_MANAGEMENT_CRUDL" in denied.json()["message"]
    _, other = await approved_api_user(client, admin, {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"]})
    assert (await client.post("/api/user/register", headers=other, json=body)).status_code == 403  # not under itself
    assert (
        await client.post(
            "/api/user/register", headers=admin, json=organization_under({"apiUserId": str(uuid.uuid4())})
        )
    ).status_code == 404
    assert (await client.post("/api/user/register", headers=admin, json=body)).status_code == 201
    # Registered by an Admin, the organization still belongs to the API user (services read api_user_id to let it act).
    envelope, _ = await wait_for_event(
        kafka_bootstrap, "organization.registered", lambda e: e["payload"].get("name") == body["orgName"]
    )
    assert (envelope["payload"]["api_user_id"], envelope["payload"]["organization_type"]) == (
        api_user["apiUserId"],
        "Developer",
    )


async def test_only_api_users_list_api_user_organizations(client):
    assert (await client.get("/api/Organization/apiuser/all_organization")).status_code == 401
    tag = uuid.uuid4().hex[:8]
    dev = {
        **registration(),
        "organizationType": "Developer",
        "email": f"dev-{tag}@example.org",
        "orgName": f"Dev-{tag}",
    }
    assert (await client.post("/api/user/registerWithOrganization", json=dev)).status_code == 201
    token = (await client.post("/api/auth/login", json={"username": dev["email"], "password": dev["password"]})).json()[
        "accessToken"
    ]
    resp = await client.get("/api/Organization/apiuser/all_organization", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403


async def test_admin_lists_api_users_and_their_requests(client, admin):
    api_user = await register(client)
    headers = await api_user_headers(client, api_user)
    await client.post(
        "/api/permission/module/apiuser/request",
        headers=headers,
        json=[{"moduleName": "READS_MANAGEMENT_CRUDL", "permissions": ["Write", "Read"]}],
    )
    resp = await client.get("/api/admin/apiusers?permissionStatus=Request&limit=100", headers=admin)
    assert resp.status_code == 200, resp.text
    mine = [u for u in resp.json()["apiusers"] if u["apiUserId"] == api_user["apiUserId"]]
    assert len(mine) == 1
    assert (mine[0]["email"], mine[0]["permissionStatus"], mine[0]["requestedModules"]) == (
        api_user["email"],
        "Request",
        {"READS_MANAGEMENT_CRUDL": ["Read", "Write"]},
    )
    assert "privateKey" not in resp.text and "PUBLIC KEY" not in resp.text
    assert {u["permissionStatus"] for u in resp.json()["apiusers"]} == {"Request"}
    one = (await client.get("/api/admin/apiusers?limit=1&pageNumber=1", headers=admin)).json()
    assert len(one["apiusers"]) == 1 and one["totalPages"] == one["totalCount"]

    assert (await client.get("/api/admin/apiusers?permissionStatus=Maybe", headers=admin)).status_code == 400
    assert (await client.get("/api/admin/apiusers")).status_code == 401
    assert (await client.get("/api/admin/apiusers", headers=headers)).status_code == 403


async def test_an_api_user_manages_the_organizations_registered_under_it_only(client, admin):
    modules = {
        "ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write", "Update"],
        "USER_MANAGEMENT_CRUDL": ["Read"],
        "INVITATION_MANAGEMENT_CRUDL": ["Read", "Write"],
    }
    api_user, headers = await approved_api_user(client, admin, modules)
    created = await client.post("/api/user/register", headers=headers, json=organization_under(api_user))
    assert created.status_code == 201, created.text
    organization_id, member_email = created.json()["organization"]["id"], created.json()["email"]

    # D-REC: the users of an API user's organizations do not log in; the API user acts for them.
    refused = await client.post("/api/auth/login", json={"username": member_email, "password": "ApiUser123"})
    assert refused.status_code == 401 and "managed by an API user" in refused.json()["message"]
    assert (await client.post("/api/auth/login", json={"username": member_email, "password": "Wrong123"})).json()[
        "message"
    ] != refused.json()["message"]

    own = await client.get(f"/api/Organization/{organization_id}", headers=headers)
    assert own.status_code == 200 and own.json()["id"] == organization_id
    members = await client.get(f"/api/Organization/{organization_id}/users", headers=headers)
    assert members.status_code == 200 and [u["email"] for u in members.json()["users"]] == [member_email]
    invited = await client.post(
        f"/api/invitation?organizationId={organization_id}", headers=headers,
        json={"email": f"dev-{uuid.uuid4().hex[:8]}@example.org", "role": "DeviceOwner"},
    )  # fmt: skip
    assert invited.status_code == 201, invited.text
    listed = await client.get(f"/api/invitation?organizationId={organization_id}", headers=headers)
    assert listed.status_code == 200 and listed.json()["totalCount"] == 1

    _, stranger = await approved_api_user(client, admin, modules)
    for response in (
        await client.get(f"/api/Organization/{organization_id}", headers=stranger),
        await client.get(f"/api/Organization/{organization_id}/users", headers=stranger),
        await client.get(f"/api/invitation?organizationId={organization_id}", headers=stranger),
        await client.post(
            f"/api/invitation?organizationId={organization_id}",
            headers=stranger,
            json={"email": "x@example.org", "role": "User"},
        ),
    ):
        assert response.status_code == 403, response.text
        assert member_email not in response.text


async def test_other_services_learn_an_organization_from_identity_as_organization_registered_announced_it(
    client, admin
):
    """Read-your-writes (opendrec_kit.owners): GET /internal/organizations/{id} answers the organization.registered
    event of an organization the caller may manage, with its time; 404 for everyone else."""
    api_user, headers = await approved_api_user(client, admin, {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read", "Write"]})
    dev = organization_under(api_user, "developer", orgName=f"Solar-{uuid.uuid4().hex[:8]}")
    created = (await client.post("/api/user/register", headers=headers, json=dev)).json()
    organization_id = created["organization"]["id"]
    path = f"/internal/organizations/{organization_id}"

    for caller in (headers, admin):
        resp = await client.get(path, headers=caller)
        assert resp.status_code == 200, resp.text
        [event] = resp.json()["events"]
        assert (event["type"], event["producer"]) == ("organization.registered", "identity")
        assert event["payload"] == {
            "organization_id": organization_id,
            "name": dev["orgName"],
            "organization_type": "Developer",
            "api_user_id": api_user["apiUserId"],
        }
        assert event["occurred_at"].startswith(created["organization"]["createdAt"][:16])

    _, other_api_user = await approved_api_user(client, admin, {"ORGANIZATION_MANAGEMENT_CRUDL": ["Read"]})
    _, stranger = await new_organization(client)
    for caller in (other_api_user, stranger):
        assert (await client.get(path, headers=caller)).status_code == 404
    assert (await client.get("/internal/organizations/999999999", headers=admin)).status_code == 404
    assert (await client.get(path)).status_code == 401
    assert (await client.get("/internal/organizations/0", headers=admin)).status_code == 400
    # Not public API: absent from the service's document (the gateway routes no /internal path).
    assert not [p for p in (await client.get("/openapi.json")).json()["paths"] if p.startswith("/internal")]
