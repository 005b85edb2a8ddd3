"""Events the reservations service listens to."""

from opendrec_contracts import DeviceDeleted, DeviceRegistered
from opendrec_kit import EventContext

from . import store


async def on_device_registered(event: DeviceRegistered, ctx: EventContext) -> None:
    await store.lock_device_change(ctx.conn, event.device_id)  # serialised with its deletion (other topic)
    await store.upsert_device(
        ctx.conn,
        event.device_id,
        event.external_id,
        event.organization_id,
        event.capacity_kw,
        event.country_code,
        event.onboarded_at,
    )


async def on_device_deleted(event: DeviceDeleted, ctx: EventContext) -> None:
    await store.lock_device_change(ctx.conn, event.device_id)
    await store.delete_device(ctx.conn, event.device_id, ctx.envelope.occurred_at)
