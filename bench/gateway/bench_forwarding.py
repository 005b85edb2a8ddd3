"""Gateway forwarding benchmark: a light service called directly vs through the gateway.

    python bench/gateway/bench_forwarding.py [--duration 5] [--connections 32] [--load wrk|python]
                                             [--proxies gateway,gateway+w2,asgi-aiohttp,...]

Starts, as real processes on loopback:
  - a light upstream service: FastAPI on uvicorn (uvloop, httptools), GET /api/device/my
    returns a small JSON list; it also serves the JWKS, so it doubles as identity;
  - the gateway (`python -m opendrec_gateway`) with every *_URL on it, and any other proxy
    named in --proxies (variants.py holds the bare ones the design was chosen against);
then loads each with wrk (Debian package `wrk`; an aiohttp load generator if absent):

  throughput: --connections keep-alive connections, 2 x --duration per target, in the
              order direct, p1..pn, pn..p1, direct, so drift on a shared machine hits all alike;
  latency:    one connection (no queueing), same order, median and p99.

Through the gateway every request carries a valid EdDSA JWT, so the token check is counted,
and every request makes a (sampled) span; "+traces" also exports spans to a file.
Goal, for the first proxy: throughput >= 60% of direct, median latency added <= 1 ms.
A saturating load cannot test the second goal: with N connections the median is about
N / throughput, so any throughput loss shows up as latency; hence the one-connection phase.
The exit status is 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENDPOINT = "/api/device/my"
GOAL_RATIO = 0.60
GOAL_ADDED_MS = 1.0


# ---- the light upstream service (run in its own process: `--serve-upstream PORT JWKS_FILE`)


def serve_upstream(port: int, jwks_file: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    jwks = json.loads(Path(jwks_file).read_text())
    app = FastAPI()

    @app.get("/api/device/my")
    async def my_devices() -> list[dict]:
        return [{"id": 1, "externalId": "uattesting12", "capacity": 25}]

    @app.get("/.well-known/jwks.json")
    async def keys() -> dict:
        return jwks

    @app.get("/readyz")
    async def ready() -> dict:
        return {"status": "ready"}

    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )


# ---- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, headers: dict[str, str] | None = None, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"{url} did not answer 200 within {deadline_s} s")
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """user+system CPU of a process and its children (Linux /proc), 0 elsewhere."""
    total = 0.0
    try:
        pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        for p in pids:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        pass
    return total


def make_token() -> tuple[str, dict]:
    """A device owner's token, valid for an hour, and the JWKS that trusts it."""
    from opendrec_kit.testing import TokenIssuer

    issuer = TokenIssuer()
    token = issuer.token(
        role="DeviceOwner", permissions={"DEVICE_MANAGEMENT_CRUDL": "RWUD"}, expires_in=timedelta(hours=1)
    )
    return token, {"keys": [issuer.jwk()]}


# ---- load generators


