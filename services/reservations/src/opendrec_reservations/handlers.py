"""Events the reservations service listens to: each calls one use case (services.py) in the kit's unit of work."""

from opendrec_contracts import DeviceDeleted, DeviceRegistered
from opendrec_kit import EventContext

from . import services


async def on_device_registered(event: DeviceRegistered, ctx: EventContext) -> None:
    await services.register_device(ctx, event, ctx.envelope.occurred_at)


async def on_device_deleted(event: DeviceDeleted, ctx: EventContext) -> None:
    await services.delete_device(ctx, event, ctx.envelope.occurred_at)
