"""The load D-REC clients send (issue 16): one read per request, device listings, logins, through the gateway.

    python bench/drec-clients/bench_clients.py [--connections 16] [--duration 15] [--warmup 2]
                                               [--scenarios reads,listing,login] [--devices 32] [--smoke]
                                               [--profile-dir DIR]

Starts the whole platform itself, as `make run` does (`python -m opendrec_devstack run --free-ports` on a
fresh state dir: embedded Postgres and broker, every service, the gateway) and waits for it to be ready.
Prepares through the public API only: a Developer organization per connection (registerWithOrganization)
and logs in, registers --devices devices for the first (the listing) and one device for each other
connection (the reads), and waits until the readings service knows each of them (a first read answered 201).

Then, one scenario after the other, a closed loop of --connections keep-alive connections (asyncio and
httptools: a fraction of aiohttp's CPU; each sends its next request when the previous one is answered), --warmup
seconds not counted, then --duration s:
  reads    POST /api/meter-reads/new/{externalId}, one Delta read of 1 Wh each; each connection its own
           device, end timestamps increasing by --read-step-ms from the device's onboarding (a 10 MW device:
           1 Wh in 5 ms is plausible), so every read is accepted (201) by every D-REC rule;
  listing  GET /api/device/my by the owner of the --devices devices (D-REC's first page);
  login    POST /api/auth/login, each connection its own user.
Prints requests/s, p50/p90/p99 latency, errors (any answer but the expected status), the load average, the
resident memory (RSS) of every service at idle and at the end of each scenario, and the goal; exits 1 when a
goal is missed (or, with --smoke, when any request failed: a few seconds each, 2 connections, no speed goal).
--profile-dir DIR: records each service with `py-spy record` during each scenario (py-spy must be installed
in the venv; for measuring only), flamegraph SVGs in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import aiohttp
import httptools
import orjson
import psutil
import uvloop

from opendrec_devstack.drec_samples import PASSWORD, device_body, registration_body

# The goals of issue 16, through the gateway with every service running on this machine.
GOALS = {
    "reads": (1000.0, 20.0),  # reads/s (one read per request), p50 ms
    "listing": (1000.0, 15.0),  # requests/s, p50 ms
    "login": (60.0, 250.0),  # logins/s, p50 ms
}
UNITS = {"reads": "reads/s", "listing": "req/s", "login": "logins/s"}
DEVICE_CAPACITY_KW = 10_000  # 1 Wh in 5 ms is 720 kW: well below the plausibility bound
READY_TIMEOUT_S = 240
IDLE_SAMPLE_S = 3.0
SOAK_GROWTH, SOAK_SLACK_MB = 1.05, 8.0  # --soak: end RSS within 5 % (or 8 MB) of the warmed-up RSS


# ---- the platform ---------------------------------------------------------------------------


@dataclass
class Stack:
    process: subprocess.Popen
    state_dir: Path
    gateway_url: str
    service_urls: dict[str, str]

    def service_pids(self) -> dict[str, int]:
        """service name -> pid, from the supervisor's children (`python -m opendrec_<name>`)."""
        modules = {f"opendrec_{name.replace('-', '_')}": name for name in self.service_urls}
        found = {}
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                cmdline = child.cmdline()
            except psutil.Error:
                continue
            if "-m" in cmdline:
                module = cmdline[cmdline.index("-m") + 1]
                if module in modules:
                    found[modules[module]] = child.pid
        return found

    def rss_mb(self) -> dict[str, float]:
        rss = {}
        for name, pid in sorted(self.service_pids().items()):
            try:
                rss[name] = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                continue
        return rss

    def postgres_pids(self) -> list[int]:
        """The embedded Postgres server (data in <state>/pg) and its backends."""
        data_dir = str(self.state_dir / "pg")
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if any(arg.startswith(data_dir) for arg in cmdline) and "postgres" in " ".join(cmdline):
                try:
                    return [proc.pid] + [c.pid for c in proc.children(recursive=True)]
                except psutil.Error:
                    continue
        return []

    def broker_pids(self) -> list[int]:
        """The embedded broker (Tansu), a child of the supervisor."""
        pids = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "tansu" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                continue
        return pids

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each service (its HTTP_WORKERS processes included), Postgres
        (its processes now), the broker, this load generator ("client") and the whole machine ("machine", every
        process: what the 2 cores had to give, the one figure nothing escapes)."""
        used = {}
        groups = {}
        for name, pid in self.service_pids().items():
            try:
                groups[name] = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
            except psutil.Error:
                groups[name] = [pid]
        groups["postgres"] = self.postgres_pids()
        groups["broker"] = self.broker_pids()
        groups["client"] = [os.getpid()]
        for name, pids in groups.items():
            total = 0.0
            for pid in pids:
                try:
                    times = psutil.Process(pid).cpu_times()
                except psutil.Error:
                    continue
                total += times.user + times.system
            used[name] = total
        machine = psutil.cpu_times()
        used["machine"] = (
            machine.user + machine.system + getattr(machine, "softirq", 0.0) + getattr(machine, "irq", 0.0)
        )
        return used

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_stack(state_dir: Path, code_root: Path | None = None) -> Stack:
    """`python -m opendrec_devstack run --free-ports` (what `make run` runs) on a fresh state dir, until ready;
    `code_root`: the platform's packages from that tree (libs/*/src, services/*/src) instead of the workspace's."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    # Every connection of the bench comes from 127.0.0.1, where D-REC clients each come from their own address:
    # the gateway's per-client limit of the public routes (100 logins a second) would refuse the login scenario.
    env.setdefault("PUBLIC_RATE_LIMIT", "100000/second")
    if code_root is not None:
        # ahead of the workspace's editable installs on sys.path
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in sorted(code_root.glob("*/*/src")))
    argv = [sys.executable, "-m", "opendrec_devstack", "run", "--state-dir", str(state_dir), "--free-ports"]
    log = (state_dir / "run.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            info = json.loads(stack_file.read_text())
        except (FileNotFoundError, ValueError):
            info = None
        if info and info.get("ready"):
            return Stack(proc, state_dir, info["gateway_url"], info["service_urls"])
        if proc.poll() is not None or time.monotonic() > deadline:
            stack = Stack(proc, state_dir, "", {})
            stack.stop()
            tail = (state_dir / "run.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"the platform did not come up:\n{tail}")
        time.sleep(0.2)


# ---- preparing through the public API --------------------------------------------------------


@dataclass
class Client:
    email: str
    token: str
    devices: list[tuple[str, datetime]] = field(default_factory=list)  # (externalId, first read end)


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_body(end: datetime) -> bytes:
    return orjson.dumps(
        {"type": "Delta", "unit": "Wh", "reads": [{"starttimestamp": "", "endtimestamp": iso_ms(end), "value": 1}]}
    )


async def expect(response: aiohttp.ClientResponse, status: int) -> dict:
    body = await response.read()
    if response.status != status:
        raise RuntimeError(f"{response.method} {response.url}: {response.status} {body[:400]!r}")
    return orjson.loads(body) if body else {}


async def prepare(http: aiohttp.ClientSession, connections: int, listed_devices: int) -> list[Client]:
    """A Developer organization per connection, logged in; the first owns `listed_devices` devices, every
    other one device; each device known to readings (its first read accepted)."""

    async def register(i: int) -> Client:
        body = registration_body("Developer", email=f"bench-{uuid.uuid4().hex[:12]}@example.org")
        async with http.post("/api/user/registerWithOrganization", json=body) as r:
            await expect(r, 201)
        async with http.post("/api/auth/login", json={"username": body["email"], "password": PASSWORD}) as r:
            token = (await expect(r, 200))["accessToken"]
        client = Client(body["email"], token)
        for _ in range(listed_devices if i == 0 else 1):
            external_id = f"BENCH-{uuid.uuid4().hex[:12]}"
            async with http.post(
                "/api/device", json=device_body(external_id, capacity=DEVICE_CAPACITY_KW), headers=auth(client)
            ) as r:
                await expect(r, 201)
            client.devices.append((external_id, datetime.now(UTC)))
        return client

    clients = []
    for start in range(0, connections, 4):  # a few at a time: registration hashes two secrets
        clients += await asyncio.gather(*(register(i) for i in range(start, min(start + 4, connections))))
    await asyncio.gather(*(first_read(http, c) for c in clients))
    return clients


def auth(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}"}


async def first_read(http: aiohttp.ClientSession, client: Client) -> None:
    """The read of the first device: 404 until readings has learned the device (device.registered)."""
    external_id, _ = client.devices[0]
    deadline = time.monotonic() + 60
    while True:
        end = datetime.now(UTC)
        async with http.post(
            f"/api/meter-reads/new/{external_id}",
            data=read_body(end),
            headers={**auth(client), "Content-Type": "application/json"},
        ) as r:
            if r.status == 201:
                await r.read()
                client.devices[0] = (external_id, end)
                return
            if r.status != 404 or time.monotonic() > deadline:
                await expect(r, 201)
        await asyncio.sleep(0.1)


# ---- the closed loop -------------------------------------------------------------------------


@dataclass
class Figures:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    first_error: str | None
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds each process used while measured

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the load: each request written whole, its answer parsed with httptools
    (as uvicorn parses requests). The load generator shares the 2 cores with the platform: this costs a fraction of
    aiohttp's client CPU per request (printed as `client`), which the platform then has."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None

    @classmethod
    async def open(cls, base: str) -> Connection:
        url = urlsplit(base)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        _, connection = await asyncio.get_running_loop().create_connection(lambda: cls(f"{host}:{port}"), host, port)
        return connection

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", *(f"{k}: {v}" for k, v in headers.items())]
        head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the connection is closed")
        self.body, self.answer = [], asyncio.get_running_loop().create_future()
        self.transport.write(request)
        async with asyncio.timeout(60):
            return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), b"".join(self.body)))


