"""One read per request, as every D-REC client sends (issue 16), against the readings service alone.

    python bench/readings/bench_single_reads.py [--connections 16] [--duration 8] [--warmup 2]
                                                [--gateway] [--profile FILE] [--code-root DIR] [--env K=V ...]

Starts, as real processes on loopback: an embedded Postgres and a Tansu broker (devstack) and the readings
service (`python -m opendrec_readings`; --gateway: behind the gateway too). Each of --connections keep-alive
connections (aiohttp, a closed loop) posts `POST /api/meter-reads/new/{externalId}` with ONE Delta read of its
own device, end timestamps increasing a second at a time, so every read is accepted (201).

After --warmup seconds, --duration seconds are measured; then the bench waits until every read answered 201 in
them is on the read.ingested topic (the relay's work counts). Prints reads/s, p50/p90/p99, and the CPU the
service and Postgres spent per read beyond what they spend idle (the figure that holds on a shared machine),
Exit 1 when a read failed (the speed goals are judged by the
platform's bench, bench/drec-clients).

--code-root DIR: the service's packages from another tree (`git archive <commit> libs services | tar -x -C DIR`):
before and after, minutes apart on the same machine. --env READ_GROUPS=false etc.: settings of the service.
--profile FILE: the service under cProfile in CPU time (profiled_service.py), read with pstats.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from bench_readings import (  # the sibling bench's helpers, found through the path set above
    PERMS,
    IngestedCounter,
    new_device,
    register,
    spawn,
    tree_cpu_seconds,
    wait_ready,
)

from opendrec_devstack.broker import start_broker
from opendrec_devstack.net import free_port
from opendrec_devstack.postgres import start_postgres
from opendrec_devstack.procs import stop_process
from opendrec_kit.testing import TokenIssuer, serve_jwks

IDLE_SAMPLE_S = 3.0


def body(device_onboarded: datetime, n: int) -> bytes:
    end = (device_onboarded + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps(
        {"type": "Delta", "unit": "Wh", "reads": [{"starttimestamp": "", "endtimestamp": end, "value": 1}]}
    )


async def main(args: argparse.Namespace) -> int:
    work_dir = Path(tempfile.mkdtemp(prefix="bench-single-reads-"))
    pg = start_postgres(work_dir / "pgdata")
    broker = start_broker(log_path=work_dir / "tansu.log")
    issuer = TokenIssuer()
    jwks_server, jwks_url = serve_jwks(issuer.jwk())
    headers = {
        **issuer.headers(organization_id=4242, permissions=PERMS, expires_in=timedelta(hours=6)),
        "Content-Type": "application/json",
    }
    service_port, gateway_port = free_port(), free_port()
    common = {
        "ENVIRONMENT": "dev", "DATABASE_URL": pg.url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "2000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "IDENTITY_URL": jwks_url,
        "LOG_LEVEL": "WARNING", "HTTP_HOST": "127.0.0.1",
    }  # fmt: skip
    if args.code_root is not None:
        common["PYTHONPATH"] = os.pathsep.join(str(p) for p in sorted(args.code_root.resolve().glob("*/*/src")))
        print(f"service code from {args.code_root}")
    extra = dict(kv.split("=", 1) for kv in args.env)
    profile = args.profile.resolve() if args.profile else None
    service = spawn(
        "opendrec_readings", {**common, **extra, "HTTP_PORT": str(service_port)}, work_dir / "readings.log", profile
    )
    procs = [service]
    try:
        if not await wait_ready(f"http://127.0.0.1:{service_port}/readyz", service):
            print(f"readings service did not become ready; see the logs in {work_dir}")
            return 1
        base = f"http://127.0.0.1:{service_port}"
        if args.gateway:
            urls = {
                f"{s}_URL": base for s in ("DEVICES", "READINGS", "RESERVATIONS", "CERTIFICATES", "CHARGER_GATEWAY")
            }
            gateway = spawn("opendrec_gateway", {**common, **urls, "HTTP_PORT": str(gateway_port)}, work_dir / "gw.log")
            procs.append(gateway)
            # The gateway's own readiness: its /healthz also probes identity's /readyz, which the JWKS stand-in lacks.
            if not await wait_ready(f"http://127.0.0.1:{gateway_port}/readyz", gateway, 30):
                print(f"gateway did not start; see {work_dir}")
                return 1
            base = f"http://127.0.0.1:{gateway_port}"
        counter = IngestedCounter(broker.bootstrap)
        await counter.start()
        onboarded = datetime(2020, 1, 1, tzinfo=UTC)
        devices = [new_device(onboarded, capacity_kw=1000) for _ in range(args.connections)]
        await register(broker.bootstrap, pg.url_for("opendrec_readings"), devices)
        print(f"readings {'behind the gateway' if args.gateway else 'directly'}; {args.connections} connections; "
              f"settings {extra or 'default'}; load average {os.getloadavg()[0]:.2f}; logs in {work_dir}")  # fmt: skip

        watched = {"readings": service.pid, "postgres": pg.pid, "tansu": broker.process.pid}
        if args.gateway:
            watched["gateway"] = procs[1].pid
        idle0 = {name: tree_cpu_seconds(pid) for name, pid in watched.items()}
        await asyncio.sleep(IDLE_SAMPLE_S)
        idle = {name: (tree_cpu_seconds(pid) - idle0[name]) / IDLE_SAMPLE_S for name, pid in watched.items()}

        phase = {"measuring": False, "stop": False}
        latencies: list[float] = []
        failures: list[str] = []
        counts = dict.fromkeys(range(args.connections), 0)  # reads answered 201 while measuring, per device

        async def connection(i: int) -> None:
            device = devices[i]
            url = f"/api/meter-reads/new/{device.external_id}"
            n = 0
            async with aiohttp.ClientSession(base_url=base, timeout=aiohttp.ClientTimeout(total=60)) as http:
                while not phase["stop"]:
                    n += 1
                    data = body(device.onboarded_at, n)
                    t = time.perf_counter()
                    async with http.post(url, data=data, headers=headers) as response:
                        text = await response.read()
                    if response.status != 201:
                        failures.append(f"{response.status}: {text[:300]!r}")
                        continue
                    if phase["measuring"]:
                        latencies.append((time.perf_counter() - t) * 1000)
                        counts[i] += 1

        counter.expect(devices, 10**12)  # counted from here; the target is set once the loop stops
        tasks = [asyncio.create_task(connection(i)) for i in range(args.connections)]
        await asyncio.sleep(args.warmup)
        cpu0 = {name: tree_cpu_seconds(pid) for name, pid in watched.items()}
        announced0 = counter.reads
        phase["measuring"] = True
        start = time.perf_counter()
        await asyncio.sleep(args.duration)
        phase["measuring"] = False
        elapsed = time.perf_counter() - start
        phase["stop"] = True
        await asyncio.gather(*tasks)
        measured = sum(counts.values())
        # Every read of the measured span announced (those of warm-up and wind-down too): the relay's work counts.
        counter.target = announced0 + measured
        counter.done.clear()
        await asyncio.wait_for(counter.done.wait(), 60)
        settled = time.perf_counter() - start
        cpu = {name: tree_cpu_seconds(pid) - cpu0[name] - idle[name] * settled for name, pid in watched.items()}
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else float("nan")

        print(
            f"single reads {measured / elapsed:8.1f} reads/s  p50 {statistics.median(latencies):6.1f} ms  "
            f"p90 {pct(0.9):6.1f} ms  p99 {pct(0.99):6.1f} ms  failures {len(failures)}  "
            f"announced {counter.reads - announced0}/{measured}  load {os.getloadavg()[0]:.2f}"
        )
        print(
            "  CPU ms per read (beyond idle): "
            + "  ".join(f"{name} {1000 * seconds / max(measured, 1):.3f}" for name, seconds in cpu.items())
        )
        await counter.stop()
        for failure in failures[:5]:
            print("  failed:", failure)
        return 1 if failures else 0
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        jwks_server.shutdown()
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--gateway", action="store_true", help="the clients post through the gateway")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile of the readings service to this file")
    parser.add_argument("--code-root", type=Path, default=None, help="the service's packages from this tree")
    parser.add_argument("--env", action="append", default=[], help="a setting of the service, K=V (repeatable)")
    sys.exit(asyncio.run(main(parser.parse_args())))
