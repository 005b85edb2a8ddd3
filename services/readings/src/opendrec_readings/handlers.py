"""Event subscribers: the device and reservation read models, and reads submitted by machine sources.

A read.submitted is judged by the same rules as the HTTP API. Each submission_id is decided
once: accepted (stored, read.ingested), or rejected (recorded with its reasons, announced as
read.rejected and logged — never raised, so a bad submission neither crashes the consumer
nor holds up the partition).
A submission for a device this service hasn't heard of yet waits until device.registered
brings it (the two arrive on different topics, in no guaranteed order).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from opendrec_contracts import (
    DeviceDeleted,
    DeviceRegistered,
    DeviceUpdated,
    ReadRejected,
    ReadRejection,
    ReadSubmitted,
    ReservationCreated,
    ReservationEnded,
)
from opendrec_kit import EventContext, outbox

from . import domain, ingest, store
from .settings import Settings

log = logging.getLogger(__name__)


class Handlers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def on_device_registered(self, event: DeviceRegistered, ctx: EventContext) -> None:
        await self._device_state(event, ctx)

    async def on_device_updated(self, event: DeviceUpdated, ctx: EventContext) -> None:
        # Capacity, timezone, yield... may change: later batches are judged by the new state.
        await self._device_state(event, ctx)

    async def _device_state(self, event: DeviceRegistered | DeviceUpdated, ctx: EventContext) -> None:
        # Serialised with a submission that finds no device, so none is left waiting unseen,
        # and with a batch being judged (last_reads lock), which then sees the state before or after.
        await store.lock_device_arrival(ctx.conn, event.device_id)
        if await store.get_device(ctx.conn, event.device_id):
            await store.lock_last_read(ctx.conn, event.device_id)
        if not await store.upsert_device(ctx.conn, event, ctx.envelope.occurred_at):
            log.info(
                "device state older than the one known, or device deleted; ignored",
                extra={"device_id": event.device_id},
            )
        await self._decide_waiting(ctx.conn, event.device_id)

    async def on_device_deleted(self, event: DeviceDeleted, ctx: EventContext) -> None:
        await store.lock_device_arrival(ctx.conn, event.device_id)
        if await store.get_device(ctx.conn, event.device_id):
            await store.lock_last_read(ctx.conn, event.device_id)  # a batch being judged finishes first
        await store.delete_device(ctx.conn, event.device_id, ctx.envelope.occurred_at)
        log.info("device deleted: it takes no new reads", extra={"device_id": event.device_id})
        await self._decide_waiting(ctx.conn, event.device_id)

    async def _decide_waiting(self, conn: asyncpg.Connection, device_id: int) -> None:
        """Decide the submissions that waited for this device (refused if it was deleted)."""
        waiting = await store.waiting_submissions(conn, device_id)
        device = await store.get_device(conn, device_id) if waiting else None
        for row in waiting:
            submitted = ReadSubmitted.model_validate_json(row["payload"])
            await self.decide(conn, device, submitted, row["event_id"])

    async def on_reservation_created(self, event: ReservationCreated, ctx: EventContext) -> None:
        # The buyer may now see the reads of these devices (GET by device id).
        await store.upsert_reservation(ctx.conn, event)

    async def on_reservation_ended(self, event: ReservationEnded, ctx: EventContext) -> None:
        # An early end shortens what the buyer sees; an expiry (ended at the planned end) changes nothing.
        await store.record_reservation_end(ctx.conn, event.reservation_id, event.ended_at)

    async def on_read_submitted(self, event: ReadSubmitted, ctx: EventContext) -> None:
        if await store.submission_known(ctx.conn, event.submission_id):
            log.info("read submission already decided; ignored", extra={"submission_id": event.submission_id})
            return
        device = await store.get_device(ctx.conn, event.device_id)
        if device is None:
            await store.lock_device_arrival(ctx.conn, event.device_id)
            device = await store.get_device(ctx.conn, event.device_id)
        if device is None and await store.is_deleted(ctx.conn, event.device_id):
            await self.decide(ctx.conn, None, event, ctx.envelope.event_id)
            return
        if device is None:
            await store.record_submission(
                ctx.conn,
                submission_id=event.submission_id,
                device_id=event.device_id,
                source=event.source,
                status="waiting",
                event_id=ctx.envelope.event_id,
                payload=event.model_dump(mode="json"),
            )
            log.info(
                "read submission waits for its device",
                extra={"submission_id": event.submission_id, "device_id": event.device_id},
            )
            return
        await self.decide(ctx.conn, device, event, ctx.envelope.event_id)

    async def decide(
        self, conn: asyncpg.Connection, device: asyncpg.Record | None, event: ReadSubmitted, event_id: object
    ) -> None:
        """Accept or reject one submission of a known (or deleted) device, and record the decision."""
        result: ingest.Accepted | ingest.Rejected
        if device is None:  # deleted before it was ever known here
            result = ingest.Rejected(
                [domain.ReadError(None, f"device {event.device_id} was deleted: it takes no new reads")]
            )
        elif device["organization_id"] != event.organization_id or device["external_id"] != event.external_id:
            result = ingest.Rejected(
                [
                    domain.ReadError(
                        None,
                        f"device {event.device_id} is {device['external_id']!r} of organization "
                        f"{device['organization_id']}, not {event.external_id!r} of {event.organization_id}",
                    )
                ]
            )
        else:
            # Ongoing intervals run from the previous read's end: a sent start plays no part.
            history = event.read_type == "History"
            reads = domain.Reads.of(
                domain.Read(
                    i, r.start.astimezone(UTC) if history and r.start else None, r.end.astimezone(UTC), r.value_wh
                )
                for i, r in enumerate(event.reads)
            )
            result = await ingest.ingest(
                conn, self.settings, device, event.read_type, reads, source=event.source, now=datetime.now(UTC)
            )
        common = {
            "submission_id": event.submission_id,
            "device_id": event.device_id,
            "source": event.source,
            "event_id": event_id,
        }
        if isinstance(result, ingest.Accepted):
            await store.record_submission(conn, status="accepted", batch_id=result.summary.batch_id, **common)  # type: ignore[arg-type]
            log.info(
                "read submission accepted",
                extra={
                    **common,
                    "event_id": str(event_id),
                    "batch_id": str(result.summary.batch_id),
                    "replayed": result.replayed,
                },
            )
        else:
            reasons = [e.as_dict() for e in result.errors]
            await store.record_submission(conn, status="rejected", reasons=reasons, **common)  # type: ignore[arg-type]
            # The source learns why, through the outbox: recorded and announced in the one transaction.
            rejected = ReadRejected(
                submission_id=event.submission_id,
                device_id=event.device_id,
                external_id=event.external_id,
                organization_id=event.organization_id,
                read_type=event.read_type,
                source=event.source,
                reasons=[ReadRejection(index=e.index, reason=e.reason) for e in result.errors],
            )
            await outbox.add(conn, rejected, self.settings.service_name)
            log.warning("read submission rejected", extra={**common, "event_id": str(event_id), "reasons": reasons})
