"""`opendrec`, the operator CLI, against the running platform: each command as an operator runs it (a process, JSON
out), on what a small load and a poison message leave behind."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from opendrec_kit.testing import eventually, publish_envelopes

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

SERVICES = {"identity", "devices", "readings", "reservations", "certificates", "charger-gateway"}


async def opendrec(ops, *args: str) -> tuple[int, object, str]:
    """Run `opendrec --json ARGS` against the platform: (exit status, its JSON, its stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "opendrec_cli",
        "--stack",
        str(ops.state_dir / "stack.json"),
        "--group-prefix",
        ops.database_name_prefix,
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out) if out.strip() else None, err.decode()


@pytest.fixture(scope="module")
async def loaded(ops_platform, small_load):
    async with httpx.AsyncClient(base_url=ops_platform.gateway_url, timeout=30) as http:
        return await small_load(http)


async def test_health_names_every_service_ready_with_its_workers(ops_platform):
    status, report, _ = await opendrec(ops_platform, "health")
    assert status == 0, report
    assert report["status"] == "ok"
    assert set(report["services"]) == SERVICES | {"gateway"}
    readings = report["services"]["readings"]
    assert readings["checks"] == {"database": "ok", "broker": "ok", "outbox": "ok"}
    assert "metrics" in readings["workers"]


async def test_lag_per_service_group_and_partition_drains(ops_platform, loaded):
    async def caught_up():
        status, rows, err = await opendrec(ops_platform, "lag")
        assert status == 0, err
        return rows if rows and sum(r["lag"] for r in rows) == 0 else None

    rows = await eventually(caught_up, timeout=60, interval=1)
    groups = {(r["service"], r["group"]) for r in rows}
    prefix = ops_platform.database_name_prefix
    assert ("certificates", f"{prefix}certificates.read.ingested") in groups
    assert ("readings", f"{prefix}readings.device.registered") in groups
    ingested = [r for r in rows if r["group"] == f"{prefix}certificates.read.ingested"]
    assert sum(r["end"] for r in ingested) >= 1 and all(r["committed"] == r["end"] for r in ingested if r["end"])
    status, only, _ = await opendrec(ops_platform, "lag", "--service", "readings")
    assert status == 0 and only and {r["service"] for r in only} == {"readings"}


async def test_outbox_backlog_per_service(ops_platform, loaded):
    async def drained():
        status, rows, err = await opendrec(ops_platform, "outbox")
        assert status == 0, err
        by = {r["service"]: r for r in rows}
        return by if all(r.get("backlog") == 0 for r in rows) and by["devices"]["published"] >= 1 else None

    by = await eventually(drained, timeout=60, interval=1)
    assert set(by) == SERVICES
    assert all(r["oldest_age_s"] == 0 for r in by.values())


async def test_jobs_lists_the_read_import(ops_platform, loaded):
    async def done():
        status, rows, err = await opendrec(ops_platform, "jobs", "--all")
        assert status == 0, err
        job = next((r for r in rows if r["id"] == loaded["import_job"]), None)
        return job if job and job["status"] == "done" else None

    job = await eventually(done, timeout=60, interval=1)
    assert (job["service"], job["kind"], job["total_rows"], job["done_rows"], job["accepted_rows"]) == (
        "readings",
        "read import",
        1,
        1,
        1,
    )
    status, unfinished, _ = await opendrec(ops_platform, "jobs")
    assert status == 0 and all(r["id"] != loaded["import_job"] for r in unfinished)


async def test_reconcile_a_device_accepted_held_and_certified(ops_platform, loaded):
    device_id = loaded["device"]["id"]

    async def certified():
        status, rows, err = await opendrec(ops_platform, "reconcile", "--device", str(device_id))
        assert status == 0, err
        [row] = rows
        return row if row["verdict"] == "ok" and row["accepted_wh"] == 2800 and row["certified_wh"] >= 2000 else None

    row = await eventually(certified, timeout=90, interval=1)
    assert row["device_id"] == device_id
    assert (row["accepted_reads"], row["held_reads"], row["held_wh"]) == (2, 2, 2800)  # the API's read and the CSV's
    assert row["certified_wh"] % 1000 == 0 and row["certified_wh"] <= row["held_wh"]  # whole kWh, never more
    assert row["uncertified_wh"] == row["held_wh"] - row["certified_wh"]
    status, every, _ = await opendrec(ops_platform, "reconcile")
    assert status == 0 and device_id in {r["device_id"] for r in every}


async def test_dead_letters_list_show_and_replay(ops_platform):
    event_id = str(uuid.uuid4())
    poison = {
        "event_id": event_id,
        "type": "device.updated",  # not what device.registered's consumers take: each sets it aside
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "ops-test",
        "payload": {},
    }
    await publish_envelopes(ops_platform.kafka_bootstrap, [("device.registered", "0", json.dumps(poison).encode())])

    async def listed(count: int):
        status, rows, err = await opendrec(ops_platform, "dlq", "list", "--topic", "device.registered")
        assert status == 0, err
        mine = [r for r in rows if r["event_id"] == event_id]
        return mine if len(mine) >= count else None

    consumers = 4  # readings, reservations, certificates, charger-gateway
    mine = await eventually(lambda: listed(consumers), timeout=60, interval=1)
    assert {r["topic"] for r in mine} == {"device.registered.dlq"}
    assert all(r["original_topic"] == "device.registered" and r["error_type"] == "Poison" for r in mine)

    status, shown, _ = await opendrec(ops_platform, "dlq", "show", "--event-id", event_id)
    assert status == 0 and len(shown) == len(mine)
    assert json.loads(shown[0]["message"])["event_id"] == event_id
    assert shown[0]["headers"]["x-original-topic"] == "device.registered"

    status, _, err = await opendrec(ops_platform, "dlq", "replay")
    assert status == 2 and "needs --topic" in err  # never every DLQ implicitly

    status, replayed, _ = await opendrec(
        ops_platform, "dlq", "replay", "--topic", "device.registered", "--event-id", event_id
    )
    assert status == 0 and replayed["replayed"] == len(mine)
    # still poison: every consumer sets each replayed copy aside again (nothing lost, nothing handled)
    await eventually(lambda: listed(len(mine) + len(mine) * consumers), timeout=60, interval=1)


async def test_asyncapi_check_says_the_committed_document_is_current(ops_platform):
    status, _, err = await opendrec(ops_platform, "asyncapi", "--check")
    assert status == 0 and "is current" in err


async def test_snapshot_draws_every_service_from_its_live_metrics(ops_platform, loaded, tmp_path):
    out = tmp_path / "dashboard.svg"
    status, report, err = await opendrec(
        ops_platform,
        "snapshot",
        "--out",
        str(out),
        "--seconds",
        "2",
        "--interval",
        "1",
        "--gateway-metrics",
        ops_platform.gateway_metrics_url,
    )
    assert status == 0, err
    assert report["scrapes"] >= 2 and all(report["answered"].values()), report  # the first, and one after 2 s
    svg = out.read_text()
    for service in SERVICES | {"gateway"}:
        assert f">{service}<" in svg
