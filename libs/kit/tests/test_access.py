"""Who may call what: the OpenAPI access description, role checks, and the organization a request acts for."""

import asyncio
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import APIRouter

from opendrec_contracts import AccessTokenRevoked, OrganizationRegistered, envelope_for
from opendrec_kit import ApiError, ServiceRuntime, ServiceSettings
from opendrec_kit.auth import (
    CurrentPrincipal,
    Principal,
    RevocationFollower,
    TokenVerifier,
    bearer_token,
    only_roles,
    permission,
)
from opendrec_kit.organizations import (
    acting_organization,
    api_user_organizations,
    find_organization,
    visible_organizations,
)
from opendrec_kit.testing import TokenIssuer, eventually, publish_events, settings_for_test, started

pytestmark = pytest.mark.asyncio(loop_scope="session")


def build(settings: ServiceSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="access sample")
    router = APIRouter()

    @router.get("/open")
    async def open_to_all() -> dict:
        return {"ok": True}

    @router.get("/mine")
    async def mine(user: CurrentPrincipal) -> dict:
        return {"user": user.user_id}

    @router.post("/devices")
    async def write_device(user: Principal = permission("DEVICE_MANAGEMENT_CRUDL", "Write")) -> dict:
        return {"user": user.user_id}

    @router.get("/admin/things")
    async def admin_things(user: Principal = only_roles("Admin")) -> dict:
        return {"user": user.user_id}

    runtime.include_router(router)
    runtime.follow_organizations()
    return runtime


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap, issuer):
    runtime = build(settings_for_test(ServiceSettings, postgres_url, kafka_bootstrap, service_name="access"))
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        yield runtime, client


def operation(runtime: ServiceRuntime, method: str, path: str) -> dict:
    return runtime.app.openapi()["paths"][path][method]


async def test_openapi_lists_what_each_endpoint_needs(service):
    runtime, _ = service
    assert operation(runtime, "get", "/open")["x-access"] == "public"
    mine = operation(runtime, "get", "/mine")
    assert mine["x-access"] == "signed-in" and "User" in mine["x-roles"] and "x-permissions" not in mine
    write = operation(runtime, "post", "/devices")
    assert write["x-permissions"] == [{"module": "DEVICE_MANAGEMENT_CRUDL", "action": "Write"}]
    # Buyers and plain users only read devices; DeviceOwners write them
    assert {"Admin", "OrganizationAdmin", "DeviceOwner", "ApiUser"} == set(write["x-roles"])
    assert "Write on DEVICE_MANAGEMENT_CRUDL" in write["description"]
    assert operation(runtime, "get", "/admin/things")["x-roles"] == ["Admin"]


async def test_role_and_permission_checks_answer_401_and_403(service, issuer):
    _, client = service
    assert (await client.get("/open")).status_code == 200
    assert (await client.get("/mine")).status_code == 401
    buyer = issuer.headers(role="Buyer", organization_type="Buyer", permissions={"DEVICE_MANAGEMENT_CRUDL": "R"})
    denied = await client.post("/devices", headers=buyer)
    assert denied.status_code == 403 and "DEVICE_MANAGEMENT_CRUDL" in denied.json()["message"]
    owner = issuer.headers(role="DeviceOwner", permissions={"DEVICE_MANAGEMENT_CRUDL": "RWU"})
    assert (await client.post("/devices", headers=owner)).status_code == 200
    refused = await client.get("/admin/things", headers=owner)
    assert refused.status_code == 403 and "Admin" in refused.json()["message"]
    assert (await client.get("/admin/things", headers=issuer.headers(role="Admin"))).status_code == 200


def principal(role: str, organization_id: int, organization_type: str, api_user_id: str | None = None) -> Principal:
    return Principal(
        user_id=1,
        organization_id=organization_id,
        organization_type=organization_type,
        role=role,
        email="a@b.org",
        api_user_id=api_user_id,
    )