def parse_wrk_latency(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(url: str, connections: int, duration: float, headers: dict[str, str]) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "requests in" not in out or "50%" not in out:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = re.search(r"requests in ([\d.]+)(\w+),", out)
    elapsed = float(seconds.group(1)) * {"s": 1.0, "ms": 0.001, "m": 60.0}[seconds.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": requests,
        "seconds": elapsed,
        "rps": requests / elapsed,
        "p50_ms": parse_wrk_latency(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99_ms": parse_wrk_latency(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "errors": (int(errors.group(1)) if errors else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
    }


async def _python_load(url: str, connections: int, duration: float, headers: dict[str, str]) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        end = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while (start := time.perf_counter()) < end:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
    }


def run_python_load(url: str, connections: int, duration: float, headers: dict[str, str]) -> dict:
    try:
        import uvloop

        return uvloop.run(_python_load(url, connections, duration, headers))
    except ImportError:
        return asyncio.run(_python_load(url, connections, duration, headers))


# ---- the run


def start_proxy(spec: str, port: int, upstream_url: str, base_env: dict[str, str], workdir: Path) -> subprocess.Popen:
    """spec: "gateway" with optional "+wN" (HTTP_WORKERS=N), "+traces" (TRACES_FILE set) and
    "+sampleN" (parent-based sampling of N% of new traces), or a bare proxy in variants.py."""
    name, *options = spec.split("+")
    env = {**base_env, "HTTP_PORT": str(port)}
    if name != "gateway":
        return subprocess.Popen([sys.executable, str(HERE / "variants.py"), name, str(port), upstream_url], env=env)
    for option in options:
        if option == "traces":
            env["TRACES_FILE"] = str(workdir / f"traces-{port}.jsonl")
        elif option.startswith("w") and option[1:].isdigit():
            env["HTTP_WORKERS"] = option[1:]
        elif option.startswith("sample") and option[6:].isdigit():  # record N% of new traces
            env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            env["OTEL_TRACES_SAMPLER_ARG"] = str(int(option[6:]) / 100)
        else:
            raise SystemExit(f"unknown gateway option +{option}")
    return subprocess.Popen([sys.executable, "-m", "opendrec_gateway"], env=env, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput phase (2 per target)")
    parser.add_argument(
        "--latency-duration", type=float, default=3.0, help="seconds per one-connection phase (2 per target)"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument(
        "--proxies",
        default="gateway",
        help="comma-separated, measured in the same run, interleaved; the first is judged against the goal. "
        "gateway[+wN][+traces][+sampleN] (N worker processes; TRACES_FILE on; N%% of traces recorded), "
        "or a bare proxy from variants.py: asgi-pool, "
        "asgi-aiohttp, aiohttp-web, fastapi-aiohttp, asgi-httpx",
    )
    parser.add_argument("--serve-upstream", nargs=2, metavar=("PORT", "JWKS_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(int(args.serve_upstream[0]), args.serve_upstream[1])
        return 0

    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    token, jwks = make_token()
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    jwks_file = workdir / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    base_env = {
        **os.environ,
        "HTTP_HOST": "127.0.0.1",
        "ENVIRONMENT": "test",
        "HTTP_WORKERS": "1",
        "LOG_LEVEL": "WARNING",
        **{
            name: upstream_url
            for name in (
                "IDENTITY_URL",
                "DEVICES_URL",
                "READINGS_URL",
                "RESERVATIONS_URL",
                "CERTIFICATES_URL",
                "CHARGER_GATEWAY_URL",
            )
        },
    }
    for name in (
        "TRACES_FILE",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "ACCESS_LOG",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    ):
        base_env.pop(name, None)

    auth = {"Authorization": f"Bearer {token}"}
    procs: dict[str, subprocess.Popen] = {}
    targets: dict[str, tuple[str, dict[str, str]]] = {"direct": (upstream_url + ENDPOINT, {})}
    try:
        procs["direct"] = subprocess.Popen(
            [sys.executable, __file__, "--serve-upstream", str(up_port), str(jwks_file)], env=base_env
        )
        wait_http(upstream_url + "/readyz")
        for spec in proxies:
            port = free_port()
            procs[spec] = start_proxy(spec, port, upstream_url, base_env, workdir)
            targets[spec] = (f"http://127.0.0.1:{port}{ENDPOINT}", auth)
        for spec in proxies:
            wait_http(targets[spec][0], auth)

        load = run_wrk if args.load == "wrk" else run_python_load
        for url, headers in targets.values():  # warm-up: connections, token cache, JWKS
            load(url, 4, 1, headers)

        # direct, p1..pn, pn..p1, direct: drift on a shared machine hits every target alike
        order = list(targets) + list(reversed(targets))

        def phases(connections: int, duration: float) -> dict[str, list[dict]]:
            results: dict[str, list[dict]] = {name: [] for name in targets}
            for name in order:
                url, headers = targets[name]
                cpu_before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
                result = load(url, connections, duration, headers)
                n = max(result["requests"], 1)
                result["cpu_upstream_us"] = (cpu_seconds(procs["direct"].pid) - cpu_before["direct"]) * 1e6 / n
                result["cpu_proxy_us"] = (
                    (cpu_seconds(procs[name].pid) - cpu_before[name]) * 1e6 / n if name != "direct" else 0.0
                )
                results[name].append(result)
            return results

        load_before = os.getloadavg()[0]
        print(f"load generator: {args.load}; cpus: {os.cpu_count()}; load average before: {load_before:.2f}")
        if load_before > 1.0:
            print("note: other work is running on this machine; the proxied path needs both cores, so it suffers most")
        throughput = phases(args.connections, args.duration)
        latency = phases(1, args.latency_duration)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    def rps(runs: list[dict]) -> float:
        return sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs)

    def mean(runs: list[dict], key: str) -> float:
        return statistics.fmean(r[key] for r in runs)

    width = max(len(t) for t in targets)
    print(f"\nthroughput, {args.connections} connections, 2 x {args.duration:g} s per target:")
    print(
        f"  {'':{width}} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7}  CPU us/req: upstream + proxy   rounds"
    )
    for name, runs in throughput.items():
        ratio = rps(runs) / rps(throughput["direct"])
        rounds = " / ".join(f"{r['rps']:.0f}" for r in runs)
        print(
            f"  {name:{width}} {rps(runs):8.0f} {ratio:6.0%} {mean(runs, 'p50_ms'):7.2f} {mean(runs, 'p99_ms'):7.2f}"
            f"  {mean(runs, 'cpu_upstream_us'):6.0f} + {mean(runs, 'cpu_proxy_us'):5.0f}   {rounds}"
        )
    print(f"\nlatency, 1 connection, 2 x {args.latency_duration:g} s per target:")
    print(f"  {'':{width}} {'req/s':>8} {'p50 ms':>7} {'added':>7} {'p99 ms':>7}")
    for name, runs in latency.items():
        added = mean(runs, "p50_ms") - mean(latency["direct"], "p50_ms")
        print(f"  {name:{width}} {rps(runs):8.0f} {mean(runs, 'p50_ms'):7.3f} {added:7.3f} {mean(runs, 'p99_ms'):7.3f}")

    load_after = os.getloadavg()[0]
    print(f"\nload average after: {load_after:.2f} (this run alone adds about 2)")

    judged = proxies[0]
    ratio = rps(throughput[judged]) / rps(throughput["direct"])
    added = mean(latency[judged], "p50_ms") - mean(latency["direct"], "p50_ms")
    errors = sum(r["errors"] for runs in (*throughput.values(), *latency.values()) for r in runs)
    ok_ratio, ok_added = ratio >= GOAL_RATIO, added <= GOAL_ADDED_MS
    print(
        f"\n{judged}: throughput {ratio:.0%} of direct (goal >= {GOAL_RATIO:.0%}) {'PASS' if ok_ratio else 'FAIL'}; "
        f"median latency added {added:.3f} ms (goal <= {GOAL_ADDED_MS:g} ms) {'PASS' if ok_added else 'FAIL'}"
    )
    if errors:
        print(f"errors: {errors} non-2xx or socket errors  FAIL")
    passed = ok_ratio and ok_added and not errors
    print("RESULT:", "PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
