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
