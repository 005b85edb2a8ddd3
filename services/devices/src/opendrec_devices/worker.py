"""The bulk onboarding worker: registers staged CSV rows, one batch per transaction.

A batch's devices, its rows' results, the job's counters and the device.registered events
commit together, so a restart (or a crash) in the middle resumes at the first pending row and
never registers a row twice. Jobs are claimed with SKIP LOCKED: several instances share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import asyncpg

from opendrec_kit import ServiceRuntime, outbox

from . import bulk, domain, store
from .api import DeviceRegistration

log = logging.getLogger(__name__)


async def process_batch(pool: asyncpg.Pool, producer: str, batch_size: int) -> bool:
    """Register up to `batch_size` pending rows of the oldest unfinished job; False when idle."""
    async with pool.acquire() as conn, conn.transaction():
        job = await store.claim_unfinished_job(conn)
        if job is None:
            return False
        rows = await store.pending_rows(conn, job["id"], batch_size)
        if not rows:
            await store.finish_job(conn, job["id"])
            return True
        external_ids = [r["external_id"] for r in rows if r["external_id"]]
        first_rows = await store.first_rows_of(conn, job["id"], external_ids)
        taken = await store.existing_external_ids(conn, job["organization_id"], external_ids)
        results: list[tuple] = []
        to_insert: list[tuple[int, bulk.RowResult]] = []
        failed = 0
        for row in rows:
            result = bulk.judge_row(json.loads(row["data"]), DeviceRegistration)
            errors = list(result.errors)
            ext = result.columns["external_id"] if result.columns else (row["external_id"] or "").strip()
            first = first_rows.get(row["external_id"])
            if first is not None and first < row["row_number"]:
                errors.append(
                    {"field": "externalId", "message": f"externalId {ext!r} repeats row {first} of this file"}
                )
            elif ext in taken:
                errors.append(
                    {"field": "externalId", "message": f"externalId {ext!r} is already used by device {taken[ext]}"}
                )
            if errors:
                failed += 1
                results.append((row["row_number"], "failed", None, errors, None))
            else:
                taken[ext] = 0  # claimed by this batch
                to_insert.append((row["row_number"], result))
        devices = await store.insert_devices(
            conn, job["organization_id"], job["created_by"], [r.columns for _, r in to_insert]
        )
        events = [domain.registered_event(d) for d in devices]
        warned = sum(1 for _, r in to_insert if r.warnings)
        created = len(to_insert) - warned
        for (number, result), device in zip(to_insert, devices, strict=True):
            status = "created_with_warnings" if result.warnings else "created"
            results.append((number, status, device["id"], None, result.warnings or None))
        await store.record_row_results(conn, job["id"], results)
        await store.advance_job(conn, job["id"], created, warned, failed)
        await outbox.add_many(conn, events, producer)
        if len(rows) < batch_size:
            await store.finish_job(conn, job["id"])
    return True


async def run(runtime: ServiceRuntime, wake: asyncio.Event) -> None:
    """Work while there is work; then sleep until an upload wakes us or the poll interval passes."""
    settings = runtime.settings
    backoff = 0.1
    while True:
        try:
            assert runtime.pool is not None
            busy = await process_batch(runtime.pool, runtime.name, settings.bulk_batch_size)  # type: ignore[attr-defined]
            backoff = 0.1
        except asyncio.CancelledError:
            raise
        except Exception:
            # e.g. an externalId registered through the API between our check and insert: the batch
            # rolled back as a whole and is judged again.
            log.exception("bulk batch failed; retrying", extra={"retry_in_s": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        if busy:
            continue
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), settings.bulk_poll_interval_s)  # type: ignore[attr-defined]
