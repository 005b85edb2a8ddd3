"""Events that lead to certificates: accepted reads and reservations (and their ends), in any order.

Each handler calls one use case (services.py) with the kit's already-open `EventContext`. The ones that
certify are given the `Settlement` (bound in app.py): how long energy settles, and what time it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opendrec_contracts import (
    DeviceRegistered,
    DeviceUpdated,
    ReadIngested,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
)
from opendrec_kit import EventContext, UnitOfWork

from . import services


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Settlement:
    """Energy of the last `settle` (CERTIFY_SETTLE_S) waits before it is certified; `clock` says what time it
    is (tests move it by hand: `runtime.app.state.settlement.clock = ...`)."""

    settle: timedelta
    clock: Callable[[], datetime] = field(default=_utc_now)
    watermarked: bool = False  # time held back to reservations' watermarks (services.known_until)


async def _now(ctx: UnitOfWork, settlement: Settlement) -> datetime:
    return await services.known_until(ctx, settlement.settle, settlement.clock(), settlement.watermarked)


async def on_device_registered(event: DeviceRegistered, ctx: EventContext, *, settlement: Settlement) -> None:
    # a device heard of for the first time: its reads that waited for it are certified
    now = await _now(ctx, settlement)
    await services.register_device(ctx, event, ctx.envelope.occurred_at, settlement.settle, now)


async def on_device_updated(event: DeviceUpdated, ctx: EventContext, *, settlement: Settlement) -> None:
    # the full current state: it replaces the row unless a newer state arrived first
    now = await _now(ctx, settlement)
    await services.register_device(ctx, event, ctx.envelope.occurred_at, settlement.settle, now)


async def on_read_ingested(event: ReadIngested, ctx: EventContext, *, settlement: Settlement) -> None:
    await services.take_reads(ctx, event, settlement.settle, await _now(ctx, settlement))


async def on_reads_ingested(events: list[ReadIngested], ctx: UnitOfWork, *, settlement: Settlement) -> None:
    """The consumer's batch of read.ingested events (kit `runtime.on(..., batch=N)`), in one unit of work."""
    await services.take_many_reads(ctx, events, settlement.settle, await _now(ctx, settlement))


async def on_reservation_created(event: ReservationCreated, ctx: EventContext, *, settlement: Settlement) -> None:
    await services.take_reservation(ctx, event, settlement.settle, await _now(ctx, settlement))


async def on_reservation_updated(event: ReservationUpdated, ctx: EventContext, *, settlement: Settlement) -> None:
    await services.change_reservation(ctx, event, settlement.settle, await _now(ctx, settlement))


async def on_reservation_ended(event: ReservationEnded, ctx: EventContext) -> None:
    await services.end_reservation(ctx, event)