Send = Callable[[Connection], Awaitable[tuple[int, bytes]]]


async def closed_loop(
    base: str,
    senders: list[Send],
    expected: int,
    warmup_s: float,
    duration_s: float,
    cpu: Callable[[], dict[str, float]],
) -> Figures:
    """Each sender on its own keep-alive connection, one request at a time; only requests sent after the
    warm-up and answered before its end are counted. `cpu()`: CPU seconds used so far, per process, read at the
    start and end of the measured time (CPU per request: a figure a machine shared with other work blurs less than
    requests per second)."""
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0}
    first_error: list[str] = []
    start = time.perf_counter()
    measure_from, measure_to = start + warmup_s, start + warmup_s + duration_s

    async def run(send: Send) -> None:
        connection = await Connection.open(base)
        try:
            while (sent := time.perf_counter()) < measure_to:
                try:
                    status, body = await send(connection)
                except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                    status, body = 0, repr(exc).encode()
                    connection.close()
                    connection = await Connection.open(base)
                answered = time.perf_counter()
                if sent >= measure_from and answered <= measure_to:
                    counts["requests"] += 1
                    latencies.append((answered - sent) * 1000)
                    if status != expected:
                        counts["errors"] += 1
                        if not first_error:
                            first_error.append(f"{status} {body[:300]!r}")
        finally:
            connection.close()

    async def measure_cpu() -> dict[str, float]:
        await asyncio.sleep(measure_from - time.perf_counter())
        before = await asyncio.to_thread(cpu)
        await asyncio.sleep(measure_to - time.perf_counter())
        after = await asyncio.to_thread(cpu)
        return {name: after[name] - before.get(name, 0.0) for name in after}

    cpu_task = asyncio.create_task(measure_cpu())
    await asyncio.gather(*(run(s) for s in senders))
    cpu_s = await cpu_task
    first = first_error[0] if first_error else None
    return Figures(counts["requests"], counts["errors"], duration_s, latencies, first, cpu_s)


