"""Events that lead to certificates: accepted reads and reservations (and their ends), in any order."""

from __future__ import annotations

import logging
import uuid

from opendrec_contracts import CertificateIssued, DeviceRegistered, ReadIngested, ReservationCreated, ReservationEnded
from opendrec_kit import EventContext

from . import domain, store

log = logging.getLogger(__name__)


async def on_device_registered(event: DeviceRegistered, ctx: EventContext) -> None:
    await store.upsert_device(ctx.conn, event.device_id, event.external_id, event.organization_id)


async def on_read_ingested(event: ReadIngested, ctx: EventContext) -> None:
    rows = [
        (event.device_id, event.organization_id, start, end, wh, event.batch_id) for start, end, wh in event.intervals()
    ]
    await store.lock_device(ctx.conn, event.device_id)
    await store.insert_reads(ctx.conn, rows)
    await certify_device(ctx, event.device_id)


async def on_reservation_created(event: ReservationCreated, ctx: EventContext) -> None:
    inserted = await store.insert_reservation(
        ctx.conn, event.reservation_id, event.reservation_uid, event.name, event.buyer_organization_id,
        event.reservation_start, event.reservation_end, event.frequency, event.target_capacity_wh,
        event.authority_to_exceed, event.device_ids,
    )
    if not inserted:
        return
    # Every device first, in a fixed order, then certify: certify_device also takes reservation
    # locks, and a device lock must never be awaited while one is held (no deadlock with a read).
    devices = sorted(event.device_ids)
    for device_id in devices:
        await store.lock_device(ctx.conn, device_id)
    for device_id in devices:
        await certify_device(ctx, device_id)


async def on_reservation_ended(event: ReservationEnded, ctx: EventContext) -> None:
    """From now on the reservation's window stops at `ended_at`: energy generated after it is not certified for it
    (certify_device reads the effective end). Nothing to certify anew: ending only shrinks the window."""
    await store.record_reservation_end(ctx.conn, event.reservation_id, event.ended_at, event.reason)


async def certify_device(ctx: EventContext, device_id: int) -> None:
    """Certify what the device's reservations can take of its uncertified reads. Caller holds the device lock."""
    owner = await store.read_owner(ctx.conn, device_id)
    if owner is None:
        return  # no accepted energy yet
    # A reservation's target is shared by its devices, which other transactions certify at the same
    # time: its certified total is read under its lock, or two devices could each fill what is left.
    await store.lock_capped_reservations(ctx.conn, device_id)
    for reservation in await store.reservations_of_device(ctx.conn, device_id):
        reads = await store.uncertified_reads(ctx.conn, device_id, reservation.reservation_id, reservation.start, reservation.end)
        allocations = domain.allocate(reads, reservation)
        res = await store.reservation(ctx.conn, reservation_id=reservation.reservation_id)
        for issue in domain.issues(allocations, reservation.frequency):
            certificate_id = uuid.uuid4()
            await store.insert_certificate(
                ctx.conn, certificate_id, reservation.reservation_id, device_id, owner, res["buyer_organization_id"],
                issue.generation_start, issue.generation_end, issue.energy_wh, issue.allocations,
            )
            await ctx.emit(
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
                )
            )
            log.info("certificate issued", extra={"certificate_id": str(certificate_id), "reservation_id": reservation.reservation_id, "device_id": device_id, "energy_wh": issue.energy_wh})
