"""Devices benchmarks: bulk CSV onboarding and the first page of GET /api/device/my.

    python bench/devices/bench_bulk.py [--rows 10000] [--devices 100000] [--requests 300]

Starts an embedded Postgres and a Tansu broker (or uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS
when set), a JWKS server for a test signing key, and the devices service as a real process
(`python -m opendrec_devices`), then:

  bulk:    uploads a generated --rows CSV (every row valid) to
           POST /api/device/addByAdmin/process-creation-bulk-devices-csv/{org} and polls the job
           until it completes; prints rows/s from upload to completion, and the service's peak
           RSS (VmHWM) before, after a 1,000-row warm-up job and after the big one: memory flat in
           file size means the big job adds about nothing over the warm-up.   Goal: < 20 s.
  listing: puts --devices devices in one organization (SQL, the service's own table), then
           sends --requests sequential GET /api/device/my (page 1, 20 a page) with a valid JWT;
           prints p50/p95, also for a filtered query and a deep keyset page.   Goal: p50 < 50 ms.

Printed figures, not a test: the exit status is 0 unless something failed outright.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from opendrec_devstack.broker import start_broker
from opendrec_devstack.drec_samples import DEVICE_REQUIRED_FIELDS
from opendrec_devstack.net import free_port, with_database
from opendrec_devstack.postgres import start_postgres
from opendrec_kit.testing import TokenIssuer, serve_jwks

COLUMNS = [*DEVICE_REQUIRED_FIELDS, "timezone"]
FUELS = ["ES100", "ES200", "ES300"]


def csv_file(rows: int, tag: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for i in range(rows):
        writer.writerow(
            [
                f"{tag}-{i}",
                f"Rooftop {i}",
                f"{i} Main Road",
                f"{-(i % 80) - 0.5}",
                f"{(i % 170) + 0.25}",
                "KE",
                FUELS[i % 3],
                "TC120",
                5 + i % 500,
                "2021-03-04T05:06:07Z",
                "true",
                "School",
                "Africa/Nairobi",
            ]
        )
    return out.getvalue().encode()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen, timeout: float = 60) -> None:
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


async def run_job(client: httpx.AsyncClient, headers: dict, org: int, body: bytes) -> tuple[float, dict]:
    start = time.perf_counter()
    r = await client.post(
        f"/api/device/addByAdmin/process-creation-bulk-devices-csv/{org}",
        content=body,
        headers={**headers, "Content-Type": "text/csv"},
    )
    r.raise_for_status()
    job_id = r.json()["jobId"]
    while True:
        job = (await client.get(f"/api/device/bulk-jobs/{job_id}", headers=headers)).json()
        if job["status"] == "completed":
            return time.perf_counter() - start, job
        await asyncio.sleep(0.05)


async def seed_devices(database_url: str, org: int, count: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO devices (device_uuid, organization_id, external_id, project_name, address, latitude, longitude,
                                 country_code, fuel_code, device_type_code, capacity_kw, commissioning_date,
                                 grid_interconnection, off_taker)
            SELECT gen_random_uuid(), $1, 'seed-' || g, 'Seeded ' || g, 'Somewhere', -1.28, 36.82,
                   (ARRAY['KEN','IND','NGA'])[1 + g % 3], (ARRAY['ES100','ES200','ES300'])[1 + g % 3], 'TC120',
                   1 + g % 1000, now() - (g % 2000) * interval '1 day', true, 'School'
            FROM generate_series(1, $2) AS g
            """,
            org,
            count,
        )
        await conn.execute("ANALYZE devices")
    finally:
        await conn.close()


