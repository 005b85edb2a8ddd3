"""Read models from other services' events: which devices are reserved, which have certified energy."""

from __future__ import annotations

from opendrec_contracts import CertificateIssued, ReservationCreated, ReservationEnded
from opendrec_kit.messaging import EventContext

from . import store


async def on_reservation_created(event: ReservationCreated, ctx: EventContext) -> None:
    await store.record_reservation(
        ctx.conn, event.reservation_id, event.device_ids, event.reservation_start, event.reservation_end
    )


async def on_reservation_ended(event: ReservationEnded, ctx: EventContext) -> None:
    # The reservation as a whole stops holding its devices (they may be reserved and deleted again).
    await store.record_reservation_ended(ctx.conn, event.reservation_id, event.ended_at, event.reason)


async def on_certificate_issued(event: CertificateIssued, ctx: EventContext) -> None:
    await store.record_certificate(ctx.conn, event.certificate_id, event.device_id, event.energy_wh)
