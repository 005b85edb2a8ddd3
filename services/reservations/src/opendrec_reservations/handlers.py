"""Events the reservations service listens to: each calls one use case (services.py) in the kit's unit of work."""

from opendrec_contracts import CertificateIssued, DeviceDeleted, DeviceRegistered
from opendrec_kit import EventContext

from . import services


async def on_device_registered(event: DeviceRegistered, ctx: EventContext) -> None:
    await services.register_device(ctx, event, ctx.envelope.occurred_at)


async def on_device_deleted(event: DeviceDeleted, ctx: EventContext) -> None:
    await services.delete_device(ctx, event, ctx.envelope.occurred_at)


async def on_certificate_issued(event: CertificateIssued, ctx: EventContext) -> None:
    # Only one that reached a target without authority to exceed it matters here: the reservation ends.
    await services.reach_target(ctx, event)
