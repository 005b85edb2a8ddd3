"""Readings benchmarks: figures printed, ratios measured in the same run (not timed tests).

    python bench/readings/bench_readings.py [--clients 4] [--batch 5000] [--batches-per-client 40]
                                            [--rss-reads 1000000] [--direct] [--skip a,b,c]
                                            [--workers 1] [--profile FILE] [--read-type Delta|Aggregate|History]

Starts, as real processes on loopback: an embedded Postgres and a Tansu broker (devstack),
the readings service (`python -m opendrec_readings`), and the gateway
(`python -m opendrec_gateway`, READINGS_URL on the service, IDENTITY_URL on a JWKS served
here); with --direct clients call the service directly; if the gateway does not come up, they
do too, the output says so and the run counts as a miss (exit 1). Devices are announced as
device.registered on the broker.

(a) ingestion: --clients concurrent clients, each posting --batches-per-client batches of
    --batch Delta reads (one device per client; --read-type Aggregate: meter totals instead,
    the same energy; History: intervals before onboarding), timed until every batch is answered 201 AND
    its reads are on the read.ingested topic; then a bare asyncpg copy_records_to_table of the
    same rows (same table shape, same number of concurrent connections, one transaction per
    batch) in the same Postgres. Prints both rates and the ratio, the load average, the CPU
    each process used meanwhile, and the service's peak RSS.
    Goals: >= 100,000 reads/s end to end and >= 65% of the copy (issue 16).
    The clients post with aiohttp: they stand in for machines elsewhere, and httpx spent
    ~10 ms of CPU per 400 kB post on the 2 cores the system needs.
    --workers N: the readings service with HTTP_WORKERS=N (N processes on its one port: how it
    scales on a machine's cores); its CPU and memory are those of all its processes. --profile FILE: the (single) service under cProfile in CPU time
    (profiled_service.py); read it with pstats.
(b) a year of hourly reads (8,760) of one device, summed per day (readType=accumulated,
    granularity=day): median and p99 latency of 200 requests, one at a time. Goal: p50 < 50 ms.
(c) resident memory of the readings service while --rss-reads reads are ingested (as in (a)):
    sampled every 0.2 s; prints the RSS before, at each quarter, and the peak (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from opendrec_contracts import DeviceRegistered
from opendrec_devstack.broker import start_broker
from opendrec_devstack.net import free_port
from opendrec_devstack.postgres import EmbeddedPostgres, start_postgres
from opendrec_devstack.procs import stop_process
from opendrec_kit.testing import TokenIssuer, publish_events, serve_jwks

# Batch ingestion end to end against a bare COPY of the same rows in the same run (issue 16: >= 65 %).
GOAL_COPY_RATIO = 0.65
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
PERMS = {"READS_MANAGEMENT_CRUDL": "RW"}


# ---- processes ----------------------------------------------------------------------------


def spawn(module: str, env: dict[str, str], log: Path, profile: Path | None = None) -> subprocess.Popen:
    # --profile: the service under cProfile (profiled_service.py), written when it stops.
    command = [str(Path(__file__).with_name("profiled_service.py")), str(profile)] if profile else ["-m", module]
    return subprocess.Popen(
        [sys.executable, *command],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_ready(url: str, proc: subprocess.Popen, deadline_s: float = 60) -> bool:
    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < end:
            if proc.poll() is not None:
                return False
            try:
                if (await client.get(url, timeout=2)).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    return False


def service_rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB of the readings process serving requests: the largest of its workers, or itself."""
    pids = [child.pid for child in psutil.Process(pid).children()] or [pid]
    return max(rss_kb(p) for p in pids)


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


# ---- workload -----------------------------------------------------------------------------


