"""CPU and memory each service uses under the D-REC clients' load, and the Kubernetes requests and limits derived from
them (issue 18: measured, not guessed).

    python bench/operations/bench_resources.py [--duration 3] [--connections 2] [--write]

Starts the platform as `make run` does and drives it with bench/drec-clients' load generator (its `--smoke` load by
default: 2 connections, reads, listings and logins, 3 s each after a warm-up), sampling every process: CPU seconds
at the start and end of each scenario (cores used on average, idle included: what a pod needs while that load
lasts) and resident memory every 0.2 s (the peak). Prints the figures beside deploy/k8s's requests and limits and
what the rule below derives; `--write` records them in deploy/k8s/resources.measured.json (with the date and the
machine) and writes the derived requests and limits into every Deployment. tests/deploy fails when a manifest
disagrees with that file. Exit status 1 when a service's measured peak memory is above its memory request in the
manifests as they are (run with --write to take the new figures).

The rule (`derive`), from the measured figures:
  memory request  the peak RSS x 1.5, rounded up to 32 Mi   (the load is small; headroom for a burst)
  memory limit    2 x the memory request, at least 512 Mi   (the peak within half the limit; what this load does not
                                                             make: CSV uploads and bulk jobs, streamed but bursty)
  cpu request     the busiest scenario's cores, rounded up to 10m, at least 50m
  cpu limit       4 x the cpu request, at least 1 core       (bursts: a login's argon2id, a large read batch)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform as host
import re
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[2]
MEASURED = REPO / "deploy" / "k8s" / "resources.measured.json"
SERVICES = ["gateway", "identity", "devices", "readings", "reservations", "certificates", "charger-gateway", "console"]
SAMPLE_EVERY_S = 0.2


def load_clients() -> ModuleType:
    """bench/drec-clients/bench_clients.py (its directory's name is no package name): the platform starter, the
    clients' preparation and the closed loop, reused as they are."""
    path = REPO / "bench" / "drec-clients" / "bench_clients.py"
    spec = importlib.util.spec_from_file_location("bench_clients", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_clients"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---- the rule ----------------------------------------------------------------------------------


def derive(service: dict[str, float]) -> dict[str, dict[str, str]]:
    """A container's requests and limits from its measured `rss_mib_peak` and `cpu_cores_peak` (see the module's
    docstring)."""
    memory_request = max(32, math.ceil(service["rss_mib_peak"] * 1.5 / 32) * 32)
    cpu_request = max(50, math.ceil(service["cpu_cores_peak"] * 1000 / 10) * 10)
    cpu_limit = max(1000, 4 * cpu_request)
    memory_limit = max(512, 2 * memory_request)
    return {
        "requests": {"cpu": f"{cpu_request}m", "memory": f"{memory_request}Mi"},
        "limits": {"cpu": f"{cpu_limit}m", "memory": f"{memory_limit}Mi"},
    }


_RESOURCES = re.compile(
    r"(?P<indent>[ ]+)resources:\n(?P=indent)  requests:\n(?P=indent)    cpu: [^\n]+\n(?P=indent)    memory: [^\n]+\n"
    r"(?P=indent)  limits:\n(?P=indent)    cpu: [^\n]+\n(?P=indent)    memory: [^\n]+\n"
)


def write_manifest(path: Path, resources: dict[str, dict[str, str]]) -> None:
    """Replace the one container's `resources` block of the Deployment in `path`, keeping everything else as is."""
    text = path.read_text()
    found = list(_RESOURCES.finditer(text))
    if len(found) != 1:
        raise SystemExit(f"{path}: expected one resources block (requests and limits, cpu then memory)")
    i = found[0]["indent"]
    block = (
        f"{i}resources:\n{i}  requests:\n{i}    cpu: {resources['requests']['cpu']}\n"
        f"{i}    memory: {resources['requests']['memory']}\n{i}  limits:\n{i}    cpu: {resources['limits']['cpu']}\n"
        f"{i}    memory: {resources['limits']['memory']}\n"
    )
    path.write_text(text[: found[0].start()] + block + text[found[0].end() :])


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity).groups()  # type: ignore[union-attr]  # ours: checked by tests/deploy
    return int(number) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}[unit]


# ---- measuring -----------------------------------------------------------------------------------


