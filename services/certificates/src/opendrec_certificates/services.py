"""The use cases of the certificates service: each runs in the kit's unit of work.

Adapters (handlers.py for the events, the certification worker in app.py, api.py for the log) call one of
these; the rules are in domain.py, the SQL in store.py.

Energy of the last `settle` (CERTIFY_SETTLE_S) is not certified yet: reservation.ended comes on another topic,
and an early end published just before a read arrives must be known before that read's energy is given to the
reservation. A device left with such reads is due again when they have settled (`certify_due`). `now` is
passed in by the adapter (tests move time by hand).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from opendrec_contracts import (
    CertificateIssued,
    DeviceRegistered,
    ReadIngested,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
)
from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.organizations import ADMIN, API_USER, acting_organization, find_organization, visible_organizations
from opendrec_kit.owners import OwnerServices
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso, iso_exact

from . import domain, store

log = logging.getLogger(__name__)
BUYER = "Buyer"
DUE_BATCH = 500  # due devices one round of the certification worker takes


# -- certification ------------------------------------------------------------------------------------


async def _certify_device(uow: UnitOfWork, device_id: int, settle: timedelta, now: datetime) -> None:
    """Certify what the device's reservations can take of its settled, uncertified reads; record
    certificate.issued for each certificate. The caller holds the device lock."""
    conn = uow.conn
    owner = await store.read_owner(conn, device_id)
    if owner is None:
        return  # no accepted energy yet
    settled_before = now - settle
    # A reservation's target is shared by its devices, which other transactions certify at the same
    # time: its certified total is read under its lock, or two devices could each fill what is left.
    await store.lock_capped_reservations(conn, device_id)
    for reservation in await store.reservations_of_device(conn, device_id):
        if not domain.certifiable(reservation, now):
            continue  # expired: nothing more is certified for it
        reads = await store.uncertified_reads(
            conn, device_id, reservation.reservation_id, reservation.start, reservation.end, settled_before
        )
        allocations = domain.allocate(reads, reservation)
        if not allocations:
            continue
        res = await store.reservation(conn, reservation_id=reservation.reservation_id)
        assert res is not None  # the reservation of the device, read in this transaction
        for issue in domain.issues(allocations, reservation.frequency):
            certificate_id = uuid.uuid4()
            await store.insert_certificate(
                conn,
                certificate_id,
                reservation.reservation_id,
                device_id,
                owner,
                res["buyer_organization_id"],
                issue.generation_start,
                issue.generation_end,
                issue.energy_wh,
                issue.allocations,
            )
            uow.record(
                CertificateIssued(
                    certificate_id=certificate_id,
                    reservation_id=reservation.reservation_id,
                    reservation_uid=res["uid"],
                    device_id=device_id,
                    buyer_organization_id=res["buyer_organization_id"],
                    owner_organization_id=owner,
                    generation_start=issue.generation_start,
                    generation_end=issue.generation_end,
                    energy_wh=issue.energy_wh,
                )
            )
            log.info(
                "certificate issued",
                extra={
                    "certificate_id": str(certificate_id),
                    "reservation_id": reservation.reservation_id,
                    "device_id": device_id,
                    "energy_wh": issue.energy_wh,
                },
            )
    unsettled = await store.latest_unsettled_end(conn, device_id, settled_before)
    await store.set_certification_due(conn, device_id, unsettled + settle if unsettled else None)


async def take_reads(uow: UnitOfWork, event: ReadIngested, settle: timedelta, now: datetime) -> None:
    """Accepted energy of one read.ingested batch: stored (a read seen before is skipped), then certified."""
    starts, ends, energies = (list(column) for column in zip(*event.intervals(), strict=True))
    async with uow:
        await store.lock_device(uow.conn, event.device_id)
        await store.insert_reads(
            uow.conn, event.device_id, event.organization_id, event.batch_id, starts, ends, energies
        )
        await _certify_device(uow, event.device_id, settle, now)


async def take_reservation(uow: UnitOfWork, event: ReservationCreated, settle: timedelta, now: datetime) -> None:
    """A reservation (once, whatever the redeliveries): its devices' settled energy is certified for it."""
    async with uow:
        inserted = await store.insert_reservation(
            uow.conn,
            event.reservation_id,
            event.reservation_uid,
            event.name,
            event.buyer_organization_id,
            event.reservation_start,
            event.reservation_end,
            event.frequency,
            event.target_capacity_wh,
            event.authority_to_exceed,
            event.reservation_expiry,
            event.device_ids,
        )
        if not inserted:
            return
        await store.apply_reservation_change(uow.conn, event.reservation_id)  # one heard before it, if any
        await _certify_devices(uow, event.device_ids, settle, now)