def new_device(onboarded: datetime, capacity_kw: float = 1000, commissioned_days_before: int = 30) -> DeviceRegistered:
    device_id = uuid.uuid4().int % 10**12 + 1
    return DeviceRegistered(
        device_id=device_id, device_uuid=uuid.uuid4(), external_id=f"BENCH-{device_id}", organization_id=4242,
        capacity_kw=capacity_kw, country_code="IND", fuel_code="ES100", device_type_code="TC110",
        commissioning_date=onboarded - timedelta(days=commissioned_days_before), onboarded_at=onboarded,
    )  # fmt: skip


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_bodies(
    device: DeviceRegistered, batches: int, size: int, step: timedelta, wh: int, read_type: str = "Delta"
) -> list[bytes]:
    """The request bodies (encoded before the clock starts), consecutive reads of `wh` each: from
    onboarding, Delta values or Aggregate meter totals (the device's first one a baseline without
    energy); History intervals from commissioning."""
    bodies, n = [], 0
    for _ in range(batches):
        reads = []
        for _ in range(size):
            n += 1
            if read_type == "History":
                start, end = device.commissioning_date + (n - 1) * step, device.commissioning_date + n * step
                reads.append({"starttimestamp": iso(start), "endtimestamp": iso(end), "value": wh})
                continue
            value = wh if read_type == "Delta" else n * wh
            reads.append({"starttimestamp": "", "endtimestamp": iso(device.onboarded_at + n * step), "value": value})
        bodies.append(orjson.dumps({"type": read_type, "unit": "Wh", "reads": reads}))
    return bodies


async def register(bootstrap: str, pg_url: str, devices: list[DeviceRegistered]) -> None:
    await publish_events(bootstrap, devices, producer="devices")
    conn = await asyncpg.connect(pg_url)
    try:
        ids = [d.device_id for d in devices]
        end = time.monotonic() + 60
        while await conn.fetchval("SELECT count(*) FROM devices WHERE device_id = ANY($1::bigint[])", ids) < len(ids):
            if time.monotonic() > end:
                raise RuntimeError("the readings service did not learn the devices")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


class IngestedCounter:
    """Counts reads announced on read.ingested for the given devices, from the topic's current end."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.reads = 0
        self.devices: set[int] = set()
        self.target = 0
        self.done = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        # A short fetch wait: the time an event is on the topic is measured, not a consumer's polling interval.
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_wait_ms=20,
        )
        await self.consumer.start()
        await self.consumer.topics()
        partitions = [TopicPartition("read.ingested", p) for p in self.consumer.partitions_for_topic("read.ingested")]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._run())

    def expect(self, devices: list[DeviceRegistered], reads: int) -> None:
        self.devices, self.reads, self.target = {d.device_id for d in devices}, 0, reads
        self.done.clear()

    async def _run(self) -> None:
        assert self.consumer is not None
        while True:
            for records in (await self.consumer.getmany(timeout_ms=100)).values():
                for r in records:
                    payload = orjson.loads(r.value)["payload"]
                    if payload["device_id"] in self.devices:
                        self.reads += len(payload["values_wh"])
            if self.target and self.reads >= self.target:
                self.done.set()

    async def stop(self) -> None:
        self.task.cancel()
        assert self.consumer is not None
        await self.consumer.stop()


def meter_client(base: str) -> aiohttp.ClientSession:
    # The clients stand in for meters and integrators on other machines, but here they share the
    # 2 cores: aiohttp posts a 400 kB body for ~1/10 of httpx's CPU (~10 ms a post), which the
    # system under test would otherwise lose.
    return aiohttp.ClientSession(base_url=base, timeout=aiohttp.ClientTimeout(total=300))


async def post_reads(http: aiohttp.ClientSession, external_id: str, body: bytes, headers: dict[str, str]) -> None:
    async with http.post(
        f"/api/meter-reads/new/{external_id}", data=body, headers={**headers, "Content-Type": "application/json"}
    ) as response:
        if response.status != 201:
            raise RuntimeError(f"{response.status}: {(await response.text())[:500]}")
        await response.read()


async def ingest(
    base: str, headers: dict[str, str], work: dict[str, list[bytes]], counter: IngestedCounter
) -> tuple[float, float]:
    """Post every body (one client per device, batches in order); seconds until all are stored and announced,
    and until all are stored (answered 201)."""

    async def client(external_id: str, bodies: list[bytes]) -> None:
        async with meter_client(base) as http:
            for body in bodies:
                await post_reads(http, external_id, body, headers)

    start = time.perf_counter()
    await asyncio.gather(*(client(e, b) for e, b in work.items()))
    stored = time.perf_counter() - start
    await asyncio.wait_for(counter.done.wait(), 600)
    return time.perf_counter() - start, stored


INTERVALS_DDL = """
CREATE TABLE intervals (
    device_id bigint NOT NULL, start_at timestamptz NOT NULL, end_at timestamptz NOT NULL,
    wh bigint NOT NULL CHECK (wh >= 0),
    read_type text NOT NULL CHECK (read_type IN ('History', 'Delta', 'Aggregate')),
    source text NOT NULL, batch_id uuid NOT NULL, CHECK (start_at < end_at), PRIMARY KEY (device_id, end_at)
) PARTITION BY RANGE (end_at);
DO $$ BEGIN FOR y IN 2015..2040 LOOP
  EXECUTE format('CREATE TABLE intervals_y%s PARTITION OF intervals FOR VALUES FROM (%L) TO (%L)',
                 y, make_timestamptz(y, 1, 1, 0, 0, 0, 'UTC'), make_timestamptz(y + 1, 1, 1, 0, 0, 0, 'UTC'));
