"""Real processes and real HTTP on loopback: the gateway runs as `python -m opendrec_gateway`,
the six services are small aiohttp servers in the test process that record what they receive."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httptools
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

SERVICES = ["identity", "devices", "readings", "reservations", "certificates", "charger-gateway"]
BIG = bytes(range(256)) * 32 * 1024  # 8 MiB, not compressible into a coincidence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- signing keys and tokens ------------------------------------------------------------


@dataclass
class Keys:
    ed: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    rsa: Any = field(default_factory=lambda: generate_private_key(public_exponent=65537, key_size=2048))
    stranger: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)  # not in the JWKS

    def jwks(self) -> dict:
        ed = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.ed.public_key()))
        ed.update(kid="ed-1", alg="EdDSA", use="sig")
        rsa = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        rsa.update(kid="rsa-1", alg="RS256", use="sig")
        return {"keys": [ed, rsa]}

    def token(self, alg: str = "EdDSA", kid: str | None = None, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "sub": "42",
            "org": "7",
            "role": "DeviceOwner",
            "permissions": {"DEVICE_MANAGEMENT_CRUDL": "RWUD"},
            "iat": now,
            "exp": now + 600,
            "jti": os.urandom(8).hex(),
            "aud": "opendrec",
            "iss": "opendrec-identity",
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        if key is None:
            key = self.ed if alg == "EdDSA" else self.rsa
        kid = kid or ("ed-1" if alg == "EdDSA" else "rsa-1")
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="session")
def big() -> bytes:
    """What the services' /big endpoint streams (8 MiB)."""
    return BIG


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


# ---- the six services -------------------------------------------------------------------


@dataclass
class Upstream:
    name: str
    url: str = ""
    ready: bool = True
    requests: list[dict] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends the /hang handlers

    def last(self, path: str) -> dict:
        return next(r for r in reversed(self.requests) if r["path"] == path)


