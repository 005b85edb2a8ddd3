"""Event adapter: the device read model (what externalId may be linked), through the use cases."""

from opendrec_contracts import DeviceDeleted, DeviceRegistered, DeviceUpdated, ReadRejected
from opendrec_kit import EventContext

from . import services


async def on_device_registered(event: DeviceRegistered | DeviceUpdated, ctx: EventContext) -> None:
    # The event time orders states that arrive out of order (registered, updated and deleted are three topics).
    await services.take_device_state(ctx, event, ctx.envelope.occurred_at)


async def on_device_updated(event: DeviceUpdated, ctx: EventContext) -> None:
    # The full current state: a renamed external id is linkable under its new name only.
    await on_device_registered(event, ctx)


async def on_device_deleted(event: DeviceDeleted, ctx: EventContext) -> None:
    await services.delete_device(ctx, event.device_id, ctx.envelope.occurred_at)


async def on_read_rejected(event: ReadRejected, ctx: EventContext) -> None:
    # Readings refused the read of a Kazam transaction: kept with it (GET /api/charger/{id}/transactions).
    await services.read_refused(ctx, event)
