"""Bulk read import: a CSV uploaded once, processed in the background, row by row results.

Columns: deviceExternalId, timezone, type, unit, value, startDate, endDate (one read a row).
Consecutive rows of one device, type, unit and timezone are judged together by the same
rules as the HTTP API (ingest.ingest), up to 10,000 at a time. Unlike the API, a bad row
does not refuse its neighbours: it is set aside with its reason and the rest judged again
(a Delta read then counts from the previous accepted one).

The job lives in Postgres: the CSV, a cursor (rows done) and every row's result. Each group
of rows is stored together with its results and the cursor in one transaction, so a job
cut short by a restart resumes at the first row not done, and adds nothing twice. A worker
holds a session advisory lock on the job while it works, so two replicas never share one;
the lock goes with the connection if the process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from . import domain, ingest, store
from .settings import Settings

log = logging.getLogger(__name__)

COLUMNS = ("deviceExternalId", "timezone", "type", "unit", "value", "startDate", "endDate")
SOURCE = "import"


@dataclass(frozen=True, slots=True)
class CsvRow:
    number: int  # 1 = the first row after the header
    external_id: str
    timezone: str
    read_type: str
    unit: str
    value: str
    start: str
    end: str

    def group(self) -> tuple[str, str, str, str]:
        return (self.external_id, self.timezone, self.read_type, self.unit)


@dataclass(frozen=True, slots=True)
class RowResult:
    number: int
    accepted: bool
    reason: str | None = None
    batch_id: uuid.UUID | None = None


# -- pure parts -------------------------------------------------------------------------


def parse_csv(text: str) -> list[CsvRow]:
    """The rows of an upload; ValueError when the header lacks a column (names as in COLUMNS, any case)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        raise ValueError("the file is empty: expected a header row " + ",".join(COLUMNS))
    positions = {name.strip().lower(): i for i, name in enumerate(header)}
    missing = [c for c in COLUMNS if c.lower() not in positions]
    if missing:
        raise ValueError(f"the header lacks {', '.join(missing)}: expected {','.join(COLUMNS)}")
    at = [positions[c.lower()] for c in COLUMNS]
    rows = []
    for number, cells in enumerate(reader, start=1):
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        cells = cells + [""] * (len(header) - len(cells))
        rows.append(CsvRow(number, *(cells[i].strip() for i in at)))
    return rows


def groups(rows: Sequence[CsvRow], max_size: int = domain.MAX_READS_PER_REQUEST) -> list[list[CsvRow]]:
    """Consecutive rows of one device, timezone, type and unit, at most `max_size` each."""
    out: list[list[CsvRow]] = []
    for row in rows:
        if out and out[-1][0].group() == row.group() and len(out[-1]) < max_size:
            out[-1].append(row)
        else:
            out.append([row])
    return out


def group_error(first: CsvRow) -> str | None:
    """What makes every row of a group unacceptable (type, unit, timezone), or None."""
    if not first.external_id:
        return "deviceExternalId is required"
    if first.read_type not in domain.READ_TYPES:
        return f"type {first.read_type!r} is not one of {', '.join(domain.READ_TYPES)}"
    if first.unit not in domain.UNIT_EXPONENTS:
        return f"unit {first.unit!r} is not one of {', '.join(domain.UNIT_EXPONENTS)}"
    if first.timezone:
        try:
            domain.resolve_timezone(first.timezone)
        except ValueError as exc:
            return str(exc)
    return None


def parse_group(rows: Sequence[CsvRow]) -> tuple[domain.Reads, list[RowResult]]:
    """Reads of a group (indexed by row number), and the rows refused already by their form."""
    first = rows[0]
    tz = domain.resolve_timezone(first.timezone) if first.timezone else None
    values: list[Decimal | int] = []
    refused: list[RowResult] = []
    usable: list[CsvRow] = []
    for row in rows:
        try:
            value = Decimal(row.value)
            values.append(int(value) if value == value.to_integral_value() and value.is_finite() else value)
            usable.append(row)
        except InvalidOperation:
            refused.append(RowResult(row.number, False, f"value {row.value!r} is not a number"))
    reads, errors = domain.parse_reads(
        [r.start for r in usable],
        [r.end for r in usable],
        values,
        first.read_type,
        first.unit,
        tz,  # type: ignore[arg-type]
    )
    # parse_reads indexes by position: back to row numbers.
    reads = domain.Reads([usable[i].number for i in reads.indexes], reads.starts, reads.ends, reads.values_wh)
    refused += [RowResult(usable[e.index].number, False, e.reason) for e in errors if e.index is not None]
    return reads, refused


