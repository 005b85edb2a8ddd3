"""Event adapter: other services' events, typed by event class, each handed to one use case.

`ctx` is the unit of work the kit opened around the inbox claim: the use case joins it."""

from __future__ import annotations

from opendrec_contracts import CertificateIssued, ReservationCreated, ReservationEnded, ReservationUpdated
from opendrec_kit import EventContext

from . import services


async def on_reservation_created(event: ReservationCreated, ctx: EventContext) -> None:
    await services.record_reservation(ctx, event)


async def on_reservation_updated(event: ReservationUpdated, ctx: EventContext) -> None:
    await services.record_reservation_change(ctx, event)


async def on_reservation_ended(event: ReservationEnded, ctx: EventContext) -> None:
    await services.record_reservation_ended(ctx, event.reservation_id, event.ended_at, event.reason)


async def on_certificate_issued(event: CertificateIssued, ctx: EventContext) -> None:
    await services.record_certificate(ctx, event)
