"""The gateway counts every answer it makes, its own refusals included, and how long each service took: read as an
operator reads them, from the running gateway's /metrics (METRICS_PORT, never the public port)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from .conftest import free_port, start_gateway, stop

if TYPE_CHECKING:  # fixtures' types, defined in conftest.py
    from conftest import Gateway, Keys, Upstream

SERVER = "http_server_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def counts(http: aiohttp.ClientSession, metrics_url: str, family: str) -> dict[tuple[str, ...], float]:
    """`family`'s request counts by its labels, from one scrape."""
    async with aiohttp.ClientSession() as scraper, scraper.get(metrics_url) as resp:  # decompressed, unlike `http`
        assert resp.status == 200
        text = await resp.text()
    out: dict[tuple[str, ...], float] = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == family + "_count":
                labels = {k: v for k, v in sample.labels.items() if k != "le"}
                out[tuple(f"{k}={v}" for k, v in sorted(labels.items()))] = sample.value
    return out


def count(series: dict[tuple[str, ...], float], **labels: str) -> float:
    """The sum over the series carrying every given label value."""
    wanted = {f"{k}={v}" for k, v in labels.items()}
    return sum(value for key, value in series.items() if wanted <= set(key))


@pytest.fixture(scope="module")
async def charge_point_service() -> AsyncIterator[str]:
    """A charger gateway that accepts any OCPP WebSocket and echoes one frame."""

    async def ocpp(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("ocpp1.6",))
        await ws.prepare(request)
        if request.match_info["id"] == "WHO":  # tells who the gateway says is calling
            await ws.send_str(request.headers.get("X-Forwarded-For", ""))
        async for frame in ws:
            await ws.send_str(frame.data)
        return ws

    app = web.Application()
    app.router.add_get("/ocpp/{id}", ocpp)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(scope="module")
