"""Logout: the token is revoked in identity at once and, through token.revoked, everywhere."""

from datetime import UTC, datetime

import jwt
import pytest

from opendrec_identity.app import build
from opendrec_kit.testing import eventually, started, wait_for_event

from .accounts import bearer, register, token_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def register_and_login(client) -> tuple[dict, str]:
    body, _ = await register(client, password="Logout123")
    return body, await token_for(client, body)


async def test_after_logout_the_same_token_gets_401(client):
    _, token = await register_and_login(client)
    assert (await client.get("/api/user/me", headers=bearer(token))).status_code == 200

    resp = await client.post("/api/auth/logout", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    assert resp.json()["success"] is True

    me = await client.get("/api/user/me", headers=bearer(token))
    assert me.status_code == 401
    assert "revoked" in me.json()["message"]
    again = await client.post("/api/auth/logout", headers=bearer(token))
    assert again.status_code == 401


async def test_logout_ends_only_that_session(client):
    body, first = await register_and_login(client)
    second = await token_for(client, body)
    assert (await client.post("/api/auth/logout", headers=bearer(first))).status_code == 200
    assert (await client.get("/api/user/me", headers=bearer(first))).status_code == 401
    assert (await client.get("/api/user/me", headers=bearer(second))).status_code == 200


async def test_logout_needs_a_token(client):
    resp = await client.post("/api/auth/logout")
    assert resp.status_code == 401
    assert (await client.post("/api/auth/logout", headers=bearer("not.a.token"))).status_code == 401


async def test_logout_publishes_token_revoked_for_every_service(client, kafka_bootstrap, runtime):
    _, token = await register_and_login(client)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 200

    envelope, _ = await wait_for_event(
        kafka_bootstrap, "token.revoked", lambda e: e["payload"].get("token_id") == claims["jti"]
    )
    assert envelope["producer"] == "identity"
    payload = envelope["payload"]
    assert payload["user_id"] == int(claims["sub"])
    assert datetime.fromisoformat(payload["expires_at"]) == datetime.fromtimestamp(claims["exp"], UTC)
    row = await runtime.pool.fetchrow("SELECT revoked_at FROM access_tokens WHERE jti = $1", claims["jti"])
    assert row["revoked_at"] is not None


async def test_another_instance_refuses_the_token_within_moments(client, identity_settings):
    """A second identity process (same database and key) learns of the logout from token.revoked only."""
    _, token = await register_and_login(client)
    other = build(identity_settings)
    async with started(other) as other_client:
        assert (await other_client.get("/api/user/me", headers=bearer(token))).status_code == 200
        assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 200

        async def refused() -> bool:
            return (await other_client.get("/api/user/me", headers=bearer(token))).status_code == 401

        await eventually(refused, timeout=20)