def read_sender(client: Client, step: timedelta) -> Send:
    external_id, last_end = client.devices[0]
    headers = {**auth(client), "Content-Type": "application/json"}
    state = {"end": last_end}

    async def send(connection: Connection) -> tuple[int, bytes]:
        state["end"] += step
        body = read_body(state["end"])
        return await connection.send(connection.request("POST", f"/api/meter-reads/new/{external_id}", headers, body))

    return send


def listing_sender(client: Client) -> Send:
    headers = auth(client)

    async def send(connection: Connection) -> tuple[int, bytes]:
        return await connection.send(connection.request("GET", "/api/device/my", headers))

    return send


def login_sender(client: Client) -> Send:
    body = orjson.dumps({"username": client.email, "password": PASSWORD})
    headers = {"Content-Type": "application/json"}

    async def send(connection: Connection) -> tuple[int, bytes]:
        return await connection.send(connection.request("POST", "/api/auth/login", headers, body))

    return send


# ---- profiling (optional) --------------------------------------------------------------------


def start_profiles(
    stack: Stack, directory: Path | None, scenario: str, seconds: float, raw: bool = False
) -> list[subprocess.Popen]:
    if directory is None:
        return []
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile-dir needs py-spy (pip install py-spy into the venv, for measuring only)")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--nonblocking",
                *(["--format", "raw"] if raw else []),
                "--output",
                str(directory / f"{scenario}-{name}.{'txt' if raw else 'svg'}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in stack.service_pids().items()
    ]