class PeakMemory:
    """Samples every process's RSS in a thread while the load runs; keeps each one's peak (MiB)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def sample(self) -> None:
        for name, proc in self.processes.items():
            try:
                self.peak[name] = max(self.peak[name], proc.memory_info().rss / 2**20)
            except psutil.Error:
                continue

    def __enter__(self) -> PeakMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


async def measure(clients_module: ModuleType, stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    bc = clients_module
    async with aiohttp.ClientSession(
        stack.gateway_url, connector=aiohttp.TCPConnector(limit=8), timeout=aiohttp.ClientTimeout(total=120)
    ) as http:
        clients = await bc.prepare(http, args.connections, args.devices)
    await asyncio.sleep(1)
    pids = stack.service_pids()
    missing = set(SERVICES) - set(pids)
    if missing:
        raise SystemExit(f"no process found for {sorted(missing)}")
    before, began = stack.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(args.idle)
    after = stack.cpu_seconds()
    idle = {name: max(0.0, after[name] - before.get(name, 0.0)) / (time.perf_counter() - began) for name in after}
    step = timedelta(milliseconds=5)
    scenarios = {
        "reads": ([bc.read_sender(c, step) for c in clients], 201),
        "listing": ([bc.listing_sender(clients[0]) for _ in clients], 200),
        "login": ([bc.login_sender(c) for c in clients], 200),
    }
    figures: dict[str, dict[str, Any]] = {}
    with PeakMemory(pids) as memory:
        for name, (senders, expected) in scenarios.items():
            result = await bc.closed_loop(
                stack.gateway_url, senders, expected, args.warmup, args.duration, stack.cpu_seconds
            )
            if result.errors or not result.requests:
                raise SystemExit(f"{name}: {result.errors}/{result.requests} failed; first: {result.first_error}")
            figures[name] = {
                "requests_per_s": round(result.rate, 1),
                "cores": {k: round(v / result.seconds, 3) for k, v in result.cpu_s.items()},
            }
            print(
                f"{name:<8} {result.rate:7.1f} req/s  cores "
                + "  ".join(f"{k} {v / result.seconds:.2f}" for k, v in sorted(result.cpu_s.items())),
                flush=True,
            )
    services = {}
    for name in SERVICES:
        services[name] = {
            "rss_mib_peak": round(memory.peak[name], 1),
            "cpu_cores_idle": round(idle.get(name, 0.0), 3),
            "cpu_cores_peak": max(scenario["cores"].get(name, 0.0) for scenario in figures.values()),
        }
    return {"scenarios": figures, "services": services, "postgres_cores_peak": max(
        scenario["cores"].get("postgres", 0.0) for scenario in figures.values()
    )}  # fmt: skip


def current_resources() -> dict[str, dict[str, dict[str, str]]]:
    import yaml

    out = {}
    for name in SERVICES:
        for doc in yaml.safe_load_all((REPO / "deploy" / "k8s" / f"{name}.yaml").read_text()):
            if doc and doc["kind"] == "Deployment":
                (container,) = doc["spec"]["template"]["spec"]["containers"]
                out[name] = container["resources"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2, help="as bench_clients --smoke")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured first")
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--write", action="store_true", help=f"write {MEASURED.name} and the manifests")
    parser.add_argument(
        "--derive-only",
        action="store_true",
        help=f"no measuring: the manifests from {MEASURED.name} (the rule changed)",
    )
    args = parser.parse_args()
    if args.derive_only:
        for name, figures in json.loads(MEASURED.read_text())["services"].items():
            write_manifest(REPO / "deploy" / "k8s" / f"{name}.yaml", derive(figures))
        print(f"wrote the manifests' requests and limits from {MEASURED.relative_to(REPO)}")
        return 0
    if not 1 <= args.connections <= 64 or not 1 <= args.duration <= 600:
        parser.error("--connections 1..64, --duration 1..600")

    bc = load_clients()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")  # fmt: skip
    load_before = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs ({model}), {psutil.virtual_memory().total / 2**30:.1f} GiB; load {load_before:.2f}"
    )
    state_dir = Path(tempfile.mkdtemp(prefix="opendrec-bench-resources-"))
    stack = bc.start_stack(state_dir)
    try:
        measured = asyncio.run(measure(bc, stack, args))
    finally:
        stack.stop()
        shutil.rmtree(state_dir, ignore_errors=True)

    current = current_resources()
    print(
        f"{'service':16} {'peak MiB':>8} {'cores':>6} {'idle':>5}   manifests now (req/limit)      derived (req/limit)"
    )
    above = []
    for name, figures in measured["services"].items():
        now, new = current[name], derive(figures)
        if figures["rss_mib_peak"] > mebibytes(now["requests"]["memory"]):
            above.append(name)
        print(
            f"{name:16} {figures['rss_mib_peak']:8.0f} {figures['cpu_cores_peak']:6.2f} {figures['cpu_cores_idle']:5.2f}"
            f"   {now['requests']['cpu']:>5}/{now['limits']['cpu']:<5} {now['requests']['memory']:>6}/{now['limits']['memory']:<6}"
            f"   {new['requests']['cpu']:>5}/{new['limits']['cpu']:<5} {new['requests']['memory']:>6}/{new['limits']['memory']:<6}"
        )
    print(f"postgres (not in the manifests: external) {measured['postgres_cores_peak']:.2f} cores at peak")
    if args.write:
        record = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "cpu_model": model,
                "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                "system": f"{host.system()} {host.release()}",
                "load_average_before": round(load_before, 2),
                "python": host.python_version(),
            },
            "load": {
                "generator": "bench/drec-clients/bench_clients.py (closed loop through the gateway)",
                "connections": args.connections,
                "seconds_per_scenario": args.duration,
                "warmup_s": args.warmup,
            },
            "rule": "bench/operations/bench_resources.py derive(): memory request = peak RSS x 1.5 rounded up to "
            "32Mi, limit 2x (>= 512Mi); cpu request = busiest scenario's cores rounded up to 10m (>= 50m), limit 4x (>= 1 core)",
            **measured,
        }
        MEASURED.write_text(json.dumps(record, indent=2) + "\n")
        for name, figures in measured["services"].items():
            write_manifest(REPO / "deploy" / "k8s" / f"{name}.yaml", derive(figures))
        print(f"wrote {MEASURED.relative_to(REPO)} and the manifests' requests and limits")
        return 0
    if above:
        print(f"MISSED: peak memory above the manifests' request: {', '.join(above)} (--write takes the new figures)")
        return 1
    print("every service's peak memory is within its manifest's request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
