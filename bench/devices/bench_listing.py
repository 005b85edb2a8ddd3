"""CPU per device listing (issue 16): GET /api/device/my under a closed loop, the devices service alone.

    python bench/devices/bench_listing.py [--connections 16] [--duration 8] [--devices 32] [--profile FILE]
                                          [--code-root DIR] [--scenarios listing]

Starts an embedded Postgres, a Tansu broker, a JWKS server for a test signing key and the devices service as a real
process (`python -m opendrec_devices`, spans to a TRACES_FILE as `make run` writes them), registers --devices devices
of one Developer organization through POST /api/device, checks one answer (D-REC's first page: 20 devices), then
drives `wrk` (C, so the load costs little CPU of the 2 cores; --connections keep-alive connections, 2 s warm-up
not counted) at:
  healthz  GET /healthz: the floor of the HTTP stack (uvicorn, the kit's middlewares, routing; no token, no span,
           no database), measured in the same run;
  listing  GET /api/device/my with a Developer's bearer token (a verified-token cache hit after the first).
Prints requests/s, p50/p99, and the CPU the devices process and Postgres spent per request beyond idle (the
figure to compare on a shared machine; requests/s and latency follow whatever else runs), and the listing's CPU
as a multiple of the floor. Goal (issue 16's listing, the devices service's share of the ~1.7 ms CPU a listing may
cost the whole chain on 2 cores): devices <= 0.8 ms and Postgres <= 0.35 ms a listing; exit 1 when missed.
--profile FILE: the devices service under cProfile in CPU time (profiled_service.py), written when it stops.
--code-root DIR: the service from another tree's packages (`git archive <commit> libs services | tar -x -C DIR`),
for a before/after on the same machine minutes apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psutil

from opendrec_devstack.broker import start_broker
from opendrec_devstack.drec_samples import device_body
from opendrec_devstack.net import free_port
from opendrec_devstack.postgres import start_postgres
from opendrec_kit.testing import TokenIssuer, serve_jwks

ORGANIZATION = 4242
GOAL_DEVICES_MS = 0.8
GOAL_POSTGRES_MS = 0.35
IDLE_SAMPLE_S = 3.0


def tree_cpu_seconds(pid: int) -> float:
    """CPU (user + system) of a process and its live children (Postgres: its backends)."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
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