# ---- main ------------------------------------------------------------------------------------


def print_rss(label: str, rss: dict[str, float]) -> None:
    print(f"  RSS {label:<9} " + "  ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()), flush=True)


async def bench(args: argparse.Namespace, stack: Stack) -> bool:
    passed = True
    limits = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(
        stack.gateway_url, connector=limits, timeout=aiohttp.ClientTimeout(total=120)
    ) as http:
        clients = await prepare(http, args.connections, args.devices)
    print(f"prepared {len(clients)} users, {sum(len(c.devices) for c in clients)} devices", flush=True)
    await asyncio.sleep(1)  # let the first reads' events settle
    print_rss("idle", stack.rss_mb())
    # What each process spends with no requests (workers, consumers, relays polling): taken off the CPU a
    # scenario used, so CPU per request counts the requests' own work.
    before, started = stack.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(IDLE_SAMPLE_S)
    after, idle_s = stack.cpu_seconds(), time.perf_counter() - started
    idle = {name: max(0.0, after[name] - before.get(name, 0.0)) / idle_s for name in after}
    print("  CPU idle  " + "  ".join(f"{k} {v * 100:.1f}%" for k, v in sorted(idle.items())), flush=True)
    step = timedelta(milliseconds=args.read_step_ms)
    scenarios: dict[str, tuple[list[Send], int]] = {
        "reads": ([read_sender(c, step) for c in clients], 201),
        "listing": ([listing_sender(clients[0]) for _ in clients], 200),
        "login": ([login_sender(c) for c in clients], 200),
    }
    if args.soak:
        return await soak(args, stack, scenarios)
    for name in args.scenarios:
        senders, expected = scenarios[name]
        load_before = os.getloadavg()[0]
        profiles = start_profiles(stack, args.profile_dir, name, args.warmup + args.duration, args.profile_raw)
        figures = await closed_loop(stack.gateway_url, senders, expected, args.warmup, args.duration, stack.cpu_seconds)
        for p in profiles:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:  # py-spy stuck on a loaded machine: its profile is lost, not the run
                p.kill()
                p.wait()
        rate_goal, p50_goal = GOALS[name]
        p50 = figures.percentile(50)
        if args.smoke:
            ok = figures.errors == 0 and figures.requests > 0
            goal = "smoke: every request answered as expected"
        else:
            ok = figures.errors == 0 and figures.rate >= rate_goal and p50 <= p50_goal
            goal = f"goal >= {rate_goal:,.0f} {UNITS[name]}, p50 <= {p50_goal:.0f} ms, no errors"
        passed &= ok
        print(
            f"{name:<8} {figures.rate:8,.1f} {UNITS[name]:<9} p50 {p50:6.1f} ms  p90 {figures.percentile(90):6.1f} ms"
            f"  p99 {figures.percentile(99):6.1f} ms  errors {figures.errors}/{figures.requests}"
            f"  load {load_before:.2f}->{os.getloadavg()[0]:.2f}  [{goal}: {'PASS' if ok else 'MISS'}]",
            flush=True,
        )
        if figures.requests:
            busy = {k: v - idle.get(k, 0.0) * figures.seconds for k, v in figures.cpu_s.items()}
            per_request = {k: v * 1000 / figures.requests for k, v in busy.items() if v > 0}
            machine = per_request.pop("machine", 0.0)
            print(
                f"  CPU ms per request (beyond idle): total {sum(per_request.values()):.2f} = "
                + "  ".join(f"{k} {v:.2f}" for k, v in sorted(per_request.items(), key=lambda kv: -kv[1]))
                + f"; whole machine {machine:.2f} ({figures.cpu_s.get('machine', 0.0) / figures.seconds:.2f} of "
                f"{os.cpu_count()} cores busy)",
                flush=True,
            )
        if figures.first_error:
            print(f"  first error: {figures.first_error}", flush=True)
        print_rss("after", stack.rss_mb())
    return passed


async def soak(args: argparse.Namespace, stack: Stack, scenarios: dict[str, tuple[list[Send], int]]) -> bool:
    """--soak MINUTES: the scenarios in turn, --soak-round seconds each, for that long; each service's RSS after
    every round. Flat: a service's RSS at the end is at most SOAK_GROWTH (or SOAK_SLACK_MB) above what it was once
    the first third had warmed it up (caches and pools filled); a leak grows on past that."""
    deadline = time.perf_counter() + args.soak * 60
    samples: list[tuple[float, dict[str, float]]] = []
    started, errors, rounds = time.perf_counter(), 0, 0
    print(f"soak: {args.soak:g} min, the scenarios in turn, {args.soak_round:g} s each", flush=True)
    while time.perf_counter() < deadline:
        name = args.scenarios[rounds % len(args.scenarios)]
        senders, expected = scenarios[name]
        figures = await closed_loop(stack.gateway_url, senders, expected, 0.0, args.soak_round, stack.cpu_seconds)
        errors += figures.errors
        rounds += 1
        minute = (time.perf_counter() - started) / 60
        rss = stack.rss_mb()
        samples.append((minute, rss))
        print(
            f"  {minute:5.1f} min  {name:<8} {figures.rate:8,.1f} {UNITS[name]:<9} errors {figures.errors}  "
            + "  ".join(f"{k} {v:.0f}" for k, v in rss.items()),
            flush=True,
        )
    warm = next((rss for minute, rss in samples if minute >= args.soak / 3), samples[0][1])
    end = samples[-1][1]
    flat = True
    for name, mb in sorted(end.items()):
        allowed = max(warm.get(name, mb) * SOAK_GROWTH, warm.get(name, mb) + SOAK_SLACK_MB)
        peak = max(rss.get(name, 0.0) for _, rss in samples)
        ok = mb <= allowed
        flat &= ok
        print(
            f"  RSS {name:<16} warm {warm.get(name, 0):5.0f} MB  end {mb:5.0f} MB  peak {peak:5.0f} MB"
            f"  [flat: end <= {allowed:.0f} MB: {'PASS' if ok else 'MISS'}]",
            flush=True,
        )
    print(f"soak: {rounds} rounds, {errors} errors; memory {'flat' if flat else 'NOT flat'}", flush=True)
    return flat and errors == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring, per scenario")
    parser.add_argument("--scenarios", default="reads,listing,login", type=lambda s: [x for x in s.split(",") if x])
    parser.add_argument("--devices", type=int, default=32, help="devices of the listing's organization")
    parser.add_argument("--read-step-ms", type=float, default=5.0, help="time between a device's read ends")
    parser.add_argument("--smoke", action="store_true", help="2 connections, 3 s each: correctness, no speed goal")
    parser.add_argument("--profile-dir", type=Path, default=None)
    parser.add_argument(
        "--profile-raw", action="store_true", help="collapsed stacks (.txt, greppable) instead of flamegraph SVGs"
    )
    parser.add_argument(
        "--code-root",
        type=Path,
        default=None,
        help="run the platform from another tree's packages (e.g. `git archive <commit> libs services` extracted "
        "there): before/after figures on the same machine",
    )
    parser.add_argument(
        "--soak", type=float, default=0.0, help="instead: MINUTES of the scenarios in turn, RSS must stay flat"
    )
    parser.add_argument("--soak-round", type=float, default=20.0, help="seconds of each scenario in a soak")
    parser.add_argument("--keep-state", action="store_true", help="keep the state dir (logs, traces)")
    args = parser.parse_args()
    if unknown := set(args.scenarios) - set(GOALS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    if args.smoke:
        args.connections, args.duration, args.warmup = 2, 3.0, 0.5
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be 1..256")

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")  # fmt: skip
    if args.code_root is not None:
        print(f"platform code from {args.code_root}", flush=True)
    print(f"machine: {os.cpu_count()} CPUs ({cpu}); load average {os.getloadavg()[0]:.2f} before start", flush=True)
    print(
        f"closed loop: {args.connections} connections, {args.warmup:g} s warm-up, {args.duration:g} s measured",
        flush=True,
    )
    state_dir = Path(tempfile.mkdtemp(prefix="opendrec-bench-clients-"))
    started = time.monotonic()
    stack = start_stack(state_dir, args.code_root)
    print(
        f"platform ready in {time.monotonic() - started:.0f} s at {stack.gateway_url} (state {state_dir})", flush=True
    )
    try:
        # uvloop, as the services run: the load generator shares the 2 cores with the platform, so it should take
        # as little of them as it can (its own CPU per request is printed as `client`).
        passed = uvloop.run(bench(args, stack))
    finally:
        stack.stop()
        if not args.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    print("PASS" if passed else "MISS", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