async def _certify_devices(uow: UnitOfWork, device_ids: list[int], settle: timedelta, now: datetime) -> None:
    # Every device first, in a fixed order, then certify: _certify_device also takes reservation
    # locks, and a device lock must never be awaited while one is held (no deadlock with a read).
    devices = sorted(device_ids)
    for device_id in devices:
        await store.lock_device(uow.conn, device_id)
    for device_id in devices:
        await _certify_device(uow, device_id, settle, now)


async def change_reservation(uow: UnitOfWork, event: ReservationUpdated, settle: timedelta, now: datetime) -> None:
    """A reservation's new terms (the latest revision wins, in any order with reservation.created): its window
    stops at the new end, its target, authority and expiry are the new ones. Energy already certified stays;
    what the new terms allow more of (a later end, a higher target, the authority to exceed, a later expiry) is
    certified now."""
    async with uow:
        await store.record_reservation_change(
            uow.conn,
            event.reservation_id,
            event.revision,
            event.name,
            event.reservation_end,
            event.target_capacity_wh,
            event.authority_to_exceed,
            event.reservation_expiry,
        )
        devices = await store.apply_reservation_change(uow.conn, event.reservation_id)
        if devices:
            await _certify_devices(uow, devices, settle, now)


async def end_reservation(uow: UnitOfWork, event: ReservationEnded) -> None:
    """From now on the reservation's window stops at `ended_at`: energy generated after it is not certified for
    it (_certify_device reads the effective end). Nothing to certify anew: ending only shrinks the window."""
    async with uow:
        await store.record_reservation_end(uow.conn, event.reservation_id, event.ended_at, event.reason)


async def register_device(uow: UnitOfWork, event: DeviceRegistered) -> None:
    """The device's owner and externalId, for the log and the owner's view."""
    async with uow:
        await store.upsert_device(
            uow.conn, event.device_id, event.external_id, event.organization_id, event.country_code, event.timezone
        )


@dataclass(frozen=True)
class Sweep:
    due: int  # due devices taken (at most the batch)
    certified: int  # of which certified here (the others were busy in another transaction)


async def certify_due(uow: UnitOfWork, settle: timedelta, now: datetime, batch: int = DUE_BATCH) -> Sweep:
    """One round of the certification worker: certify each device (up to `batch`) whose unsettled energy has
    settled by `now`, one transaction per device."""
    async with uow.reading("read_committed") as r:
        due = await store.due_devices(r.conn, now, batch)
    certified = 0
    for device_id in due:
        async with uow:
            # A device busy in another transaction (a read, a reservation, another replica's sweep) is
            # certified there; its due time is set again when that one ends.
            if await store.try_lock_device(uow.conn, device_id) and await store.is_certification_due(
                uow.conn, device_id, now
            ):
                await _certify_device(uow, device_id, settle, now)
                certified += 1
    if certified:
        log.info("settled energy certified", extra={"devices": certified})
    return Sweep(len(due), certified)


# -- the certificate log ----------------------------------------------------------------------------------


def _certificate(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "groupId": row["reservation_id"],
        "deviceId": row["device_id"],
        "externalId": row["external_id"],
        # Boundaries of reads (a client's instants) exactly: µs kept; issuedAt is the server's, to the ms.
        "certificateStartDate": iso_exact(row["generation_start"]),
        "certificateEndDate": iso_exact(row["generation_end"]),
        "energyWh": row["energy_wh"],
        "ownerOrganizationId": row["owner_organization_id"],
        "buyerOrganizationId": row["buyer_organization_id"],
        "status": row["status"],
        "issuedAt": iso(row["issued_at"]),
    }