END LOOP; END $$;
CREATE TABLE intervals_default PARTITION OF intervals DEFAULT;
CREATE INDEX intervals_history ON intervals (device_id, end_at) INCLUDE (start_at) WHERE read_type = 'History';
"""


async def bare_copy(
    pg: EmbeddedPostgres, clients: int, batches: int, size: int, first_start: datetime, read_type: str
) -> tuple[float, dict[str, float]]:
    """Seconds for `clients` connections to COPY the same rows, one transaction per batch, and the CPU it took."""
    admin = await asyncpg.connect(pg.url)
    name = f"bench_copy_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = pg.url_for(name)
    conn = await asyncpg.connect(url)
    await conn.execute(INTERVALS_DDL)
    await conn.close()
    work = []
    for c in range(clients):
        batch_rows = []
        for b in range(batches):
            batch_id = uuid.uuid4()
            first = b * size
            batch_rows.append(
                [
                    (
                        c + 1,
                        first_start + (first + i) * MINUTE,
                        first_start + (first + i + 1) * MINUTE,
                        100,
                        read_type,
                        "api",
                        batch_id,
                    )
                    for i in range(size)
                ]
            )
        work.append(batch_rows)
    conns = [await asyncpg.connect(url) for _ in range(clients)]

    async def copy(conn: asyncpg.Connection, batch_rows: list[list[tuple]]) -> None:
        for rows in batch_rows:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "intervals",
                    records=rows,
                    columns=("device_id", "start_at", "end_at", "wh", "read_type", "source", "batch_id"),
                )

    cpu0 = tree_cpu_seconds(pg.pid), time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(copy(c, w) for c, w in zip(conns, work, strict=True)))
    elapsed = time.perf_counter() - start
    cpu = {"postgres": tree_cpu_seconds(pg.pid) - cpu0[0], "bench": time.process_time() - cpu0[1]}
    for c in conns:
        await c.close()
    return elapsed, cpu


# ---- main ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    skip = set(args.skip.split(",")) if args.skip else set()
    misses: list[str] = []  # goals missed: the exit status says so (make bench)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-readings-"))
    pg = start_postgres(work_dir / "pgdata")
    broker = start_broker(log_path=work_dir / "tansu.log")
    issuer = TokenIssuer()
    jwks_server, jwks_url = serve_jwks(issuer.jwk())
    headers = issuer.headers(organization_id=4242, permissions=PERMS, expires_in=timedelta(hours=6))
    service_port, gateway_port = free_port(), free_port()
    common = {
        "ENVIRONMENT": "dev", "DATABASE_URL": pg.url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "IDENTITY_URL": jwks_url,
        "LOG_LEVEL": "WARNING", "HTTP_HOST": "127.0.0.1",
    }  # fmt: skip
    profile = Path(args.profile).resolve() if args.profile else None  # noqa: ASYNC240 - once at start, before any load
    workers = 1 if profile else args.workers
    service = spawn(
        "opendrec_readings",
        {**common, "HTTP_PORT": str(service_port), "HTTP_WORKERS": str(workers)},
        work_dir / "readings.log",
        profile,
    )
    gateway = None
    procs = [service]
    try:
        if not await wait_ready(f"http://127.0.0.1:{service_port}/readyz", service):
            print(f"readings service did not become ready; see the logs in {work_dir}")
            return 1
        if not await workers_ready(f"http://127.0.0.1:{service_port}/readyz", workers):
            print(f"not every one of the {workers} readings workers answered ready within a minute: measuring anyway")
        base, path = f"http://127.0.0.1:{service_port}", "directly to the readings service"
        if not args.direct:
            urls = {
                f"{s}_URL": f"http://127.0.0.1:{service_port}"
                for s in ("DEVICES", "READINGS", "RESERVATIONS", "CERTIFICATES", "CHARGER_GATEWAY")
            }
            gateway = spawn(
                "opendrec_gateway", {**common, **urls, "HTTP_PORT": str(gateway_port)}, work_dir / "gateway.log"
            )
            procs.append(gateway)
            # The gateway's own readiness (identity's keys loaded): its /healthz also probes identity's /readyz,
            # which the JWKS stand-in here does not serve, so it never answers 200 in this bench.
            if await wait_ready(f"http://127.0.0.1:{gateway_port}/readyz", gateway, 30):
                base, path = f"http://127.0.0.1:{gateway_port}", "through the gateway"
            else:
                print(f"gateway did not start (see {work_dir / 'gateway.log'}): clients call the service directly")
                misses.append("the gateway did not start (figures measured directly)")
        print(
            f"readings service: {workers} process(es) (HTTP_WORKERS={workers}); clients post {path}; postgres {pg.url}, broker {broker.bootstrap}, logs in {work_dir}"
        )
        counter = IngestedCounter(broker.bootstrap)
        await counter.start()

        if "a" not in skip:
            onboarded = datetime(2016, 1, 1, tzinfo=UTC)
            # History covers the time before onboarding: up to 3 years, after commissioning.
            devices = [
                new_device(onboarded, commissioned_days_before=1000 if args.read_type == "History" else 30)
                for _ in range(args.clients)
            ]
            await register(broker.bootstrap, pg.url_for("opendrec_readings"), devices)
            work = {
                d.external_id: read_bodies(d, args.batches_per_client, args.batch, MINUTE, 100, args.read_type)
                for d in devices
            }
            total = args.clients * args.batches_per_client * args.batch
            # An Aggregate device's first read is a baseline: no interval is announced for it.
            counter.expect(devices, total - (args.clients if args.read_type == "Aggregate" else 0))
            watched = {"readings": service.pid, "gateway": gateway.pid if gateway else None, "postgres": pg.pid,
                       "tansu": broker.process.pid, "bench": os.getpid()}  # fmt: skip
            idle0 = tree_cpu_seconds(service.pid, True)
            await asyncio.sleep(2)
            idle = (tree_cpu_seconds(service.pid, True) - idle0) / 2  # consumers polling, relay ticking
            cpu0 = {name: tree_cpu_seconds(pid, name in ("postgres", "readings")) for name, pid in watched.items()}
            sys0 = tree_system_seconds(service.pid)
            load0 = os.getloadavg()[0]
            e2e, stored = await ingest(base, headers, work, counter)
            cpu = {
                name: tree_cpu_seconds(pid, name in ("postgres", "readings")) - cpu0[name]
                for name, pid in watched.items()
            }
            readings_sys = tree_system_seconds(service.pid) - sys0
            first_start = devices[0].commissioning_date if args.read_type == "History" else onboarded
            copy, copy_cpu = await bare_copy(
                pg, args.clients, args.batches_per_client, args.batch, first_start, args.read_type
            )
            e2e_rate, copy_rate = total / e2e, total / copy
            print(
                f"\n(a) ingestion of {total:,} {args.read_type} reads, {args.clients} clients x {args.batches_per_client} batches of {args.batch:,} ({path})"
            )
            print(f"    end to end (201 + on read.ingested): {e2e:7.2f} s  {e2e_rate:10,.0f} reads/s   (load average before: {load0:.2f}; "
                  f"all answered 201 after {stored:.2f} s)")  # fmt: skip
            print("    CPU seconds during it: " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in cpu.items())
                  + f"; readings {cpu['readings'] / total * 1e6:.1f} us/read ({readings_sys:.2f} s of it in the kernel; idle, it uses {idle:.2f} CPU s/s)")  # fmt: skip
            print(f"    bare copy_records_to_table:          {copy:7.2f} s  {copy_rate:10,.0f} reads/s")
            print(
                "    CPU seconds during it: " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in copy_cpu.items())
            )
            rss, peak = service_rss_kb(service.pid)
            print(
                f"    readings RSS after {rss / 1024:.0f} MiB, peak (VmHWM) {peak / 1024:.0f} MiB (the largest of its processes)"
            )
            ratio_met = e2e_rate >= GOAL_COPY_RATIO * copy_rate
            print(f"    ratio end-to-end / copy: {e2e_rate / copy_rate:.1%}   goals: >= 100,000 reads/s "
                  f"[{'PASS' if e2e_rate >= 100_000 else 'FAIL'}], >= {GOAL_COPY_RATIO:.0%} of copy [{'PASS' if ratio_met else 'FAIL'}]")  # fmt: skip
            misses += ["(a) reads/s"] if e2e_rate < 100_000 else []
            misses += ["(a) ratio to copy"] if not ratio_met else []

        if "b" not in skip:
            year = datetime(2024, 1, 1, tzinfo=UTC)
            device = new_device(year, capacity_kw=100)
            await register(broker.bootstrap, pg.url_for("opendrec_readings"), [device])
            bodies = read_bodies(device, 2, 4380, HOUR, 1000)
            counter.expect([device], 8760)
            await ingest(base, headers, {device.external_id: bodies}, counter)
            params = {
                "readType": "accumulated",
                "granularity": "day",
                "start": iso(year),
                "end": iso(year + 366 * 24 * HOUR),
            }
            for name, url in [(path, base), ("directly to the readings service", f"http://127.0.0.1:{service_port}")]:
                latencies = []
                async with httpx.AsyncClient(base_url=url) as http:
                    for i in range(220):
                        t = time.perf_counter()
                        response = await http.get(
                            f"/api/meter-reads/new/{device.external_id}", params=params, headers=headers
                        )
                        if i >= 20:  # warm-up excluded
                            latencies.append((time.perf_counter() - t) * 1000)
                        assert response.status_code == 200 and len(response.json()["accumulated"]) == 365, (
                            response.text[:300]
                        )
                latencies.sort()
                p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
                print(f"\n(b) 8,760 hourly reads summed per day (365 sums), {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                      f"[goal p50 < 50 ms: {'PASS' if p50 < 50 else 'FAIL'}]")  # fmt: skip
                misses += [f"(b) p50 {name}"] if p50 >= 50 else []
                if url == base and path.startswith("directly"):
                    break

        if "c" not in skip:
            per_client = max(1, args.rss_reads // (args.clients * args.batch))
            total = per_client * args.clients * args.batch
            onboarded = datetime(2015, 1, 1, tzinfo=UTC)
            devices = [new_device(onboarded) for _ in range(args.clients)]
            await register(broker.bootstrap, pg.url_for("opendrec_readings"), devices)
            before, _ = service_rss_kb(service.pid)
            samples: list[tuple[int, int]] = []
            counter.expect(devices, total)

            async def sample() -> None:
                while True:
                    samples.append((counter.reads, service_rss_kb(service.pid)[0]))
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample())
            # Bodies built per client as it goes: the bench itself must not hold 10M reads.
            elapsed = await ingest_streamed(base, headers, devices, per_client, args.batch, counter)
            sampler.cancel()
            rss, peak = service_rss_kb(service.pid)
            quarters = []
            for q in (0.25, 0.5, 0.75, 1.0):
                at = [r for n, r in samples if n <= total * q]
                quarters.append(max(at) if at else before)
            print(
                f"\n(c) readings service memory during an ingest of {total:,} reads ({total / elapsed:,.0f} reads/s, {path})"
            )
            print(f"    RSS before {before / 1024:.0f} MiB; max RSS by 25/50/75/100% announced: "
                  + ", ".join(f"{q / 1024:.0f}" for q in quarters) + f" MiB; after {rss / 1024:.0f} MiB; peak (VmHWM) {peak / 1024:.0f} MiB")  # fmt: skip
            # Flat: the last quarter holds no more than 10% over the first (a leak grows with the reads).
            flat = quarters[-1] <= quarters[0] * 1.1
            print(f"    goal: flat (last quarter within 10% of the first) [{'PASS' if flat else 'FAIL'}]")
            misses += [] if flat else ["(c) memory"]
        await counter.stop()
        if misses:
            print(f"\ngoals missed: {', '.join(misses)}")
        return 1 if misses else 0
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        jwks_server.shutdown()
        broker.stop()
        pg.stop()


async def ingest_streamed(
    base: str,
    headers: dict[str, str],
    devices: list[DeviceRegistered],
    batches: int,
    size: int,
    counter: IngestedCounter,
) -> float:
    async def client(device: DeviceRegistered) -> None:
        async with meter_client(base) as http:
            for b in range(batches):
                reads = [
                    {
                        "starttimestamp": "",
                        "endtimestamp": iso(device.onboarded_at + (b * size + i + 1) * MINUTE),
                        "value": 100,
                    }
                    for i in range(size)
                ]
                await post_reads(
                    http, device.external_id, orjson.dumps({"type": "Delta", "unit": "Wh", "reads": reads}), headers
                )

    start = time.perf_counter()
    await asyncio.gather(*(client(d) for d in devices))
    await asyncio.wait_for(counter.done.wait(), 1800)
    return time.perf_counter() - start


def tree_system_seconds(pid: int) -> float:
    """Kernel CPU of a process and its live children."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.cpu_times().system for p in procs)


