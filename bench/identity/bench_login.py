"""Logins through the gateway, and where their CPU goes (issue 16).

    python bench/identity/bench_login.py [--connections 16] [--duration 10] [--warmup 2] [--direct]

Starts, as real processes on loopback, what a login touches: an embedded Postgres and a Tansu broker (devstack),
the SMTP sink, identity (`python -m opendrec_identity`) and the gateway (`python -m opendrec_gateway`), with the
settings `make run` gives them (traces to a file, INFO logs). Registers one user per connection at identity, then
runs a closed loop: each connection posts `/api/auth/login` with its own user's right password, through the gateway
(`--direct`: to identity itself), 2 s warm-up, then `--duration` s measured.

Prints logins/s, p50/p90/p99 and errors, then the CPU per login (ms, beyond what each process spends idle) of
identity, split into its event loop's thread (HTTP, SQL, token signing) and its other threads (the password
hashing pool, telemetry), of the gateway, of Postgres, and of this load generator. CPU per login is the figure to
compare on a shared machine: logins/s and latency follow whatever else runs (the load average is printed).
The platform-wide goal (>= 60 logins/s, p50 <= 250 ms) is judged by bench/drec-clients/bench_clients.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import psutil

from opendrec_devstack.broker import start_broker
from opendrec_devstack.drec_samples import PASSWORD, registration_body
from opendrec_devstack.net import free_port
from opendrec_devstack.postgres import start_postgres
from opendrec_devstack.procs import stop_process
from opendrec_devstack.smtp_sink import start_smtp_sink

IDLE_SAMPLE_S = 3.0
TICK = os.sysconf("SC_CLK_TCK")


PROFILED = {  # --profile, --profile-gateway: the process under cProfile, written when it stops
    "opendrec_identity": Path(__file__).with_name("profiled_service.py"),
    "opendrec_gateway": Path(__file__).parents[1] / "gateway" / "profiled_gateway.py",
}


def spawn(module: str, env: dict[str, str], log: Path, profile: Path | None = None) -> subprocess.Popen:
    command = [str(PROFILED[module]), str(profile)] if profile else ["-m", module]
    return subprocess.Popen(
        [sys.executable, *command],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_ready(url: str, proc: subprocess.Popen, deadline_s: float = 90) -> None:
    end = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise SystemExit(f"{url}: the process exited")
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """(event loop thread, every other thread) CPU seconds of a process (its main thread runs the loop)."""
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        used = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        if int(task.name) == pid:
            main += used
        else:
            others += used
    return main, others


def postgres_cpu_s(pgdata: Path) -> float:
    total = 0.0
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(arg.startswith(str(pgdata)) for arg in cmdline) and "postgres" in " ".join(cmdline):
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                continue
    return total


def cpu_now(identity: int, gateway: int, pgdata: Path) -> dict[str, float]:
    loop, others = thread_cpu_s(identity)
    g = psutil.Process(gateway).cpu_times()
    me = psutil.Process().cpu_times()
    return {
        "identity loop": loop,
        "identity other threads": others,
        "gateway": g.user + g.system,
        "postgres": postgres_cpu_s(pgdata),
        "load client": me.user + me.system,
    }


async def register(identity_url: str, n: int) -> list[str]:
    emails = []
    async with aiohttp.ClientSession(identity_url) as http:
        for _ in range(n):
            body = registration_body("Developer", email=f"bench-{uuid.uuid4().hex[:12]}@example.org")
            async with http.post("/api/user/registerWithOrganization", json=body) as r:
                if r.status != 201:
                    raise SystemExit(f"registration: {r.status} {(await r.read())[:300]!r}")
            emails.append(body["email"])
    return emails


async def closed_loop(base: str, emails: list[str], warmup: float, duration: float) -> tuple[list[float], int, str]:
    latencies: list[float] = []
    errors = 0
    first_error = ""
    measuring = False
    stop_at = time.monotonic() + warmup + duration

    async def connection(email: str) -> None:
        nonlocal errors, first_error
        body = orjson.dumps({"username": email, "password": PASSWORD})
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=1)) as http:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                async with http.post("/api/auth/login", data=body, headers=headers) as r:
                    answer = await r.read()
                    ok = r.status == 200 and b"accessToken" in answer
                if not measuring:
                    continue
                latencies.append(time.perf_counter() - started)
                if not ok:
                    errors += 1
                    first_error = first_error or f"{r.status} {answer[:200]!r}"

    tasks = [asyncio.create_task(connection(e)) for e in emails]
    await asyncio.sleep(warmup)
    measuring = True
    await asyncio.gather(*tasks)
    return latencies, errors, first_error


async def run(args: argparse.Namespace, work: Path) -> None:
    pgdata = work / "pgdata"
    pg = start_postgres(pgdata)
    broker = start_broker(log_path=work / "tansu.log")
    smtp_port = free_port()
    smtp = start_smtp_sink(work / "mail", smtp_port)
    identity_port, gateway_port = free_port(), free_port()
    identity_url = f"http://127.0.0.1:{identity_port}"
    common = {
        "ENVIRONMENT": "dev",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "HTTP_HOST": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    procs = []
    try:
        identity = spawn(
            "opendrec_identity",
            {
                **common,
                "DATABASE_URL": pg.url,
                "HTTP_PORT": str(identity_port),
                "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
                "JWT_PRIVATE_KEY_FILE": str(work / "jwt.pem"),
                "TRACES_FILE": str(work / "identity-traces.jsonl"),
            },
            work / "identity.log",
            args.profile,
        )
        procs.append(identity)
        await wait_ready(identity_url + "/readyz", identity)
        urls = {
            f"{name}_URL": identity_url
            for name in ("IDENTITY", "DEVICES", "READINGS", "RESERVATIONS", "CERTIFICATES", "CHARGER_GATEWAY")
        }
        gateway = spawn(
            "opendrec_gateway",
            {
                **common,
                **urls,
                "HTTP_PORT": str(gateway_port),
                "TRACES_FILE": str(work / "gateway-traces.jsonl"),
                # Every connection comes from this one address: the per-client limit of the public routes stays on
                # the path (its cost is measured) but out of reach.
                "PUBLIC_RATE_LIMIT": "100000/second",
            },
            work / "gateway.log",
            args.profile_gateway,
        )
        procs.append(gateway)
        await wait_ready(f"http://127.0.0.1:{gateway_port}/readyz", gateway)
        emails = await register(identity_url, args.connections)
        base = identity_url if args.direct else f"http://127.0.0.1:{gateway_port}"
        print(f"{len(emails)} users; logins {'directly to identity' if args.direct else 'through the gateway'}")

        await asyncio.sleep(1)
        before, started = cpu_now(identity.pid, gateway.pid, pgdata), time.perf_counter()
        await asyncio.sleep(IDLE_SAMPLE_S)
        after, idle_s = cpu_now(identity.pid, gateway.pid, pgdata), time.perf_counter() - started
        idle = {k: (after[k] - before[k]) / idle_s for k in after}
        idle["load client"] = 0.0  # the client's own idle is its sleep: nothing

        load = os.getloadavg()[0]
        warm_started = time.perf_counter()
        cpu_before = cpu_now(identity.pid, gateway.pid, pgdata)
        latencies, errors, first_error = await closed_loop(base, emails, args.warmup, args.duration)
        cpu_after, elapsed = cpu_now(identity.pid, gateway.pid, pgdata), time.perf_counter() - warm_started
        n = len(latencies)
        if not n:
            raise SystemExit("no login finished")
        q = statistics.quantiles(latencies, n=100)
        print(
            f"logins {n / args.duration:6.1f}/s  p50 {q[49] * 1000:6.1f} ms  p90 {q[89] * 1000:6.1f} ms  "
            f"p99 {q[98] * 1000:6.1f} ms  errors {errors}/{n}  load {load:.2f}->{os.getloadavg()[0]:.2f}"
        )
        if first_error:
            print(f"  first error: {first_error}")
        # The CPU of the warm-up's logins too: counted over every login answered, warm-up included (their rate
        # is the same), so the figures hold whatever the warm-up's length.
        total = n * (args.warmup + args.duration) / args.duration
        per = {k: ((cpu_after[k] - cpu_before[k]) - idle[k] * elapsed) * 1000 / total for k in cpu_after}
        print(
            f"  CPU ms per login (beyond idle): total {sum(per.values()):.2f} = "
            + "  ".join(f"{k} {v:.2f}" for k, v in per.items())
        )
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        smtp.stop()
        broker.stop()
        pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--direct", action="store_true", help="log in at identity itself, not through the gateway")
    parser.add_argument("--profile", type=Path, help="identity's event loop under cProfile, written to this file")
    parser.add_argument("--profile-gateway", type=Path, help="the gateway's event loop under cProfile, to this file")
    args = parser.parse_args()
    args.profile = args.profile.resolve() if args.profile else None
    args.profile_gateway = args.profile_gateway.resolve() if args.profile_gateway else None
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be 1..256")
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-login-") as work:
        asyncio.run(run(args, Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
