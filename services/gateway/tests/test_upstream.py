"""The forwarding client in-process, against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from opendrec_gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

PAYLOAD = bytes(range(256)) * 16 * 1024  # 4 MiB


class Service:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.peers: list[tuple[str, int]] = []

    async def hold(self, request: web.Request) -> web.Response:
        self.peers.append(request.transport.get_extra_info("peername"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return web.Response(text="released")

    async def big(self, request: web.Request) -> web.Response:
        self.peers.append(request.transport.get_extra_info("peername"))
        return web.Response(body=PAYLOAD)

    async def echo(self, request: web.Request) -> web.Response:
        self.peers.append(request.transport.get_extra_info("peername"))
        body = await request.read()
        return web.json_response(
            {
                "sha256": hashlib.sha256(body).hexdigest(),
                "length": request.headers.get("Content-Length"),
                "chunked": request.headers.get("Transfer-Encoding"),
                "host": request.headers["Host"],
                "path": request.path_qs,
            }
        )


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, str]]:
    svc = Service()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_get("/prefix/hold", svc.hold)
    app.router.add_get("/prefix/big", svc.big)
    app.router.add_post("/prefix/echo", svc.echo)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield svc, f"http://127.0.0.1:{port}/prefix"
    svc.release.set()
    await runner.cleanup()


async def test_at_most_max_connections_are_used(service: tuple[Service, str]) -> None:
    svc, url = service
    pool = UpstreamPool(url, max_connections=2)

    async def call() -> bytes:
        response = await pool.request("GET", b"/hold", [])
        return await response.read()

    calls = [asyncio.create_task(call()) for _ in range(5)]
    while svc.in_flight < 2:  # noqa: ASYNC110 - the first two reach the service; the others wait for a connection
        await asyncio.sleep(0.01)
    svc.release.set()
    assert await asyncio.gather(*calls) == [b"released"] * 5
    assert svc.max_in_flight == 2
    assert len(set(svc.peers)) == 2
    pool.close()


async def test_slowly_read_large_answer_arrives_whole_and_connection_is_reused(service: tuple[Service, str]) -> None:
    svc, url = service
    pool = UpstreamPool(url)
    response = await pool.request("GET", b"/big", [])
    digest, size = hashlib.sha256(), 0
    async for chunk in response.iter_chunks():
        digest.update(chunk)
        size += len(chunk)
        await asyncio.sleep(0)  # a consumer slower than loopback: reading pauses and resumes
    assert size == len(PAYLOAD)
    assert digest.hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()

    assert await (await pool.request("GET", b"/big", [])).read() == PAYLOAD
    assert svc.peers[0] == svc.peers[1]
    pool.close()


@pytest.mark.parametrize("sized", [True, False])
async def test_streamed_request_body(service: tuple[Service, str], sized: bool) -> None:
    _, url = service
    pool = UpstreamPool(url)

    async def parts() -> AsyncIterator[bytes]:
        for i in range(0, len(PAYLOAD), 300_000):
            yield PAYLOAD[i : i + 300_000]

    length = str(len(PAYLOAD)).encode() if sized else None
    response = await pool.request(
        "POST", b"/echo?x=1", [(b"content-type", b"application/octet-stream")], parts(), length
    )
    seen = json.loads(await response.read())
    assert seen["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert seen["path"] == "/prefix/echo?x=1"
    assert seen["host"] == url.removeprefix("http://").removesuffix("/prefix")
    if sized:
        assert seen["length"] == str(len(PAYLOAD)) and seen["chunked"] is None
    else:
        assert seen["length"] is None and seen["chunked"] == "chunked"
    pool.close()


async def test_read_timeout_and_refused_connection(service: tuple[Service, str]) -> None:
    _, url = service
    pool = UpstreamPool(url, read_timeout_s=0.2)
    with pytest.raises(UpstreamTimeout):
        await pool.request("GET", b"/hold", [])
    pool.close()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    pool = UpstreamPool(f"http://127.0.0.1:{closed_port}")
    with pytest.raises(UpstreamError) as err:
        await pool.request("GET", b"/", [])
    assert not isinstance(err.value, UpstreamTimeout)
    pool.close()
