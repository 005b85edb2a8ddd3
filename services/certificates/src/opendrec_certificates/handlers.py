"""Events that lead to certificates: accepted reads and reservations (and their ends), in any order."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from opendrec_contracts import CertificateIssued, DeviceRegistered, ReadIngested, ReservationCreated, ReservationEnded
from opendrec_kit import EventContext, outbox

from . import domain, store
from .settings import Settings

log = logging.getLogger(__name__)


class Handlers:
    """The subscribers, and the sweep that certifies energy once it has settled.

    Energy of the last `settle` (CERTIFY_SETTLE_S) is not certified yet: reservation.ended comes on another
    topic, and an early end published just before a read arrives must be known before that read's energy
    is given to the reservation. A device left with such reads is due again when they have settled.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.settle = timedelta(seconds=settings.certify_settle_s)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests move time by hand

    async def on_device_registered(self, event: DeviceRegistered, ctx: EventContext) -> None:
        await store.upsert_device(ctx.conn, event.device_id, event.external_id, event.organization_id)

    async def on_read_ingested(self, event: ReadIngested, ctx: EventContext) -> None:
        starts, ends, energies = (list(column) for column in zip(*event.intervals(), strict=True))
        await store.lock_device(ctx.conn, event.device_id)
        await store.insert_reads(
            ctx.conn, event.device_id, event.organization_id, event.batch_id, starts, ends, energies
        )
        await self.certify_device(ctx.conn, event.device_id)

    async def on_reservation_created(self, event: ReservationCreated, ctx: EventContext) -> None:
        inserted = await store.insert_reservation(
            ctx.conn, event.reservation_id, event.reservation_uid, event.name, event.buyer_organization_id,
            event.reservation_start, event.reservation_end, event.frequency, event.target_capacity_wh,
            event.authority_to_exceed, event.device_ids,
        )  # fmt: skip
        if not inserted:
            return
        # Every device first, in a fixed order, then certify: certify_device also takes reservation
        # locks, and a device lock must never be awaited while one is held (no deadlock with a read).
        devices = sorted(event.device_ids)
        for device_id in devices:
            await store.lock_device(ctx.conn, device_id)
        for device_id in devices:
            await self.certify_device(ctx.conn, device_id)

    async def on_reservation_ended(self, event: ReservationEnded, ctx: EventContext) -> None:
        """From now on the reservation's window stops at `ended_at`: energy generated after it is not certified for it
        (certify_device reads the effective end). Nothing to certify anew: ending only shrinks the window."""
        await store.record_reservation_end(ctx.conn, event.reservation_id, event.ended_at, event.reason)

    async def certify_device(self, conn: asyncpg.Connection, device_id: int) -> None:
        """Certify what the device's reservations can take of its settled, uncertified reads. Caller holds the device lock."""
        owner = await store.read_owner(conn, device_id)
        if owner is None:
            return  # no accepted energy yet
        settled_before = self.clock() - self.settle
        # A reservation's target is shared by its devices, which other transactions certify at the same
        # time: its certified total is read under its lock, or two devices could each fill what is left.
        await store.lock_capped_reservations(conn, device_id)
        for reservation in await store.reservations_of_device(conn, device_id):
            reads = await store.uncertified_reads(
                conn, device_id, reservation.reservation_id, reservation.start, reservation.end, settled_before
            )
            allocations = domain.allocate(reads, reservation)
            res = await store.reservation(conn, reservation_id=reservation.reservation_id)
            for issue in domain.issues(allocations, reservation.frequency):
                certificate_id = uuid.uuid4()
                await store.insert_certificate(
                    conn, certificate_id, reservation.reservation_id, device_id, owner, res["buyer_organization_id"],
                    issue.generation_start, issue.generation_end, issue.energy_wh, issue.allocations,
                )  # fmt: skip
                await outbox.add(
                    conn,
                    CertificateIssued(
                        certificate_id=certificate_id,
                        reservation_id=reservation.reservation_id,
                        reservation_uid=res["uid"],
                        device_id=device_id,
                        buyer_organization_id=res["buyer_organization_id"],
                        owner_organization_id=owner,
                        generation_start=issue.generation_start,
                        generation_end=issue.generation_end,
                        energy_wh=issue.energy_wh,
                    ),
                    self.settings.service_name,
                )
                log.info(
                    "certificate issued",
                    extra={
                        "certificate_id": str(certificate_id),
                        "reservation_id": reservation.reservation_id,
                        "device_id": device_id,
                        "energy_wh": issue.energy_wh,
                    },
                )
        unsettled = await store.latest_unsettled_end(conn, device_id, settled_before)
        await store.set_certification_due(conn, device_id, unsettled + self.settle if unsettled else None)

    async def certify_due(self, pool: asyncpg.Pool) -> int:
        """One sweep: certify every device whose unsettled energy has settled by now; how many devices it took."""
        now = self.clock()
        async with pool.acquire() as conn:
            due = await store.due_devices(conn, now, 500)
            done = 0
            for device_id in due:
                async with conn.transaction():
                    # A device busy in another transaction (a read, a reservation, another replica's sweep) is
                    # certified there; its due time is set again when that one ends.
                    if await store.try_lock_device(conn, device_id) and await store.is_certification_due(
                        conn, device_id, now
                    ):
                        await self.certify_device(conn, device_id)
                        done += 1
        return done

    async def sweep(self, pool: asyncpg.Pool) -> None:
        """Run certify_due every CERTIFY_SWEEP_INTERVAL_S until cancelled; a failed sweep is logged and tried again."""
        while True:
            try:
                done = await self.certify_due(pool)
                if done:
                    log.info("settled energy certified", extra={"devices": done})
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                log.exception("certification sweep failed; trying again")
            await asyncio.sleep(self.settings.certify_sweep_interval_s)