def upstream_app(up: Upstream, jwks: dict) -> web.Application:
    async def readyz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready" if up.ready else "starting"}, status=200 if up.ready else 503)

    async def jwks_view(request: web.Request) -> web.Response:
        return web.json_response(jwks)

    async def any_path(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "headers": list(request.headers.items()),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body),
            "peer": request.transport.get_extra_info("peername") if request.transport else None,
        }
        up.requests.append(record)
        tail = request.path.rsplit("/", 1)[-1]
        if tail == "teapot":
            resp = web.Response(status=418, body=b"\x00short and stout\xff", content_type="application/octet-stream")
            resp.headers["X-Custom"] = "kept"
            resp.headers.add("Set-Cookie", "a=1; Path=/")
            resp.headers.add("Set-Cookie", "b=2; Path=/")
            resp.headers["Keep-Alive"] = "timeout=99"  # hop-by-hop: must not reach the client
            return resp
        if tail == "big":  # unsized (chunked) 8 MiB answer, written in pieces
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(BIG), 256 * 1024):
                await resp.write(BIG[i : i + 256 * 1024])
            await resp.write_eof()
            return resp
        if tail == "medium":  # sized, above the pool's read-pause mark, below the gateway's buffer limit
            return web.Response(body=BIG[: 1000 * 1024], content_type="application/octet-stream")
        if tail == "gzipped":
            payload = gzip.compress(json.dumps({"compressed": True}).encode())
            return web.Response(body=payload, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if tail == "hang":  # a service that does not answer (until teardown)
            await up.release.wait()
        if tail == "created":
            return web.json_response({"id": 1}, status=201, headers={"Location": "/api/device/1"})
        return web.json_response(
            {"service": up.name, **{k: record[k] for k in ("method", "path", "body_sha256", "body_len")}}
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/readyz", readyz)
    if up.name == "identity":
        app.router.add_get("/.well-known/jwks.json", jwks_view)
    app.router.add_route("*", "/{tail:.*}", any_path)
    return app


@pytest.fixture(scope="session")
async def upstreams(keys: Keys) -> AsyncIterator[dict[str, Upstream]]:
    runners = []
    ups = {}
    jwks = keys.jwks()
    for name in SERVICES:
        up = Upstream(name)
        runner = web.AppRunner(upstream_app(up, jwks), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        up.url = f"http://127.0.0.1:{port}"
        ups[name] = up
        runners.append(runner)
    yield ups
    for up in ups.values():
        up.release.set()
    for runner in runners:
        await runner.cleanup()


# ---- the gateway process ----------------------------------------------------------------


@dataclass
class Gateway:
    url: str
    traces_file: Path
    process: subprocess.Popen

    async def spans(self, predicate: Callable[[dict], bool], deadline_s: float = 10.0) -> list[dict]:
        """Spans from TRACES_FILE matching `predicate`, waiting (polling) until one shows up."""
        end = time.monotonic() + deadline_s
        while True:
            if self.traces_file.exists():
                found = [s for s in map(json.loads, self.traces_file.read_text().splitlines()) if predicate(s)]
                if found:
                    return found
            if time.monotonic() > end:
                raise AssertionError(f"no matching span in {self.traces_file} within {deadline_s} s")
            await asyncio.sleep(0.05)


async def start_gateway(tmp: Path, urls: dict[str, str], name: str, extra_env: dict[str, str] | None = None) -> Gateway:
    port = free_port()
    traces = tmp / f"{name}-traces.jsonl"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "TRACES_FILE": str(traces),
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # spans reach the file quickly
        "UPSTREAM_READ_TIMEOUT_S": "1",
        "HEALTH_TIMEOUT_S": "1",
        "LOG_LEVEL": "INFO",
        **{f"{svc.upper().replace('-', '_')}_URL": url for svc, url in urls.items()},
        **(extra_env or {}),
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    log = open(tmp / f"{name}.log", "w")  # noqa: ASYNC230, SIM115 - the child process owns the log file
    process = subprocess.Popen(  # noqa: ASYNC220 - a test starts its process once
        [sys.executable, "-m", "opendrec_gateway"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    gw = Gateway(f"http://127.0.0.1:{port}", traces, process)
    end = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(gw.url + "/readyz") as resp:
                    if resp.status == 200:
                        return gw
            except aiohttp.ClientConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > end:
                process.kill()
                raise RuntimeError(f"gateway {name} did not become ready:\n{(tmp / f'{name}.log').read_text()}")
            await asyncio.sleep(0.05)


def stop(gw: Gateway) -> None:
    gw.process.terminate()
    try:
        gw.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        gw.process.kill()


@pytest.fixture(scope="session")
async def gateway(upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """A gateway in front of all six services."""
    gw = await start_gateway(tmp_path_factory.mktemp("gw"), {n: u.url for n, u in upstreams.items()}, "all-up")
    yield gw
    stop(gw)


class RawService(asyncio.Protocol):
    """A service that misbehaves on purpose, written at the socket level (httptools parses
    the requests). What it answers depends on the last path segment:
      stale        on a connection that already served a request: close without answering
      until-close  an answer with neither Content-Length nor chunking, ended by closing
      early-hints  a 103 informational answer, then the real one
      garbage      bytes that are not HTTP
      anything else: 200 "ok", kept alive
    """

    connections = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        RawService.connections += 1
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.served = 0

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        tail = self.url.split(b"?")[0].rsplit(b"/", 1)[-1]
        write = self.transport.write
        if tail == b"stale" and self.served:
            self.transport.close()
            return
        self.served += 1
        if tail == b"until-close":
            write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + b"x" * 100_000)
            self.transport.close()
        elif tail == b"early-hints":
            write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
            write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        elif tail == b"garbage":
            write(b"this is not HTTP\r\n\r\n")
        else:
            write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")


@pytest.fixture(scope="session")
async def raw_service() -> AsyncIterator[str]:
    port = free_port()
    server = await asyncio.get_running_loop().create_server(RawService, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.close()


@pytest.fixture(scope="session")
async def gateway_odd(
    upstreams: dict[str, Upstream], raw_service: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """A gateway whose readings service is down (nothing listens on its port) and whose
    charger-gateway is the misbehaving RawService."""
    urls = {n: u.url for n, u in upstreams.items()}
    urls["readings"] = f"http://127.0.0.1:{free_port()}"
    urls["charger-gateway"] = raw_service
    gw = await start_gateway(tmp_path_factory.mktemp("gw-odd"), urls, "odd")
    yield gw
    stop(gw)


@pytest.fixture(scope="session")
async def bounded(upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """Small limits and short body timeouts."""
    env = {
        "BODY_LIMIT_BYTES": "4096",
        "UPLOAD_BODY_LIMIT_BYTES": "65536",
        "BODY_TIMEOUT_S": "0.5",
        "BODY_IDLE_TIMEOUT_S": "0.5",
        "URL_LIMIT_BYTES": "1024",
        "HEADER_LIMIT_BYTES": "4096",
    }
    urls = {n: u.url for n, u in upstreams.items()}
    gw = await start_gateway(tmp_path_factory.mktemp("gw-bounded"), urls, "bounded", env)
    yield gw
    stop(gw)


@pytest.fixture(scope="session")
async def one_slot(upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """One upstream connection per service, and all the time in the world for a body."""
    env = {"UPSTREAM_POOL_PER_SERVICE": "1", "BODY_TIMEOUT_S": "60", "BODY_IDLE_TIMEOUT_S": "60"}
    urls = {n: u.url for n, u in upstreams.items()}
    gw = await start_gateway(tmp_path_factory.mktemp("gw-one-slot"), urls, "one-slot", env)
    yield gw
    stop(gw)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # auto_decompress off: the test sees the bytes exactly as the gateway sent them
    timeout = aiohttp.ClientTimeout(total=30)  # a hung gateway fails the test instead of stalling the run
    async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as session:
        yield session
