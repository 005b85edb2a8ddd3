"""The gateway's token check (the kit's TokenVerifier, as the gateway builds it: a shared aiohttp
session) in-process, against a real JWKS server on loopback: caching, revocation, key refresh
and identity being down."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import jwt
import pytest
from aiohttp import web

from opendrec_kit.auth import TokenVerifier, bearer_token
from opendrec_kit.errors import ApiError

if TYPE_CHECKING:  # the `keys` fixture's type, from conftest.py
    from conftest import Keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JwksServer:
    def __init__(self, keys: dict) -> None:
        self.keys = keys
        self.fetches = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response(self.keys)


@pytest.fixture
async def jwks_server(keys: Keys) -> AsyncIterator[tuple[JwksServer, str]]:
    server = JwksServer(keys.jwks())
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield server, f"http://127.0.0.1:{port}/.well-known/jwks.json"
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def authenticator(url: str, session: aiohttp.ClientSession, min_interval: float = 0.0) -> TokenVerifier:
    return TokenVerifier(
        url,
        "opendrec",
        "opendrec-identity",
        300,
        min_refresh_interval_s=min_interval,
        cache_size=2,
        session=session,
    )


async def test_verified_token_is_cached_and_revocation_still_applies(
    jwks_server: tuple[JwksServer, str], session: aiohttp.ClientSession, keys: Keys
) -> None:
    server, url = jwks_server
    auth = authenticator(url, session)
    token = keys.token(jti="t-1")
    claims = await auth.claims(bearer_token(f"Bearer {token}"))
    assert claims["sub"] == "42" and claims["jti"] == "t-1"
    assert await auth.claims(token) == claims
    assert server.fetches == 1

    auth.revoke("t-1", time.time() + 600)  # what token.revoked feeds
    with pytest.raises(ApiError, match="revoked") as err:
        await auth.claims(token)
    assert err.value.status == 401


async def test_cache_is_bounded(
    jwks_server: tuple[JwksServer, str], session: aiohttp.ClientSession, keys: Keys
) -> None:
    _, url = jwks_server
    auth = authenticator(url, session)
    for _ in range(5):
        await auth.claims(keys.token())
    assert len(auth._cache) == 2


async def test_new_signing_key_is_picked_up_on_unknown_kid(
    jwks_server: tuple[JwksServer, str], session: aiohttp.ClientSession, keys: Keys
) -> None:
    server, url = jwks_server
    auth = authenticator(url, session)
    await auth.claims(keys.token())

    # identity rotates: a key the gateway has not seen yet
    rotated = keys.jwks()
    new = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(keys.stranger.public_key()))
    new.update(kid="ed-2", alg="EdDSA")
    server.keys = {"keys": [*rotated["keys"], new]}
    claims = await auth.claims(keys.token(kid="ed-2", key=keys.stranger))
    assert claims["sub"] == "42"
    assert server.fetches == 2


async def test_identity_down_gives_503_not_401(session: aiohttp.ClientSession, keys: Keys) -> None:
    auth = authenticator(f"http://127.0.0.1:{free_port()}/.well-known/jwks.json", session)
    with pytest.raises(ApiError) as err:
        await auth.claims(keys.token())
    assert err.value.status == 503
