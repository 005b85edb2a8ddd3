"""Event subscribers: the device read model."""

from opendrec_contracts import DeviceRegistered
from opendrec_kit import EventContext

from . import store


async def on_device_registered(event: DeviceRegistered, ctx: EventContext) -> None:
    await store.upsert_device(ctx.conn, event.device_id, event.external_id, event.organization_id, event.onboarded_at)
