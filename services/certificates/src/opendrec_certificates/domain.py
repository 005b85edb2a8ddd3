"""How accepted energy becomes certificates, without I/O.

A read's energy goes to a reservation in proportion to how much of the read's interval
lies inside the reservation window (rounded down to whole Wh; the window stops at the
reservation's end if it was ended early), never more than the read has left uncertified,
and never past the reservation's target unless it has authority to exceed it. What is
certified in one run is grouped into one certificate per frequency period (hour, day, ...)
of the read ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from opendrec_kit.periods import period_of_end


@dataclass(frozen=True)
class Read:
    id: int
    start: datetime
    end: datetime
    energy_wh: int
    certified_wh: int  # already certified, for any reservation

    @property
    def uncertified_wh(self) -> int:
        return self.energy_wh - self.certified_wh


@dataclass(frozen=True)
class Reservation:
    reservation_id: int
    start: datetime
    end: datetime
    frequency: str
    target_wh: int | None
    authority_to_exceed: bool
    certified_wh: int  # already certified for this reservation
    expiry: datetime | None = None  # nothing is certified for it from then on (None: no such limit)


@dataclass(frozen=True)
class Allocation:
    read_id: int
    energy_wh: int
    start: datetime  # the part of the read inside the window
    end: datetime


@dataclass(frozen=True)
class Issue:
    period_start: datetime
    generation_start: datetime
    generation_end: datetime
    energy_wh: int
    allocations: tuple[Allocation, ...]


def effective_end(end: datetime, ended_at: datetime | None) -> datetime:
    """Where a reservation's window really stops: its end date, or earlier if it was ended before that."""
    return min(end, ended_at) if ended_at is not None else end


def certifiable(reservation: Reservation, now: datetime) -> bool:
    """Whether certificates may still be issued for the reservation now: not from its expiry on (D-REC's
    reservationExpiryDate; the window itself stops at its effective end)."""
    return reservation.expiry is None or now < reservation.expiry


ORGANIZATION_VIEWS = {"Developer": "owner", "Buyer": "buyer"}


def organization_view(organization_type: str) -> str | None:
    """Which certificates an organization's log shows: a Developer's are those of its devices ("owner"),
    a Buyer's those of its reservations ("buyer"); other kinds of organization have none (None)."""
    return ORGANIZATION_VIEWS.get(organization_type)


def share_in_window(read: Read, start: datetime, end: datetime) -> tuple[int, datetime, datetime] | None:
    """The Wh of `read` inside [start, end) and the overlapping interval, or None when they don't meet."""
    if read.end <= read.start:  # an instant: inside when its time is
        return (read.energy_wh, read.end, read.end) if start <= read.end <= end else None
    lo, hi = max(read.start, start), min(read.end, end)
    if hi <= lo:
        return None
    us = timedelta(microseconds=1)
    whole, part = (read.end - read.start) // us, (hi - lo) // us  # exact integers, no float drift
    wh = read.energy_wh * part // whole
    return wh, lo, hi


def allocate(reads: list[Read], reservation: Reservation) -> list[Allocation]:
    """Energy of `reads` (one device, none yet certified for this reservation) that the reservation gets."""
    remaining = None
    if reservation.target_wh is not None and not reservation.authority_to_exceed:
        remaining = max(reservation.target_wh - reservation.certified_wh, 0)
    out: list[Allocation] = []
    for read in sorted(reads, key=lambda r: (r.end, r.id)):
        share = share_in_window(read, reservation.start, reservation.end)
        if share is None:
            continue
        wh, lo, hi = share
        wh = min(wh, read.uncertified_wh)
        if remaining is not None:
            wh = min(wh, remaining)
            remaining -= wh
        if wh > 0:
            out.append(Allocation(read.id, wh, lo, hi))
    return out


def issues(allocations: list[Allocation], frequency: str) -> list[Issue]:
    """One certificate per frequency period of the allocations' ends."""
    groups: dict[datetime, list[Allocation]] = {}
    for a in allocations:
        groups.setdefault(period_of_end(a.end, frequency), []).append(a)
    return [
        Issue(
            period_start=p,
            generation_start=min(a.start for a in group),
            generation_end=max(a.end for a in group),
            energy_wh=sum(a.energy_wh for a in group),
            allocations=tuple(group),
        )
        for p, group in sorted(groups.items())
    ]