async def error_of(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value


async def test_an_api_user_acts_for_its_own_organizations_only(service, kafka_bootstrap):
    runtime, _ = service
    base = 900_000_000 + uuid.uuid4().int % 1_000_000 * 10
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    developer, buyer, others = base + 1, base + 2, base + 3
    await publish_events(
        kafka_bootstrap,
        [
            OrganizationRegistered(
                organization_id=developer, name=f"dev {base}", organization_type="Developer", api_user_id=mine
            ),
            OrganizationRegistered(
                organization_id=buyer, name=f"buy {base}", organization_type="Buyer", api_user_id=mine
            ),
            OrganizationRegistered(
                organization_id=others, name=f"oth {base}", organization_type="Developer", api_user_id=theirs
            ),
        ],
    )
    await eventually(lambda: api_user_organizations(runtime.pool, theirs))
    await eventually(lambda: api_user_organizations(runtime.pool, mine, "Buyer"))
    api_user = principal("ApiUser", base, "ApiUser", mine)

    assert await acting_organization(runtime.pool, api_user, developer, organization_type="Developer") == developer
    assert await api_user_organizations(runtime.pool, mine) == [developer, buyer]
    assert await visible_organizations(runtime.pool, api_user, None, organization_type="Developer") == [developer]

    missing = await error_of(acting_organization(runtime.pool, api_user, None, organization_type="Developer"))
    assert missing.status == 400 and "organizationId is required" in missing.message
    wrong_type = await error_of(acting_organization(runtime.pool, api_user, buyer, organization_type="Developer"))
    assert wrong_type.status == 403 and "Buyer organization" in wrong_type.message
    foreign = await error_of(acting_organization(runtime.pool, api_user, others))
    assert foreign.status == 403 and "not one of your organizations" in foreign.message
    unknown = await error_of(acting_organization(runtime.pool, api_user, base + 9))
    assert unknown.status == 403


async def test_users_act_for_their_own_organization_and_admins_for_any(service, kafka_bootstrap):
    runtime, _ = service
    base = 910_000_000 + uuid.uuid4().int % 1_000_000 * 10
    await publish_events(
        kafka_bootstrap,
        [
            OrganizationRegistered(organization_id=base + 1, name=f"dev {base}", organization_type="Developer"),
        ],
    )
    owner = principal("DeviceOwner", 42, "Developer")
    assert await acting_organization(runtime.pool, owner, None) == 42
    assert await acting_organization(runtime.pool, owner, 42, organization_type="Developer") == 42
    other = await error_of(acting_organization(runtime.pool, owner, base + 1))
    assert other.status == 403 and "own organization (42)" in other.message
    buyer = await error_of(
        acting_organization(runtime.pool, principal("Buyer", 43, "Buyer"), None, organization_type="Developer")
    )
    assert buyer.status == 403

    admin = principal("Admin", 1, "Admin")
    await eventually(lambda: find_organization(runtime.pool, base + 1))
    assert await acting_organization(runtime.pool, admin, base + 1, organization_type="Developer") == base + 1
    assert await visible_organizations(runtime.pool, admin, None) is None
    absent = await error_of(acting_organization(runtime.pool, admin, base + 7))
    assert absent.status == 404


# ---- the token verifier on its own (no service, no identity: keys pinned with add_key) ----


def unreachable_jwks() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/.well-known/jwks.json"


def verifier_trusting(issuer: TokenIssuer, **options) -> TokenVerifier:
    verifier = TokenVerifier(unreachable_jwks(), issuer.audience, issuer.issuer, **options)
    verifier.add_key(issuer.jwk())
    return verifier


async def test_a_verified_token_is_cached_with_its_principal(issuer):
    verifier = verifier_trusting(issuer, cache_size=2)
    token = issuer.token(user_id=5, organization_id=9, role="DeviceOwner")
    first = await verifier.verify(token)
    assert (first.user_id, first.organization_id, first.role) == (5, 9, "DeviceOwner")
    assert await verifier.verify(token) is first  # from the cache: no second signature check
    assert (await verifier.claims(token))["jti"] == first.token_id
    for _ in range(3):
        await verifier.verify(issuer.token())
    assert len(verifier._cache) == 2 and token not in verifier._cache  # bounded, least recently used first out


async def test_revocations_apply_to_cached_tokens_and_end_with_the_token(issuer, monkeypatch):
    verifier = verifier_trusting(issuer)
    token = issuer.token()
    principal = await verifier.verify(token)
    verifier.revoke(principal.token_id, time.time() + 900)
    refused = await error_of(verifier.verify(token))
    assert refused.status == 401 and "revoked" in refused.message

    verifier.revoke("long-gone", time.time() - 1)  # already expired: nothing to remember
    assert not verifier.is_revoked("long-gone")
    # once past their expiry, remembered revocations are dropped when the set grows
    for n in range(3):
        verifier.revoke(f"soon-{n}", time.time() + 60)
    verifier._prune_revoked_at = len(verifier._revoked)  # (10 000 in earnest)
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    verifier.revoke("fresh", later + 60)
    assert set(verifier._revoked) == {"fresh"}


async def test_bad_headers_and_unknown_keys_are_401_and_no_keys_at_all_503(issuer):
    assert bearer_token("Bearer abc ") == "abc"
    for header, message in [(None, "Missing bearer"), ("", "Missing bearer"), ("Basic abc", "must be 'Bearer")]:
        with pytest.raises(ApiError, match=message) as caught:
            bearer_token(header)
        assert caught.value.status == 401

    stranger = TokenIssuer()
    unknown = await error_of(verifier_trusting(issuer).verify(stranger.token()))
    assert unknown.status == 401 and "unknown key" in unknown.message
    nothing = TokenVerifier(unreachable_jwks(), "opendrec", "opendrec-identity")
    down = await error_of(nothing.verify(issuer.token()))
    assert down.status == 503
    assert not nothing.loaded


async def test_a_token_revoked_message_revokes_until_the_token_expires(issuer):
    verifier = verifier_trusting(issuer)
    follower = RevocationFollower("127.0.0.1:1", verifier)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    revoked = AccessTokenRevoked(token_id="jti-1", user_id=1, expires_at=expires)
    follower.apply(envelope_for(revoked, "identity").model_dump_json().encode())
    follower.apply(b"not an envelope")  # logged and skipped
    assert verifier.is_revoked("jti-1") and verifier._revoked["jti-1"] == expires.timestamp()


async def test_requests_arriving_during_the_first_key_fetch_wait_for_it_instead_of_failing(issuer):
    # A service's first requests come together (a client's burst at start): the ones arriving while the JWKS
    # fetch is in flight must be answered with its keys, not 503 "keys are unavailable".
    from aiohttp import web

    release, fetching = asyncio.Event(), asyncio.Event()
    fetches = 0

    async def jwks(_: web.Request) -> web.Response:
        nonlocal fetches
        fetches += 1
        fetching.set()
        await release.wait()  # held until every request below is waiting
        return web.json_response({"keys": [issuer.jwk()]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the port the OS chose
    try:
        verifier = TokenVerifier(f"http://127.0.0.1:{port}/.well-known/jwks.json", issuer.audience, issuer.issuer)
        calls = [asyncio.create_task(verifier.verify(issuer.token(user_id=n))) for n in range(1, 21)]
        await fetching.wait()  # the first request's fetch reached the server: the others started before it
        release.set()
        principals = await asyncio.gather(*calls)
    finally:
        await runner.cleanup()
    assert sorted(p.user_id for p in principals) == list(range(1, 21))
    assert fetches == 1  # one fetch served them all


async def test_a_key_removed_from_the_jwks_stops_vouching_for_tokens_it_signed_even_cached(issuer):
    from aiohttp import web

    published = [issuer.jwk()]

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": published})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # the port the OS chose
    try:
        url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        # keys kept 0 s: every use asks again (at most once per min_refresh_interval_s, here 0)
        verifier = TokenVerifier(url, issuer.audience, issuer.issuer, 0, min_refresh_interval_s=0)
        token = issuer.token(user_id=7)
        assert (await verifier.verify(token)).user_id == 7
        assert (await verifier.verify(token)).user_id == 7  # cached, key still published
        published.clear()  # identity retired the key (rotated, or it leaked)
        refused = await error_of(verifier.verify(token))
        assert refused.status == 401 and "unknown key" in refused.message
    finally:
        await runner.cleanup()
