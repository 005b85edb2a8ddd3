"""Registration, login, tokens and /me against a real Postgres and a real broker."""

import logging
import statistics
import time
import uuid

import jwt
import pytest
from argon2 import PasswordHasher

from opendrec_devstack.drec_samples import registration_body as registration
from opendrec_kit.testing import wait_for_event

from .accounts import bearer, login, register, token_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

DEVELOPER_PERMS = {
    "USER_MANAGEMENT_CRUDL": "RWU",
    "DEVICE_MANAGEMENT_CRUDL": "RWUD",
    "READS_MANAGEMENT_CRUDL": "RWUD",
    "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RWU",  # the registry: transfers, retirements, locks
    "DEVICE_BULK_MANAGEMENT_CRUDL": "RWUD",
    "INVITATION_MANAGEMENT_CRUDL": "RWU",
    "PASSWORD_MANAGEMENT_CRUDL": "RWU",
    "ORGANIZATION_MANAGEMENT_CRUDL": "RWU",
}
BUYER_PERMS = {
    "USER_MANAGEMENT_CRUDL": "RWU",
    "DEVICE_MANAGEMENT_CRUDL": "R",
    "READS_MANAGEMENT_CRUDL": "R",
    "BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWUD",
    "CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RWU",  # the registry: transfers, retirements, locks
    "INVITATION_MANAGEMENT_CRUDL": "RWU",
    "PASSWORD_MANAGEMENT_CRUDL": "RWU",
    "ORGANIZATION_MANAGEMENT_CRUDL": "RWU",
}


# -- registration ------------------------------------------------------------------------------


async def test_register_developer_creates_organization_and_its_admin(client, runtime):
    body, created = await register(client, "developer")

    assert created["firstName"] == "energy" and created["lastName"] == "dev"
    assert created["email"] == body["email"].lower()
    assert created["role"] == "OrganizationAdmin"
    assert created["status"] == "Active"
    assert created["emailConfirmed"] is False
    org = created["organization"]
    assert isinstance(org["id"], int) and isinstance(created["id"], int)
    assert (org["name"], org["address"], org["organizationType"], org["status"]) == (
        body["orgName"],
        "Hyderabad",
        "Developer",
        "Active",
    )
    # Nothing secret comes back.
    text = str(created)
    assert (
        "MNO133" not in text
        and "MNLA70" not in text
        and "password" not in text.lower()
        and "secret" not in text.lower()
    )

    row = await runtime.pool.fetchrow(
        "SELECT u.password_hash, o.secret_key_hash FROM users u JOIN organizations o ON o.id = u.organization_id WHERE u.id = $1",
        created["id"],
    )
    assert row["password_hash"].startswith("$argon2id$") and row["secret_key_hash"].startswith("$argon2id$")
    passwords = runtime.app.state.passwords
    assert await passwords.verify(row["password_hash"], "MNO133")
    assert await passwords.verify(row["secret_key_hash"], "MNLA70")


async def test_register_buyer_gets_role_buyer(client):
    _, created = await register(client, "BUYER", secretKey="NPO170", password="DEF123", confirmPassword="DEF123")
    assert created["role"] == "Buyer"
    assert created["organization"]["organizationType"] == "Buyer"


async def test_org_address_may_be_left_out(client):
    body = registration()
    del body["orgAddress"]
    resp = await client.post("/api/user/registerWithOrganization", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["organization"]["address"] is None


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"email": "not-an-email"}, "email", "valid e-mail address"),
        ({"email": "  "}, "email", "email is required"),
        ({"password": "abcdef", "confirmPassword": "abcdef"}, "password", "at least one letter and one digit"),
        ({"password": "AB12", "confirmPassword": "AB12"}, "password", "6 to 128 characters"),
        ({"confirmPassword": "MNO134"}, "confirmPassword", "must match password"),
        ({"secretKey": "ab0123"}, "secretKey", "exactly 6 characters"),
        ({"secretKey": "AB01234"}, "secretKey", "exactly 6 characters"),
        ({"organizationType": "Seller"}, "organizationType", "Developer or Buyer"),
        ({"organizationType": "ApiUser"}, "organizationType", "Developer or Buyer"),
        ({"firstName": "   "}, "firstName", "firstName is required"),
        ({"orgName": ""}, "orgName", "orgName is required"),
        ({"lastName": "x" * 101}, "lastName", "at most 100"),
    ],
)
async def test_each_bad_field_is_a_clear_400(client, overrides, field, message):
    resp = await client.post("/api/user/registerWithOrganization", json=registration(**overrides))
    assert resp.status_code == 400, resp.text
    error = resp.json()
    assert [d["field"] for d in error["details"]] == [field]
    assert message in error["details"][0]["message"]
    assert field in error["message"]


@pytest.mark.parametrize(
    "field",
    ["firstName", "lastName", "email", "organizationType", "password", "confirmPassword", "orgName", "secretKey"],
)
async def test_each_required_field_is_required(client, field):
    body = registration()
    del body[field]
    resp = await client.post("/api/user/registerWithOrganization", json=body)
    assert resp.status_code == 400, resp.text
    assert [d["field"] for d in resp.json()["details"]] == [field]


