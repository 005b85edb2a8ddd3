"""Event adapter: each handler gets its event and the open unit of work (`EventContext`) and calls one use case.

The device and reservation read models, and reads submitted by machine sources (judged by the same
rules as the HTTP API; each submission_id decided once, a refusal announced as read.rejected and
never raised, so a bad submission neither crashes the consumer nor holds up the partition).
"""

from __future__ import annotations

from opendrec_contracts import (
    DeviceDeleted,
    DeviceRegistered,
    DeviceUpdated,
    ReadSubmitted,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
)
from opendrec_kit import EventContext, ServiceRuntime

from . import services
from .settings import Settings


class Handlers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def subscribe(self, runtime: ServiceRuntime[Settings]) -> None:
        """Registers every event this service follows with its handler (by event class)."""
        runtime.on(DeviceRegistered, self.on_device_registered)
        runtime.on(DeviceUpdated, self.on_device_updated)
        runtime.on(DeviceDeleted, self.on_device_deleted)
        runtime.on(ReadSubmitted, self.on_read_submitted)
        runtime.on(ReservationCreated, self.on_reservation_created)
        runtime.on(ReservationUpdated, self.on_reservation_updated)
        runtime.on(ReservationEnded, self.on_reservation_ended)

    async def on_device_registered(self, event: DeviceRegistered, ctx: EventContext) -> None:
        await services.take_device_state(ctx, self.settings, event, ctx.envelope.occurred_at)

    async def on_device_updated(self, event: DeviceUpdated, ctx: EventContext) -> None:
        # Capacity, timezone, yield... may change: later batches are judged by the new state.
        await services.take_device_state(ctx, self.settings, event, ctx.envelope.occurred_at)

    async def on_device_deleted(self, event: DeviceDeleted, ctx: EventContext) -> None:
        await services.delete_device(ctx, self.settings, event.device_id, ctx.envelope.occurred_at)

    async def on_reservation_created(self, event: ReservationCreated, ctx: EventContext) -> None:
        await services.record_reservation(ctx, event)

    async def on_reservation_updated(self, event: ReservationUpdated, ctx: EventContext) -> None:
        await services.change_reservation(ctx, event)

    async def on_reservation_ended(self, event: ReservationEnded, ctx: EventContext) -> None:
        await services.end_reservation(ctx, event.reservation_id, event.ended_at)

    async def on_read_submitted(self, event: ReadSubmitted, ctx: EventContext) -> None:
        await services.read_submitted(ctx, self.settings, event, ctx.envelope.event_id)
