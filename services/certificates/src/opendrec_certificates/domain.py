"""How accepted energy becomes certificates, without I/O.

Two steps (issue 14, D-REC's issuance):

- **Allocation.** A settled read's energy goes to a reservation in proportion to how much of the read's interval
  lies inside the reservation window (rounded down to whole Wh; the window stops at the reservation's end, or
  earlier if it was ended), never more than the read has left uncertified, and never past the reservation's
  target unless it has authority to exceed it. That share is split over the periods of the reservation's
  frequency the read overlaps, in proportion to time, exactly (a cumulative floor over microseconds: the parts
  sum to the share). A History read (before the device's onboarding) is one allocation of its own.
- **Issuance.** Once a period has closed and settled, ONE certificate per (reservation, country, period) takes
  every allocation of that period not yet issued, with a part per device. Only whole kWh are issued: the
  remainder is carried, per (reservation, country) and device, into the next certificate (`issue_round`). A
  period already issued gets `late` certificates (sequence 1, 2, ...); History reads get one certificate per
  device and read when they hold at least 1 kWh.
"""

from __future__ import annotations

import math
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Final, Literal, NamedTuple, TypeVar

from opendrec_kit.periods import next_period_start, period_of_end, period_start

KWH = 1000
US = timedelta(microseconds=1)
Kind = Literal["period", "late", "history"]
PERIOD: Final = "period"  # the period's certificate (sequence 0)
LATE: Final = "late"  # energy of a period already issued (sequence 1, 2, ...)
HISTORY: Final = "history"  # one History read of one device (sequence 1, 2, ...)
# Certificate ids are derived from what a certificate is (its key), so a replay or a rebuild names it the same.
CERTIFICATE_NAMESPACE = uuid.UUID("6f1d2c1e-4d0a-5e8b-9c57-0e6a8f4b1d14")


# Read and Allocation are named tuples, not frozen dataclasses: one of each per read, and building a frozen
# dataclass costs three times as much (issue 16: certifying keeps up with ingestion).
class Read(NamedTuple):
    id: int
    start: datetime
    end: datetime
    energy_wh: int
    certified_wh: int  # already allocated, to any reservation
    history: bool = False  # a History read: energy before the device's onboarding

    @property
    def uncertified_wh(self) -> int:
        return self.energy_wh - self.certified_wh


@dataclass(frozen=True)
class Reservation:
    reservation_id: int
    start: datetime
    end: datetime  # the effective end: its end date, or when it ended if earlier
    frequency: str
    target_wh: int | None
    authority_to_exceed: bool
    certified_wh: int  # already allocated to this reservation
    expiry: datetime | None = None  # nothing is certified for it from then on (None: no such limit)

    @property
    def capped(self) -> bool:
        return self.target_wh is not None and not self.authority_to_exceed


class Allocation(NamedTuple):
    """The part of one read that one reservation gets in one period (or, for a History read, its own)."""

    read_id: int
    kind: str  # PERIOD or HISTORY
    period_start: datetime  # the period as cut by the window; a History read's own interval in the window
    period_end: datetime
    energy_wh: int
    start: datetime  # the part of the read inside the period and the window
    end: datetime


@dataclass(frozen=True)
class Round:
    """One issuance of a (reservation, country, period): what it takes and what it issues."""

    allocated_wh: int
    carry_in_wh: int
    issued_wh: int
    carry_out_wh: int
    parts: tuple[tuple[int, int], ...]  # (device_id, Wh issued), by device
    carry_out: tuple[tuple[int, int], ...]  # (device_id, Wh carried to the next certificate), by device
    target_reached: bool


def effective_end(end: datetime, ended_at: datetime | None) -> datetime:
    """Where a reservation's window really stops: its end date, or earlier if it was ended before that."""
    return min(end, ended_at) if ended_at is not None else end


def takes_no_more(
    end: datetime,
    ended_at: datetime | None,
    expiry: datetime | None,
    target_reached: bool,
    now: datetime,
    settle: timedelta,
) -> bool:
    """Whether a reservation takes no more energy: its window closed and settled (its last period is issued then,
    within a sweep), it expired, or a certificate reached its target. Its carry then stays uncertified."""
    return target_reached or (expiry is not None and now >= expiry) or effective_end(end, ended_at) + settle <= now


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
    whole, part = (read.end - read.start) // US, (hi - lo) // US  # exact integers, no float drift
    wh = read.energy_wh * part // whole
    return wh, lo, hi


