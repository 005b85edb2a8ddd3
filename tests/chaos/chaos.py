"""Fault injection (issue 13): the whole platform as processes, reads through the gateway, services killed with -9 and
the broker restarted empty meanwhile; afterwards every watt-hour must be certified exactly once, in its window.

    python tests/chaos/chaos.py [--seed N] [--reads 200000] [--kills 10]     (make chaos; CHAOS_SEED)

The run (`run_chaos`), decided by the seed alone:
- starts the platform as `make run` does (`python -m opendrec_devstack run`: every service under the devstack's
  supervisor, OPENDREC_DEVSTACK_RESTART=1 so a killed service is started again) on free ports, a state dir and a
  Tansu broker of its own (so that it can be killed and started again, empty, on the same port);
- registers a developer, devices in two countries and moves their onboarding back to a whole hour T0 in the past
  (ONBOARDING_DATE_CHANGES_ENABLED), so their Delta reads lie in hours that have closed; a buyer reserves them:
  one reservation from T0 on, one whose window starts an hour later and ends hours before the last read (energy
  outside it must never be certified);
- sends every device's Delta reads in order through the gateway, in batches and single reads, each with an
  Idempotency-Key, a request retried (same key, same body) until it is answered: some duplicated on purpose, the
  last device of each reservation held back until its reservation has certificates (its reads are late);
- meanwhile kills (SIGKILL, the process group) every service at least once (the full run) at seeded moments of the
  progress, and the broker at least once; each fault waits until the platform answers again;
- then waits, on conditions and with a deadline, until each reservation's certificates hold the expected energy,
  and checks what a user and an auditor would: the certificate log per reservation and per device (public API),
  the reads per device (public API and the readings database), every read certified exactly its share in its
  window and never outside it (certificates database), nothing left unissued, no dead letter
  (`/api/admin/dead-letters` and the services' logs: the broker loses its DLQ topics when it restarts).

Each read is 1, 2 or 3 kWh over 10 s, the reads of a device ending on a 10 s grid from T0 on: no read crosses an
hour, windows start and end on whole hours, so every hourly period of a reservation and country holds whole kWh
(no carry) and the expected certified energy is the plain sum of the reads inside the window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from opendrec_devstack.broker import EmbeddedBroker, start_broker
from opendrec_devstack.net import free_port, with_database
from opendrec_devstack.pytest_plugin import Platform, databases_with_prefix, drop_databases, start_platform
from opendrec_devstack.services import SERVICES

STEP = timedelta(seconds=10)  # a read's length; 360 a device-hour
READ_WH = (1000, 2000, 3000)
CAPACITY_KW = 20_000  # 3 kWh in 10 s is ~1/4 of what plausibility lets such a plant make
COUNTRIES = ("IND", "KEN")
SERVICE_NAMES = tuple(s.name for s in SERVICES)
BROKER = "broker"
REQUEST_DEADLINE_S = 180.0  # one request retried through faults
RECOVERY_DEADLINE_S = 120.0  # a killed service (or the broker) answering again
BROKER_BACK_TOPICS = {"read.ingested", "reservation.created", "certificate.issued"}
PLATFORM_ENV = {
    "OPENDREC_DEVSTACK_RESTART": "1",
    "ONBOARDING_DATE_CHANGES_ENABLED": "true",
    "CERTIFY_SETTLE_S": "1",
    "CERTIFY_SWEEP_INTERVAL_S": "2",
    "BROKER_EPOCH_CHECK_S": "2",
}


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    reads: int = 200_000
    kills: int = 11  # SIGKILLs in all, the broker's included
    devices: int = 40
    senders: int = 8  # requests in flight
    max_batch: int = 400  # reads a request (a third of the requests are single reads)
    every_service: bool = True  # every service killed at least once (the small run picks among the core ones)
    settle_deadline_s: float = 600.0


# ---------------------------------------------------------------- the plan (from the seed)


@dataclass
class Device:
    index: int
    external_id: str
    country: str
    reads: list[int]  # Wh of each read; read k covers [T0 + k*STEP, T0 + (k+1)*STEP)
    reservation: int = 0  # index into World.reservations
    late: bool = False
    id: int = 0


@dataclass
class Reservation:
    index: int
    start: datetime
    end: datetime
    devices: list[Device] = field(default_factory=list)
    id: int = 0
    uid: str = ""


@dataclass
class World:
    t0: datetime
    devices: list[Device]
    reservations: list[Reservation]

    def read_window(self, device: Device, k: int) -> tuple[datetime, datetime]:
        return self.t0 + k * STEP, self.t0 + (k + 1) * STEP

    def expected_wh(self, device: Device) -> int:
        """What the device's reservation must certify: its reads inside the window."""
        r = self.reservations[device.reservation]
        return sum(wh for k, wh in enumerate(device.reads) if self.inside(r, *self.read_window(device, k)))

    @staticmethod
    def inside(r: Reservation, start: datetime, end: datetime) -> bool:
        return start >= r.start and end <= r.end


