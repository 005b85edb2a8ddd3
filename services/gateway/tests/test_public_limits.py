"""Issue 12: the public routes (no token) are limited per client; the client is the peer, or behind a trusted proxy
the address it forwarded; nobody gets a fresh budget by writing X-Forwarded-For."""

import aiohttp
import pytest

from .conftest import start_gateway, stop

pytestmark = pytest.mark.asyncio(loop_scope="session")

LOGIN = "/api/auth/login"


async def login(http: aiohttp.ClientSession, url: str, forwarded_for: str | None = None) -> aiohttp.ClientResponse:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with http.post(url + LOGIN, json={"username": "a@b.org", "password": "x"}, headers=headers) as resp:
        await resp.read()
        return resp


async def test_a_client_past_the_limit_gets_429_and_others_go_on(upstreams, keys, tmp_path):
    urls = {n: u.url for n, u in upstreams.items()}
    gw = await start_gateway(
        tmp_path, urls, "limited-behind-proxy", {"PUBLIC_RATE_LIMIT": "3/minute", "TRUSTED_PROXIES": '["127.0.0.0/8"]'}
    )
    identity = upstreams["identity"]
    try:
        async with aiohttp.ClientSession() as http:
            before = len([r for r in identity.requests if r["path"] == LOGIN])
            for _ in range(3):
                assert (await login(http, gw.url, "198.51.100.7, 203.0.113.1")).status == 200
            forwarded = dict(identity.last(LOGIN)["headers"])["X-Forwarded-For"]
            assert forwarded.split(",")[-1].strip() == "203.0.113.1"  # the client, last: what identity's throttle reads

            async with http.post(gw.url + LOGIN, json={}, headers={"X-Forwarded-For": "203.0.113.1"}) as refused:
                body = await refused.json()
                assert refused.status == 429
                assert 1 <= int(refused.headers["Retry-After"]) <= 60
            assert body["statusCode"] == 429 and "203.0.113.1" in body["message"] and body["path"] == LOGIN
            assert len([r for r in identity.requests if r["path"] == LOGIN]) == before + 3  # the 4th never went on

            assert (await login(http, gw.url, "203.0.113.2")).status == 200  # another client
            token = {"Authorization": f"Bearer {keys.token()}"}
            async with http.get(gw.url + "/api/device/my", headers={**token, "X-Forwarded-For": "203.0.113.1"}) as r:
                assert r.status == 200  # signed-in routes are not these limits' business
    finally:
        stop(gw)


async def test_without_a_trusted_proxy_x_forwarded_for_buys_nothing(upstreams, tmp_path):
    urls = {n: u.url for n, u in upstreams.items()}
    gw = await start_gateway(tmp_path, urls, "limited-edge", {"PUBLIC_RATE_LIMIT": "3/minute"})
    try:
        async with aiohttp.ClientSession() as http:
            statuses = [(await login(http, gw.url, f"192.0.2.{n}")).status for n in range(5)]
        assert statuses == [200, 200, 200, 429, 429]  # one peer, whatever it claims to forward
    finally:
        stop(gw)