async def test_one_400_lists_every_bad_field(client):
    body = registration(email="nope", password="short", confirmPassword="other", secretKey="abc", organizationType="x")
    del body["orgName"]
    resp = await client.post("/api/user/registerWithOrganization", json=body)
    assert resp.status_code == 400
    fields = {d["field"] for d in resp.json()["details"]}
    # confirmPassword can only be compared with a valid password: the password's own error says what to fix.
    assert fields == {"email", "password", "secretKey", "organizationType", "orgName"}
    # Rejected values are not echoed: not in the message nor in any detail (the envelope's random requestId
    # and its timestamp are left out of the check, a hex id may well hold "abc").
    error = resp.json()
    said = [error["message"], *(f"{d['field']} {d['message']}" for d in error["details"])]
    for value in ("short", "abc", "nope"):
        assert not [text for text in said if value in text], value


async def test_duplicate_organization_name_is_409_whatever_the_letter_case(client, runtime):
    body, _ = await register(client)
    again = registration(orgName=body["orgName"].upper())
    resp = await client.post("/api/user/registerWithOrganization", json=again)
    assert resp.status_code == 409, resp.text
    assert [d["field"] for d in resp.json()["details"]] == ["orgName"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM users WHERE email = $1", again["email"].lower()) == 0


async def test_a_known_email_with_a_taken_name_names_only_the_name(client):
    """A known e-mail is not disclosed (test_registration_disclosure); the taken name still is."""
    body, _ = await register(client)
    resp = await client.post(
        "/api/user/registerWithOrganization", json=registration(email=body["email"], orgName=body["orgName"].lower())
    )
    assert resp.status_code == 409
    assert [d["field"] for d in resp.json()["details"]] == ["orgName"]


async def test_registration_publishes_both_events(client, kafka_bootstrap):
    body, created = await register(client)
    org_id = created["organization"]["id"]

    envelope, _ = await wait_for_event(
        kafka_bootstrap, "organization.registered", lambda e: e["payload"].get("name") == body["orgName"]
    )
    assert envelope["producer"] == "identity" and envelope["version"] == 1
    assert envelope["payload"] == {
        "organization_id": org_id,
        "name": body["orgName"],
        "organization_type": "Developer",
        "api_user_id": None,
    }

    envelope, _ = await wait_for_event(
        kafka_bootstrap, "user.registered", lambda e: e["payload"].get("email") == created["email"]
    )
    assert envelope["producer"] == "identity"
    assert envelope["payload"] == {
        "user_id": created["id"],
        "organization_id": org_id,
        "email": created["email"],
        "role": "OrganizationAdmin",
    }


# -- login and tokens ------------------------------------------------------------------------------


async def jwks_key(client, token: str) -> jwt.PyJWK:
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status_code == 200
    keys = {k["kid"]: k for k in resp.json()["keys"]}
    assert all("d" not in k for k in keys.values())  # public halves only
    return jwt.PyJWK(keys[jwt.get_unverified_header(token)["kid"]])


async def test_developer_token_verifies_against_jwks_and_carries_claims(client, identity_settings):
    body, created = await register(client)
    token = await token_for(client, body)

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    claims = jwt.decode(
        token, await jwks_key(client, token), algorithms=["EdDSA"], audience="opendrec", issuer="opendrec-identity"
    )
    assert set(claims) == {"sub", "org", "orgType", "role", "email", "perms", "jti", "iat", "exp", "iss", "aud"}
    assert claims["sub"] == str(created["id"])
    assert claims["org"] == created["organization"]["id"]
    assert (claims["orgType"], claims["role"], claims["email"]) == ("Developer", "OrganizationAdmin", created["email"])
    assert claims["perms"] == DEVELOPER_PERMS
    assert claims["exp"] - claims["iat"] == identity_settings.access_token_ttl_seconds == 3600
    assert abs(claims["iat"] - time.time()) < 60


async def test_buyer_token_carries_buyer_permissions(client):
    body, _ = await register(client, "Buyer")
    token = await token_for(client, body)
    claims = jwt.decode(token, await jwks_key(client, token), algorithms=["EdDSA"], audience="opendrec")
    assert (claims["orgType"], claims["role"]) == ("Buyer", "Buyer")
    assert claims["perms"] == BUYER_PERMS


async def test_each_login_gets_its_own_token_id(client):
    body, _ = await register(client)
    first, second = await token_for(client, body), await token_for(client, body)
    assert (
        jwt.decode(first, options={"verify_signature": False})["jti"]
        != jwt.decode(second, options={"verify_signature": False})["jti"]
    )


async def test_username_is_matched_whatever_the_letter_case(client):
    body, _ = await register(client)
    resp = await login(client, body["email"].upper(), body["password"])
    assert resp.status_code == 200 and resp.json()["accessToken"]


async def test_wrong_password_and_unknown_email_get_the_same_answer(client):
    body, _ = await register(client)
    wrong = await login(client, body["email"], "MNO134")
    unknown = await login(client, f"nobody-{uuid.uuid4().hex[:8]}@example.org", body["password"])
    not_an_email = await login(client, "nobody", body["password"])

    def comparable(resp):
        data = resp.json()
        return resp.status_code, data["message"], data["error"], data.get("details")

    assert (
        comparable(wrong)
        == comparable(unknown)
        == comparable(not_an_email)
        == (401, "Invalid username or password", "Unauthorized", None)
    )


async def test_unknown_email_costs_as_much_as_a_wrong_password(client):
    """No timing oracle: an unknown e-mail still pays for an argon2 check (without it, ~30x faster)."""
    body, _ = await register(client)

    async def timed(username: str) -> float:
        start = time.perf_counter()
        resp = await login(client, username, "MNO134")
        assert resp.status_code == 401
        return time.perf_counter() - start

    wrong, unknown = [], []
    for _ in range(5):
        wrong.append(await timed(body["email"]))
        unknown.append(await timed(f"nobody-{uuid.uuid4().hex[:8]}@example.org"))
    assert statistics.median(unknown) > 0.3 * statistics.median(wrong)


async def test_login_needs_username_and_password(client):
    resp = await client.post("/api/auth/login", json={"username": "someone@example.org"})
    assert resp.status_code == 400
    assert [d["field"] for d in resp.json()["details"]] == ["password"]


async def test_a_suspended_account_cannot_log_in(client, runtime):
    body, created = await register(client)
    await runtime.pool.execute("UPDATE users SET status = 'Suspended' WHERE id = $1", created["id"])
    assert (await login(client, body["email"], "MNO134")).status_code == 401  # wrong password: nothing said
    resp = await login(client, body["email"], body["password"])
    assert resp.status_code == 403
    assert "suspended" in resp.json()["message"]


async def test_per_user_grants_add_to_the_role(client, runtime):
    body, created = await register(client, "Buyer")
    await runtime.pool.execute(
        "INSERT INTO user_permissions (user_id, module, actions) VALUES ($1, 'DEVICE_MANAGEMENT_CRUDL', 'WU'), ($1, 'PERMISSION_MANAGEMENT_CRUDL', 'R')",
        created["id"],
    )
    claims = jwt.decode(await token_for(client, body), options={"verify_signature": False})
    assert claims["perms"] == {**BUYER_PERMS, "DEVICE_MANAGEMENT_CRUDL": "RWU", "PERMISSION_MANAGEMENT_CRUDL": "R"}


async def test_an_old_weaker_hash_is_upgraded_at_login(client, runtime):
    body, created = await register(client)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(body["password"])
    await runtime.pool.execute("UPDATE users SET password_hash = $2 WHERE id = $1", created["id"], weak)
    assert (await login(client, body["email"], body["password"])).status_code == 200
    upgraded = await runtime.pool.fetchval("SELECT password_hash FROM users WHERE id = $1", created["id"])
    assert upgraded != weak and not runtime.app.state.passwords.needs_rehash(upgraded)
    assert (await login(client, body["email"], body["password"])).status_code == 200


# -- /me ----------------------------------------------------------------------------------------------


async def test_me_shows_user_organization_role_and_permissions(client):
    body, created = await register(client)
    resp = await client.get("/api/user/me", headers=bearer(await token_for(client, body)))
    assert resp.status_code == 200, resp.text
    me = resp.json()
    assert (me["id"], me["email"], me["role"]) == (created["id"], created["email"], "OrganizationAdmin")
    assert me["organization"]["id"] == created["organization"]["id"]
    assert me["organization"]["organizationType"] == "Developer"
    assert me["permissions"]["DEVICE_MANAGEMENT_CRUDL"] == ["Read", "Write", "Update", "Delete"]
    assert me["permissions"]["CERTIFICATE_LOG_MANAGEMENT_CRUDL"] == ["Read", "Write", "Update"]
    assert "PERMISSION_MANAGEMENT_CRUDL" not in me["permissions"]
    assert not {"password", "passwordHash", "secretKey"} & set(me) and "$argon2" not in resp.text


async def test_me_needs_a_valid_token(client):
    body, _ = await register(client)
    token = await token_for(client, body)
    assert (await client.get("/api/user/me")).status_code == 401
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    resp = await client.get("/api/user/me", headers=bearer(forged))
    assert resp.status_code == 401


# -- secrets stay out of the logs -------------------------------------------------------------------


async def test_logs_hold_no_password_secret_key_or_token(client, caplog):
    password, secret = f"Pw{uuid.uuid4().hex[:12]}1", "ZQ9X7W"
    with caplog.at_level(logging.DEBUG):
        body, _ = await register(client, password=password, confirmPassword=password, secretKey=secret)
        token = await token_for(client, body)
        await login(client, body["email"], password + "x")
        await login(client, f"{password}@example.org", password)  # a password typed as username
        await client.get("/api/user/me", headers=bearer(token))
        await client.post(
            "/api/user/registerWithOrganization", json=registration(password=password, confirmPassword=password + "y")
        )
    assert caplog.records, "expected the service to log something"
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret_value in (password, secret, token, token.split(".")[2]):
        assert secret_value not in logged
