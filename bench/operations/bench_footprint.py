"""What each service uses under a small load, against what deploy/k8s reserves for it (issue 18: requests and
limits from measurements, not guesses).

    python bench/operations/bench_footprint.py [--seconds 60]

Starts the platform as `make run` does (embedded Postgres and broker, every service one process), measures each
service process's resident memory and CPU idle, then under a load of users, devices, History reads and lookups
through the gateway for --seconds, and prints them beside the Deployment's requests and limits. Goals: a
service's peak RSS fits in its memory request (the scheduler reserves what a pod really uses) and in half its
limit (headroom for a burst). Exit status 1 when a goal is missed. CPU is printed (cores used on average), not
judged: on a shared two-core machine it says more about the neighbours than about the service.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import yaml

from opendrec_devstack.broker import start_broker
from opendrec_devstack.drec_samples import (
    access_token,
    bearer,
    device_body,
    register_with_organization,
    registration_body,
    unique_tag,
)
from opendrec_devstack.postgres import start_postgres
from opendrec_devstack.pytest_plugin import start_platform
from opendrec_kit.timestamps import iso

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["gateway", "identity", "devices", "readings", "reservations", "certificates", "charger-gateway", "console"]
UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}


def mebibytes(quantity: str) -> float:
    found = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    if found is None:
        raise ValueError(f"not a memory quantity in Ki, Mi or Gi: {quantity!r}")
    number, unit = found.groups()
    return int(number) * UNITS[unit]


def reserved() -> dict[str, dict[str, str]]:
    """service -> its container's requests and limits, from deploy/k8s."""
    out = {}
    for path in (REPO / "deploy" / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                (container,) = doc["spec"]["template"]["spec"]["containers"]
                r = container["resources"]
                out[doc["metadata"]["name"]] = {
                    "request_mem": r["requests"]["memory"], "limit_mem": r["limits"]["memory"],
                    "request_cpu": r["requests"]["cpu"], "limit_cpu": r["limits"]["cpu"],
                }  # fmt: skip
    return out


def processes(supervisor: int) -> dict[str, psutil.Process]:
    """service -> its process (`python -m opendrec_<service>`), among the supervisor's children."""
    found = {}
    for child in psutil.Process(supervisor).children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        for name in SERVICES:
            if f"-m opendrec_{name.replace('-', '_')}" in cmdline and name not in found:
                found[name] = child
    return found


async def load(gateway: str, stop: asyncio.Event) -> int:
    """Users, devices, then History reads, device lookups and a miss, until stopped; returns requests made."""
    made = 0
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        tag = unique_tag()
        body = registration_body("Developer", email=f"BENCH_{tag}@example.org", orgName=f"Bench {tag}")
        await register_with_organization(http, body)
        dev = bearer(await access_token(http, body["email"], body["password"]))
        devices = []
        for _ in range(10):
            external_id = f"BENCH_{uuid.uuid4().hex[:8]}"
            r = await http.post("/api/device", json=device_body(external_id, capacity=2000), headers=dev)
            if r.status_code == 201:
                devices.append(external_id)
        await asyncio.sleep(3)  # readings learns of the devices from device.registered
        start = datetime.now(UTC) - timedelta(days=60)
        n = 0
        while not stop.is_set():
            for external_id in devices:
                at = start + timedelta(minutes=n)
                reads = [{"starttimestamp": iso(at), "endtimestamp": iso(at + timedelta(seconds=50)), "value": 100}]
                await http.post(
                    f"/api/meter-reads/new/{external_id}",
                    json={"type": "History", "unit": "Wh", "reads": reads},
                    headers=dev,
                )
                made += 1
            await http.get("/api/device/my", headers=dev)
            await http.get("/nowhere")
            made += 2
            n += 1
    return made


def sample(procs: dict[str, psutil.Process]) -> dict[str, tuple[float, float]]:
    """service -> (RSS MiB, CPU seconds so far)."""
    out = {}
    for name, proc in procs.items():
        try:
            cpu = proc.cpu_times()
            out[name] = (proc.memory_info().rss / 2**20, cpu.user + cpu.system)
        except psutil.Error:
            pass
    return out


async def main(seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        root = Path(tmp)
        postgres = start_postgres(root / "pgdata")
        broker = start_broker(log_path=root / "tansu.log")
        platform = start_platform(root / "state", database_url=postgres.url, kafka_bootstrap=broker.bootstrap)
        try:
            procs = processes(platform.process.pid)
            await asyncio.sleep(5)
            idle = sample(procs)
            stop = asyncio.Event()
            task = asyncio.create_task(load(platform.gateway_url, stop))
            began, peak = time.monotonic(), dict.fromkeys(procs, 0.0)
            before = sample(procs)
            while time.monotonic() - began < seconds:
                await asyncio.sleep(2)
                for name, (rss, _) in sample(procs).items():
                    peak[name] = max(peak[name], rss)
            after = sample(procs)
            elapsed = time.monotonic() - began
            stop.set()
            made = await task
        finally:
            platform.stop()
            broker.stop()
            postgres.stop()

    limits = reserved()
    print(f"{made} requests through the gateway in {elapsed:.0f} s ({made / elapsed:.0f}/s)")
    print(f"{'service':16} {'idle MiB':>9} {'peak MiB':>9} {'cores':>6}  request/limit memory  request/limit cpu  goal")
    missed = []
    for name in SERVICES:
        if name not in procs or name not in limits:
            continue
        cores = (after[name][1] - before[name][1]) / elapsed
        r = limits[name]
        fits = peak[name] <= mebibytes(r["request_mem"]) and peak[name] <= mebibytes(r["limit_mem"]) / 2
        if not fits:
            missed.append(name)
        print(
            f"{name:16} {idle[name][0]:9.0f} {peak[name]:9.0f} {cores:6.2f}  {r['request_mem']:>7} / {r['limit_mem']:<7}"
            f"      {r['request_cpu']:>5} / {r['limit_cpu']:<5}     {'met' if fits else 'MISSED'}"
        )
    if missed:
        print(f"MISSED: peak RSS above the memory request or half the limit: {', '.join(missed)}")
        return 1
    print("all goals met")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0)
    sys.exit(asyncio.run(main(parser.parse_args().seconds)))