async def counted(
    upstreams: dict[str, Upstream], charge_point_service: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway with small limits, a tiny public rate limit and readings down; (gateway, its /metrics URL)."""
    urls = {n: u.url for n, u in upstreams.items()}
    urls["readings"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: 502
    urls["charger-gateway"] = charge_point_service
    metrics_port = free_port()
    env = {
        "METRICS_PORT": str(metrics_port),
        "BODY_LIMIT_BYTES": "4096",
        "BODY_TIMEOUT_S": "0.5",
        "URL_LIMIT_BYTES": "1024",
        "HEADER_LIMIT_BYTES": "4096",
        "PUBLIC_RATE_LIMIT": "2/minute",
        "TRUSTED_PROXIES": '["127.0.0.2/32"]',  # a load balancer in front of it (the tests call from 127.0.0.1)
    }
    gw = await start_gateway(tmp_path_factory.mktemp("gw-metrics"), urls, "metrics", env)
    yield gw, f"http://127.0.0.1:{metrics_port}/metrics"
    stop(gw)


async def test_every_answer_the_gateway_makes_itself_is_counted_by_route_and_status(
    counted: tuple[Gateway, str], keys: Keys, http: aiohttp.ClientSession
) -> None:
    gw, metrics_url = counted
    token = auth(keys.token())
    before = await counts(http, metrics_url, SERVER)

    for i in range(3):  # unrouted: one label value, whatever the paths
        async with http.get(f"{gw.url}/no/such/thing/{i}") as resp:
            assert resp.status == 404
    async with http.get(gw.url + "/readyz") as resp:  # the gateway's own endpoint, under its path
        assert resp.status == 200
    async with http.post(gw.url + "/api/device/big", data=b"x" * 5000, headers=token) as resp:
        assert resp.status == 413
    async with http.get(gw.url + "/api/device/" + "a" * 1100, headers=token) as resp:
        assert resp.status == 414
    async with http.get(gw.url + "/api/device/fat", headers={**token, "X-Pad": "p" * 5000}) as resp:
        assert resp.status == 431
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
    writer.write(
        f"POST /api/device/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys.token()}\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    await writer.drain()
    assert b" 408 " in await asyncio.wait_for(reader.readline(), timeout=30)
    writer.close()
    statuses = []
    for _ in range(3):  # 2/minute: the third is refused
        async with http.post(gw.url + "/api/auth/login", json={"username": "a", "password": "b"}) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 200, 429]
    async with http.get(gw.url + "/api/meter-reads/x", headers=token) as resp:  # readings is down
        assert resp.status == 502
    async with http.get(gw.url + "/api/device/hang", headers=token) as resp:  # answers after the 1 s read timeout
        assert resp.status == 504
    async with http.get(gw.url + "/api/device/my", headers=token) as resp:
        assert resp.status == 200

    after = await counts(http, metrics_url, SERVER)

    def moved(**labels: str) -> float:
        return count(after, **labels) - count(before, **labels)

    assert moved(http_route="unrouted", http_response_status_code="404") == 3
    assert moved(http_route="/readyz", http_response_status_code="200") == 1
    assert moved(http_route="/api/device", http_response_status_code="413") == 1
    assert moved(http_route="/api/device", http_response_status_code="414") == 1
    assert moved(http_route="/api/device", http_response_status_code="431") == 1
    assert moved(http_route="/api/device", http_response_status_code="408") == 1
    assert moved(http_route="/api/auth", http_response_status_code="429") == 1
    assert moved(http_route="/api/meter-reads", http_response_status_code="502", error_type="502") == 1
    assert moved(http_route="/api/device", http_response_status_code="504", error_type="504") == 1
    assert moved(http_route="/api/device", http_response_status_code="200") == 1
    # the label stays bounded: no series names a path a client made up
    assert not any("no/such" in label for key in after for label in key)


async def test_each_services_latency_and_failures_are_counted_per_service(
    counted: tuple[Gateway, str], keys: Keys, http: aiohttp.ClientSession
) -> None:
    gw, metrics_url = counted
    token = auth(keys.token())
    before = await counts(http, metrics_url, CLIENT)
    for _ in range(2):
        async with http.get(gw.url + "/api/device/my", headers=token) as resp:
            assert resp.status == 200
    async with http.get(gw.url + "/api/certificate/teapot", headers=token) as resp:
        assert resp.status == 418
    async with http.get(gw.url + "/api/meter-reads/x", headers=token) as resp:
        assert resp.status == 502
    async with http.get(gw.url + "/api/device/hang", headers=token) as resp:
        assert resp.status == 504
    after = await counts(http, metrics_url, CLIENT)

    def moved(**labels: str) -> float:
        return count(after, **labels) - count(before, **labels)

    assert moved(server_address="devices", http_response_status_code="200") == 2
    assert moved(server_address="certificates", http_response_status_code="418") == 1
    assert moved(server_address="readings", error_type="unreachable") == 1
    assert moved(server_address="devices", error_type="timeout") == 1
    assert moved() == 5  # nothing else was asked of a service


async def test_websocket_upgrades_for_ocpp_are_counted_and_others_are_refused_as_unrouted(
    counted: tuple[Gateway, str], http: aiohttp.ClientSession
) -> None:
    gw, metrics_url = counted
    before = await counts(http, metrics_url, SERVER)
    async with http.ws_connect(gw.url + "/ocpp/CP-1", protocols=("ocpp1.6",)) as ws:
        await ws.send_str('[2,"1","Heartbeat",{}]')
        assert (await ws.receive(timeout=10)).data == '[2,"1","Heartbeat",{}]'
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(gw.url + "/elsewhere")
    assert refused.value.status == 403

    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the relay counts an upgrade when the socket closes, a moment after the client's close
        after = await counts(http, metrics_url, SERVER)
        upgraded = count(after, http_route="/ocpp", http_response_status_code="101") - count(
            before, http_route="/ocpp", http_response_status_code="101"
        )
        if upgraded or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert upgraded == 1, {k: v for k, v in after.items() if "http_route=/ocpp" in k}
    refused_now = count(after, http_route="unrouted", http_response_status_code="403")
    assert refused_now - count(before, http_route="unrouted", http_response_status_code="403") == 1


async def test_a_charge_point_is_named_to_its_service_as_the_gateway_resolves_it(counted: tuple[Gateway, str]) -> None:
    """The charger gateway holds wrong OCPP passwords back per client address: it must get the charge point's address
    (behind a trusted load balancer: the one the balancer saw), not the balancer's."""
    gw, _ = counted
    port = int(gw.url.rsplit(":", 1)[1])
    behind = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))  # as if from the trusted balancer
    async with aiohttp.ClientSession(connector=behind) as balancer:
        ws = await balancer.ws_connect(
            f"http://127.0.0.1:{port}/ocpp/WHO", protocols=("ocpp1.6",), headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert (await ws.receive(timeout=10)).data == "203.0.113.9, 203.0.113.9"
        await ws.close()
    async with aiohttp.ClientSession() as direct:  # an untrusted peer: what it writes buys nothing
        ws = await direct.ws_connect(
            f"http://127.0.0.1:{port}/ocpp/WHO", protocols=("ocpp1.6",), headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert (await ws.receive(timeout=10)).data == "203.0.113.9, 127.0.0.1"
        await ws.close()


async def test_metrics_are_not_served_on_the_public_port(counted: tuple[Gateway, str], http) -> None:
    gw, _ = counted
    async with http.get(gw.url + "/metrics") as resp:
        assert resp.status == 404