async def timings(client: httpx.AsyncClient, headers: dict, params: dict, n: int) -> tuple[float, float, int]:
    samples = []
    body = {}
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get("/api/device/my", params=params, headers=headers)
        samples.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        body = r.json()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], body["totalCount"]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    misses: list[str] = []  # goals missed: the exit status says so (make bench)

    workdir = Path(tempfile.mkdtemp(prefix="bench-devices-"))
    pg = broker = None
    database_url = os.environ.get("DATABASE_URL")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not database_url:
        pg = start_postgres(workdir / "pgdata")
        database_url = pg.url
    if not bootstrap:
        broker = start_broker(log_path=workdir / "tansu.log")
        bootstrap = broker.bootstrap
    issuer = TokenIssuer()
    jwks, jwks_url = serve_jwks(issuer.jwk())
    port = free_port()
    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    env = {
        **os.environ,
        "ENVIRONMENT": "dev",
        "DATABASE_URL": database_url,
        "DATABASE_NAME_PREFIX": prefix,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "KAFKA_TOPIC_PARTITIONS": "1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "IDENTITY_URL": jwks_url,
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once before the measurement
        [sys.executable, "-m", "opendrec_devices"],
        env=env,
        stdout=open(workdir / "devices.log", "wb"),  # noqa: ASYNC230, SIM115 - the child process owns the log file
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            await wait_ready(client, proc)
            admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
            org = 1000
            # Onboarding needs a Developer organization the service knows (normally from organization.registered).
            conn = await asyncpg.connect(with_database(database_url, f"{prefix}devices"))
            try:
                await conn.execute(
                    "INSERT INTO organization_directory (organization_id, name, organization_type) "
                    "VALUES ($1, 'bench developer', 'Developer') ON CONFLICT DO NOTHING",
                    org,
                )
            finally:
                await conn.close()
            rss_start = peak_rss_mb(proc.pid)
            warm_s, _ = await run_job(client, admin, org, csv_file(1_000, "warm"))
            rss_warm = peak_rss_mb(proc.pid)
            body = csv_file(args.rows, "bulk")
            seconds, job = await run_job(client, admin, org, body)
            rss_big = peak_rss_mb(proc.pid)
            print(
                f"bulk: {args.rows} rows ({len(body) / 1e6:.1f} MB) in {seconds:.2f} s = {args.rows / seconds:,.0f} rows/s"
                f" (created {job['createdRows']}, failed {job['failedRows']}); goal < 20 s:"
                f" {'PASS' if seconds < 20 and job['createdRows'] == args.rows else 'FAIL'}"
            )
            misses += [] if seconds < 20 and job["createdRows"] == args.rows else ["bulk job"]
            print(
                f"bulk: service peak RSS {rss_start:.0f} MB at start, {rss_warm:.0f} MB after a 1,000-row job"
                f" ({warm_s:.2f} s), {rss_big:.0f} MB after the {args.rows}-row job"
            )

            listing_org = 2000
            t = time.perf_counter()
            await seed_devices(with_database(database_url, f"{prefix}devices"), listing_org, args.devices)
            print(f"listing: seeded {args.devices:,} devices in {time.perf_counter() - t:.1f} s")
            headers = issuer.headers(
                organization_id=listing_org, organization_type="Developer", permissions={"DEVICE_MANAGEMENT_CRUDL": "R"}
            )
            await timings(client, headers, {}, 20)  # warm-up: connections, plans, token keys
            for label, params in [
                ("page 1", {"pagenumber": 1}),
                ("page 1, fuelCode=ES200", {"pagenumber": 1, "fuelCode": "ES200"}),
                (
                    "page 1, capacity 100-200 kW, commissioned since 2022",
                    {"capacityMin": 100, "capacityMax": 200, "commissioningDateFrom": "2022-01-01"},
                ),
                ("keyset page deep in the list (afterId)", {"afterId": 50_000}),
            ]:
                p50, p95, total = await timings(client, headers, params, args.requests)
                verdict = f"; goal p50 < 50 ms: {'PASS' if p50 < 50 else 'FAIL'}" if label == "page 1" else ""
                misses += ["listing p50"] if label == "page 1" and p50 >= 50 else []
                print(
                    f"listing: GET /api/device/my {label} over {total:,} matching: p50 {p50:.1f} ms, p95 {p95:.1f} ms{verdict}"
                )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        jwks.shutdown()
        if broker:
            broker.stop()
        if pg:
            pg.stop()
        elif database_url:
            conn = await asyncpg.connect(database_url)
            try:
                for row in await conn.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix):
                    await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
            finally:
                await conn.close()
    if misses:
        print(f"goals missed: {', '.join(misses)}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