def wrk_cpu_seconds() -> float:
    """CPU of the wrk runs so far: children this process has waited for (Postgres and the broker run on)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_now(watched: dict[str, int]) -> dict[str, float]:
    return {k: wrk_cpu_seconds() if k == "wrk" else tree_cpu_seconds(p) for k, p in watched.items()}


def code_path(code_root: Path | None) -> dict[str, str]:
    """PYTHONPATH putting another tree's packages ahead of the workspace's (--code-root)."""
    if code_root is None:
        return {}
    roots = [*sorted(code_root.glob("libs/*/src")), *sorted(code_root.glob("services/*/src"))]
    return {"PYTHONPATH": os.pathsep.join(str(p) for p in roots)}


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the devices service exited with {proc.returncode}")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the devices service did not get ready")


_WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, headers: dict[str, str], connections: int, seconds: float) -> tuple[int, dict[str, float], int]:
    """(requests, {"50": ms, "99": ms}, answers that were not 2xx/3xx) of one wrk run."""
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]  # wrk always prints it
    latency = {m[0]: float(m[1]) * _UNIT_MS[m[2]] for m in _WRK_LATENCY.findall(out)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return requests, latency, int(bad.group(1)) if bad else 0


def scenario(
    name: str,
    url: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    watched: dict[str, int],
    idle: dict[str, float],
) -> dict[str, float]:
    """Warm up, measure; print the figures; CPU ms per request of each watched process beyond idle."""
    wrk(url, headers, args.connections, args.warmup)
    before, started = cpu_now(watched), time.perf_counter()
    requests, latency, bad = wrk(url, headers, args.connections, args.duration)
    elapsed = time.perf_counter() - started
    after = cpu_now(watched)
    cpu = {k: (after[k] - before[k] - idle[k] * elapsed) * 1000 / max(requests, 1) for k in watched}
    print(
        f"{name:<8} {requests / elapsed:8,.0f} req/s  p50 {latency.get('50', float('nan')):6.2f} ms"
        f"  p99 {latency.get('99', float('nan')):6.2f} ms  errors {bad}/{requests}  load {os.getloadavg()[0]:.2f}"
        f"   CPU ms/request: " + "  ".join(f"{k} {v:.3f}" for k, v in cpu.items()),
        flush=True,
    )
    if bad:
        raise SystemExit(f"{name}: {bad} answers were not 2xx")
    return cpu


async def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-listing-"))
    pg = start_postgres(workdir / "pgdata")
    broker = start_broker(log_path=workdir / "tansu.log")
    issuer = TokenIssuer()
    jwks, jwks_url = serve_jwks(issuer.jwk())
    port = free_port()
    env = {
        **os.environ,
        **code_path(args.code_root),
        "ENVIRONMENT": "dev",
        "DATABASE_URL": pg.url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "KAFKA_TOPIC_PARTITIONS": "1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "IDENTITY_URL": jwks_url,
        "TRACES_FILE": str(workdir / "traces" / "devices.jsonl"),  # as make run: every request's span written
    }
    profile = (
        [str(Path(__file__).with_name("profiled_service.py")), str(args.profile.resolve())] if args.profile else []
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once before the measurement
        [sys.executable, *(profile or ["-m", "opendrec_devices"])],
        env=env,
        stdout=open(workdir / "devices.log", "wb"),  # noqa: ASYNC230, SIM115 - the child process owns the log file
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        headers = issuer.headers(
            organization_id=ORGANIZATION,
            organization_type="Developer",
            role="OrganizationAdmin",
            permissions={"DEVICE_MANAGEMENT_CRUDL": "RWUD"},
            expires_in=timedelta(hours=2),
        )
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            await wait_ready(client, proc)
            for i in range(args.devices):
                r = await client.post("/api/device", json=device_body(f"BENCH-{i}"), headers=headers)
                if r.status_code != 201:
                    raise RuntimeError(f"registration answered {r.status_code}: {r.text[:300]}")
            page = (await client.get("/api/device/my", headers=headers)).json()
            expected = min(20, args.devices)
            if len(page["devices"]) != expected or page["totalCount"] != args.devices:
                raise RuntimeError(f"the first page has {len(page['devices'])} of {page['totalCount']} devices")
        print(
            f"devices service pid {proc.pid} ({'code from ' + str(args.code_root) if args.code_root else 'this tree'}"
            f"{', under cProfile' if args.profile else ''}); {args.devices} devices of organization {ORGANIZATION};"
            f" {args.connections} connections, {args.duration:g} s measured after {args.warmup:g} s; logs in {workdir}",
            flush=True,
        )
        watched = {"devices": proc.pid, "postgres": pg.pid, "wrk": 0}
        before, started = cpu_now(watched), time.perf_counter()
        await asyncio.sleep(IDLE_SAMPLE_S)
        after = cpu_now(watched)
        idle = {k: (after[k] - before[k]) / (time.perf_counter() - started) for k in watched}
        print("idle CPU: " + "  ".join(f"{k} {v * 100:.1f}%" for k, v in idle.items()), flush=True)
        if "healthz" not in args.scenarios:  # e.g. a profile of the listing alone
            scenario("listing", f"{base}/api/device/my", headers, args, watched, idle)
            return 0
        floor = scenario("healthz", f"{base}/healthz", {}, args, watched, idle)
        cpu = scenario("listing", f"{base}/api/device/my", headers, args, watched, idle)
        ratio = cpu["devices"] / floor["devices"] if floor["devices"] > 0 else float("nan")
        ok = cpu["devices"] <= GOAL_DEVICES_MS and cpu["postgres"] <= GOAL_POSTGRES_MS
        print(
            f"listing costs the devices service {ratio:.1f}x the floor (healthz)."
            f" Goal: devices <= {GOAL_DEVICES_MS} ms, postgres <= {GOAL_POSTGRES_MS} ms a listing:"
            f" {'PASS' if ok else 'MISS'}",
            flush=True,
        )
        return 0 if ok else 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        jwks.shutdown()
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring, per scenario")
    parser.add_argument("--devices", type=int, default=32, help="devices of the listing's organization")
    parser.add_argument("--scenarios", default="healthz,listing", help="listing alone: no floor, no goal")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the devices service here")
    parser.add_argument("--code-root", type=Path, default=None, help="run the service from this tree's packages")
    sys.exit(asyncio.run(main(parser.parse_args())))
