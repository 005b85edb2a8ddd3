"""Use cases fed by other services' events: which devices are reserved, which have certified energy.

These read models decide deletion refusals and the buyer listing. Each is idempotent: a redelivered
or repeated event changes nothing (the kit's inbox already drops exact redeliveries)."""

from __future__ import annotations

import uuid
from datetime import datetime

from opendrec_kit import UnitOfWork

from .. import store


async def record_reservation(
    uow: UnitOfWork, reservation_id: int, device_ids: list[int], start: datetime, end: datetime
) -> None:
    """A reservation holds these devices over [start, end)."""
    async with uow:
        await store.record_reservation(uow.conn, reservation_id, device_ids, start, end)


async def record_reservation_ended(uow: UnitOfWork, reservation_id: int, ended_at: datetime, reason: str) -> None:
    """The reservation as a whole stops holding its devices (they may be reserved and deleted again);
    the first end counts, even when it arrives before the reservation."""
    async with uow:
        await store.record_reservation_ended(uow.conn, reservation_id, ended_at, reason)


async def record_certificate(uow: UnitOfWork, certificate_id: uuid.UUID, device_id: int, energy_wh: int) -> None:
    """Certified energy of a device (a device with some may not be deleted)."""
    async with uow:
        await store.record_certificate(uow.conn, certificate_id, device_id, energy_wh)
