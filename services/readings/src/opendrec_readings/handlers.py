"""Event subscribers: the device read model, and reads submitted by machine sources.

A read.submitted is judged by the same rules as the HTTP API. Each submission_id is decided
once: accepted (stored, read.ingested), or rejected (recorded with its reasons and logged —
never raised, so a bad submission neither crashes the consumer nor holds up the partition).
A submission for a device this service hasn't heard of yet waits until device.registered
brings it (the two arrive on different topics, in no guaranteed order).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from opendrec_contracts import DeviceRegistered, ReadSubmitted
from opendrec_kit import EventContext

from . import domain, ingest, store
from .settings import Settings

log = logging.getLogger(__name__)


class Handlers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def on_device_registered(self, event: DeviceRegistered, ctx: EventContext) -> None:
        # Serialised with a submission that finds no device, so none is left waiting unseen.
        await store.lock_device_arrival(ctx.conn, event.device_id)
        await store.upsert_device(ctx.conn, event)
        waiting = await store.waiting_submissions(ctx.conn, event.device_id)
        if waiting:
            device = await store.get_device(ctx.conn, event.device_id)
            for row in waiting:
                await self.decide(ctx.conn, device, ReadSubmitted.model_validate_json(row["payload"]), row["event_id"])

    async def on_read_submitted(self, event: ReadSubmitted, ctx: EventContext) -> None:
        if await store.submission_known(ctx.conn, event.submission_id):
            log.info("read submission already decided; ignored", extra={"submission_id": event.submission_id})
            return
        device = await store.get_device(ctx.conn, event.device_id)
        if device is None:
            await store.lock_device_arrival(ctx.conn, event.device_id)
            device = await store.get_device(ctx.conn, event.device_id)
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

    async def decide(self, conn: asyncpg.Connection, device: asyncpg.Record, event: ReadSubmitted, event_id: object) -> None:
        """Accept or reject one submission of a known device, and record the decision."""
        result: ingest.Accepted | ingest.Rejected
        if device["organization_id"] != event.organization_id or device["external_id"] != event.external_id:
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
            reads = [domain.Read(i, r.start.astimezone(UTC) if r.start else None, r.end.astimezone(UTC), r.value_wh) for i, r in enumerate(event.reads)]
            if event.read_type != "History":
                # Ongoing intervals run from the previous read's end: a sent start plays no part.
                reads = [domain.Read(r.index, None, r.end, r.value_wh) for r in reads]
            result = await ingest.ingest(
                conn, self.settings, device, event.read_type, reads, source=event.source, now=datetime.now(UTC)
            )
        common = {"submission_id": event.submission_id, "device_id": event.device_id, "source": event.source, "event_id": event_id}
        if isinstance(result, ingest.Accepted):
            await store.record_submission(conn, status="accepted", batch_id=result.summary.batch_id, **common)  # type: ignore[arg-type]
            log.info(
                "read submission accepted",
                extra={**common, "event_id": str(event_id), "batch_id": str(result.summary.batch_id), "replayed": result.replayed},
            )
        else:
            reasons = [e.as_dict() for e in result.errors]
            await store.record_submission(conn, status="rejected", reasons=reasons, **common)  # type: ignore[arg-type]
            log.warning("read submission rejected", extra={**common, "event_id": str(event_id), "reasons": reasons})