async def _viewer(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> int | None:
    """The organization whose view of a reservation's log this is (None: an admin naming none sees everything).
    An API user names one of its Buyer organizations: it sees the certificates of that organization's reservations."""
    if user.role == ADMIN and organization_id is None:
        return None
    kind = BUYER if user.role == API_USER else None
    return await acting_organization(conn, user, organization_id, organization_type=kind)


@dataclass(frozen=True)
class Learning:
    """What a read needs to learn a reservation it misses from its owner (read-your-writes): who to ask, and the
    settlement the certification of what it learns follows (as the event handlers do)."""

    owners: OwnerServices
    settle: timedelta
    now: datetime


@dataclass(frozen=True)
class ReservationLog:
    """One page of a reservation's certificates as the caller may see them, with the totals of the whole view."""

    reservation: Any  # the reservation's row (store.reservation)
    rows: list[Any]  # the page's certificates (store.certificates_of_reservation)
    count: int  # certificates in the whole view
    energy_wh: int  # their energy


async def _log(
    uow: UnitOfWork,
    user: Principal,
    page: Page,
    organization_id: int | None,
    learning: Learning,
    *,
    reservation_id: int | None = None,
    uid: uuid.UUID | None = None,
    api_user_names_none: bool = False,
) -> ReservationLog:
    """A page of one reservation's certificates (by id or uid) as the caller may see them, with totals; the use
    cases below answer it in one of the D-REC shapes (`certificate_log`, `device_issue_log`, `group_issue_log`).

    `api_user_names_none`: an API user naming no organization sees the reservation if one of its Buyer
    organizations holds it (the D-REC .../certified/new/{groupUid} path has no organizationId).
    A reservation not known here (yet: reservation.created may still be on its way) is asked of the reservations
    service once, on the caller's behalf (`learn_reservation`), then looked for again; unknown there too, or not
    the caller's to see: 404."""
    found = await _reservation_log(uow, user, page, organization_id, reservation_id, uid, api_user_names_none)
    if found is None and await learn_reservation(uow, learning, user, reservation_id=reservation_id, uid=uid):
        found = await _reservation_log(uow, user, page, organization_id, reservation_id, uid, api_user_names_none)
    if found is None:
        raise ApiError(404, _absent(reservation_id, uid))
    return found


def _absent(reservation_id: int | None, uid: uuid.UUID | None) -> str:
    return f"No reservation {reservation_id or uid} is known to the certificate log (yet)"


async def learn_reservation(
    uow: UnitOfWork,
    learning: Learning,
    user: Principal,
    *,
    reservation_id: int | None = None,
    uid: uuid.UUID | None = None,
) -> bool:
    """Read-your-writes (opendrec_kit.owners): ask the reservations service for a reservation missing here, on
    the caller's behalf (it answers only what the caller may see), and take its answer through the use cases the
    event handlers call, in one unit of work: reservation.created (`take_reservation`: its devices' settled
    energy is certified for it, as when the event comes), reservation.updated (`change_reservation`) and
    reservation.ended (`end_reservation`). Each is idempotent by content, so the real events, arriving later
    with their own ids, change nothing: a second reservation.created is ignored (its row exists), a revision
    not above the stored one is ignored, the first end recorded wins. Their order needs no `occurred_at`: it is
    in the events (revision, first end). No connection is held while asking. True when something was learned."""
    path = f"/reservations/{uid}" if uid is not None else f"/reservations/by-id/{reservation_id}"
    known = await learning.owners.ask("reservations", path, user)
    created = [k.event for k in known if isinstance(k.event, ReservationCreated)]
    if not created or not (created[0].reservation_uid == uid or created[0].reservation_id == reservation_id):
        return False  # unknown there too, or not the caller's to see (or not what was asked)
    about = created[0].reservation_id
    settle, now = learning.settle, learning.now
    async with uow:
        for event in (k.event for k in known):
            if isinstance(event, ReservationCreated) and event.reservation_id == about:
                await take_reservation(uow, event, settle, now)
            elif isinstance(event, ReservationUpdated) and event.reservation_id == about:
                await change_reservation(uow, event, settle, now)
            elif isinstance(event, ReservationEnded) and event.reservation_id == about:
                await end_reservation(uow, event)
    log.info("reservation learned from its owner", extra={"reservation_id": about, "events": len(known)})
    return True


async def _reservation_log(
    uow: UnitOfWork,
    user: Principal,
    page: Page,
    organization_id: int | None,
    reservation_id: int | None,
    uid: uuid.UUID | None,
    api_user_names_none: bool,
) -> ReservationLog | None:
    """_log's page, None when the reservation is not known here (a 404 when it is not the caller's)."""
    absent = _absent(reservation_id, uid)
    async with uow.reading() as r:
        conn = r.conn
        if api_user_names_none and user.role == API_USER and organization_id is None:
            own_buyers: list[int] | None = await visible_organizations(conn, user, None, organization_type=BUYER)
            viewer = None
        else:
            own_buyers, viewer = None, await _viewer(conn, user, organization_id)
        res = await store.reservation(conn, reservation_id=reservation_id, uid=uid)
        if res is None:
            return None
        # The buyer sees every certificate of its reservation; a device owner only those of its own devices.
        if own_buyers is not None:
            if res["buyer_organization_id"] not in own_buyers:
                raise ApiError(404, absent)
            owner = None
        elif viewer is None or res["buyer_organization_id"] == viewer:
            owner = None
        elif user.role != API_USER and await store.owns_any_device(conn, list(res["device_ids"]), viewer):
            owner = viewer
        else:  # not theirs: answer as if it did not exist, so ids leak nothing
            raise ApiError(404, absent)
        totals = await store.reservation_totals(conn, res["reservation_id"], owner)
        rows = await store.certificates_of_reservation(conn, res["reservation_id"], owner, page.limit, page.offset)
    return ReservationLog(res, list(rows), totals["count"], totals["energy_wh"])


# -- the D-REC shapes of a reservation's log ------------------------------------------------------------------
# D-REC (d-rec/drec-origin, apps/drec-api/src/pods/...) keeps three logs of an issuance: one row per device
# (CheckCertificateIssueDateLogForDeviceEntity), one per issuance of the group (…ForDeviceGroupEntity) and the
# issuer's certificate. Here a certificate is already one device's energy of one period of one reservation, so
# each of the three is one entry per certificate, its id standing for D-REC's certificateTransactionUID (the
# issuance that ties the three together). No blockchain here: no owners, claims, block hashes or addresses.


def _issue_log_entry(log_: ReservationLog, row: Any) -> dict[str, Any]:
    """A certificate as D-REC's per-device issue log (CheckCertificateIssueDateLogForDeviceEntity: id, status,
    externalId and groupId are our certificate's own), with our fields and the reservation's uid and name."""
    res = log_.reservation
    return {
        **_certificate(row),
        "certificate_issuance_startdate": iso_exact(row["generation_start"]),
        "certificate_issuance_enddate": iso_exact(row["generation_end"]),
        "readvalue_watthour": row["energy_wh"],
        "certificateTransactionUID": str(row["id"]),
        "createdAt": iso(row["issued_at"]),
        "updatedAt": iso(row["issued_at"]),
        "devicegroup_uid": str(res["uid"]),
        "reservationName": res["name"],
    }


def _metadata(log_: ReservationLog, row: Any) -> dict[str, Any]:
    """D-REC's ICertificateMetadata (utils/types.ts) of a certificate: the group, the devices' externalIds, the
    reservation's uid and the issuance's transaction uid."""
    res = log_.reservation
    return {
        "groupId": str(res["reservation_id"]),
        "buyerReservationId": str(res["uid"]),
        "deviceIds": [row["external_id"]] if row["external_id"] is not None else [],
        "certificateTransactionUID": str(row["id"]),
    }


async def device_issue_log(
    uow: UnitOfWork, user: Principal, page: Page, organization_id: int | None, learning: Learning, reservation_id: int
) -> tuple[list[dict[str, Any]], int]:
    """GET /api/certificate-log/by-reservation-groupId: D-REC answers a bare array of the per-device issue log
    (CertificateLogService.findByGroupId): one page of it, and how many the whole view holds (the route's
    X-Total-Count header)."""
    log_ = await _log(uow, user, page, organization_id, learning, reservation_id=reservation_id)
    return [_issue_log_entry(log_, row) for row in log_.rows], log_.count


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


async def certificate_log(
    uow: UnitOfWork,
    user: Principal,
    page: Page,
    organization_id: int | None,
    learning: Learning,
    uid: uuid.UUID,
    *,
    api_user_names_none: bool = False,
) -> dict[str, Any]:
    """GET /api/certificate-log/issuer/certified[/new]/{groupUid}: our page of the reservation (its terms,
    `certificates`, totals) and D-REC's (CertificateLogService.getCertificateFromOldOrNewUfinction):
    `certificatelog` (each certificate as the issuer's, CertificateNewWithPerDeviceLog: `deviceId` is the group
    id, as D-REC issues to the group, unix-second generation times, its per-device issue log), `totalItems`,
    `currentPage`, `totalPages`."""
    log_ = await _log(uow, user, page, organization_id, learning, uid=uid, api_user_names_none=api_user_names_none)
    res = log_.reservation
    pages = total_pages(log_.count, page.limit)
    return {
        "groupId": res["reservation_id"],
        "devicegroup_uid": str(res["uid"]),
        "reservationName": res["name"],
        "reservationStartDate": iso_exact(res["reservation_start"]),
        "reservationEndDate": iso_exact(res["reservation_end"]),
        # set once reservation.ended was received
        "reservationEndedAt": iso_exact(res["ended_at"]) if res["ended_at"] else None,
        "certificates": [_certificate(row) for row in log_.rows],
        "certificatelog": [
            {
                "id": str(row["id"]),
                "deviceId": str(res["reservation_id"]),
                "generationStartTime": _seconds(row["generation_start"]),
                "generationEndTime": _seconds(row["generation_end"]),
                "creationTime": _seconds(row["issued_at"]),
                "certificateStartDate": iso_exact(row["generation_start"]),
                "certificateEndDate": iso_exact(row["generation_end"]),
                "energyWh": row["energy_wh"],
                "metadata": _metadata(log_, row),
                "createdAt": iso(row["issued_at"]),
                "perDeviceCertificateLog": [{**_issue_log_entry(log_, row), "timezone": row["timezone"]}],
            }
            for row in log_.rows
        ],
        "totalEnergyWh": log_.energy_wh,
        "currentPage": page.number,
        "totalPages": pages,
        "totalCount": log_.count,
        "totalItems": log_.count,
    }


async def group_issue_log(
    uow: UnitOfWork, user: Principal, page: Page, organization_id: int | None, learning: Learning, reservation_id: int
) -> tuple[list[dict[str, Any]], int]:
    """GET /api/buyer-reservation/certificatelog/{id}: D-REC's issue log of the group
    (CheckCertificateIssueDateLogForDeviceGroupEntity, DeviceGroupService.getDeviceGrouplog), one entry per
    certificate: `groupid` is the reservation id as text, `certificate_payload` the issuance (IIssueCommandParams:
    the group, energy in Wh as text, the generation period, the metadata), `issuer_certificate_id` none (no
    issuer chain here), `countryCode` the device's (none when unknown); with our certificate's fields. One page,
    and how many the whole view holds (the route's X-Total-Count header); the same visibility as the other logs."""
    log_ = await _log(uow, user, page, organization_id, learning, reservation_id=reservation_id)
    res = log_.reservation
    entries = [
        {
            **_certificate(row),
            "certificate_issuance_startdate": iso_exact(row["generation_start"]),
            "certificate_issuance_enddate": iso_exact(row["generation_end"]),
            "readvalue_watthour": row["energy_wh"],
            "groupid": str(res["reservation_id"]),
            "certificate_payload": {
                "deviceId": str(res["reservation_id"]),
                "energyValue": str(row["energy_wh"]),
                "fromTime": iso_exact(row["generation_start"]),
                "toTime": iso_exact(row["generation_end"]),
                "metadata": _metadata(log_, row),
            },
            "issuer_certificate_id": None,
            "countryCode": row["country_code"],
            "certificateTransactionUID": str(row["id"]),
            "createdAt": iso(row["issued_at"]),
            "updatedAt": iso(row["issued_at"]),
            "devicegroup_uid": str(res["uid"]),
            "reservationName": res["name"],
        }
        for row in log_.rows
    ]
    return entries, log_.count


async def _log_owner(
    conn: asyncpg.Connection, user: Principal, organization_id: int | None
) -> tuple[int | None, str | None]:
    """(organization, view) of an organization's certificate log: view "owner" (a Developer: its devices'
    certificates) or "buyer" (a Buyer: its reservations'); (None, None) for an admin naming none: all."""
    if user.role == ADMIN and organization_id is None:
        return None, None
    org = await acting_organization(conn, user, organization_id)
    if org == user.organization_id and user.role != API_USER:
        kind = user.organization_type
    else:  # acting_organization found it: an API user's or an admin's named one
        known = await find_organization(conn, org)
        kind = known.organization_type if known else ""
    view = domain.organization_view(kind)
    if view is None:
        raise ApiError(
            403,
            f"Organization {org} is a {kind or 'unknown'} organization; this log is of a Developer or Buyer organization",
        )
    return org, view


async def organization_log(uow: UnitOfWork, user: Principal, page: Page, organization_id: int | None) -> dict[str, Any]:
    """A page of an organization's certificates: a Developer's devices' or a Buyer's reservations' (all for an
    admin naming none), with totals over every page."""
    async with uow.reading() as r:
        org, view = await _log_owner(r.conn, user, organization_id)
        owner, buyer = (org, None) if view == "owner" else (None, org)
        totals = await store.organization_totals(r.conn, owner, buyer)
        rows = await store.organization_certificates(r.conn, owner, buyer, page.limit, page.offset)
    return {
        "organizationId": org,
        "view": {"owner": "developer", "buyer": "buyer"}.get(view or "", "all"),
        "certificatelog": [
            {
                **_certificate(row),
                "devicegroup_uid": str(row["reservation_uid"]),
                "reservationName": row["reservation_name"],
            }
            for row in rows
        ],
        "totalEnergyWh": totals["energy_wh"],
        "currentPage": page.number,
        "totalPages": total_pages(totals["count"], page.limit),
        "totalCount": totals["count"],
    }
