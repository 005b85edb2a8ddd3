"""The use cases of the certificates service: each runs in the kit's unit of work.

Adapters (handlers.py for the events, the certification worker in app.py, api.py for the log) call one of
these; the rules are in domain.py, the SQL in store.py.

Energy goes to certificates in two steps (domain.py): allocation (a settled read's share of each reservation
window, per period of the reservation's frequency) and issuance (one certificate per reservation, country and
period once the period has closed and settled; whole kWh, the remainder carried). Energy of the last `settle`
(CERTIFY_SETTLE_S) is not allocated yet: reservation.ended comes on another topic, and an early end published just
before a read arrives must be known before that read's energy is given to the reservation. A device left with such
reads is due again when they have settled, and a period is issued when it has closed and settled (`certify_due`,
the worker's round). `now` is passed in by the adapter (tests move time by hand).

Locks, always in this order: a device's (allocation), then its reservations' in id order (allocation and
issuance of one reservation run one transaction at a time), then the ledger's head (ledger.services.append, last).
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from opendrec_contracts import (
    CertificateIssued,
    CertificatePart,
    DeviceRegistered,
    DeviceUpdated,
    ReadIngested,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
    topic_of,
)
from opendrec_kit import ApiError, Principal, UnitOfWork, metrics, watermarks
from opendrec_kit.organizations import ADMIN, API_USER, acting_organization, known_organization, visible_organizations
from opendrec_kit.owners import OwnerServices
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso, iso_exact

from . import domain, store
from .ledger import domain as ledger_domain
from .ledger import services as ledger
from .registry import services as registry
from .registry.domain import IssuedCertificate

log = logging.getLogger(__name__)
BUYER = "Buyer"
DUE_BATCH = 500  # due devices (and due reservations) one round of the certification worker takes
DUE_CHUNK = 100  # due devices certified in one transaction (issue 16: one each was a transaction per device)


# -- allocation -----------------------------------------------------------------------------------------------------


async def _allocate_devices(
    uow: UnitOfWork, device_ids: list[int], settle: timedelta, now: datetime, stored: list[domain.Run]
) -> tuple[list[tuple[int, int, list[domain.RunAllocation]]], dict[int, domain.Run]]:
    """What the devices' reservations can take of their settled reads not yet allocated to them: per device (in the
    order given) and reservation of the device, its allocations per run of reads (stored by the issuance that
    follows: most are issued at once), and the runs they are of. The caller holds the devices' locks and their
    reservations' (a reservation's target is shared by its devices, which other transactions allocate at the same
    time: what it was allocated is read under its lock, or two devices could each fill what is left; what this
    transaction gives the devices before counts too). Nothing is written until every device is allocated, so the
    runs and reservations of all of them are read at once (issue 16: a consumer's batch holds hundreds of devices).
    `stored`: runs this transaction stored (taken as they are, not read back)."""
    conn = uow.conn
    settled_before = now - settle
    settled_us = domain.micros(settled_before)
    reservations = await store.reservations_of_devices(conn, device_ids)
    offered = await store.offered_until(conn, device_ids)  # reads ending before were offered already
    windows = [
        (device_id, r.reservation_id, r.start, r.end, offered.get(device_id))
        for device_id in device_ids
        for r in reservations.get(device_id, [])
        if domain.certifiable(r, now)  # expired: nothing more is certified for it
    ]
    runs, given = (
        await store.uncertified_runs(conn, windows, settled_before, [run.id for run in stored]) if windows else ({}, [])
    )
    if windows and stored:
        offered_to = {w[0] for w in windows}  # devices with a reservation to offer them to
        for run in stored:
            if run.device_id in offered_to:
                runs.setdefault(run.device_id, []).append(run)
        for device_runs in runs.values():
            device_runs.sort(key=_run_order)
    by_id = {run.id: run for device_runs in runs.values() for run in device_runs}
    # Wh already allocated per read of the runs that gave any (all reservations; this round's added as it goes: two
    # reservations holding a device at the same time share its reads, never take each one's energy twice), and the
    # reads each reservation was given (a read goes to a reservation once)
    certified: dict[int, list[int]] = {}
    mine: dict[tuple[int, int], set[int]] = {}
    for run_id, reservation_id, lo, hi, parts in given:
        run = by_id[run_id]
        counted = certified.setdefault(run_id, [0] * len(run.ends_us))
        taken = mine.setdefault((run_id, reservation_id), set())
        for k, wh in zip(range(lo, hi), run.energy_wh[lo:hi] if parts is None else parts, strict=True):
            if wh > 0:
                counted[k] += wh
                taken.add(k)
    unstored: dict[int, int] = {}  # Wh per reservation allocated here, not stored yet
    out = []
    for device_id in device_ids:
        device_runs = runs.get(device_id, [])
        after = offered.get(device_id)
        after_us = None if after is None else domain.micros(after)
        held = reservations.get(device_id, [])
        for i, reservation in enumerate(held):
            allocations: list[domain.RunAllocation] = []
            if domain.certifiable(reservation, now) and device_runs:
                given_here = unstored.get(reservation.reservation_id, 0)
                allocations = domain.allocate_runs(
                    device_runs,
                    replace(reservation, certified_wh=reservation.certified_wh + given_here)
                    if given_here
                    else reservation,
                    after_us,
                    settled_us,
                    certified,
                    {
                        run.id: mine[(run.id, reservation.reservation_id)]
                        for run in device_runs
                        if (run.id, reservation.reservation_id) in mine
                    },
                )
                unstored[reservation.reservation_id] = given_here + sum(a.energy_wh for a in allocations)
                for a in allocations if i + 1 < len(held) else ():  # what the device's next reservations see
                    run = by_id[a.run_id]
                    counted = certified.setdefault(a.run_id, [0] * len(run.ends_us))
                    for k, wh in zip(range(a.lo, a.hi), a.parts_of(run), strict=True):
                        counted[k] += wh
            out.append((device_id, reservation.reservation_id, allocations))
    await store.set_offered_until(conn, device_ids, settled_before)
    unsettled = await store.latest_unsettled_ends(conn, device_ids, settled_before)
    await store.set_certification_dues(
        conn, {d: (unsettled[d] + settle if d in unsettled else None) for d in device_ids}
    )
    return out, by_id


# -- issuance -------------------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """The due allocations of one certificate to be: (country, kind, period), per device."""

    country_code: str | None
    kind: str
    period_start: datetime
    period_end: datetime
    energy: dict[int, int]
    starts: dict[int, datetime]
    ends: dict[int, datetime]
    stored: list[tuple[int, datetime, int]]  # its allocations stored before: (run, period start, first read)
    fresh: list[tuple[int, domain.RunAllocation]]  # its allocations made in this transaction: (device, allocation)
    reads: list[tuple[int, int, int, int]]  # (device, start, end, Wh; instants in us): the intervals it covers
    round_id: uuid.UUID | None = None  # the round that took it (_issue_round)


def _pending(
    stored: list[Any], fresh: list[tuple[int, str | None, domain.RunAllocation]], runs: dict[int, domain.Run]
) -> list[_Pending]:
    """Due allocations grouped into certificates: a period's of one country together; a History read's alone.
    `stored`: store.due_allocations' rows; `fresh`: (device, its country, allocation) made in this transaction (a
    tuple each, not a row, issue 16), of the `runs`."""
    groups: dict[tuple[Any, ...], _Pending] = {}

    def group(key: tuple[Any, ...], country: str | None, kind: str, start: datetime, end: datetime) -> _Pending:
        found = groups.get(key)
        if found is None:
            found = groups[key] = _Pending(country, kind, start, end, {}, {}, {}, [], [], [])
        return found

    def add(pending: _Pending, device: int, a: domain.RunAllocation, run: domain.Run) -> None:
        energy, starts, ends = pending.energy, pending.starts, pending.ends
        if device in energy:
            energy[device] += a.energy_wh
            if a.start < starts[device]:
                starts[device] = a.start
            if a.end > ends[device]:
                ends[device] = a.end
        else:
            energy[device], starts[device], ends[device] = a.energy_wh, a.start, a.end
        if a.period_end > pending.period_end:
            pending.period_end = a.period_end
        pending.reads += domain.run_parts(run, a, device)

    for row in stored:
        country, device, period_start = row["country_code"], row["device_id"], row["period_start"]
        if row["kind"] == domain.HISTORY:
            key: tuple[Any, ...] = (period_start, 1, country or "", device, row["run_id"], row["lo"])
        else:
            key = (period_start, 0, country or "")
        pending = group(key, country, row["kind"], period_start, row["period_end"])
        allocation, run = store.stored_allocation(row)
        add(pending, device, allocation, run)
        pending.stored.append((row["run_id"], period_start, row["lo"]))
    last: _Pending | None = None  # a device's next allocation is mostly of the same period: compared, not hashed
    for device, country, a in fresh:
        if a.kind == domain.HISTORY:
            pending = group(
                (a.period_start, 1, country or "", device, a.run_id, a.lo),
                country,
                a.kind,
                a.period_start,
                a.period_end,
            )
        elif (
            last is not None
            and last.kind == domain.PERIOD
            and a.period_start == last.period_start
            and country == last.country_code
        ):
            pending = last
        else:
            pending = last = group((a.period_start, 0, country or ""), country, a.kind, a.period_start, a.period_end)
        add(pending, device, a, runs[a.run_id])
        pending.fresh.append((device, a))
    return [groups[k] for k in sorted(groups)]


@dataclass
class _Issuance:
    """One issuance of a reservation (its closed periods, one transaction): what was read before it once (the
    rounds each period had, the carry, the devices' owners, the transaction's time) and what it writes, gathered
    to be written with one statement per table at its end."""

    terms: Any
    counts: dict[tuple[str, datetime], dict[str, int]]  # rounds of each kind per (country key, period start)
    carry: dict[str, dict[int, int]]  # per country key, per device
    owners: dict[int, int]  # the organization of each device's latest accepted read
    issued_at: datetime  # the transaction's time (certificates' issued_at)
    rounds: list[tuple[Any, ...]] = field(default_factory=list)
    taken: list[tuple[int, datetime, int, uuid.UUID]] = field(default_factory=list)  # stored: run, period, lo
    carried: set[str] = field(default_factory=set)  # country keys whose carry changed
    certificates: list[tuple[Any, ...]] = field(default_factory=list)
    parts: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[CertificateIssued] = field(default_factory=list)
    holdings: list[IssuedCertificate] = field(default_factory=list)


async def _issue_reservation(
    uow: UnitOfWork,
    reservation_id: int,
    settle: timedelta,
    now: datetime,
    fresh: list[tuple[int, list[domain.RunAllocation]]] | None = None,
    runs: dict[int, domain.Run] | None = None,
    *,
    complete_only: bool = False,
) -> int:
    """Issue the reservation's certificates of every period that has closed and settled by `now`; how many.
    `fresh`: [(device, allocations)] just made for it (of the `runs`), stored here with the round that took them (one write per
    allocation, not an insert and an update). The caller holds the reservation's lock. What the rounds read and
    write is read once and written once per table (a sweep can issue hundreds of certificates).
    `complete_only`: only the periods every device of the reservation was offered past (its reads allocated up to
    the period's end): a device's reads certified before the others' of the same period would issue the period
    without them, and theirs in late certificates after it (issue 16: under a stream of reads each device settles
    a period a moment apart). The sweep issues the rest (a device that sends nothing more never holds a period)."""
    conn = uow.conn
    terms = await store.issuance_terms(conn, reservation_id)
    if terms is None:
        return 0
    expired = terms["reservation_expiry"] is not None and now >= terms["reservation_expiry"]
    if expired or terms["target_reached"]:
        # nothing more is issued for it: what was allocated and not issued goes back to its reads, uncertified
        await store.release_pending(conn, reservation_id)
        return 0
    settled_before = now - settle
    # what has closed and settled, and when complete_only, that every device was offered past
    closed = settled_before
    if complete_only:
        closed = min(closed, await store.reservation_offered_line(conn, reservation_id))
    stored = await store.due_allocations(conn, reservation_id, closed, terms["ends"])
    countries = await store.device_countries(conn, [d for d, allocations in fresh or [] if allocations])
    made = [(device, countries[device], a) for device, allocations in fresh or [] for a in allocations]
    ends = terms["ends"]
    due = [m for m in made if min(m[2].period_end, ends) <= closed]
    pendings = _pending(stored, due, runs or {})
    issued, reached = 0, False
    if pendings:
        carry = await store.carries(conn, reservation_id)
        # a part's device: one with energy in a period, or one whose carry a certificate takes
        devices = {d for p in pendings for d in p.energy} | {d for by_device in carry.values() for d in by_device}
        batch = _Issuance(
            terms,
            await store.rounds_of_periods(conn, reservation_id, sorted({p.period_start for p in pendings})),
            carry,
            await store.devices_read_owners(conn, sorted(devices)),
            await store.transaction_time(conn),
        )
        target = terms["target_capacity_wh"] if not terms["authority_to_exceed"] else None
        issued_total = terms["issued_wh"]
        allocated = terms["allocated_wh"] + sum(a.energy_wh for _, _, a in made)
        full = target is not None and allocated >= target
        for pending in pendings:
            pending.period_end = min(pending.period_end, terms["ends"])  # an early end cuts the last period
            round_ = _issue_round(batch, pending, None if target is None else target - issued_total, full)
            if round_.issued_wh:
                issued += 1
                issued_total += round_.issued_wh
                if round_.target_reached:
                    reached = True
                    break
        await _write_issuance(uow, batch)
    if made:  # every device's, in one write, each with the round that took it (None: its period is open)
        taken = [(a, p.round_id) for p in pendings for _, a in p.fresh]
        if len(due) < len(made):
            taken += [(a, None) for _, _, a in made if min(a.period_end, ends) > closed]
        await store.insert_allocations(conn, reservation_id, [a for a, _ in taken], [r for _, r in taken])
    if reached:
        await store.release_pending(conn, reservation_id)
    return issued


def _issue_round(batch: _Issuance, pending: _Pending, target_left: int | None, full: bool) -> domain.Round:
    """One (reservation, country, period, kind): its round, and its certificate when it issues whole kWh
    (gathered in `batch`)."""
    terms = batch.terms
    reservation_id, country = terms["reservation_id"], pending.country_code
    key = country or ""
    counts = batch.counts.setdefault((key, pending.period_start), {})
    kind: domain.Kind
    if pending.kind == domain.HISTORY:
        kind, sequence = domain.HISTORY, counts.get(domain.HISTORY, 0) + 1
    elif counts.get(domain.PERIOD):
        kind, sequence = domain.LATE, counts.get(domain.LATE, 0) + 1  # an issued period is never reopened
    else:
        kind, sequence = domain.PERIOD, 0
    counts[kind] = counts.get(kind, 0) + 1
    carried = batch.carry.get(key, {})
    history = kind == domain.HISTORY
    # A History read's certificate takes no carry; its remainder joins the carry of the (reservation, country).
    round_ = domain.issue_round(
        {} if history else carried, pending.energy, target_left=target_left, full=full, whole_kwh_only=history
    )
    certificate_id = domain.certificate_id(reservation_id, country, pending.period_start, kind, sequence)
    pending.round_id = certificate_id  # its fresh allocations are stored with it (_issue_reservation)
    batch.taken += [(run_id, period_start, lo, certificate_id) for run_id, period_start, lo in pending.stored]
    batch.rounds.append(
        (
            certificate_id,
            country,
            kind,
            sequence,
            pending.period_start,
            pending.period_end,
            round_.allocated_wh,
            round_.carry_in_wh,
            round_.issued_wh,
            round_.carry_out_wh,
            round_.target_reached,
        )
    )
    carry_out = dict(round_.carry_out)
    if history:
        for device, wh in carried.items():
            carry_out[device] = carry_out.get(device, 0) + wh
    batch.carry[key] = carry_out
    batch.carried.add(key)
    if round_.issued_wh:  # under 1 kWh: carried to the next certificate of the (reservation, country)
        _issue_certificate(batch, pending, kind, sequence, certificate_id, round_)
    return round_


def _issue_certificate(
    batch: _Issuance,
    pending: _Pending,
    kind: domain.Kind,
    sequence: int,
    certificate_id: uuid.UUID,
    round_: domain.Round,
) -> None:
    """The certificate and its parts, its certificate.issued (its ledger entry is the event without its time)
    and its holdings, gathered in `batch`."""
    terms = batch.terms
    generation_start, generation_end = min(pending.starts.values()), max(pending.ends.values())
    parts = []
    for device, wh in round_.parts:
        owner = batch.owners.get(device)
        assert owner is not None  # the device has accepted reads: the energy is theirs
        parts.append(
            (
                domain.part_id(certificate_id, device),
                device,
                owner,
                wh,
                pending.starts.get(device, generation_start),
                pending.ends.get(device, generation_end),
            )
        )
    batch.certificates.append(
        (
            certificate_id,
            kind,
            sequence,
            pending.country_code,
            pending.period_start,
            pending.period_end,
            generation_start,
            generation_end,
            round_.issued_wh,
            round_.allocated_wh,
            round_.carry_in_wh,
            round_.carry_out_wh,
            round_.target_reached,
        )
    )
    batch.parts += [(part_id, certificate_id, *rest) for part_id, *rest in parts]
    batch.events.append(
        CertificateIssued(
            certificate_id=certificate_id,
            reservation_id=terms["reservation_id"],
            reservation_uid=terms["uid"],
            buyer_organization_id=terms["buyer_organization_id"],
            country_code=pending.country_code,
            kind=kind,
            sequence=sequence,
            period_start=pending.period_start,
            period_end=pending.period_end,
            generation_start=generation_start,
            generation_end=generation_end,
            energy_wh=round_.issued_wh,
            carry_in_wh=round_.carry_in_wh,
            carry_out_wh=round_.carry_out_wh,
            target_reached=round_.target_reached,
            parts=[CertificatePart(device_id=d, owner_organization_id=o, energy_wh=wh) for _, d, o, wh, _, _ in parts],
            issued_at=batch.issued_at,
            allocated_wh=round_.allocated_wh,
            reads_hash=ledger_domain.reads_hash_us(pending.reads),
        )
    )
    batch.holdings.append(
        IssuedCertificate(
            certificate_id=certificate_id,
            buyer_organization_id=terms["buyer_organization_id"],
            country_code=pending.country_code,
            period_start=pending.period_start,
            period_end=pending.period_end,
            parts=tuple((d, wh) for _, d, _, wh, _, _ in parts),
        )
    )


async def _write_issuance(uow: UnitOfWork, batch: _Issuance) -> None:
    """Write what an issuance gathered: its rounds and the allocations they took, the carry, the certificates and
    their parts; then append them to the ledger (its head taken last, after the reservation's lock), hand them to
    the registry (holdings of the buyer) and record certificate.issued, each certificate in issue order."""
    conn = uow.conn
    reservation_id = batch.terms["reservation_id"]
    await store.insert_rounds(conn, reservation_id, batch.rounds)
    await store.take_allocations(conn, reservation_id, batch.taken)
    await store.set_carries(conn, reservation_id, {key: batch.carry[key] for key in batch.carried})
    if not batch.certificates:
        return
    await store.insert_certificates(
        conn, reservation_id, batch.terms["buyer_organization_id"], batch.issued_at, batch.certificates, batch.parts
    )
    # The entry is the event without its time (the entry's recorded_at): the ledger can be rebuilt from the events.
    await ledger.append_many(
        uow,
        [
            ("issuance", e.certificate_id, e.model_dump(mode="json", exclude={"issued_at"}), e.issued_at)
            for e in batch.events
        ],
    )
    await registry.issue_holdings_many(uow, batch.holdings)
    metrics.certificates_issued(len(batch.events), sum(e.energy_wh for e in batch.events))
    for event in batch.events:
        uow.record(event)
        log.info(
            "certificate issued",
            extra={
                "certificate_id": str(event.certificate_id),
                "reservation_id": reservation_id,
                "kind": event.kind,
                "energy_wh": event.energy_wh,
                "target_reached": event.target_reached,
            },
        )


def _run_order(run: domain.Run) -> tuple[int, int]:
    return run.origin_us + run.start_us, run.id


async def _certify(
    uow: UnitOfWork, device_ids: list[int], settle: timedelta, now: datetime, stored: list[domain.Run] | None = None
) -> int:
    """Allocate the devices' settled energy, then issue what closed for their reservations: a reservation's
    devices allocated together share its period's certificate; how many were issued. The caller holds the devices'
    locks (in id order); the reservations' are taken here, all at once and in id order (no deadlock between
    transactions).

    Only devices known here (device.registered or device.updated heard) are certified: a device's country is part
    of its certificates' key and its externalId names it in the logs, so energy certified before the device is known
    would land in another certificate than it will once known. An unknown device's reads wait, stored, and are not
    due (register_device certifies them when it comes). `stored`: runs of reads this transaction stored."""
    known = await store.known_devices(uow.conn, device_ids)
    if len(known) < len(device_ids):
        await store.set_certification_dues(uow.conn, {d: None for d in device_ids if d not in known})
        device_ids = [d for d in device_ids if d in known]
        if not device_ids:
            return 0
    await store.lock_reservations_of_devices(uow.conn, device_ids)
    fresh: dict[int, list[tuple[int, list[domain.RunAllocation]]]] = {}
    allocated, runs = await _allocate_devices(uow, device_ids, settle, now, stored or [])
    for device_id, reservation_id, allocations in allocated:
        fresh.setdefault(reservation_id, []).append((device_id, allocations))
    issued = 0
    for reservation_id in sorted(fresh):
        issued += await _issue_reservation(
            uow, reservation_id, settle, now, fresh[reservation_id], runs, complete_only=True
        )
    return issued


async def take_reads(uow: UnitOfWork, event: ReadIngested, settle: timedelta, now: datetime) -> None:
    """Accepted energy of one read.ingested batch: stored (a read seen before is skipped), then certified."""
    await take_many_reads(uow, [event], settle, now)


async def take_many_reads(uow: UnitOfWork, events: list[ReadIngested], settle: timedelta, now: datetime) -> None:
    """Accepted energy of read.ingested events (a consumer's batch, of any devices, each device's in their order):
    stored in one statement (a read seen before is skipped), then their devices certified together, as a
    reservation's are (issue 16: D-REC clients send one read a request, one event each; a batch shares the
    transaction, the locks and the certification round)."""
    earliest_ends: dict[int, datetime] = {}  # per device: its new reads' earliest end
    for event in events:
        end = event.origin + timedelta(microseconds=min(event.ends_us))
        if event.device_id not in earliest_ends or end < earliest_ends[event.device_id]:
            earliest_ends[event.device_id] = end
    async with uow:
        device_ids = sorted(earliest_ends)
        await store.lock_devices(uow.conn, device_ids)
        stored = await store.insert_reads(uow.conn, events)
        await store.rescan_behind(uow.conn, earliest_ends)  # a read arriving behind what was offered
        await _certify(uow, device_ids, settle, now, stored)


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
        await store.rescan(uow.conn, event.device_ids)  # their reads are offered to it from its window's start
        await _certify_devices(uow, event.device_ids, settle, now)


async def _certify_devices(uow: UnitOfWork, device_ids: list[int], settle: timedelta, now: datetime) -> None:
    # Every device first, in a fixed order, then certify: _certify also takes reservation locks, and a device
    # lock must never be awaited while one is held (no deadlock with a read).
    devices = sorted(set(device_ids))
    await store.lock_devices(uow.conn, devices)
    await _certify(uow, devices, settle, now)


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
            await store.rescan(uow.conn, devices)  # the new terms may take reads offered before
            await _certify_devices(uow, devices, settle, now)


async def end_reservation(uow: UnitOfWork, event: ReservationEnded) -> None:
    """From now on the reservation's window stops at `ended_at`: energy generated after it is not certified for
    it (allocation and issuance read the effective end). What was allocated to it and not issued yet beyond the end
    goes back to its reads, whose devices are due again (the sweep allocates their share before the end anew).

    An end known late (its time earlier than periods already issued: reservation.ended travels on another topic
    and may come after the settle time): an issued certificate is never reopened, those certificates stay; from
    now on nothing is issued after the end; a warning says so, and the reservation's log shows it
    (`endArrivedLate`, `certifiedAfterEndWh`)."""
    async with uow:
        conn = uow.conn
        # the order every certifying transaction takes: its devices, then the reservation
        await store.lock_devices(conn, await store.reservation_device_ids(conn, event.reservation_id))
        await store.lock_reservation(conn, event.reservation_id)
        if not await store.record_reservation_end(conn, event.reservation_id, event.ended_at, event.reason):
            return  # a reservation ends once: the first end recorded stands
        for device_id in await store.release_pending_after(conn, event.reservation_id, event.ended_at):
            await store.set_certification_due(conn, device_id, event.ended_at)
        after = await store.issued_after_end(conn, event.reservation_id)
        if after["count"]:
            log.warning(
                "reservation.ended arrived after certificates of periods past its end were issued: they stay "
                "(an issued certificate is never reopened); nothing more is issued after the end",
                extra={
                    "reservation_id": event.reservation_id,
                    "ended_at": iso_exact(event.ended_at),
                    "certificates": after["count"],
                    "energy_wh": after["energy_wh"],
                },
            )


async def register_device(
    uow: UnitOfWork, event: DeviceRegistered | DeviceUpdated, state_at: datetime, settle: timedelta, now: datetime
) -> None:
    """The device as announced at `state_at` (device.registered or device.updated: its full current state; an
    older one never overwrites a newer one): owner and externalId for the log and the owner's view, country and
    time zone for the logs, uuid, fuel, type, capacity, commissioning date and off-taker for the filters and the
    inventory. A device heard of for the first time is certified at once: its reads stored before waited for it
    (_certify), so every one of them is looked at (a full look) for every reservation holding it."""
    async with uow:
        conn = uow.conn
        # the device's lock first (the order every certifying transaction takes): a read.ingested of it committed
        # before is seen here, one after sees the device known
        await store.lock_devices(conn, [event.device_id])
        first = not await store.known_devices(conn, [event.device_id])
        await store.upsert_device(conn, event, state_at)
        if first:
            await store.rescan(conn, [event.device_id])
            await _certify(uow, [event.device_id], settle, now)


# Where reservations decides where a window ends (an early end, a shorter end date): its watermarks on these topics
# say until when every such decision is known here.
RESERVATION_DECISIONS = [topic_of(ReservationEnded.TYPE), topic_of(ReservationUpdated.TYPE)]
BEFORE_ANY_WATERMARK = datetime(1970, 1, 1, tzinfo=UTC)


async def known_until(uow: UnitOfWork, settle: timedelta, now: datetime, watermarked: bool) -> datetime:
    """The time certification goes by (issue 13): `now`, held back to reservations' watermark plus the settle time
    while the watermark lags, so a period is issued only once every end that could cut it is known, however late
    reservation.ended arrives (a paused consumer, a stalled relay, a broker outage): no certificate past an end.
    Nothing is issued before a first watermark. Without watermarks (this service tested alone): `now`."""
    if not watermarked:
        return now
    async with uow:
        passed = await watermarks.passed(uow.conn, RESERVATION_DECISIONS)
    return min(now, (passed or BEFORE_ANY_WATERMARK) + settle)


@dataclass(frozen=True)
class Sweep:
    due: int  # due devices taken (at most the batch)
    certified: int  # of which certified here (the others were busy in another transaction)
    issued: int = 0  # certificates issued for reservations whose periods closed


async def certify_due(uow: UnitOfWork, settle: timedelta, now: datetime, batch: int = DUE_BATCH) -> Sweep:
    """One round of the certification worker: allocate (and issue for) each device (up to `batch`) whose
    unsettled energy has settled by `now`, then issue the periods that have closed and settled since (their
    devices' settled reads allocated first), one transaction per DUE_CHUNK devices and per reservation. A due device
    busy in another transaction (a read, a reservation, another replica's sweep) is left to it; a reservation's
    devices are waited for. Replicas share the work, and each certificate is issued once (its key is unique)."""
    async with uow.reading("read_committed") as r:
        due = await store.due_devices(r.conn, now, batch)
    certified = 0
    for i in range(0, len(due), DUE_CHUNK):
        async with uow:
            # a device busy elsewhere is left to that transaction (its due time is set again when it ends)
            devices = await store.try_lock_due_devices(uow.conn, due[i : i + DUE_CHUNK], now)
            if devices:
                await _certify(uow, devices, settle, now)  # together: their reservations' periods at once
                certified += len(devices)
    async with uow.reading("read_committed") as r:
        closed = await store.due_reservations(r.conn, now - settle, batch)
    issued = 0
    for reservation_id in closed:
        async with uow:
            # Its devices' settled reads are allocated first, so the period is issued once with every device's
            # energy (issue 16): a device streaming reads is never due itself (its latest read always waits to
            # settle), and its reads of the closed period came after it in late certificates. Its devices' locks are
            # waited for (a consumer's transaction holds them a moment), then the reservation's: the lock order.
            devices = sorted(await store.reservation_device_ids(uow.conn, reservation_id))
            await store.lock_devices(uow.conn, devices)
            issued += await _certify(uow, devices, settle, now)
            await store.lock_reservation(uow.conn, reservation_id)  # held already when it has devices
            issued += await _issue_reservation(uow, reservation_id, settle, now)
    if certified or issued:
        log.info("settled energy certified", extra={"devices": certified, "certificates": issued})
    return Sweep(len(due), certified, issued)


# -- the certificate log ----------------------------------------------------------------------------------


def _part(row: Any) -> dict[str, Any]:
    """Ours, of one certificate part (one device's energy in a certificate: store._PART's row)."""
    return {
        "id": str(row["id"]),
        "certificateId": str(row["certificate_id"]),
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
        "countryCode": row["country_code"],
        "kind": row["kind"],
        "sequence": row["sequence"],
        "periodStart": iso_exact(row["period_start"]),
        "periodEnd": iso_exact(row["period_end"]),
    }


def _certificate(row: Any, parts: list[Any]) -> dict[str, Any]:
    """Ours, of one certificate (store.certificates_of_reservation's row) with the parts the caller sees: `energyWh`
    is theirs (a device owner sees its own devices' energy only); `deviceId`, `externalId` and
    `ownerOrganizationId` name the device when there is one part (null otherwise: see `parts`)."""
    one = parts[0] if len(parts) == 1 else None
    return {
        "id": str(row["id"]),
        "groupId": row["reservation_id"],
        "deviceId": one["device_id"] if one else None,
        "externalId": one["external_id"] if one else None,
        "certificateStartDate": iso_exact(row["generation_start"]),
        "certificateEndDate": iso_exact(row["generation_end"]),
        "energyWh": row["visible_wh"],
        "ownerOrganizationId": one["owner_organization_id"] if one else None,
        "buyerOrganizationId": row["buyer_organization_id"],
        "status": row["status"],
        "issuedAt": iso(row["issued_at"]),
        "countryCode": row["country_code"],
        "kind": row["kind"],
        "sequence": row["sequence"],
        "periodStart": iso_exact(row["period_start"]),
        "periodEnd": iso_exact(row["period_end"]),
        "allocatedWh": row["allocated_wh"],
        "carryInWh": row["carry_in_wh"],
        "carryOutWh": row["carry_out_wh"],
        "targetReached": row["target_reached"],
        "parts": [
            {
                "id": str(p["id"]),
                "deviceId": p["device_id"],
                "externalId": p["external_id"],
                "ownerOrganizationId": p["owner_organization_id"],
                "energyWh": p["energy_wh"],
            }
            for p in parts
        ],
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
    watermarked: bool = False  # certification's time held back to reservations' watermarks (known_until)


@dataclass(frozen=True)
class ReservationLog:
    """One page of a reservation's certificates as the caller may see them, with the totals of the whole view."""

    reservation: Any  # the reservation's row (store.reservation)
    rows: list[Any]  # the page's parts (store.parts_of_reservation) or certificates (certificates_of_reservation)
    count: int  # parts, or certificates, in the whole view
    energy_wh: int  # their energy
    parts: dict[uuid.UUID, list[Any]]  # by certificate: the parts the caller sees (certificates only)
    carry: list[Any] = field(default_factory=list)  # the carry of the caller's view (store.carry_of_reservation)
    after_end: Any = None  # certificates of periods past a late end (store.issued_after_end; certificates only)


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
    by_certificate: bool = False,
) -> ReservationLog:
    """A page of one reservation's certificates (by id or uid) as the caller may see them, with totals; the use
    cases below answer it in one of the D-REC shapes (`certificate_log`, `device_issue_log`, `group_issue_log`).

    `api_user_names_none`: an API user naming no organization sees the reservation if one of its Buyer
    organizations holds it (the D-REC .../certified/new/{groupUid} path has no organizationId).
    A reservation not known here (yet: reservation.created may still be on its way) is asked of the reservations
    service once, on the caller's behalf (`learn_reservation`), then looked for again; unknown there too, or not
    the caller's to see: 404."""
    args = (uow, user, page, organization_id, reservation_id, uid, api_user_names_none, by_certificate)
    found = await _reservation_log(*args)
    if found is None and await learn_reservation(uow, learning, user, reservation_id=reservation_id, uid=uid):
        found = await _reservation_log(*args)
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
    settle = learning.settle
    async with uow:
        now = await known_until(uow, settle, learning.now, learning.watermarked)
        for event in (k.event for k in known):
            if isinstance(event, ReservationCreated) and event.reservation_id == about:
                await take_reservation(uow, event, settle, now)
            elif isinstance(event, ReservationUpdated) and event.reservation_id == about:
                await change_reservation(uow, event, settle, now)
            elif isinstance(event, ReservationEnded) and event.reservation_id == about:
                await end_reservation(uow, event)
    log.info("reservation learned from its owner", extra={"reservation_id": about, "events": len(known)})
    return True


async def _reservation_view(
    conn: asyncpg.Connection,
    user: Principal,
    organization_id: int | None,
    reservation_id: int | None,
    uid: uuid.UUID | None,
    api_user_names_none: bool,
) -> tuple[Any, int | None] | None:
    """Whose view of the reservation's log the caller has: (the reservation's row, the owner organization whose
    devices' certificates only it sees, None: all of them); None when the reservation is not known here; a 404
    when it is not the caller's (as if it did not exist: ids leak nothing)."""
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
        if res["buyer_organization_id"] in own_buyers:
            return res, None
    elif viewer is None or res["buyer_organization_id"] == viewer:
        return res, None
    elif user.role != API_USER and await store.owns_any_device(conn, list(res["device_ids"]), viewer):
        return res, viewer
    raise ApiError(404, _absent(reservation_id, uid))


async def _reservation_log(
    uow: UnitOfWork,
    user: Principal,
    page: Page,
    organization_id: int | None,
    reservation_id: int | None,
    uid: uuid.UUID | None,
    api_user_names_none: bool,
    by_certificate: bool,
) -> ReservationLog | None:
    """_log's page (of parts, or `by_certificate`), None when the reservation is not known here (a 404 when it is
    not the caller's)."""
    async with uow.reading() as r:
        conn = r.conn
        view = await _reservation_view(conn, user, organization_id, reservation_id, uid, api_user_names_none)
        if view is None:
            return None
        res, owner = view
        reservation_id = res["reservation_id"]
        parts: dict[uuid.UUID, list[Any]] = {}
        carry: list[Any] = []
        after_end = None
        if by_certificate:
            totals = await store.certificate_totals(conn, reservation_id, owner)
            rows = await store.certificates_of_reservation(conn, reservation_id, owner, page.limit, page.offset)
            for part in await store.parts_of_certificates(conn, [row["id"] for row in rows], owner):
                parts.setdefault(part["certificate_id"], []).append(part)
            carry = list(await store.carry_of_reservation(conn, reservation_id, owner))
            after_end = await store.issued_after_end(conn, reservation_id)
        else:
            totals = await store.parts_totals(conn, reservation_id, owner)
            rows = await store.parts_of_reservation(conn, reservation_id, owner, page.limit, page.offset)
    return ReservationLog(res, list(rows), totals["count"], totals["energy_wh"], parts, carry, after_end)


# -- the D-REC shapes of a reservation's log ------------------------------------------------------------------
# D-REC (d-rec/drec-origin, apps/drec-api/src/pods/...) keeps three logs of an issuance: one row per device
# (CheckCertificateIssueDateLogForDeviceEntity), one per issuance of the group (…ForDeviceGroupEntity) and the
# issuer's certificate. Here a certificate is one reservation's energy of one country and period, with a part per
# device: the per-device log is its parts, the group's log and the issuer's are its certificates, and the
# certificate's id stands for D-REC's certificateTransactionUID (the issuance that ties the three together). No
# blockchain here: no owners, claims, block hashes or addresses.


def _issue_log_entry(log_: ReservationLog, row: Any) -> dict[str, Any]:
    """A certificate part as D-REC's per-device issue log (CheckCertificateIssueDateLogForDeviceEntity: id, status,
    externalId and groupId are our part's own; certificateTransactionUID its certificate's id), with our fields and
    the reservation's uid and name."""
    return _device_log_entry(row, log_.reservation["uid"], log_.reservation["name"])


def _device_log_entry(row: Any, reservation_uid: uuid.UUID, reservation_name: str) -> dict[str, Any]:
    """_issue_log_entry of a part of the reservation `reservation_uid` named `reservation_name`."""
    return {
        **_part(row),
        "certificate_issuance_startdate": iso_exact(row["generation_start"]),
        "certificate_issuance_enddate": iso_exact(row["generation_end"]),
        "readvalue_watthour": row["energy_wh"],
        "certificateTransactionUID": str(row["certificate_id"]),
        "createdAt": iso(row["issued_at"]),
        "updatedAt": iso(row["issued_at"]),
        "devicegroup_uid": str(reservation_uid),
        "reservationName": reservation_name,
    }


def _metadata(log_: ReservationLog, row: Any, parts: list[Any]) -> dict[str, Any]:
    """D-REC's ICertificateMetadata (utils/types.ts) of a certificate: the group, the devices' externalIds, the
    reservation's uid and the issuance's transaction uid."""
    res = log_.reservation
    return {
        "groupId": str(res["reservation_id"]),
        "buyerReservationId": str(res["uid"]),
        "deviceIds": [p["external_id"] for p in parts if p["external_id"] is not None],
        "certificateTransactionUID": str(row["id"]),
    }


async def device_issue_log(
    uow: UnitOfWork, user: Principal, page: Page, organization_id: int | None, learning: Learning, reservation_id: int
) -> tuple[list[dict[str, Any]], int]:
    """GET /api/certificate-log/by-reservation-groupId: D-REC answers a bare array of the per-device issue log
    (CertificateLogService.findByGroupId): one page of it (the certificates' parts), and how many the whole view
    holds (the route's X-Total-Count header)."""
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
    id, as D-REC issues to the group, unix-second generation times, its parts as the per-device issue log),
    `totalItems`, `currentPage`, `totalPages`. Paged by certificate."""
    log_ = await _log(
        uow,
        user,
        page,
        organization_id,
        learning,
        uid=uid,
        api_user_names_none=api_user_names_none,
        by_certificate=True,
    )
    res = log_.reservation
    pages = total_pages(log_.count, page.limit)
    learning_time = (learning.now, learning.settle)
    return {
        "groupId": res["reservation_id"],
        "devicegroup_uid": str(res["uid"]),
        "reservationName": res["name"],
        "reservationStartDate": iso_exact(res["reservation_start"]),
        "reservationEndDate": iso_exact(res["reservation_end"]),
        # set once reservation.ended was received
        "reservationEndedAt": iso_exact(res["ended_at"]) if res["ended_at"] else None,
        # the end arrived after certificates of periods past it were issued: they stay (never reopened)
        "endArrivedLate": bool(log_.after_end and log_.after_end["count"]),
        "certifiedAfterEndWh": log_.after_end["energy_wh"] if log_.after_end else 0,
        # D-REC issues whole kWh only: what is under 1 kWh waits for the next certificate of its country, and once
        # the reservation takes no more energy (carryFinal) it stays uncertified; shown, never silently dropped
        "carryWh": sum(k["carry_wh"] for k in log_.carry),
        "carryFinal": domain.takes_no_more(
            res["reservation_end"], res["ended_at"], res["reservation_expiry"], res["target_reached"], *learning_time
        ),
        "carry": [
            {"countryCode": k["country_code"], "deviceId": k["device_id"], "carryWh": k["carry_wh"]} for k in log_.carry
        ],
        "certificates": [_certificate(row, log_.parts.get(row["id"], [])) for row in log_.rows],
        "certificatelog": [
            {
                "id": str(row["id"]),
                "deviceId": str(res["reservation_id"]),
                "generationStartTime": _seconds(row["generation_start"]),
                "generationEndTime": _seconds(row["generation_end"]),
                "creationTime": _seconds(row["issued_at"]),
                "certificateStartDate": iso_exact(row["generation_start"]),
                "certificateEndDate": iso_exact(row["generation_end"]),
                "energyWh": row["visible_wh"],
                "metadata": _metadata(log_, row, log_.parts.get(row["id"], [])),
                "createdAt": iso(row["issued_at"]),
                "perDeviceCertificateLog": [
                    {**_issue_log_entry(log_, part), "timezone": part["timezone"]}
                    for part in log_.parts.get(row["id"], [])
                ],
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
    issuer chain here), `countryCode` the certificate's (its devices'; none when unknown); with our certificate's
    fields. One page, and how many the whole view holds (the route's X-Total-Count header); the same visibility
    as the other logs."""
    log_ = await _log(uow, user, page, organization_id, learning, reservation_id=reservation_id, by_certificate=True)
    res = log_.reservation
    entries = []
    for row in log_.rows:
        parts = log_.parts.get(row["id"], [])
        entries.append(
            {
                **_certificate(row, parts),
                "certificate_issuance_startdate": iso_exact(row["generation_start"]),
                "certificate_issuance_enddate": iso_exact(row["generation_end"]),
                "readvalue_watthour": row["visible_wh"],
                "groupid": str(res["reservation_id"]),
                "certificate_payload": {
                    "deviceId": str(res["reservation_id"]),
                    "energyValue": str(row["visible_wh"]),
                    "fromTime": iso_exact(row["generation_start"]),
                    "toTime": iso_exact(row["generation_end"]),
                    "metadata": _metadata(log_, row, parts),
                },
                "issuer_certificate_id": None,
                "countryCode": row["country_code"],
                "certificateTransactionUID": str(row["id"]),
                "createdAt": iso(row["issued_at"]),
                "updatedAt": iso(row["issued_at"]),
                "devicegroup_uid": str(res["uid"]),
                "reservationName": res["name"],
            }
        )
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
        known = await known_organization(conn, user, org)  # identity is asked if it is new here
        kind = known.organization_type if known else ""
    view = domain.organization_view(kind)
    if view is None:
        raise ApiError(
            403,
            f"Organization {org} is a {kind or 'unknown'} organization; this log is of a Developer or Buyer organization",
        )
    return org, view


@dataclass(frozen=True)
class OrganizationLogQuery:
    """certifiedlogOfdevices' filters as sent (D-REC's FilterDTO names where it has them): list values repeated
    or comma-separated; checked and parsed by `device_log_filter`."""

    externalId: list[str] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    fuelCode: list[str] = field(default_factory=list)
    deviceTypeCode: list[str] = field(default_factory=list)
    offTaker: list[str] = field(default_factory=list)
    fromCapacity: float | None = None
    toCapacity: float | None = None
    fromCommissioningDate: datetime | None = None
    toCommissioningDate: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    fromAmountread: int | None = None
    toAmountread: int | None = None
    SDGBenefits: list[str] = field(default_factory=list)
    oldcertificatelog: bool | None = None


def device_log_filter(q: OrganizationLogQuery) -> domain.DeviceLogFilter:
    """The filters of a certifiedlogOfdevices query (domain.DeviceLogFilter), or 400 naming the field."""
    try:
        capacity = domain.ordered_range("fromCapacity", q.fromCapacity, "toCapacity", q.toCapacity)
        commissioned = domain.ordered_range(
            "fromCommissioningDate",
            domain.utc_moment("fromCommissioningDate", q.fromCommissioningDate),
            "toCommissioningDate",
            domain.utc_moment("toCommissioningDate", q.toCommissioningDate),
        )
        generated = domain.ordered_range(
            "start_date",
            domain.utc_moment("start_date", q.start_date),
            "end_date",
            domain.utc_moment("end_date", q.end_date),
        )
        energy = domain.ordered_range("fromAmountread", q.fromAmountread, "toAmountread", q.toAmountread)
        return domain.DeviceLogFilter(
            external_ids=domain.filter_values("externalId", q.externalId, max_length=domain.MAX_EXTERNAL_ID),
            countries=domain.country_codes("country", q.country),
            fuel_codes=domain.filter_values("fuelCode", q.fuelCode, upper=True),
            device_type_codes=domain.filter_values("deviceTypeCode", q.deviceTypeCode, upper=True),
            off_takers=domain.filter_values("offTaker", q.offTaker),
            capacity_from_kw=capacity[0],
            capacity_to_kw=capacity[1],
            commissioned_from=commissioned[0],
            commissioned_to=commissioned[1],
            generated_from=generated[0],
            generated_to=generated[1],
            energy_from_wh=energy[0],
            energy_to_wh=energy[1],
            sdg_benefits=domain.filter_values("SDGBenefits", q.SDGBenefits, max_length=domain.MAX_SDG_BENEFIT),
            # D-REC: the new log unless oldcertificatelog is true (then the old one only)
            old_log=bool(q.oldcertificatelog),
        )
    except domain.FilterError as error:
        raise _bad_filter(error) from None


async def organization_log(
    uow: UnitOfWork,
    user: Principal,
    page: Page,
    organization_id: int | None,
    query: OrganizationLogQuery | None = None,
) -> dict[str, Any]:
    """A page of an organization's certificates: a Developer's devices' or a Buyer's reservations' (all for an
    admin naming none), those passing the query's filters (all of them), with totals over every page."""
    f = device_log_filter(query) if query is not None else domain.NO_DEVICE_LOG_FILTER
    async with uow.reading() as r:
        org, view = await _log_owner(r.conn, user, organization_id)
        owner, buyer = _owner_and_buyer(org, view)
        totals = await store.organization_totals(r.conn, owner, buyer, f)
        rows = await store.organization_parts(r.conn, owner, buyer, page.limit, page.offset, f)
    return {
        "organizationId": org,
        "view": {"owner": "developer", "buyer": "buyer"}.get(view or "", "all"),
        "certificatelog": [
            {**_part(row), "devicegroup_uid": str(row["reservation_uid"]), "reservationName": row["reservation_name"]}
            for row in rows
        ],
        "totalEnergyWh": totals["energy_wh"],
        "currentPage": page.number,
        "totalPages": total_pages(totals["count"], page.limit),
        "totalCount": totals["count"],
        # D-REC's: whether the view holds certificates of the old log (here the legacy ones, issued before D-REC's
        # issuance), whichever log was asked for
        "oldcertificatelog": totals["legacy"],
    }


# -- the rest of D-REC's certificate log (issue 15) -----------------------------------------------------------------


def _owner_and_buyer(org: int | None, view: str | None) -> tuple[int | None, int | None]:
    """The (owner, buyer) filters of an organization's view (_log_owner): a developer's devices or a buyer's
    reservations; (None, None): all."""
    return (org, None) if view == "owner" else (None, org)


async def all_issue_logs(
    uow: UnitOfWork, user: Principal, page: Page, organization_id: int | None
) -> tuple[list[dict[str, Any]], int]:
    """GET /api/certificate-log: D-REC answers every device's issue log (CertificateLogService.find, unpaged). Here
    the entries the caller may see (as certifiedlogOfdevices: a Developer organization its devices', a Buyer
    organization its reservations', an admin naming none all), one page of them, and how many the whole view
    holds (the route's X-Total-Count header)."""
    async with uow.reading() as r:
        owner, buyer = _owner_and_buyer(*await _log_owner(r.conn, user, organization_id))
        totals = await store.organization_totals(r.conn, owner, buyer)
        rows = await store.organization_parts(r.conn, owner, buyer, page.limit, page.offset)
    return [_device_log_entry(row, row["reservation_uid"], row["reservation_name"]) for row in rows], totals["count"]


@dataclass(frozen=True)
class ReadModuleQuery:
    """D-REC's certificateReadModule filters, parsed: generated (in part) from/until, the reservations' target at
    most this many MWh, and deviceFilter's fields as sent."""

    generated_from: datetime | None = None
    generated_until: datetime | None = None
    max_target_mwh: Decimal | None = None
    device_filter: dict[str, object] = field(default_factory=dict)


def _bad_filter(error: domain.FilterError) -> ApiError:
    return ApiError(400, str(error), [{"field": error.field, "message": str(error), "where": "query"}])


async def certificate_read_module(
    uow: UnitOfWork, user: Principal, page: Page, organization_id: int | None, query: ReadModuleQuery
) -> dict[str, Any]:
    """GET /api/certificate-log/certificateReadModule: D-REC's issuer certificates (its read model, one row per
    issuance of a group, columns prefixed `crm_`) of the caller organization's reservations, filtered and paged
    (CertificateLogService.getsCertificateReadModule: `{result, pageNumber, totalPages, totalCount}`; 3 a page by
    default; a page past the last one 404). Here a certificate per row, with ours beside D-REC's columns; the
    organization's view as certifiedlogOfdevices (a Developer organization: the certificates of its devices, their
    parts only). No blockchain: no block hash, owners or claims (the registry's retirements are the claims)."""
    try:
        devices = domain.device_filter(query.device_filter)
        start, end = domain.generation_window(
            domain.utc_moment("certificateStartDate", query.generated_from),
            domain.utc_moment("certificateEndDate", query.generated_until),
        )
    except domain.FilterError as error:
        raise _bad_filter(error) from None
    max_target = None if query.max_target_mwh is None else domain.megawatt_hours_to_wh(query.max_target_mwh)
    filters = (start, end, max_target, devices)
    async with uow.reading() as r:
        org, view = await _log_owner(r.conn, user, organization_id)
        owner, buyer = _owner_and_buyer(org, view)
        totals = await store.read_module_totals(r.conn, owner, buyer, *filters)
        pages = total_pages(totals["count"], page.limit)
        if page.number > max(pages, 1):
            raise ApiError(404, f"Page number out of range: {pages} page(s) of {page.limit}")
        rows = await store.read_module_certificates(r.conn, owner, buyer, *filters, page.limit, page.offset)
        parts: dict[uuid.UUID, list[Any]] = {}
        for part in await store.parts_of_certificates(r.conn, [row["id"] for row in rows], owner):
            parts.setdefault(part["certificate_id"], []).append(part)
    result = []
    for row in rows:
        mine = parts.get(row["id"], [])
        result.append(
            {
                "crm_internalCertificateId": str(row["id"]),
                "crm_blockchainCertificateId": None,
                "crm_deviceId": str(row["reservation_id"]),  # D-REC issues to the group
                "crm_generationStartTime": _seconds(row["generation_start"]),
                "crm_generationEndTime": _seconds(row["generation_end"]),
                "crm_creationTime": _seconds(row["issued_at"]),
                "crm_creationBlockHash": None,
                "crm_owners": {},
                "crm_claimers": None,
                "crm_claims": [],
                "crm_metadata": {
                    "groupId": str(row["reservation_id"]),
                    "buyerReservationId": str(row["reservation_uid"]),
                    "deviceIds": [p["external_id"] for p in mine if p["external_id"] is not None],
                    "certificateTransactionUID": str(row["id"]),
                },
                **_certificate(row, mine),
                "devicegroup_uid": str(row["reservation_uid"]),
                "reservationName": row["reservation_name"],
            }
        )
    return {
        "result": result,
        "pageNumber": page.number,
        "totalPages": pages,
        "totalCount": totals["count"],
        "organizationId": org,
        "view": {"owner": "developer", "buyer": "buyer"}.get(view or "", "all"),
        "totalEnergyWh": totals["energy_wh"],
    }


EXPORT_MAX_ROWS = 100_000  # parts one export answers at most (`limit`; further ones: `pageNumber`)
EXPORT_CHUNK = 1_000  # parts read (in one short reading unit) and written at a time


@dataclass(frozen=True)
class Export:
    """A reservation's per-device certificate log as CSV: its file name, how many parts the caller's whole view
    holds, and the text, a chunk at a time (read as it is sent: no connection is held between chunks)."""

    filename: str
    total: int
    chunks: AsyncIterator[str]


def _csv(rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([[domain.csv_cell(v) for v in row] for row in rows])
    return out.getvalue()


def _export_row(res: Any, part: Any) -> list[object]:
    """One part in domain.EXPORT_COLUMNS' order."""
    return [
        part["external_id"],
        res["name"],
        iso_exact(part["generation_start"]),
        iso_exact(part["generation_end"]),
        part["energy_wh"],
        str(part["certificate_id"]),
        None,  # no blockchain here
        part["device_id"],
        str(part["id"]),
        part["country_code"],
        part["kind"],
        iso_exact(part["period_start"]),
        iso_exact(part["period_end"]),
    ]


async def per_device_export(
    uow: UnitOfWork, user: Principal, page: Page, organization_id: int | None, learning: Learning, uid: uuid.UUID
) -> Export:
    """GET /api/certificate-log/expoert_perdevice/{groupUid} (D-REC's spelling; also export_perdevice): the
    reservation's per-device certificate log as CSV (CertificateLogService.createCSV: a part per line, D-REC's
    columns, then ours). Seen as the other reservation logs (a device owner: its own devices' parts; an API user
    naming no organization: if one of its Buyer organizations holds it); a reservation just created is learned as
    they do. Bounded: a page of at most EXPORT_MAX_ROWS parts, read and sent EXPORT_CHUNK at a time in the
    export's order (later chunks continue after the last part sent: none repeated or skipped)."""

    async def look() -> tuple[Any, int | None, int, list[Any]] | None:
        async with uow.reading() as r:
            view = await _reservation_view(r.conn, user, organization_id, None, uid, True)
            if view is None:
                return None
            res, owner = view
            total = (await store.parts_totals(r.conn, res["reservation_id"], owner))["count"]
            first = await store.export_parts(
                r.conn, res["reservation_id"], owner, None, min(EXPORT_CHUNK, page.limit), page.offset
            )
        return res, owner, total, list(first)

    found = await look()
    if found is None and await learn_reservation(uow, learning, user, uid=uid):
        found = await look()
    if found is None:
        raise ApiError(404, _absent(None, uid))
    res, owner, total, first = found

    async def chunks() -> AsyncIterator[str]:
        yield _csv([list(domain.EXPORT_COLUMNS)])
        rows, sent = first, 0
        while rows:
            yield _csv([_export_row(res, part) for part in rows])
            sent += len(rows)
            left = page.limit - sent
            if left <= 0 or len(rows) < EXPORT_CHUNK:
                return
            last = rows[-1]
            after = (last["period_start"], last["certificate_id"], last["device_id"])
            async with uow.reading() as r:
                rows = list(
                    await store.export_parts(r.conn, res["reservation_id"], owner, after, min(EXPORT_CHUNK, left))
                )

    return Export(domain.export_filename(res["name"], learning.now.date().isoformat()), total, chunks())


# -- refused: what D-REC does on a blockchain or by cron, here done otherwise ----------------------------------------

CLAIM_AMOUNT_REFUSED = (
    "GET /api/certificate-log/claim-amount-in-ethers-json is not served: it turns an amount into a blockchain "
    "token's base unit, and OpenDREC keeps no blockchain. Claims are the registry's retirements, in Wh: "
    "POST /api/certificate/retirements (see GET /api/certificate/holdings for what can be retired)"
)
ISSUER_REFUSED = (
    "{method} {path} is not served: D-REC triggers its issuance from a cron here, and OpenDREC issues "
    "certificates continuously instead (the certificates service's certification sweep, every few seconds, as "
    "energy settles and periods close; late and historical energy included; exactly once, retried by itself). "
    "Nothing can or need be triggered; follow the certificates with GET /api/certificate-log/issuer/certified/"
    "{{groupUid}} or GET /api/certificate-log/issuer/certifiedlogOfdevices"
)


def issuer_refused(method: str, path: str) -> str:
    """Why a D-REC issuer trigger (drec-issuer.controller.ts) answers 410."""
    return ISSUER_REFUSED.format(method=method, path=path)
