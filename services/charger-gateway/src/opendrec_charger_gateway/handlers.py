"""Event subscribers: the device read model."""

import logging

from opendrec_contracts import DeviceDeleted, DeviceRegistered, DeviceUpdated
from opendrec_kit import EventContext

from . import store

log = logging.getLogger(__name__)


async def on_device_registered(event: DeviceRegistered | DeviceUpdated, ctx: EventContext) -> None:
    # The event time orders states that arrive out of order (registered, updated and deleted are three topics).
    await store.lock_device(ctx.conn, event.device_id)
    await store.upsert_device(
        ctx.conn,
        event.device_id,
        event.external_id,
        event.organization_id,
        event.onboarded_at,
        ctx.envelope.occurred_at,
    )


async def on_device_updated(event: DeviceUpdated, ctx: EventContext) -> None:
    # The full current state: a renamed external id is linkable under its new name only.
    await on_device_registered(event, ctx)


async def on_device_deleted(event: DeviceDeleted, ctx: EventContext) -> None:
    await store.lock_device(ctx.conn, event.device_id)
    unlinked = await store.delete_device(ctx.conn, event.device_id, ctx.envelope.occurred_at)
    if unlinked:
        log.info(
            "device deleted: its chargers are unlinked", extra={"device_id": event.device_id, "chargers": unlinked}
        )
