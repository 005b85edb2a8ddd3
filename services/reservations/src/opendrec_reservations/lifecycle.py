"""The end of reservations: the expiry sweep, and the reservation.ended event both ways of ending emit."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg

from opendrec_contracts import ReservationEnded
from opendrec_kit import outbox

from . import store

log = logging.getLogger(__name__)
SERVICE = "reservations"


def ended_event(row: asyncpg.Record) -> ReservationEnded:
    return ReservationEnded(
        reservation_id=row["id"],
        reservation_uid=row["uid"],
        buyer_organization_id=row["buyer_organization_id"],
        device_ids=list(row["device_ids"]),
        ended_at=row["ended_at"],
        reason=row["end_reason"],
    )


async def end_expired_batch(pool: asyncpg.Pool, now: datetime, batch_size: int) -> int:
    """End one batch of reservations whose end date passed; their events go out with the change (outbox)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await store.end_expired(conn, now, batch_size)
        if rows:
            await outbox.add_many(conn, [ended_event(r) for r in rows], SERVICE)
    return len(rows)


async def end_expired(pool: asyncpg.Pool, now: datetime | None = None, batch_size: int = 500) -> int:
    """End every reservation whose end date is at or before `now` (default: now), batch by batch; returns how many
    this call ended. Safe to run in several processes at once: each reservation is ended by exactly one of them."""
    cutoff = now or datetime.now(UTC)
    ended = 0
    while True:
        n = await end_expired_batch(pool, cutoff, batch_size)
        ended += n
        if n < batch_size:
            return ended


async def sweep_forever(pool: asyncpg.Pool, interval_s: float, batch_size: int) -> None:
    """The background task: end expired reservations every `interval_s`; a failed round is logged and retried."""
    while True:
        try:
            ended = await end_expired(pool, batch_size=batch_size)
            if ended:
                log.info("expired reservations ended", extra={"count": ended})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("expiry sweep failed; retried next round")
        await asyncio.sleep(interval_s)