# -- the job --------------------------------------------------------------------------------


async def judge_group(
    conn: asyncpg.Connection, settings: Settings, organization_id: int, rows: Sequence[CsvRow]
) -> list[RowResult]:
    """Judge and store one group in the caller's transaction; a result for every row."""
    first = rows[0]
    reason = group_error(first)
    if reason is None:
        device = await store.find_device(conn, organization_id, first.external_id)
        if device is None:
            reason = f"no device with external id {first.external_id!r} in organization {organization_id}"
    if reason is not None:
        return [RowResult(r.number, False, reason) for r in rows]
    assert device is not None
    remaining, results = parse_group(rows)
    tz = domain.resolve_timezone(first.timezone).key if first.timezone else None
    while remaining:
        verdict = await ingest.ingest(conn, settings, device, first.read_type, remaining, source=SOURCE, timezone=tz)  # type: ignore[arg-type]
        if isinstance(verdict, ingest.Accepted):
            results += [RowResult(number, True, None, verdict.summary.batch_id) for number in remaining.indexes]
            break
        whole = [e.reason for e in verdict.errors if e.index is None]
        if whole:
            results += [RowResult(number, False, whole[0]) for number in remaining.indexes]
            break
        bad: dict[int, str] = {}
        for e in verdict.errors:
            assert e.index is not None
            bad[e.index] = f"{bad[e.index]}; {e.reason}" if e.index in bad else e.reason
        results += [RowResult(number, False, why) for number, why in bad.items()]
        remaining = domain.Reads.of(r for r in remaining if r.index not in bad)
    return sorted(results, key=lambda r: r.number)


class ImportWorker:
    """Processes queued (and interrupted) jobs, one at a time per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.wake = asyncio.Event()
        self.pool: asyncpg.Pool | None = None

    async def run(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        while True:
            try:
                while await self.work_one():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bulk read import failed; retried shortly")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.import_poll_interval_s)

    async def work_one(self) -> bool:
        """Process one job that no other worker holds; False when there is none."""
        assert self.pool is not None
        async with self.pool.acquire() as lock_conn:
            for job_id in await store.unfinished_jobs(lock_conn):
                if not await store.try_lock_job(lock_conn, job_id):
                    continue
                try:
                    await self.process(job_id)
                finally:
                    await store.unlock_job(lock_conn, job_id)
                return True
        return False

    async def process(self, job_id: uuid.UUID) -> None:
        assert self.pool is not None
        job = await store.get_job(self.pool, job_id)
        if job is None or job["status"] in ("done", "failed"):
            return
        rows = parse_csv(job["content"])
        todo = [r for r in rows if r.number > job["last_row"]]
        await store.mark_job_running(self.pool, job_id)
        log.info("bulk read import started", extra={"job_id": str(job_id), "rows_left": len(todo)})
        for group in groups(todo):
            async with self.pool.acquire() as conn, conn.transaction():
                results = await judge_group(conn, self.settings, job["organization_id"], group)
                await store.save_row_results(conn, job_id, results)
                await store.advance_job(conn, job_id, group[-1].number, len(results), sum(r.accepted for r in results))
        await store.finish_job(self.pool, job_id)
        log.info("bulk read import done", extra={"job_id": str(job_id)})


def job_out(job: Any) -> dict[str, Any]:
    total = job["rows_total"]
    return {
        "jobId": str(job["job_id"]),
        "organizationId": job["organization_id"],
        "fileName": job["file_name"],
        "status": job["status"],
        "rowsTotal": total,
        "rowsDone": job["rows_done"],
        "accepted": job["accepted"],
        "rejected": job["rows_done"] - job["accepted"],
        "progress": round(100 * job["rows_done"] / total, 1) if total else 100.0,
        "createdAt": domain.iso(job["created_at"]),
        "finishedAt": domain.iso(job["finished_at"]) if job["finished_at"] else None,
    }
