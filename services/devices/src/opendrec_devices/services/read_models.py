"""Use cases fed by other services' events: which devices are reserved, which have certified energy.

These read models decide deletion refusals, the buyer listing, the ungrouped devices, certified totals and the
certified log of a reservation. Each is idempotent: a redelivered or repeated event changes nothing (the kit's
inbox already drops exact redeliveries)."""

from __future__ import annotations

from datetime import datetime

from opendrec_contracts import CertificateIssued, ReservationCreated, ReservationUpdated
from opendrec_kit import UnitOfWork

from .. import store


async def record_reservation(uow: UnitOfWork, reservation: ReservationCreated) -> None:
    """A reservation (known by id and uid, for its buyer) holds these devices over [start, end)."""
    async with uow:
        await store.record_reservation(
            uow.conn,
            reservation.reservation_id,
            reservation.reservation_uid,
            reservation.buyer_organization_id,
            reservation.device_ids,
            reservation.reservation_start,
            reservation.reservation_end,
        )


async def record_reservation_change(uow: UnitOfWork, change: ReservationUpdated) -> bool:
    """A reservation's new terms (its buyer changed them): from now on it holds its devices until the new end.
    The highest revision wins in any order (reservation.created is revision 0, and may come after); an older
    or replayed change is ignored (False); an ended reservation stays ended (its end is kept apart)."""
    async with uow:
        known = await store.reservation_revision(uow.conn, change.reservation_id)
        if known is not None and known >= change.revision:
            return False
        await store.replace_reservation_terms(
            uow.conn,
            change.reservation_id,
            change.revision,
            change.reservation_uid,
            change.buyer_organization_id,
            change.device_ids,
            change.reservation_start,
            change.reservation_end,
        )
        return True


async def record_reservation_ended(uow: UnitOfWork, reservation_id: int, ended_at: datetime, reason: str) -> None:
    """The reservation as a whole stops holding its devices (they may be reserved and deleted again);
    the first end counts, even when it arrives before the reservation."""
    async with uow:
        await store.record_reservation_ended(uow.conn, reservation_id, ended_at, reason)


async def record_certificate(uow: UnitOfWork, certificate: CertificateIssued) -> None:
    """Certified energy of each device of a certificate (its parts), in which reservation and over which period
    (a device with some may not be deleted; the certified log reads the periods; certified totals add the parts)."""
    async with uow:
        await store.record_certificate(
            uow.conn,
            {
                "certificate_id": certificate.certificate_id,
                "reservation_id": certificate.reservation_id,
                "reservation_uid": certificate.reservation_uid,
                "buyer_organization_id": certificate.buyer_organization_id,
                "generation_start": certificate.generation_start,
                "generation_end": certificate.generation_end,
            },
            [(part.device_id, part.energy_wh) for part in certificate.parts],
        )
