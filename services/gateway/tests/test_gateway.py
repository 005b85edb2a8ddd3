"""The gateway as a client sees it: a real process in front of real HTTP services."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING

import aiohttp
import pytest
from yarl import URL

if TYPE_CHECKING:  # fixtures' types, defined in conftest.py
    from conftest import Gateway, Keys, Upstream

ENVELOPE_KEYS = {"statusCode", "error", "message", "path", "timestamp", "requestId", "success"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_envelope(resp: aiohttp.ClientResponse, status: int, path: str) -> dict:
    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/json"
    body = json.loads(await resp.read())
    assert ENVELOPE_KEYS <= set(body) <= ENVELOPE_KEYS | {"details"}
    assert body["statusCode"] == status
    assert body["error"] == resp.reason
    assert body["path"] == path
    assert body["message"]
    assert body["requestId"] == resp.headers["X-Request-ID"]
    assert body["timestamp"].endswith("Z")
    assert abs(datetime.fromisoformat(body["timestamp"]).timestamp() - time.time()) < 60
    return body


# ---- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/device/my", "devices"),
        ("/api/device-group/my", "reservations"),
        ("/api/device/bulk-upload", "devices"),
        ("/api/meter-reads/new/Ext1", "readings"),
        ("/api/certificate-log/issuer/certifiedlogOfdevices", "certificates"),
        ("/api/buyer-reservation/41", "reservations"),
        ("/api/user/me", "identity"),
        ("/api/Organization/users", "identity"),
        ("/api/charger/sessions", "charger-gateway"),
    ],
)
async def test_routes_to_owning_service(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession, path: str, service: str
) -> None:
    async with http.get(gateway.url + path, headers=auth(keys.token())) as resp:
        assert resp.status == 200
        body = json.loads(await resp.read())
    assert body["service"] == service
    assert body["path"] == path
    assert upstreams[service].last(path)["method"] == "GET"


@pytest.mark.parametrize("path", ["/api/devices/1", "/api/unknown", "/somewhere", "/api"])
async def test_unknown_route_is_404_envelope(
    gateway: Gateway, keys: Keys, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(gateway.url + path, headers=auth(keys.token())) as resp:
        await assert_envelope(resp, 404, path)


async def test_swagger_ui_is_served_at_swagger_and_docs_from_the_gateway_itself(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    # No token needed, no CDN: the page and its scripts come from this origin, under a strict policy.
    for path in ("/swagger", "/docs"):
        async with http.get(gateway.url + path) as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "<script>" not in page  # nothing inline, or the policy would block it
            scripts = re.findall(r'<script src="([^"]+)"', page)
            styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
            assert scripts and styles and all(src.startswith("/swagger/") for src in scripts + styles)
    async with http.get(gateway.url + "/swagger/swagger-ui-bundle.js") as resp:
        bundle = await resp.read()
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/javascript")
        assert b"SwaggerUIBundle" in bundle and len(bundle) > 100_000
    async with http.get(gateway.url + "/swagger/init.js") as resp:
        assert resp.status == 200 and '"/openapi.json"' in await resp.text()  # the merged document
    async with http.get(gateway.url + "/swagger/swagger-ui.css") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/css")
    # Only the UI's own files, by name: nothing else of the package, nothing outside it.
    for path in ("/swagger/index.html", "/swagger/core.py", "/swagger/static/swagger-ui.css"):
        async with http.get(gateway.url + path) as resp:
            await assert_envelope(resp, 404, path)
    async with http.post(gateway.url + "/swagger") as resp:
        await assert_envelope(resp, 405, "/swagger")


async def test_jwks_is_served_through_the_gateway_without_token(
    gateway: Gateway, keys: Keys, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway.url + "/.well-known/jwks.json") as resp:
        assert resp.status == 200
        assert json.loads(await resp.read()) == keys.jwks()


# ---- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/auth/login"),
        ("POST", "/api/user/registerWithOrganization"),
        ("PUT", "/api/user/confirm-email/a3a7b310f3fecb24"),
        ("PUT", "/api/user/reset/password/c1c7dc38d5de4e6f"),
        ("GET", "/api/countrycode/list"),
        ("GET", "/api/device/fuel-type"),
        ("GET", "/api/device/device-type"),
    ],
)
async def test_public_calls_need_no_token(
    gateway: Gateway, upstreams: dict[str, Upstream], http: aiohttp.ClientSession, method: str, path: str
) -> None:
    async with http.request(method, gateway.url + path, json={"username": "a@b.c"}) as resp:
        assert resp.status == 200
        assert json.loads(await resp.read())["method"] == method


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/auth/login"),
        ("GET", "/api/device/my"),
        ("POST", "/api/meter-reads/new/Ext1"),
        ("PUT", "/api/user/confirm-email/"),
    ],
)
async def test_protected_calls_without_token_get_401(
    gateway: Gateway, upstreams: dict[str, Upstream], http: aiohttp.ClientSession, method: str, path: str
) -> None:
    before = sum(len(u.requests) for u in upstreams.values())
    async with http.request(method, gateway.url + path) as resp:
        body = await assert_envelope(resp, 401, path)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in body["message"]
    assert sum(len(u.requests) for u in upstreams.values()) == before  # nothing was forwarded


async def test_valid_tokens_of_both_algorithms_pass_and_reach_the_service_unchanged(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession
) -> None:
    for alg in ("EdDSA", "RS256"):
        token = keys.token(alg)
        path = f"/api/device/by-{alg.lower()}"
        async with http.get(gateway.url + path, headers=auth(token)) as resp:
            assert resp.status == 200
        assert dict(upstreams["devices"].last(path)["headers"])["Authorization"] == f"Bearer {token}"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "expired"),
        ("wrong-signature", "invalid"),
        ("unknown-kid", "unknown key"),
        ("wrong-audience", "invalid"),
        ("missing-jti", "invalid"),
        ("hs256", "invalid"),
        ("garbage", "malformed"),
        ("basic", "Bearer"),
    ],
)
async def test_bad_tokens_get_401_envelope(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession, case: str, message: str
) -> None:
    now = int(time.time())
    header = {
        "expired": lambda: f"Bearer {keys.token(iat=now - 120, exp=now - 60)}",
        "wrong-signature": lambda: f"Bearer {keys.token(key=keys.stranger)}",
        "unknown-kid": lambda: f"Bearer {keys.token(kid='nope', key=keys.stranger)}",
        "wrong-audience": lambda: f"Bearer {keys.token(aud='someone-else')}",
        "missing-jti": lambda: f"Bearer {keys.token(jti=None)}",
        "hs256": lambda: f"Bearer {keys.token('HS256', kid='ed-1', key='a-shared-secret-of-at-least-32-bytes!!')}",
        "garbage": lambda: "Bearer not.a.jwt",
        "basic": lambda: "Basic dXNlcjpwYXNz",
    }[case]()
    path = "/api/device/my"
    before = len(upstreams["devices"].requests)
    async with http.get(gateway.url + path, headers={"Authorization": header}) as resp:
        body = await assert_envelope(resp, 401, path)
    assert message.lower() in body["message"].lower()
    assert len(upstreams["devices"].requests) == before


# ---- passthrough ------------------------------------------------------------------------


async def test_status_headers_and_body_pass_through(gateway: Gateway, keys: Keys, http: aiohttp.ClientSession) -> None:
    async with http.get(gateway.url + "/api/device/teapot", headers=auth(keys.token())) as resp:
        assert resp.status == 418
        assert await resp.read() == b"\x00short and stout\xff"
        assert resp.headers["X-Custom"] == "kept"
        assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert "Keep-Alive" not in resp.headers  # hop-by-hop header of the service's connection

    async with http.post(gateway.url + "/api/device/created", headers=auth(keys.token()), json={"a": 1}) as resp:
        assert resp.status == 201
        assert resp.headers["Location"] == "/api/device/1"
        assert json.loads(await resp.read()) == {"id": 1}


async def test_request_is_forwarded_as_sent(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession
) -> None:
    body = json.dumps({"reads": [{"value": 5, "endtimestamp": "2024-01-01T00:00:00Z"}]}).encode()
    # encoded=True: the test client must not normalise the target either
    url = URL(gateway.url + "/api/meter-reads/new/Ext%201?from=2024-01-01&tag=a%2Fb", encoded=True)
    headers = {
        **auth(keys.token()),
        "Content-Type": "application/json",
        "X-Client-Header": "yes",
        "Connection": "keep-alive, X-Hop",  # names X-Hop as hop-by-hop
        "X-Hop": "must not pass",
    }
    async with http.put(url, data=body, headers=headers) as resp:
        assert resp.status == 200
    seen = upstreams["readings"].last("/api/meter-reads/new/Ext 1")
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/api/meter-reads/new/Ext%201?from=2024-01-01&tag=a%2Fb"
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    got = {k.lower(): v for k, v in seen["headers"]}
    assert got["content-type"] == "application/json"
    assert got["x-client-header"] == "yes"
    assert "x-hop" not in got
    assert got["x-forwarded-for"] == "127.0.0.1"
    assert got["x-forwarded-host"] == gateway.url.removeprefix("http://")


async def test_request_id_kept_or_made_and_sent_both_ways(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        gateway.url + "/api/device/rid-given", headers={**auth(keys.token()), "X-Request-ID": "client-req-1"}
    ) as resp:
        assert resp.headers["X-Request-ID"] == "client-req-1"
    assert dict(upstreams["devices"].last("/api/device/rid-given")["headers"])["X-Request-ID"] == "client-req-1"

    async with http.get(gateway.url + "/api/device/rid-made", headers=auth(keys.token())) as resp:
        made = resp.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert dict(upstreams["devices"].last("/api/device/rid-made")["headers"])["X-Request-ID"] == made


async def test_large_response_is_streamed_intact(
    gateway: Gateway, keys: Keys, http: aiohttp.ClientSession, big: bytes
) -> None:
    async with http.get(gateway.url + "/api/device/big", headers=auth(keys.token())) as resp:
        assert resp.status == 200
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        digest, size = hashlib.sha256(), 0
        async for chunk in resp.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
    assert size == len(big)
    assert digest.hexdigest() == hashlib.sha256(big).hexdigest()


async def test_medium_response_is_read_whole_and_sent_with_its_length(
    gateway: Gateway, keys: Keys, http: aiohttp.ClientSession, big: bytes
) -> None:
    async with http.get(gateway.url + "/api/device/medium", headers=auth(keys.token())) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(1000 * 1024)
        assert await resp.read() == big[: 1000 * 1024]


async def test_large_request_body_is_streamed_intact(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession, big: bytes
) -> None:
    async def pieces():
        for i in range(0, len(big), 100_000):
            yield big[i : i + 100_000]

    # once with a Content-Length, once chunked
    for name, headers, data in (
        ("sized", {"Content-Length": str(len(big))}, big),
        ("chunked", {}, pieces()),
    ):
        path = f"/api/meter-reads/upload-{name}"
        async with http.post(gateway.url + path, data=data, headers={**auth(keys.token()), **headers}) as resp:
            assert resp.status == 200
        seen = upstreams["readings"].last(path)
        assert seen["body_len"] == len(big)
        assert seen["body_sha256"] == hashlib.sha256(big).hexdigest()


async def test_compressed_body_passes_untouched(gateway: Gateway, keys: Keys, http: aiohttp.ClientSession) -> None:
    async with http.get(gateway.url + "/api/device/gzipped", headers=auth(keys.token())) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(await resp.read())) == {"compressed": True}


async def test_head_keeps_length_without_body(gateway: Gateway, keys: Keys, http: aiohttp.ClientSession) -> None:
    async with http.get(gateway.url + "/api/device/teapot", headers=auth(keys.token())) as resp:
        length = resp.headers["Content-Length"]
    async with http.head(gateway.url + "/api/device/teapot", headers=auth(keys.token())) as resp:
        assert resp.status == 418
        assert resp.headers["Content-Length"] == length
        assert await resp.read() == b""


# ---- upstream failures ------------------------------------------------------------------


async def test_service_down_is_502_envelope(gateway_odd: Gateway, keys: Keys, http: aiohttp.ClientSession) -> None:
    path = "/api/meter-reads/new/Ext1"
    async with http.post(gateway_odd.url + path, headers=auth(keys.token()), json={}) as resp:
        body = await assert_envelope(resp, 502, path)
    assert "readings" in body["message"]


async def test_service_too_slow_is_504_envelope(gateway: Gateway, keys: Keys, http: aiohttp.ClientSession) -> None:
    path = "/api/charger/hang"
    started = time.monotonic()
    async with http.get(gateway.url + path, headers=auth(keys.token())) as resp:
        body = await assert_envelope(resp, 504, path)
    assert "charger-gateway" in body["message"]
    assert time.monotonic() - started < 10  # UPSTREAM_READ_TIMEOUT_S=1 in the test gateway


# ---- tracing ----------------------------------------------------------------------------


def traceparent_of(upstream: Upstream, path: str) -> tuple[str, str, str]:
    value = dict(upstream.last(path)["headers"])["traceparent"]
    version, trace_id, parent_id, flags = value.split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    return trace_id, parent_id, flags


async def test_service_continues_the_gateway_span_trace(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession
) -> None:
    path = "/api/device/traced"
    request_id = "trace-" + os.urandom(6).hex()
    async with http.get(gateway.url + path, headers={**auth(keys.token()), "X-Request-ID": request_id}) as resp:
        assert resp.status == 200
    trace_id, parent_id, _ = traceparent_of(upstreams["devices"], path)

    [span] = await gateway.spans(lambda s: s["attributes"].get("opendrec.request_id") == request_id)
    assert span["kind"] == "SpanKind.SERVER"
    assert span["context"]["trace_id"] == "0x" + trace_id
    assert span["context"]["span_id"] == "0x" + parent_id  # the service's parent is the gateway span
    assert span["parent_id"] is None
    assert span["attributes"]["http.response.status_code"] == 200
    assert span["attributes"]["http.route"] == "/api/device"


async def test_incoming_trace_is_continued(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession
) -> None:
    path = "/api/device/traced-from-client"
    client_trace, client_span = os.urandom(16).hex(), os.urandom(8).hex()
    request_id = "trace-" + os.urandom(6).hex()
    headers = {**auth(keys.token()), "X-Request-ID": request_id, "traceparent": f"00-{client_trace}-{client_span}-01"}
    async with http.get(gateway.url + path, headers=headers) as resp:
        assert resp.status == 200
    trace_id, parent_id, _ = traceparent_of(upstreams["devices"], path)
    assert trace_id == client_trace
    [span] = await gateway.spans(lambda s: s["attributes"].get("opendrec.request_id") == request_id)
    assert span["parent_id"] == "0x" + client_span
    assert span["context"]["span_id"] == "0x" + parent_id


# ---- health -----------------------------------------------------------------------------


async def test_healthz_is_200_only_when_every_service_is_ready(
    gateway: Gateway, upstreams: dict[str, Upstream], http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway.url + "/healthz") as resp:
        assert resp.status == 200
        body = json.loads(await resp.read())
    assert body["status"] == "ok"
    assert set(body["services"]) == set(upstreams)
    assert all(s == {"status": "ready", "statusCode": 200} for s in body["services"].values())

    upstreams["certificates"].ready = False
    try:
        async with http.get(gateway.url + "/healthz") as resp:
            assert resp.status == 503
            body = json.loads(await resp.read())
    finally:
        upstreams["certificates"].ready = True
    assert body["services"]["certificates"] == {"status": "not ready", "statusCode": 503}
    assert body["services"]["devices"]["status"] == "ready"

    async with http.get(gateway.url + "/healthz") as resp:
        assert resp.status == 200


async def test_healthz_is_503_when_a_service_is_down(gateway_odd: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(gateway_odd.url + "/healthz") as resp:
        assert resp.status == 503
        body = json.loads(await resp.read())
    assert body["status"] == "unavailable"
    assert body["services"]["readings"]["status"] == "unreachable"
    assert body["services"]["identity"]["status"] == "ready"


async def test_readyz(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(gateway.url + "/readyz") as resp:
        assert resp.status == 200
        assert json.loads(await resp.read()) == {"status": "ready"}


# ---- connections to the services ----------------------------------------------------------


async def test_connections_to_a_service_are_kept_alive_and_reused(
    gateway: Gateway, upstreams: dict[str, Upstream], keys: Keys, http: aiohttp.ClientSession
) -> None:
    peers = set()
    for i in range(5):  # one after the other: one pooled connection is enough
        path = f"/api/certificate/reuse-{i}"
        async with http.get(gateway.url + path, headers=auth(keys.token())) as resp:
            assert resp.status == 200
        peers.add(upstreams["certificates"].last(path)["peer"])
    assert len(peers) == 1


async def test_idempotent_request_is_retried_when_a_kept_alive_connection_was_closed(
    gateway_odd: Gateway, keys: Keys, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway_odd.url + "/api/charger/warm-up", headers=auth(keys.token())) as resp:
        assert resp.status == 200  # leaves one idle connection in the pool
    async with http.get(gateway_odd.url + "/api/charger/stale", headers=auth(keys.token())) as resp:
        assert resp.status == 200  # that connection is dropped unanswered; a new one answers
        assert await resp.read() == b"ok"


async def test_non_idempotent_request_is_not_retried(
    gateway_odd: Gateway, keys: Keys, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway_odd.url + "/api/charger/warm-up", headers=auth(keys.token())) as resp:
        assert resp.status == 200
    path = "/api/charger/stale"
    async with http.post(gateway_odd.url + path, headers=auth(keys.token()), json={"start": True}) as resp:
        await assert_envelope(resp, 502, path)


async def test_answer_ended_by_closing_the_connection(
    gateway_odd: Gateway, keys: Keys, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway_odd.url + "/api/charger/until-close", headers=auth(keys.token())) as resp:
        assert resp.status == 200
        assert await resp.read() == b"x" * 100_000


async def test_informational_answer_is_skipped(gateway_odd: Gateway, keys: Keys, http: aiohttp.ClientSession) -> None:
    async with http.get(gateway_odd.url + "/api/charger/early-hints", headers=auth(keys.token())) as resp:
        assert resp.status == 200
        assert await resp.read() == b"final"


async def test_invalid_answer_is_502_envelope(gateway_odd: Gateway, keys: Keys, http: aiohttp.ClientSession) -> None:
    path = "/api/charger/garbage"
    async with http.get(gateway_odd.url + path, headers=auth(keys.token())) as resp:
        await assert_envelope(resp, 502, path)


# ---- bounded requests (issue 12): bodies, URLs and headers past their limits, and bodies that arrive too slowly,
# are refused in the envelope before they cost the services anything; a slow client holds no upstream connection
# while its JSON body trickles in.

JSON_LIMIT, UPLOAD_LIMIT = 4096, 65536  # what the `bounded` gateway is given (conftest.py)


def reached(upstream: Upstream, path: str) -> bool:
    return any(r["path"] == path for r in upstream.requests)


def forwarded(upstreams: dict[str, Upstream]) -> int:
    return sum(len(u.requests) for u in upstreams.values())


async def pieces(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def raw_request(
    gateway: Gateway, head: bytes, body_part: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = URL(gateway.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(head + body_part)
    await writer.drain()
    return reader, writer


async def status_and_body(reader: asyncio.StreamReader) -> tuple[int, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return status, json.loads(await reader.readexactly(length))


async def test_a_json_body_past_the_limit_is_413_and_never_forwarded(bounded, upstreams, keys: Keys, http):
    before = forwarded(upstreams)
    big = b"x" * (JSON_LIMIT + 1)
    path = "/api/device/too-big"
    async with http.post(bounded.url + path, data=big, headers=auth(keys.token())) as resp:  # Content-Length
        body = await assert_envelope(resp, 413, path)
    assert str(JSON_LIMIT) in body["message"]
    async with http.post(bounded.url + path, data=pieces(big), headers=auth(keys.token())) as resp:  # chunked
        await assert_envelope(resp, 413, path)
    assert forwarded(upstreams) == before
    # at the limit it goes through
    async with http.post(bounded.url + path, data=b"y" * JSON_LIMIT, headers=auth(keys.token())) as resp:
        assert resp.status == 200
    assert upstreams["devices"].last(path)["body_len"] == JSON_LIMIT


async def test_uploads_and_read_batches_stream_up_to_their_own_limit(bounded, upstreams, keys: Keys, http):
    data = bytes(range(256)) * (UPLOAD_LIMIT // 256)  # exactly the limit
    path = "/api/meter-reads/upload-at-limit"
    async with http.post(bounded.url + path, data=pieces(data), headers=auth(keys.token())) as resp:
        assert resp.status == 200
    assert upstreams["readings"].last(path)["body_sha256"] == hashlib.sha256(data).hexdigest()

    path = "/api/meter-reads/upload-past-limit"
    async with http.post(bounded.url + path, data=pieces(data + b"z"), headers=auth(keys.token())) as resp:
        await assert_envelope(resp, 413, path)
    assert not reached(upstreams["readings"], path)  # the service never got a whole request


@pytest.mark.parametrize("path", ["/api/device/slow-json", "/api/meter-reads/slow-upload"])
async def test_a_body_that_stops_arriving_is_408(bounded, keys: Keys, path):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys.token()}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    reader, writer = await raw_request(bounded, head, b'{"a": 1')  # 7 of 100 bytes, then nothing
    try:
        status, body = await asyncio.wait_for(status_and_body(reader), timeout=30)
    finally:
        writer.close()
    assert (status, body["statusCode"], body["path"]) == (408, 408, path)
    assert "did not arrive in time" in body["message"]


async def test_urls_and_headers_past_their_limits_are_414_and_431(bounded, keys: Keys, http):
    long_path = "/api/device/" + "a" * 1100
    async with http.get(bounded.url + long_path, headers=auth(keys.token())) as resp:
        assert resp.status == 414
        assert (await resp.json())["statusCode"] == 414
    headers = {**auth(keys.token()), **{f"X-Pad-{i}": "p" * 200 for i in range(25)}}
    async with http.get(bounded.url + "/api/device/fat-headers", headers=headers) as resp:
        assert resp.status == 431
        assert (await resp.json())["statusCode"] == 431


async def test_a_slow_client_holds_no_upstream_connection_while_its_body_trickles_in(one_slot, upstreams, keys, http):
    """devices has ONE upstream connection here. A client that sent half its JSON body must not keep it: another
    request goes through at once, and the slow one is answered when its body is complete."""
    body = json.dumps({"name": "slow", "pad": "p" * 50}).encode()
    path = "/api/device/slow-client"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys.token()}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await raw_request(one_slot, head, body[:10])
    try:
        async with http.get(one_slot.url + "/api/device/meanwhile", headers=auth(keys.token())) as resp:
            assert resp.status == 200
        assert not reached(upstreams["devices"], path)  # still waiting for its body: not forwarded
        writer.write(body[10:])
        await writer.drain()
        status, _ = await asyncio.wait_for(status_and_body(reader), timeout=30)
    finally:
        writer.close()
    assert status == 200
    assert upstreams["devices"].last(path)["body_len"] == len(body)


async def test_answers_within_limits_are_unchanged(bounded, keys: Keys, http):
    async with http.post(bounded.url + "/api/device/normal", json={"a": 1}, headers=auth(keys.token())) as resp:
        assert resp.status == 200


async def test_the_rec_inventory_api_gets_its_own_envelope_from_the_gateway_too(gateway: Gateway, http) -> None:
    """shared/seeds/rec-inventory-api.txt: its clients read {Data, Errors, Meta, StatusCode, Message}."""
    async with http.get(gateway.url + "/public/v2/inventories/recs") as resp:
        assert resp.status == 401
        assert await resp.json() == {
            "Data": None,
            "Errors": None,
            "Meta": None,
            "StatusCode": 401,
            "Message": "Unauthorized",
        }