def plan_world(cfg: ChaosConfig, rng: random.Random, now: datetime) -> World:
    per_device = max(2, cfg.reads // cfg.devices)
    hours = -(-per_device * STEP // timedelta(hours=1))
    t0 = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours + 2)
    tag = uuid.uuid4().hex[:6]
    devices = []
    for i in range(cfg.devices):
        n = per_device + (cfg.reads - per_device * cfg.devices if i == cfg.devices - 1 else 0)
        reads = [rng.choice(READ_WH) for _ in range(n)]
        devices.append(Device(i, f"CHAOS-{tag}-{i:03d}", COUNTRIES[i % len(COUNTRIES)], reads))
    # R0 takes every read of its devices; R1 starts an hour after T0 and ends at half the reads' span: the energy
    # before and after its window is accepted but never certified
    half = max(2, hours // 2)
    reservations = [
        Reservation(0, t0, now + timedelta(days=1)),
        Reservation(1, t0 + timedelta(hours=1), t0 + timedelta(hours=1 + half)),
    ]
    for d in devices:
        d.reservation = d.index % 2
        reservations[d.reservation].devices.append(d)
    for r in reservations:  # its last device sends once the reservation has certificates: late reads
        r.devices[-1].late = True
    return World(t0, devices, reservations)


@dataclass(frozen=True)
class Fault:
    at_progress: float  # share of the reads accepted when it strikes
    victim: str  # a service name or BROKER


def plan_faults(cfg: ChaosConfig, rng: random.Random) -> list[Fault]:
    """The kills while reads arrive, at seeded shares of them: the broker, and the service every read passes through
    (the full run: every service, and the broker twice) at least once, the others picked at random; the full run ends with certificates
    killed once the last read was accepted, while it is still certifying the backlog."""
    core = ["readings", "certificates", "reservations", "devices", "gateway", "identity"]
    # the full run restarts the broker twice: the second restart is the one seen losing events (see README)
    victims: list[str] = [BROKER, BROKER, *SERVICE_NAMES] if cfg.every_service else [BROKER, "readings"]
    during = cfg.kills - 1 if cfg.every_service else cfg.kills
    while len(victims) < during:
        victims.append(rng.choice([*core, BROKER] if cfg.every_service else core))
    rng.shuffle(victims)
    moments = sorted(rng.uniform(0.05, 0.85) for _ in victims)
    plan = [Fault(m, v) for m, v in zip(moments, victims, strict=True)]
    return [*plan, Fault(1.0, "certificates")] if cfg.every_service else plan


# ---------------------------------------------------------------- process control


class Faults:
    """SIGKILL a service (its process group: the service and any workers) and wait until the supervisor started it
    again and it answers /readyz; SIGKILL the broker and start an empty one on the same port."""

    def __init__(self, platform: Platform, broker: EmbeddedBroker, broker_log: Path):
        self.platform = platform
        self.broker = broker
        self.broker_log = broker_log
        self.kills: Counter[str] = Counter()
        self.log: list[str] = []

    def service_pid(self, name: str) -> int | None:
        module = next(s.module for s in SERVICES if s.name == name)
        for child in psutil.Process(self.platform.process.pid).children(recursive=True):
            try:
                cmd = child.cmdline()
                if cmd[-2:] == ["-m", module] and os.getpgid(child.pid) == child.pid:
                    return child.pid
            except (psutil.Error, ProcessLookupError, IndexError):
                continue
        return None

    async def strike(self, victim: str, started: float, struck: asyncio.Event, progress: int) -> None:
        """Kill `victim`, set `struck`, return once it is back."""
        moment = time.monotonic() - started
        if victim == BROKER:
            await asyncio.to_thread(self._restart_broker)
            struck.set()
            await self._topics_back()
        else:
            pid = self.service_pid(victim)
            if pid is None:
                raise AssertionError(f"no process of {victim} to kill")
            os.killpg(pid, signal.SIGKILL)
            struck.set()
            await self._until_back(victim, pid)
        self.kills[victim] += 1
        self.log.append(
            f"{moment:7.1f}s  {victim} killed at {progress:,} reads accepted, "
            f"back after {time.monotonic() - started - moment:.1f}s"
        )

    def _restart_broker(self) -> None:
        port = self.broker.port
        os.killpg(self.broker.process.pid, signal.SIGKILL)
        self.broker.process.wait(10)
        self.broker.stop()  # forgets its pid file
        self.broker = start_broker(port, log_path=self.broker_log)

    async def _topics_back(self) -> None:
        """The restarted broker is empty: back once the services created their topics on it again."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        deadline = time.monotonic() + RECOVERY_DEADLINE_S
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.broker.bootstrap, request_timeout_ms=2000)
            try:
                await admin.start()
                if set(await admin.list_topics()) >= BROKER_BACK_TOPICS:
                    return
            except (KafkaError, OSError):
                pass
            finally:
                await admin.close()
            await asyncio.sleep(0.5)
        raise AssertionError(f"the services did not create {sorted(BROKER_BACK_TOPICS)} again on the new broker")

    async def _until_back(self, name: str, old_pid: int) -> None:
        url = self.platform.service_urls[name] + "/readyz"
        deadline = time.monotonic() + RECOVERY_DEADLINE_S
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                pid = self.service_pid(name)
                if pid is not None and pid != old_pid:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(url)).status_code == 200:
                            return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{name} did not come back within {RECOVERY_DEADLINE_S}s\n{self.platform.log_tail()}")


# ---------------------------------------------------------------- the client


class Unanswered(AssertionError):
    pass


@dataclass
class Client:
    """Calls through the gateway, retried through faults: a refused connection, a timeout or a 5xx (the gateway or
    the service was killed) is tried again with the same body and Idempotency-Key, a 401 after logging in again."""

    http: httpx.AsyncClient
    email: str
    password: str
    token: str = ""
    retries: Counter[str] = field(default_factory=Counter)

    async def login(self) -> None:
        async def attempt() -> httpx.Response:
            return await self.http.post("/api/auth/login", json={"username": self.email, "password": self.password})

        r = await self._through_faults(attempt, auth=False)
        assert r.status_code == 200, r.text
        self.token = r.json()["accessToken"]

    async def call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        async def attempt() -> httpx.Response:
            headers = dict(kwargs.pop("headers", None) or {})
            if auth:
                headers["Authorization"] = f"Bearer {self.token}"
            return await self.http.request(method, path, headers=headers, **kwargs)

        return await self._through_faults(attempt, auth=auth)

    async def _through_faults(self, attempt: Callable[[], Awaitable[httpx.Response]], auth: bool) -> httpx.Response:
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        last = ""
        while time.monotonic() < deadline:
            try:
                r = await attempt()
            except httpx.TransportError as exc:
                last = type(exc).__name__
            else:
                if r.status_code == 401 and auth:
                    last = "401"
                    with contextlib.suppress(AssertionError):
                        await self.login()
                elif r.status_code >= 500:
                    last = str(r.status_code)
                else:
                    return r
            self.retries[last] += 1
            await asyncio.sleep(0.25)
        raise Unanswered(f"no answer within {REQUEST_DEADLINE_S}s (last: {last})")


# ---------------------------------------------------------------- the run


@dataclass
class Outcome:
    seed: int
    reads_sent: int = 0
    reads_accepted: int = 0
    requests: int = 0
    single_reads: int = 0
    duplicates_sent: int = 0
    duplicates_replayed: int = 0
    late_devices: int = 0
    expected_wh: dict[str, int] = field(default_factory=dict)  # per reservation
    found_wh: dict[str, int] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)
    dead_letters: int = -1
    dlq_log_lines: int = -1
    duration_s: float = 0.0
    settle_s: float = 0.0
    retries: Counter[str] = field(default_factory=Counter)
    certificates: dict[str, int] = field(default_factory=dict)  # issued, by kind (period, late)
    problems: list[str] = field(default_factory=list)
    fault_log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        rows = [
            ("seed", str(self.seed)),
            ("reads sent", f"{self.reads_sent:,}"),
            ("reads accepted", f"{self.reads_accepted:,}"),
            ("requests (single reads)", f"{self.requests:,} ({self.single_reads:,})"),
            ("duplicates sent / replayed", f"{self.duplicates_sent:,} / {self.duplicates_replayed:,}"),
            ("devices sending late", str(self.late_devices)),
        ]
        for name, expected in self.expected_wh.items():
            found = self.found_wh.get(name, -1)
            mark = "ok" if found == expected else "MISMATCH"
            rows.append((f"certified Wh {name}", f"expected {expected:,}  found {found:,}  {mark}"))
        rows.append(("certificates by kind", ", ".join(f"{k} {n}" for k, n in self.certificates.items()) or "none"))
        services = [n for n in (*SERVICE_NAMES, BROKER) if self.kills[n]]
        rows.append(("kills", f"{sum(self.kills.values())}: " + ", ".join(f"{n} {self.kills[n]}" for n in services)))
        rows.append(("broker restarts", str(self.kills[BROKER])))
        rows.append(("dead letters (admin API / DLQ log lines)", f"{self.dead_letters} / {self.dlq_log_lines}"))
        rows.append(("retries by cause", ", ".join(f"{k} {v}" for k, v in sorted(self.retries.items())) or "none"))
        rows.append(("settled after ingestion", f"{self.settle_s:.1f}s"))
        rows.append(("duration", f"{self.duration_s:.1f}s"))
        rows.append(("result", "PASS" if self.ok else f"FAIL ({len(self.problems)} problems)"))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines += ["faults:"] + [f"  {line}" for line in self.fault_log]
        lines += [f"problem: {p}" for p in self.problems[:50]]
        return "\n".join(lines)


def chunks(rng: random.Random, n: int, max_batch: int) -> Iterator[tuple[int, int]]:
    """[a, b) slices of a device's reads: a third of the requests single reads, the others batches of 2-max_batch."""
    k = 0
    while k < n:
        size = 1 if rng.random() < 0.3 else rng.randint(2, max_batch)
        yield k, min(n, k + size)
        k += size


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_chaos(
    cfg: ChaosConfig, postgres_url: str, state_dir: Path, out: Callable[[str], None] = print
) -> Outcome:
    started = time.monotonic()
    rng = random.Random(cfg.seed)
    outcome = Outcome(cfg.seed)
    world = plan_world(cfg, rng, datetime.now(UTC))
    faults_plan = plan_faults(cfg, rng)
    broker_log = state_dir / "tansu.log"
    broker = start_broker(free_port(), log_path=broker_log)
    faults: Faults | None = None
    platform: Platform | None = None
    ingestion: asyncio.Task[None] | None = None
    try:
        out(f"chaos: seed {cfg.seed}, {cfg.reads:,} reads, {len(faults_plan)} kills; starting the platform")
        platform = start_platform(
            state_dir / "platform", database_url=postgres_url, kafka_bootstrap=broker.bootstrap, extra_env=PLATFORM_ENV
        )
        faults = Faults(platform, broker, broker_log)
        limits = httpx.Limits(max_connections=cfg.senders + 4)
        async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=30, limits=limits) as http:
            developer, buyer, admin = await setup(http, platform, world, out)
            out(f"chaos: {len(world.devices)} devices, reads from {iso(world.t0)}; ingesting")
            thresholds = [int(f.at_progress * cfg.reads) for f in faults_plan]
            struck = [asyncio.Event() for _ in faults_plan]
            ingestion = asyncio.create_task(ingest(cfg, world, developer, buyer, rng, outcome, thresholds, struck))
            await inject(faults, faults_plan, outcome, ingestion, thresholds, struck, started, out)
            await ingestion
            ingested = time.monotonic()
            out(f"chaos: {outcome.reads_accepted:,} reads accepted; waiting for the certificates")
            await settle(world, buyer, outcome, cfg.settle_deadline_s)
            outcome.settle_s = time.monotonic() - ingested
            await check(world, platform, developer, buyer, admin, outcome)
            for c in (developer, buyer, admin):
                outcome.retries.update(c.retries)
    except Unanswered as exc:
        outcome.problems.append(f"a request went unanswered through the faults: {exc}")
    except AssertionError as exc:  # a step that must succeed did not (a service not back, a refused setup call)
        outcome.problems.append(f"the run stopped: {exc}")
    finally:
        if ingestion is not None and not ingestion.done():
            ingestion.cancel()
            await asyncio.gather(ingestion, return_exceptions=True)
        if faults is not None:
            outcome.kills = faults.kills
            outcome.fault_log = faults.log
            broker = faults.broker
        if platform is not None:
            outcome.dlq_log_lines = platform.log_path.read_text(errors="replace").count("message sent to DLQ")
            if outcome.dlq_log_lines:
                outcome.problems.append(f"{outcome.dlq_log_lines} messages were dead-lettered (platform log)")
            platform.stop()
            drop_databases(postgres_url, databases_with_prefix(postgres_url, platform.database_name_prefix))
        broker.stop()
        outcome.duration_s = time.monotonic() - started
    return outcome


async def setup(
    http: httpx.AsyncClient, platform: Platform, world: World, out: Callable[[str], None]
) -> tuple[Client, Client, Client]:
    from opendrec_devstack.drec_samples import device_body, registration_body, reservation_body

    async def user(kind: str) -> Client:
        body = registration_body(kind, email=f"chaos-{kind.lower()}-{uuid.uuid4().hex[:8]}@example.org")
        r = await http.post("/api/user/registerWithOrganization", json=body)
        assert r.status_code == 201, r.text
        client = Client(http, body["email"], body["password"])
        await client.login()
        return client

    developer, buyer = await user("Developer"), await user("Buyer")
    admin = Client(http, platform.admin_email, platform.admin_password)
    await admin.login()

    async def register(d: Device) -> None:
        body = device_body(d.external_id, countryCode=d.country, capacity=CAPACITY_KW)
        r = await developer.call("POST", "/api/device", json=body)
        assert r.status_code == 201, r.text
        d.id = r.json()["id"]
        params = {"deviceId": d.external_id, "givenDate": iso(world.t0)}
        r = await developer.call("PUT", "/api/device/my/deviceOnBoardingDate", params=params)
        assert r.status_code == 200, r.text

    await bounded(8, [register(d) for d in world.devices])
    for res in world.reservations:
        energy = sum(world.expected_wh(d) for d in res.devices)
        body = reservation_body(
            f"chaos-{res.index}-{uuid.uuid4().hex[:6]}",
            [d.id for d in res.devices],
            reservationStartDate=iso(res.start),
            reservationEndDate=iso(res.end),
            targetCapacityInMegaWattHour=max(1, -(-energy // 1_000_000) * 2),
        )
        r = await buyer.call("POST", "/api/device-group", json=body)
        assert r.status_code == 201, r.text
        res.id, res.uid = r.json()["id"], r.json()["devicegroup_uid"]
    return developer, buyer, admin


async def bounded(n: int, work: list[Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(n)

    async def one(w: Awaitable[Any]) -> Any:
        async with gate:
            return await w

    return await asyncio.gather(*(one(w) for w in work))


async def ingest(
    cfg: ChaosConfig,
    world: World,
    developer: Client,
    buyer: Client,
    rng: random.Random,
    outcome: Outcome,
    thresholds: list[int],
    struck_events: list[asyncio.Event],
) -> None:
    # every random choice made up front, in device order: the same seed sends the same requests
    plans = {
        d.index: [(a, b, rng.random(), rng.random()) for a, b in chunks(rng, len(d.reads), cfg.max_batch)]
        for d in world.devices
    }
    queue: asyncio.Queue[Device] = asyncio.Queue()
    for d in sorted(world.devices, key=lambda d: d.late):
        queue.put_nowait(d)
    outcome.late_devices = sum(d.late for d in world.devices)

    async def has_certificates(res: Reservation) -> bool:
        r = await buyer.call("GET", f"/api/certificate-log/issuer/certified/{res.uid}", params={"limit": 1})
        return r.status_code == 200 and r.json()["totalCount"] > 0

    async def send(d: Device) -> None:
        if d.late:
            for _ in range(120):  # seconds: certificates come within seconds of the first reads
                if await has_certificates(world.reservations[d.reservation]):
                    break
                await asyncio.sleep(1)
        for n, (a, b, dup, bare) in enumerate(plans[d.index]):
            reads = [
                {"starttimestamp": "", "endtimestamp": iso(world.read_window(d, k)[1]), "value": d.reads[k]}
                for k in range(a, b)
            ]
            body = {"type": "Delta", "unit": "Wh", "reads": reads}
            key = {"Idempotency-Key": f"{d.external_id}-{n}"}
            await pace()
            outcome.reads_sent += b - a
            outcome.requests += 1
            outcome.single_reads += b - a == 1
            r = await developer.call("POST", f"/api/meter-reads/new/{d.external_id}", json=body, headers=key)
            deadline = time.monotonic() + 60
            while n == 0 and r.status_code == 400 and "onboarding date" in r.text and time.monotonic() < deadline:
                # readings hears of the earlier onboarding date from device.updated, a moment after devices
                await asyncio.sleep(0.5)
                r = await developer.call("POST", f"/api/meter-reads/new/{d.external_id}", json=body, headers=key)
            if r.status_code != 201 or (r.json()["count"], r.json()["totalWh"]) != (b - a, sum(d.reads[a:b])):
                outcome.problems.append(f"{d.external_id} reads {a}-{b}: {r.status_code} {r.text[:300]}")
                continue
            outcome.reads_accepted += b - a
            if dup < 0.05:  # the same request again: answered as the first time, nothing added
                headers = {} if bare < 0.5 else key  # without a key: the same content is recognised
                outcome.duplicates_sent += 1
                again = await developer.call(
                    "POST", f"/api/meter-reads/new/{d.external_id}", json=body, headers=headers
                )
                if again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true":
                    outcome.duplicates_replayed += 1
                else:
                    outcome.problems.append(f"{d.external_id} duplicate of {a}-{b}: {again.status_code} {again.text}")

    async def pace() -> None:
        # the senders stop at a fault's moment until it struck: every fault meets requests in flight
        for threshold, struck in zip(thresholds, struck_events, strict=True):
            if outcome.reads_accepted >= threshold and not struck.is_set():
                await struck.wait()

    async def sender() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    await asyncio.gather(*(sender() for _ in range(cfg.senders)))


async def inject(
    faults: Faults,
    plan: list[Fault],
    outcome: Outcome,
    ingestion: asyncio.Task[None],
    thresholds: list[int],
    struck_events: list[asyncio.Event],
    started: float,
    out: Callable[[str], None],
) -> None:
    """Each fault when its share of the reads was accepted (those left when ingestion ends, at once)."""
    for fault, threshold, struck in zip(plan, thresholds, struck_events, strict=True):
        while not ingestion.done() and outcome.reads_accepted < threshold:
            await asyncio.wait({ingestion}, timeout=0.05)
        await faults.strike(fault.victim, started, struck, outcome.reads_accepted)
        out(f"chaos: {faults.log[-1]}")


async def settle(world: World, buyer: Client, outcome: Outcome, deadline_s: float) -> None:
    for res in world.reservations:
        outcome.expected_wh[f"reservation {res.index}"] = sum(world.expected_wh(d) for d in res.devices)
    deadline = time.monotonic() + deadline_s
    while True:
        for res in world.reservations:
            r = await buyer.call("GET", f"/api/certificate-log/issuer/certified/{res.uid}", params={"limit": 1})
            assert r.status_code == 200, r.text
            outcome.found_wh[f"reservation {res.index}"] = r.json()["totalEnergyWh"]
        if outcome.found_wh == outcome.expected_wh or time.monotonic() > deadline:
            return
        await asyncio.sleep(1)


async def check(
    world: World, platform: Platform, developer: Client, buyer: Client, admin: Client, outcome: Outcome
) -> None:
    problems = outcome.problems
    for name, expected in outcome.expected_wh.items():
        if outcome.found_wh.get(name) != expected:
            problems.append(f"{name}: certified {outcome.found_wh.get(name)} Wh, expected {expected}")

    # the certificate log, per device (every part of every certificate, the buyer's view)
    for res in world.reservations:
        per_device: Counter[int] = Counter()
        page = 1
        while True:
            params = {"groupId": res.id, "pageNumber": page, "limit": 1000}
            r = await buyer.call("GET", "/api/certificate-log/by-reservation-groupId", params=params)
            assert r.status_code == 200, r.text
            for entry in r.json():
                per_device[int(entry["deviceId"])] += int(entry["readvalue_watthour"])
            if page * 1000 >= int(r.headers["X-Total-Count"]):
                break
            page += 1
        for d in res.devices:
            if per_device[d.id] != world.expected_wh(d):
                problems.append(
                    f"device {d.external_id}: certified {per_device[d.id]} Wh, expected {world.expected_wh(d)}"
                )
        r = await buyer.call("GET", f"/api/certificate-log/issuer/certified/{res.uid}", params={"limit": 1})
        if r.json()["carryWh"] != 0:
            problems.append(f"reservation {res.index}: {r.json()['carryWh']} Wh carried (every period is whole kWh)")

    # the reads, per device, as their owner reads them back
    for d in world.devices:
        totals = {"readType": "accumulated", "granularity": "year"}
        r = await developer.call("GET", f"/api/meter-reads/new/{d.external_id}", params=totals)
        total = r.json().get("totalWh") if r.status_code == 200 else r.text
        if total != sum(d.reads):
            problems.append(f"device {d.external_id}: readings total {total}, sent {sum(d.reads)}")

    r = await admin.call("GET", "/api/admin/dead-letters")
    assert r.status_code == 200, r.text
    outcome.dead_letters = r.json()["waitingItems"]
    if outcome.dead_letters:
        problems.append(f"{outcome.dead_letters} dead letters waiting: {r.text[:1000]}")

    await check_databases(world, platform, outcome)


async def check_databases(world: World, platform: Platform, outcome: Outcome) -> None:
    """The read models: every read sent is an interval in readings and a read in certificates, certified exactly its
    share (all of it inside its reservation's window, nothing outside), every allocation inside the window and
    issued."""
    problems = outcome.problems
    by_id = {d.id: d for d in world.devices}
    expected: dict[tuple[int, datetime], tuple[int, int]] = {}
    for d in world.devices:
        res = world.reservations[d.reservation]
        for k, wh in enumerate(d.reads):
            start, end = world.read_window(d, k)
            expected[(d.id, end)] = (wh, wh if world.inside(res, start, end) else 0)

    def url(service: str) -> str:
        return with_database(platform.database_url, f"{platform.database_name_prefix}{service}")

    conn = await asyncpg.connect(url("readings"))
    try:
        rows = await conn.fetch("SELECT device_id, end_at, wh FROM intervals")
    finally:
        await conn.close()
    got = {(r["device_id"], r["end_at"]): r["wh"] for r in rows if r["device_id"] in by_id}
    if got != {key: wh for key, (wh, _) in expected.items()}:
        missing = len(expected.keys() - got.keys())
        extra = len(got.keys() - expected.keys())
        wrong = sum(1 for key in got.keys() & expected.keys() if got[key] != expected[key][0])
        problems.append(f"readings intervals: {missing} missing, {extra} not sent, {wrong} with other energy")

    conn = await asyncpg.connect(url("certificates"))
    try:
        reads = await conn.fetch("SELECT device_id, end_at, energy_wh, certified_wh FROM reads")
        outside = await conn.fetchval(
            """SELECT count(*) FROM allocations a JOIN reservations r USING (reservation_id)
               WHERE a.start_at < r.reservation_start OR a.end_at > r.reservation_end"""
        )
        pending = await conn.fetchval("SELECT count(*) FROM allocations WHERE round_id IS NULL")
        kinds = await conn.fetch("SELECT kind, count(*) AS n FROM certificates GROUP BY kind ORDER BY kind")
        over = await conn.fetchval(
            """SELECT count(*) FROM reads r
               WHERE (SELECT coalesce(sum(energy_wh), 0) FROM allocations WHERE read_id = r.id) > r.energy_wh"""
        )
    finally:
        await conn.close()
    outcome.certificates = {r["kind"]: r["n"] for r in kinds}
    seen = {
        (r["device_id"], r["end_at"]): (r["energy_wh"], r["certified_wh"]) for r in reads if r["device_id"] in by_id
    }
    if seen.keys() != expected.keys():
        problems.append(
            f"certificates' reads: {len(expected.keys() - seen.keys())} missing, {len(seen.keys() - expected.keys())} not sent"
        )
    differ = [(key, seen[key], expected[key]) for key in seen.keys() & expected.keys() if seen[key] != expected[key]]
    if differ:
        problems.append(f"{len(differ)} reads certified other than their share in the window, e.g. {differ[:3]}")
    if outside:
        problems.append(f"{outside} allocations outside their reservation's window")
    if pending:
        problems.append(f"{pending} allocations never issued")
    if over:
        problems.append(f"{over} reads allocated beyond their energy")


# ---------------------------------------------------------------- make chaos


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """$DATABASE_URL, else an embedded Postgres of the run's own."""
    if given := os.environ.get("DATABASE_URL"):
        yield given
        return
    from opendrec_devstack.postgres import start_postgres

    base = tempfile.mkdtemp(prefix="opendrec-chaos-pg-")
    pg = start_postgres(Path(base) / "data")
    try:
        yield pg.url
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or random.randrange(10**6)))
    parser.add_argument("--reads", type=int, default=int(os.environ.get("CHAOS_READS") or 200_000))
    parser.add_argument("--kills", type=int, default=int(os.environ.get("CHAOS_KILLS") or 11))
    parser.add_argument("--state-dir", type=Path, default=None, help="kept after the run (default: a temp dir)")
    args = parser.parse_args(argv)
    cfg = ChaosConfig(seed=args.seed, reads=args.reads, kills=args.kills)
    with contextlib.ExitStack() as stack:
        state = args.state_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opendrec-chaos-")))
        state.mkdir(parents=True, exist_ok=True)
        postgres = stack.enter_context(postgres_server())
        outcome = asyncio.run(run_chaos(cfg, postgres, state))
    print(outcome.table())
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