async def workers_ready(url: str, workers: int, deadline_s: float = 60) -> bool:
    """With HTTP_WORKERS > 1 the first ready answer comes from one worker: ask on new connections
    (the kernel hands each to one of the workers) until every worker has answered ready."""
    ready: set[int] = set()
    end = time.monotonic() + deadline_s
    while len(ready) < workers and time.monotonic() < end:
        async with httpx.AsyncClient() as client:  # a new connection each time
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get(url, timeout=2)
                if response.status_code == 200:
                    ready.add(response.json()["pid"])
        await asyncio.sleep(0.05)
    return len(ready) >= workers


def tree_cpu_seconds(pid: int | None, children: bool = True) -> float:
    """CPU of a process (and its live children: postgres backends), user + system."""
    if pid is None:
        return 0.0
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True) if children else []
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--batches-per-client", type=int, default=40)
    parser.add_argument("--rss-reads", type=int, default=1_000_000)
    parser.add_argument("--direct", action="store_true", help="clients call the readings service, not the gateway")
    parser.add_argument(
        "--workers", type=int, default=1, help="HTTP_WORKERS of the readings service (processes on its port)"
    )
    parser.add_argument(
        "--read-type", choices=("Delta", "Aggregate", "History"), default="Delta", help="what (a) posts"
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    parser.add_argument("--profile", default="", help="write a cProfile of the readings service to this file")
    sys.exit(asyncio.run(main(parser.parse_args())))