def period_bounds(moment_start: datetime, frequency: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The period of `frequency` starting at `moment_start` (a period start), cut by the window [start, end)."""
    return max(moment_start, start), min(next_period_start(moment_start, frequency), end)


def split(
    wh: int, lo: datetime, hi: datetime, frequency: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, int, datetime, datetime]]:
    """`wh` generated over [lo, hi) (inside the window [start, end)) split over the periods it overlaps, in
    proportion to time: (period start, period end (both cut by the window), Wh, part start, part end). Cumulative
    floor over microseconds: the parts sum to `wh` exactly, none lost, none twice. An instant (lo = hi) belongs
    to the period it lies in (at the window's end: the last one)."""
    if hi <= lo:
        p = period_of_end(lo, frequency) if lo >= end else period_start(lo, frequency)
        p_lo, p_hi = period_bounds(p, frequency, start, end)
        return [(p_lo, p_hi, wh, lo, hi)]
    whole = (hi - lo) // US
    out = []
    p, done, given = period_start(lo, frequency), lo, 0
    while done < hi:
        boundary = min(next_period_start(p, frequency), hi)
        cumulative = wh * ((boundary - lo) // US) // whole
        p_lo, p_hi = period_bounds(p, frequency, start, end)
        out.append((p_lo, p_hi, cumulative - given, done, boundary))
        given, done, p = cumulative, boundary, next_period_start(p, frequency)
    return out


def allocate(reads: list[Read], reservation: Reservation) -> list[Allocation]:
    """Energy of `reads` (one device, none yet allocated to this reservation) that the reservation gets, per
    read and period (only parts > 0 Wh)."""
    remaining = None
    if reservation.capped:
        assert reservation.target_wh is not None
        remaining = max(reservation.target_wh - reservation.certified_wh, 0)
    out: list[Allocation] = []
    start, end, frequency = reservation.start, reservation.end, reservation.frequency
    period: tuple[datetime, datetime, datetime, datetime] | None = None  # the last period: start, next, cut by window
    for read in sorted(reads, key=_end_order):
        if start <= read.start < read.end <= end:  # inside the window, not an instant: all of its energy
            wh, lo, hi = read.energy_wh, read.start, read.end
        else:
            share = share_in_window(read, start, end)
            if share is None:
                continue
            wh, lo, hi = share
        wh = min(wh, read.uncertified_wh)
        if remaining is not None:
            wh = min(wh, remaining)
            remaining -= wh
        if wh <= 0:
            continue
        if read.history:
            out.append(Allocation(read.id, HISTORY, lo, hi, wh, lo, hi))
            continue
        if lo < hi:  # a read inside one period (most are) is split's one part, its period found once for many reads
            if period is None or not period[0] <= lo < hi <= period[1]:
                p = period_start(lo, frequency)
                period = (p, next_period_start(p, frequency), *period_bounds(p, frequency, start, end))
            if hi <= period[1]:
                out.append(Allocation(read.id, PERIOD, period[2], period[3], wh, lo, hi))
                continue
        for p_lo, p_hi, part, a, b in split(wh, lo, hi, frequency, start, end):
            if part > 0:
                out.append(Allocation(read.id, PERIOD, p_lo, p_hi, part, a, b))
    return out


_end_order = attrgetter("end", "id")


# -- reads stored as runs (issue 16) ----------------------------------------------------------------------------------

UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
RUN_MAX_READS = 1 << 16  # reads of one run at most (a read's id in the views is its run's * 2^20 + its index)


def micros(moment: datetime) -> int:
    """A moment as integer microseconds since the Unix epoch."""
    return (moment - UNIX_EPOCH) // US


def moment_of(us: int) -> datetime:
    """The moment `us` microseconds after the Unix epoch (UTC)."""
    return UNIX_EPOCH + timedelta(microseconds=us)


class Run(NamedTuple):
    """Back-to-back reads of one device from one read.ingested event (migration 0021): read k (0-based) runs from
    `start_us` (k = 0) or `ends_us[k - 1]` to `ends_us[k]`, microseconds after `origin_us` (itself microseconds after
    the Unix epoch), and carries `energy_wh[k]`. An instant is a run of one read."""

    id: int
    device_id: int
    origin_us: int
    start_us: int
    ends_us: Sequence[int]
    energy_wh: Sequence[int]
    history: bool = False

    def start_of(self, k: int) -> int:
        return self.start_us if k == 0 else self.ends_us[k - 1]


class RunAllocation(NamedTuple):
    """What one reservation gets of the reads [lo, hi) of one run in one period (a History read: its own row)."""

    run_id: int
    lo: int
    hi: int
    kind: str  # PERIOD or HISTORY
    period_start: datetime  # the period as cut by the window; a History read's own interval in the window
    period_end: datetime
    energy_wh: int
    parts: list[int] | None  # Wh of each read of [lo, hi) (0: none of it); None: each read's whole energy
    start: datetime  # the first part's start (a part: the read cut by the period)
    end: datetime  # the last part's end

    def parts_of(self, run: Run) -> Sequence[int]:
        return run.energy_wh[self.lo : self.hi] if self.parts is None else self.parts


def allocate_runs(
    runs: Sequence[Run],
    reservation: Reservation,
    after_us: int | None,
    settled_us: int,
    certified: dict[int, list[int]],
    mine: dict[int, set[int]],
) -> list[RunAllocation]:
    """`allocate` over runs of one device (in start order): what the reservation gets of their reads that end after
    `after_us` (None: any) and by `settled_us`, with energy left (`certified`: Wh already allocated per read of a run
    that has any allocation, absent: none), not allocated to it before (`mine`: indexes per run). The rules are
    `allocate`'s, read by read (cumulative floor, shares, History reads alone, the target in end order); whole reads
    inside a period and the window, of a run nothing was taken of, are counted over the arrays (bisect for the
    period boundaries) and make one row per period holding "each read's whole energy"."""
    if reservation.capped:  # the target goes to reads in end order across the runs: read by read
        return _allocate_reads(runs, reservation, after_us, settled_us, certified, mine, None)
    out: list[RunAllocation] = []
    periods: list[tuple[int, int, datetime, datetime]] = []  # the last period met: its µs range, cut by the window
    for run in runs:
        if run.history or run.id in certified or (len(run.ends_us) == 1 and run.start_us == run.ends_us[0]):
            out += _allocate_reads([run], reservation, after_us, settled_us, certified, mine, None)
        else:
            out += _allocate_whole(run, reservation, after_us, settled_us, periods)
    return out


def _eligible(run: Run, start_us: int, end_us: int, after_us: int | None, settled_us: int) -> tuple[int, int]:
    """The reads [a, b) of `run` ending after `after_us` and by `settled_us` that meet the window [start, end] (as
    the scan for uncertified reads took them: end >= the window's start, start <= its end)."""
    ends, o = run.ends_us, run.origin_us
    if run.start_us > end_us - o:
        return 0, 0
    a = max(0 if after_us is None else bisect_right(ends, after_us - o), bisect_left(ends, start_us - o))
    b = min(bisect_right(ends, settled_us - o), bisect_right(ends, end_us - o) + 1)
    return a, b


def _allocate_whole(
    run: Run,
    reservation: Reservation,
    after_us: int | None,
    settled_us: int,
    periods: list[tuple[int, int, datetime, datetime]],
) -> list[RunAllocation]:
    """A run nothing was taken of, a reservation without a cap: its reads inside the window and a period give their
    whole energy, a row per period; the few others (crossing the window's ends or a period boundary) go read by
    read. `periods`: the last period met (its start and end in microseconds, and as cut by the window), kept from
    run to run (short runs of a device are mostly of one period)."""
    start, end, frequency = reservation.start, reservation.end, reservation.frequency
    ws, we = micros(start), micros(end)
    a, b = _eligible(run, ws, we, after_us, settled_us)
    if a >= b:
        return []
    ends, o, energy = run.ends_us, run.origin_us, run.energy_wh
    # the reads wholly inside the window: starting at or after its start, ending by its end
    inner_a = max(a, 0 if run.start_us >= ws - o else bisect_left(ends, ws - o) + 1)
    inner_b = min(b, bisect_right(ends, we - o))
    edge = [k for k in range(a, b) if not inner_a <= k < inner_b]
    out: list[RunAllocation] = []
    k = inner_a
    while k < inner_b:
        s = o + run.start_of(k)
        if not periods or not periods[0][0] <= s < periods[0][1]:
            p = period_start(moment_of(s), frequency)
            periods[:] = [
                (micros(p), micros(next_period_start(p, frequency)), *period_bounds(p, frequency, start, end))
            ]
        _, boundary_us, p_lo, p_hi = periods[0]
        j = bisect_right(ends, boundary_us - o, k, inner_b)  # [k, j): ending by the period's end
        if j > k:
            wh = sum(energy[k:j])
            if wh > 0:
                lo, hi = k, j  # from the first read with energy to the last (the parts' start and end)
                while not energy[lo]:
                    lo += 1
                while not energy[hi - 1]:
                    hi -= 1
                out.append(
                    RunAllocation(
                        run.id,
                        lo,
                        hi,
                        PERIOD,
                        p_lo,
                        p_hi,
                        wh,
                        None,
                        moment_of(o + run.start_of(lo)),
                        moment_of(o + ends[hi - 1]),
                    )
                )
        if j < inner_b and j == k:  # read j crosses the period's end: split read by read
            edge.append(j)
            j += 1
        k = j
    if edge:
        out += _allocate_reads([run], reservation, after_us, settled_us, {}, {}, set(edge))
    return out


def _allocate_reads(
    runs: Sequence[Run],
    reservation: Reservation,
    after_us: int | None,
    settled_us: int,
    certified: dict[int, list[int]],
    mine: dict[int, set[int]],
    only: set[int] | None,
) -> list[RunAllocation]:
    """`allocate` itself over the eligible reads of the runs (only the indexes `only` of a single run, if given),
    its allocations gathered into rows of consecutive reads per run and period."""
    ws, we = micros(reservation.start), micros(reservation.end)
    reads: list[Read] = []
    where: list[tuple[Run, int]] = []
    for run in runs:
        a, b = _eligible(run, ws, we, after_us, settled_us)
        taken = mine.get(run.id, set())
        given = certified.get(run.id)
        o, ends, energy = run.origin_us, run.ends_us, run.energy_wh
        for k in range(a, b) if only is None else sorted(i for i in only if a <= i < b):
            c = given[k] if given is not None else 0
            if k in taken or c >= energy[k]:
                continue
            reads.append(
                Read(len(where), moment_of(o + run.start_of(k)), moment_of(o + ends[k]), energy[k], c, run.history)
            )
            where.append((run, k))
    if not reads:
        return []
    grouped: dict[tuple[int, str, datetime], list[tuple[int, Allocation]]] = {}
    for allocation in allocate(reads, reservation):
        run, k = where[allocation.read_id]
        grouped.setdefault((run.id, allocation.kind, allocation.period_start), []).append((k, allocation))
    out: list[RunAllocation] = []
    for (run_id, kind, _), parts in grouped.items():
        parts.sort(key=_first)
        segment: list[tuple[int, Allocation]] = []
        for k, allocation in parts:
            if segment and k != segment[-1][0] + 1:
                out.append(_row(run_id, kind, segment))
                segment = []
            segment.append((k, allocation))
        out.append(_row(run_id, kind, segment))
    return out


def _first(item: tuple[int, Allocation]) -> int:
    return item[0]


def _row(run_id: int, kind: str, segment: list[tuple[int, Allocation]]) -> RunAllocation:
    first, last = segment[0][1], segment[-1][1]
    wh = [a.energy_wh for _, a in segment]
    return RunAllocation(
        run_id,
        segment[0][0],
        segment[-1][0] + 1,
        kind,
        first.period_start,
        first.period_end,
        sum(wh),
        wh,
        first.start,
        last.end,
    )


def run_parts(run: Run, row: RunAllocation, device_id: int) -> list[tuple[int, int, int, int]]:
    """The read parts a row holds, (device, start, end, Wh) in microseconds since the Unix epoch: each read of its
    range cut by its period, those of 0 Wh left out (the intervals a certificate covers: its reads_hash)."""
    o, ends = run.origin_us, run.ends_us
    lo, hi = row.lo, row.hi
    starts = ends[lo - 1 : hi - 1] if lo > 0 else [run.start_us, *ends[: hi - 1]]
    if row.parts is None:  # whole reads inside the period
        return [
            (device_id, o + s, o + e, wh)
            for s, e, wh in zip(starts, ends[lo:hi], run.energy_wh[lo:hi], strict=True)
            if wh > 0
        ]
    p_lo, p_hi = micros(row.period_start), micros(row.period_end)
    return [
        (device_id, max(o + s, p_lo), min(o + e, p_hi), wh)
        for s, e, wh in zip(starts, ends[lo:hi], row.parts, strict=True)
        if wh > 0
    ]


def issue_round(
    carry: dict[int, int],
    allocated: dict[int, int],
    *,
    target_left: int | None = None,
    full: bool = False,
    whole_kwh_only: bool = False,
) -> Round:
    """What one certificate issues from the (reservation, country) carry and the period's allocations, both per
    device. Whole kWh: floor((carry_in + allocated) / 1000) * 1000, the remainder carried. Issued Wh are taken
    from the carry first (by device), then from the allocations (by device), so the oldest energy leaves first.

    `target_left` (a capped reservation: its target less what it was issued): never more. `full`: the reservation
    was allocated up to its target, nothing more will come: what is left is issued to the Wh (the certificate
    that reaches the target is cut to exactly what remains). `whole_kwh_only` (History): nothing below 1 kWh is
    issued (D-REC's minimum); the remainder is carried all the same."""
    carry_in, alloc = sum(carry.values()), sum(allocated.values())
    pool = carry_in + alloc
    issued = pool if full else pool // KWH * KWH
    if target_left is not None:
        issued = min(issued, max(target_left, 0))
    if whole_kwh_only and issued < KWH:
        issued = 0
    target_reached = target_left is not None and issued > 0 and issued == target_left
    parts: dict[int, int] = {}
    left = issued
    for source in (carry, allocated):
        for device in sorted(source):
            take = min(source[device], left)
            if take > 0:
                parts[device] = parts.get(device, 0) + take
                left -= take
    devices = sorted(set(carry) | set(allocated))
    carry_out = {d: carry.get(d, 0) + allocated.get(d, 0) - parts.get(d, 0) for d in devices}
    return Round(
        allocated_wh=alloc,
        carry_in_wh=carry_in,
        issued_wh=issued,
        carry_out_wh=pool - issued,
        parts=tuple(sorted(parts.items())),
        carry_out=tuple((d, wh) for d, wh in sorted(carry_out.items()) if wh > 0),
        target_reached=target_reached,
    )


def issuable(period_end: datetime, ends: datetime, settle: timedelta, now: datetime) -> bool:
    """A period is issued once it has closed (its end, or the window's if earlier) and the settle time passed."""
    return min(period_end, ends) + settle <= now


def certificate_id(
    reservation_id: int, country_code: str | None, period_start: datetime, kind: str, sequence: int
) -> uuid.UUID:
    """The certificate's id, from its key: the same certificate is the same id after a replay or a rebuild."""
    key = f"{reservation_id}/{country_code or ''}/{period_start.isoformat()}/{kind}/{sequence}"
    return uuid.uuid5(CERTIFICATE_NAMESPACE, key)


def part_id(certificate: uuid.UUID, device_id: int) -> uuid.UUID:
    """The id of a certificate's part (one device's energy): D-REC's per-device log entry."""
    return uuid.uuid5(certificate, str(device_id))


# -- the certificate read module's filters (D-REC GET /api/certificate-log/certificateReadModule) ------------------

# D-REC's deviceFilter (certificate-log/dto/deviceFilter.dto.ts; its service ignores it): the fields this service
# keeps of a device (from device.registered/updated) filter certificates, with the ranges certifiedlogOfdevices
# takes; grid interconnection is not announced here, and a device group's aggregated capacity and a yield have no
# meaning as a filter of certificates (the capacity range does the former's work): 400 naming them.
DEVICE_FILTER_LISTS = ("countryCode", "fuelCode", "deviceTypeCodes", "offTakers", "SDGBenefits")
DEVICE_FILTER_RANGES = ("fromCapacity", "toCapacity", "fromCommissioningDate", "toCommissioningDate")
DEVICE_FILTER_NOT_KEPT = ("gridInterconnection", "aggregatedCapacity", "yieldValue")
MAX_COUNTRY_CODE = 3


class FilterError(ValueError):
    """A filter the caller sent that cannot be applied (answered 400, naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _texts(name: str, value: object) -> list[str]:
    """A deviceFilter list field: a string (comma-separated), or a JSON list of strings."""
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise FilterError(name, f"{name}: text values (a string, comma-separated, or a list of strings)")
    return [item for item in items if isinstance(item, str)]


def _capacity(name: str, value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    except (ValueError, OverflowError):  # OverflowError: an integer beyond any float (JSON allows it)
        number = None
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_CAPACITY_KW:
        raise FilterError(name, f"{name}: a capacity in kW from 0 to {MAX_CAPACITY_KW}")
    return number


def _moment(name: str, value: object) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 64 else None
    except ValueError:
        moment = None
    if moment is None:
        raise FilterError(name, f"{name}: an ISO 8601 date or moment, e.g. 2024-01-01")
    return utc_moment(name, moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def device_filter(fields: dict[str, object]) -> DeviceLogFilter:
    """The certificates a deviceFilter asks for (DeviceLogFilter: country, fuel, type, off-taker, SDG benefits,
    capacity and commissioning ranges), or FilterError naming `deviceFilter[<field>]`: a field not kept here or
    not known, or a bad value."""
    for name in fields:
        if name in DEVICE_FILTER_NOT_KEPT:
            raise FilterError(
                f"deviceFilter[{name}]",
                f"deviceFilter.{name} is not kept by the certificate log (it filters by "
                + ", ".join(DEVICE_FILTER_LISTS + DEVICE_FILTER_RANGES)
                + ")",
            )
        if name not in DEVICE_FILTER_LISTS + DEVICE_FILTER_RANGES:
            raise FilterError(
                f"deviceFilter[{name}]",
                f"deviceFilter has no field {name!r} (it takes "
                + ", ".join(DEVICE_FILTER_LISTS + DEVICE_FILTER_RANGES)
                + ")",
            )

    def lst(name: str) -> list[str]:
        value = fields.get(name)
        return [] if value is None else _texts(f"deviceFilter[{name}]", value)

    capacity = ordered_range(
        "deviceFilter[fromCapacity]",
        _capacity("deviceFilter[fromCapacity]", fields.get("fromCapacity")),
        "deviceFilter[toCapacity]",
        _capacity("deviceFilter[toCapacity]", fields.get("toCapacity")),
    )
    commissioned = ordered_range(
        "deviceFilter[fromCommissioningDate]",
        _moment("deviceFilter[fromCommissioningDate]", fields.get("fromCommissioningDate")),
        "deviceFilter[toCommissioningDate]",
        _moment("deviceFilter[toCommissioningDate]", fields.get("toCommissioningDate")),
    )
    return DeviceLogFilter(
        countries=country_codes("deviceFilter[countryCode]", lst("countryCode")),
        fuel_codes=filter_values("deviceFilter[fuelCode]", lst("fuelCode"), upper=True),
        device_type_codes=filter_values("deviceFilter[deviceTypeCodes]", lst("deviceTypeCodes"), upper=True),
        off_takers=filter_values("deviceFilter[offTakers]", lst("offTakers")),
        sdg_benefits=filter_values("deviceFilter[SDGBenefits]", lst("SDGBenefits"), max_length=MAX_SDG_BENEFIT),
        capacity_from_kw=capacity[0],
        capacity_to_kw=capacity[1],
        commissioned_from=commissioned[0],
        commissioned_to=commissioned[1],
    )


def generation_window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """The certificates a read-module query asks for by generation time: those ending at or after `start` and
    starting at or before `end` (either may be open). FilterError when `start` is after `end`."""
    if start is not None and end is not None and start > end:
        raise FilterError("certificateStartDate", "certificateStartDate is after certiifcateEndDate")
    return start, end


def megawatt_hours_to_wh(mwh: Decimal) -> int:
    """A volume in MWh (D-REC's targetVolumeCertificateGenerationRequestedInMegaWattHour) in whole Wh, down."""
    return int(mwh * 1_000_000)


# -- certifiedlogOfdevices' filters (D-REC FilterDTO of GET /api/certificate-log/issuer/certifiedlogOfdevices) -------

MAX_FILTER_VALUES = 100  # values one list filter takes (comma-separated or repeated)
MAX_EXTERNAL_ID = 256
MAX_CODE = 32  # a fuel code, device type code or off-taker
MAX_SDG_BENEFIT = 64  # an SDG benefit: D-REC's code (SDG1) or its name (No Poverty)
MAX_CAPACITY_KW = 10**9
MAX_WH = 2**63 - 1
Bound = TypeVar("Bound", int, float, datetime)


@dataclass(frozen=True)
class DeviceLogFilter:
    """certifiedlogOfdevices' filters, parsed; all of them apply together (D-REC ORs them: one matching is enough
    there). Lists match any of their values; codes case-insensitively, external ids exactly. A filter on the
    device (external id, fuel, type, off-taker, capacity, commissioning date) leaves out the parts of devices
    whose registration this service has not received, or whose event did not carry the field."""

    external_ids: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    fuel_codes: tuple[str, ...] = ()
    device_type_codes: tuple[str, ...] = ()
    off_takers: tuple[str, ...] = ()
    capacity_from_kw: float | None = None
    capacity_to_kw: float | None = None
    commissioned_from: datetime | None = None
    commissioned_to: datetime | None = None
    generated_from: datetime | None = None
    generated_to: datetime | None = None
    energy_from_wh: int | None = None
    energy_to_wh: int | None = None
    sdg_benefits: tuple[str, ...] = ()  # any of the device's, case-insensitively
    old_log: bool | None = None  # D-REC's oldcertificatelog: True legacy certificates only, False the others

    @property
    def on_devices(self) -> bool:
        """Whether a filter on the device itself is given (the certificate read module checks it per part)."""
        return bool(
            self.fuel_codes
            or self.device_type_codes
            or self.off_takers
            or self.sdg_benefits
            or self.capacity_from_kw is not None
            or self.capacity_to_kw is not None
            or self.commissioned_from is not None
            or self.commissioned_to is not None
        )


NO_DEVICE_LOG_FILTER: Final = DeviceLogFilter()


def filter_values(name: str, values: list[str], *, upper: bool = False, max_length: int = MAX_CODE) -> tuple[str, ...]:
    """A list filter's values: repeated keys and comma-separated ones (D-REC splits on commas), blanks dropped;
    FilterError naming `name` beyond MAX_FILTER_VALUES values or `max_length` characters, or on control
    characters."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if len(item) > max_length or not item.isprintable():
                raise FilterError(name, f"{name}: each value is printable text of at most {max_length} characters")
            out.append(item.upper() if upper else item)
    if len(out) > MAX_FILTER_VALUES:
        raise FilterError(name, f"{name}: at most {MAX_FILTER_VALUES} values")
    return tuple(dict.fromkeys(out))


def country_codes(name: str, values: list[str]) -> tuple[str, ...]:
    """Country codes of 2 or 3 letters (upper case), or FilterError naming `name`."""
    codes = filter_values(name, values, upper=True, max_length=MAX_COUNTRY_CODE)
    for code in codes:
        if not (2 <= len(code) <= MAX_COUNTRY_CODE and code.isascii() and code.isalpha()):
            raise FilterError(name, f"{name}: country codes of 2 or 3 letters, e.g. IND or IND,DEU")
    return codes


def utc_moment(name: str, moment: datetime | None) -> datetime | None:
    """A moment in UTC, or FilterError naming `name` when UTC has no such moment (year 1 or 9999 in another zone)."""
    try:
        return None if moment is None else moment.astimezone(UTC)
    except OverflowError:
        raise FilterError(name, f"{name} is out of range (years 1 to 9999 in UTC)") from None


def ordered_range(
    low_name: str, low: Bound | None, high_name: str, high: Bound | None
) -> tuple[Bound | None, Bound | None]:
    """A range's two ends (either may be open), or FilterError naming `low_name` when it is above the other."""
    if low is not None and high is not None and low > high:
        raise FilterError(low_name, f"{low_name} is above {high_name}")
    return low, high


# -- the per-device CSV export (D-REC GET /api/certificate-log/expoert_perdevice/{groupUid}) ----------------------

# D-REC's columns (CertificateLogService.Findperdevicecertificatelog, in its order), then ours.
EXPORT_COLUMNS = (
    "externalId",
    "reservation_name",
    "certificate_issuance_startdate",
    "certificate_issuance_enddate",
    "readvalue_watthour",
    "certificateTransactionUID",
    "blockchainCertificateId",
    "deviceId",
    "partId",
    "countryCode",
    "kind",
    "periodStart",
    "periodEnd",
)
# A spreadsheet reads a cell starting with one of these as a formula (CSV injection): such a cell is prefixed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """One CSV cell's text, safe to open in a spreadsheet: None is empty; text starting like a formula gets a
    leading apostrophe (shown as text, never evaluated)."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_filename(reservation_name: str, day: str) -> str:
    """D-REC's download name, `{reservation name} {date}.csv`, with only characters safe in a header and a file
    name (others become `_`), at most 100 characters of name."""
    safe = "".join(c if (c.isascii() and (c.isalnum() or c in " ._-()")) else "_" for c in reservation_name)
    return f"{safe.strip()[:100] or 'reservation'} {day}.csv"
