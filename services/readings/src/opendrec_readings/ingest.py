"""Judging and storing one batch of reads of one device: shared by the HTTP API and the
read.submitted handler (and later the CSV import), always inside the caller's transaction.

The device's last-read row is locked first, so batches of one device are judged one after
the other against the state the previous one left; a resubmission (same Idempotency-Key,
or the same content) is recognised under that lock and answered like the first time.
Accepted reads go in with COPY, the last read is updated, and read.ingested is written to
the outbox — all in the one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from opendrec_contracts import ReadIngested
from opendrec_kit import outbox

from . import domain, store
from .domain import Intervals, ReadError, Reads, ReadType
from .settings import Settings


@dataclass(frozen=True)
class BatchSummary:
    batch_id: uuid.UUID
    external_id: str
    read_type: str
    count: int
    total_wh: int
    first_at: datetime
    last_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "batchId": str(self.batch_id),
            "externalId": self.external_id,
            "type": self.read_type,
            "count": self.count,
            "totalWh": self.total_wh,
            "firstTimestamp": domain.iso(self.first_at),
            "lastTimestamp": domain.iso(self.last_at),
        }


@dataclass(frozen=True)
class Accepted:
    summary: BatchSummary
    replayed: bool  # True: this batch had been accepted before; nothing was added


@dataclass(frozen=True)
class Rejected:
    errors: list[ReadError]


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used for different content."""


def device_facts(row: asyncpg.Record, settings: Settings) -> domain.Device:
    return domain.Device(
        device_id=row["device_id"],
        capacity_kw=row["capacity_kw"],
        commissioning_date=row["commissioning_date"],
        onboarded_at=row["onboarded_at"],
        annual_yield=domain.annual_yield(row["yield_value"], row["country_code"], settings.country_yields),
    )


def _summary(row: asyncpg.Record, external_id: str) -> BatchSummary:
    return BatchSummary(
        row["batch_id"],
        external_id,
        row["read_type"],
        row["read_count"],
        int(row["total_wh"]),
        row["first_at"],
        row["last_at"],
    )


async def ingest(
    conn: asyncpg.Connection,
    settings: Settings,
    device: asyncpg.Record,
    read_type: ReadType,
    reads: Reads,
    *,
    source: str,
    parse_errors: Sequence[ReadError] = (),
    idempotency_key: str | None = None,
    timezone: str | None = None,
    now: datetime | None = None,
) -> Accepted | Rejected:
    """Judge `reads` of `device` as one batch and store them if all pass. Call inside a transaction."""
    device_id, external_id = device["device_id"], device["external_id"]
    last = await store.lock_last_read(conn, device_id)
    # Read again under the lock: a device.updated/deleted handled meanwhile is seen.
    device = await store.get_device(conn, device_id)
    if device["deleted_at"] is not None:
        return Rejected(
            [
                ReadError(
                    None,
                    f"device {external_id!r} was deleted on {domain.iso(device['deleted_at'])}: it takes no new reads",
                )
            ]
        )

    fingerprint = domain.fingerprint(read_type, reads)
    if not parse_errors:
        previous = await store.find_batch_by_key(conn, device_id, idempotency_key) if idempotency_key else None
        if previous is not None and bytes(previous["fingerprint"]) != fingerprint:
            raise IdempotencyConflict(idempotency_key)
        previous = previous or await store.find_batch_by_fingerprint(conn, device_id, fingerprint)
        if previous is not None:
            return Accepted(_summary(previous, external_id), replayed=True)

    history: list[tuple[datetime, datetime]] = []
    starts = [start for start in reads.starts if start is not None] if read_type == "History" else []
    if starts:
        history = await store.history_between(conn, device_id, min(starts), max(reads.ends))
    verdict = domain.validate_batch(
        read_type, device_facts(device, settings), last, reads, now=now or datetime.now(UTC), history=history
    )
    if parse_errors or verdict.errors:
        errors = sorted([*parse_errors, *verdict.errors], key=lambda e: -1 if e.index is None else e.index)
        return Rejected(errors)

    batch_id = uuid.uuid4()
    intervals = verdict.intervals
    if intervals:
        await store.copy_intervals(conn, device_id, read_type, source, batch_id, intervals)
    if read_type != "History":
        await store.save_last_read(conn, device_id, verdict.last)
    if timezone and device["timezone"] is None:
        await store.set_timezone_if_missing(conn, device_id, timezone)
    summary = BatchSummary(
        batch_id=batch_id,
        external_id=external_id,
        read_type=read_type,
        count=len(reads),
        total_wh=sum(intervals.whs),
        # An Aggregate baseline alone has no interval: its end is the batch's only instant.
        first_at=min(intervals.starts) if intervals else min(reads.ends),
        last_at=max(reads.ends),
    )
    await store.insert_batch(
        conn,
        batch_id=batch_id,
        device_id=device_id,
        read_type=read_type,
        source=source,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        read_count=summary.count,
        total_wh=summary.total_wh,
        first_at=summary.first_at,
        last_at=summary.last_at,
    )
    for event in ingested_events(device, read_type, batch_id, intervals, settings.read_ingested_max_reads):
        await outbox.add(conn, event, settings.service_name)
    return Accepted(summary, replayed=False)


def ingested_events(
    device: asyncpg.Record, read_type: str, batch_id: uuid.UUID, intervals: Intervals, max_reads: int
) -> list[ReadIngested]:
    """read.ingested for a batch: one event, or several with the same batch_id when it is too big for one message.

    A batch without energy (an Aggregate baseline alone) announces nothing.
    """
    events: list[ReadIngested] = []
    for first in range(0, len(intervals), max_reads):
        part = intervals.part(first, first + max_reads)
        # Not validated again: every value comes from reads this service has just checked
        # (aware UTC instants, start < end, Wh >= 0); a test holds this to the contract's validation.
        events.append(
            ReadIngested.model_construct(
                batch_id=batch_id,
                device_id=device["device_id"],
                external_id=device["external_id"],
                organization_id=device["organization_id"],
                read_type=read_type,
                **ReadIngested.columns_us(part.starts_us, part.ends_us, part.whs),
            )
        )
    return events
