"""The D-REC meter-read rules as pure functions: no I/O, the clock is passed in.

A batch of reads of one device is parsed (timestamps to UTC, values to whole Wh),
then judged as a whole against the device and its last accepted read. Every rule is a
small function returning the reason it refuses, or None; the batch functions run them
over every read so a rejection lists every bad read, and turn accepted reads into energy
intervals (start, end, Wh) — the only thing stored and announced.

Read types:
- History: closed intervals before the device's onboarding, start and end given.
- Delta: energy since the previous read; the interval runs from the previous read's end
  (the first one from the onboarding date). A sent start timestamp is ignored.
- Aggregate: a meter total; the energy is the difference to the previous total, and the
  first one is a baseline that carries no energy.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import cache
from itertools import repeat
from operator import attrgetter, le, lt, sub
from typing import Any, Literal, NamedTuple, cast
from zoneinfo import ZoneInfo, available_timezones

# One integer encoding of instants (µs since the Unix epoch), shared with read.ingested.
from opendrec_contracts import ReadIngested
from opendrec_contracts.events import UNIX_EPOCH, micros_since
from opendrec_kit.timestamps import iso, iso_exact

from . import countries

ReadType = Literal["History", "Delta", "Aggregate"]
READ_TYPES: tuple[ReadType, ...] = ("History", "Delta", "Aggregate")
ONGOING_TYPES = ("Delta", "Aggregate")

MAX_READS_PER_REQUEST = 10_000
# Watt-hours per unit, as powers of ten so the conversion stays exact.
UNIT_EXPONENTS = {"Wh": 0, "kWh": 3, "MWh": 6, "GWh": 9}
MAX_WH = 2**63 - 1  # stored as Postgres bigint

DEFAULT_ANNUAL_YIELD = 2000.0  # kWh per kWp per year, when neither device nor country has one
PLAUSIBILITY_MARGIN = 1.2
YEARLY_DEGRADATION = 0.995
HOURS_PER_YEAR = 8760
HISTORY_MAX_YEARS_BEFORE_ONBOARDING = 3
# A charger delivers at most its rated power (the device's capacity, kW) for the session's duration; 5 % more is
# allowed for meter accuracy and for Kazam's/OCPP's rounding of energy and of times to whole seconds.
CHARGER_POWER_TOLERANCE = 1.05
# Label of a batch of charging sessions for its fingerprint: its starts are part of its content (not a Delta's).
CHARGING_SESSIONS = "ChargingSessions"


@dataclass(frozen=True, slots=True)
class Device:
    """What the rules need to know about a device."""

    device_id: int
    capacity_kw: float
    commissioning_date: datetime
    onboarded_at: datetime
    annual_yield: float = DEFAULT_ANNUAL_YIELD  # kWh per kWp per year


@dataclass(frozen=True, slots=True)
class LastRead:
    """The device's latest accepted ongoing (Delta/Aggregate) read: all the state the rules need."""

    ongoing_type: str | None = None  # fixed by the first Delta or Aggregate read
    end: datetime | None = None
    value_wh: int | None = None  # energy of the latest interval (0 for an Aggregate baseline)
    meter_total_wh: int | None = None  # Aggregate only: the latest meter total


# A read or an interval on its own is a named tuple (for the per-read rules and tests); a batch
# is held in columns (Reads, Intervals): 10,000 reads are parsed, judged, fingerprinted, copied
# and announced a column at a time, with loops that run in C, and each instant becomes an
# integer once.
class Read(NamedTuple):
    """One parsed read: UTC timestamps, value in whole Wh (energy, or a meter total for Aggregate)."""

    index: int  # type: ignore[assignment]  # the read's position; the field hides tuple.index, never called
    start: datetime | None
    end: datetime
    value_wh: int


class Interval(NamedTuple):
    """Energy of one device between two instants: what an accepted read becomes."""

    start: datetime
    end: datetime
    wh: int


_new = tuple.__new__  # _new(Read, (index, start, end, wh)): a named tuple without its Python-level __new__


def micros(moment: datetime) -> int:
    """An instant as whole microseconds since the Unix epoch."""
    return (moment - UNIX_EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class Reads:
    """A parsed batch, a column per field: read i is (indexes[i], starts[i], ends[i], values_wh[i]).

    Instants are aware UTC datetimes; `ends_us` are the ends as microseconds since the Unix epoch,
    `starts_us` the starts so when every read has one (else None). Iterating gives Read tuples,
    for the per-read rules.
    """

    indexes: list[int]  # position in the submission (or row number in an import)
    starts: list[datetime | None]  # None: not given (always, for Delta and Aggregate)
    ends: list[datetime]
    values_wh: list[int]
    ends_us: list[int] = field(init=False, repr=False, compare=False)
    starts_us: list[int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ends_us", micros_since(UNIX_EPOCH, self.ends))
        starts = None if None in self.starts else cast(list[datetime], self.starts)  # every read has its start
        object.__setattr__(self, "starts_us", None if starts is None else micros_since(UNIX_EPOCH, starts))

    @classmethod
    def of(cls, reads: Iterable[Read]) -> Reads:
        columns = [list(column) for column in zip(*reads, strict=False)] or [[], [], [], []]
        return cls(*columns)

    def __len__(self) -> int:
        return len(self.ends)

    def __iter__(self) -> Iterator[Read]:
        return map(_new, repeat(Read), zip(self.indexes, self.starts, self.ends, self.values_wh, strict=False))


@dataclass(frozen=True, slots=True)
class Intervals:
    """The accepted energy of a batch, a column per field: interval i runs from starts[i] to ends[i]
    and carries whs[i] Wh. `starts_us`, `ends_us`: the same instants as microseconds since the Unix
    epoch, as they are stored and announced. Iterating gives Interval tuples."""

    starts: list[datetime]
    ends: list[datetime]
    whs: list[int]
    starts_us: list[int]
    ends_us: list[int]

    @classmethod
    def of(cls, intervals: Iterable[Interval]) -> Intervals:
        starts, ends, whs = [list(column) for column in zip(*intervals, strict=False)] or [[], [], []]
        return cls(starts, ends, whs, micros_since(UNIX_EPOCH, starts), micros_since(UNIX_EPOCH, ends))

    def __len__(self) -> int:
        return len(self.whs)

    def __iter__(self) -> Iterator[Interval]:
        return map(_new, repeat(Interval), zip(self.starts, self.ends, self.whs, strict=False))

    def part(self, first: int, last: int) -> Intervals:
        """Intervals first to last (excluded)."""
        return Intervals(
            self.starts[first:last],
            self.ends[first:last],
            self.whs[first:last],
            self.starts_us[first:last],
            self.ends_us[first:last],
        )


@dataclass(frozen=True, slots=True)
class ReadError:
    index: int | None  # None: the batch as a whole
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "reason": self.reason}


@dataclass
class Verdict:
    intervals: Intervals = field(default_factory=lambda: Intervals.of(()))
    errors: list[ReadError] = field(default_factory=list)
    last: LastRead = field(default_factory=LastRead)

    @property
    def accepted(self) -> bool:
        return not self.errors


# -- parsing ------------------------------------------------------------------


def to_wh(value: Decimal | int, unit: str) -> int:
    """`value` in `unit` as whole watt-hours, exactly (powers of ten shift digits, no arithmetic).

    Refuses a value that is not a whole number of Wh: rounding would invent or lose energy.
    """
    if unit not in UNIT_EXPONENTS:
        raise ValueError(f"unknown unit {unit!r}; use one of {', '.join(UNIT_EXPONENTS)}")
    if isinstance(value, int):  # the common case: whole numbers need no digit shifting
        wh = value * 10 ** UNIT_EXPONENTS[unit]
        if abs(wh) > MAX_WH:
            raise ValueError(f"value {value} {unit} is too large")
        return wh
    if not value.is_finite():
        raise ValueError("value must be a finite number")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    exponent += UNIT_EXPONENTS[unit]
    if exponent >= 0:
        if len(digits) + exponent > 19:
            raise ValueError(f"value {value} {unit} is too large")
        wh = int("".join(map(str, digits)) or "0") * 10**exponent
    else:
        whole, fraction = digits[:exponent], digits[exponent:]
        if any(fraction):
            scaled = format(Decimal((sign, digits, exponent)), "f")
            raise ValueError(f"value {value} {unit} is {scaled} Wh: only whole watt-hours are accepted")
        wh = int("".join(map(str, whole)) or "0")
    if wh > MAX_WH:
        raise ValueError(f"value {value} {unit} is too large")
    return -wh if sign else wh


# Files of the zoneinfo directory that are no IANA zone: the server's own zone, a compiler default.
NOT_ZONES = frozenset({"localtime", "posixrules"})


@cache
def timezone_names() -> tuple[str, ...]:
    """Every IANA zone name known here, sorted (as moment-timezone lists them): what `timezone` accepts."""
    return tuple(sorted(set(available_timezones()) - NOT_ZONES))


def search_timezones(keyword: str | None) -> list[str]:
    """The zone names containing `keyword`, in any case (all of them for none or "")."""
    if not keyword:
        return list(timezone_names())
    needle = keyword.lower()
    return [name for name in timezone_names() if needle in name.lower()]


@cache
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in timezone_names()}


def resolve_timezone(name: str) -> ZoneInfo:
    """An IANA zone by name, case-insensitively (as the reference accepts)."""
    canonical = _zone_names().get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Asia/Kolkata")
    return ZoneInfo(canonical)


def parse_timestamp(text: str | None, tz: ZoneInfo | None) -> datetime | None:
    """ISO 8601 to an aware UTC datetime; blank ("", " ") means none.

    A timestamp without offset is local time in `tz`; without `tz` it is refused rather than guessed.
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp (e.g. 2022-10-18T11:35:27.640Z)") from None
    if parsed.tzinfo is None:
        if tz is None:
            raise ValueError(f"{text!r} has no UTC offset: send UTC (ending in Z) or give a timezone for local times")
        local = parsed.replace(tzinfo=tz)
        utc = local.astimezone(UTC)
        if utc.astimezone(tz).replace(tzinfo=None) != parsed:
            raise ValueError(f"{text!r} does not exist in {tz.key} (skipped by a daylight-saving change)")
        return utc
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)  # 'Z' already parses as UTC


def parse_reads(
    starts: Sequence[str | None],
    ends: Sequence[str | None],
    values: Sequence[Decimal | int],
    read_type: ReadType,
    unit: str,
    tz: ZoneInfo | None,
) -> tuple[Reads, list[ReadError]]:
    """Columns of starttimestamp, endtimestamp and value to reads; errors carry the read's index.

    Delta and Aggregate intervals start where the previous read ended, so their start is not read.
    """
    reads = _parse_utc_batch(starts, ends, values, read_type, unit)
    if reads is not None:
        return reads, []
    parsed, errors = [], []
    for index, (start_text, end_text, value) in enumerate(zip(starts, ends, values, strict=True)):
        reasons: list[str] = []
        start = end = None
        wh = 0
        if read_type == "History":
            try:
                start = parse_timestamp(start_text, tz)
            except ValueError as exc:
                reasons.append(f"starttimestamp {exc}")
        try:
            end = parse_timestamp(end_text, tz)
            if end is None:
                reasons.append("endtimestamp is required")
        except ValueError as exc:
            reasons.append(f"endtimestamp {exc}")
        try:
            wh = to_wh(value, unit)
        except ValueError as exc:
            reasons.append(str(exc))
        if reasons:
            errors.append(ReadError(index, "; ".join(reasons)))
        else:
            assert end is not None
            parsed.append(Read(index, start, end, wh))
    return Reads.of(parsed), errors


def _parse_utc_batch(
    starts: Sequence[str | None], ends: Sequence[str | None], values: Sequence[Decimal | int], read_type: str, unit: str
) -> Reads | None:
    """The common batch, parsed in a few passes that run in C: every timestamp ISO 8601 in UTC,
    every value a whole number in range. None if any read is not: the per-read path judges them
    (blanks, local times, other offsets, decimals, bad values) and says what is wrong.
    """
    if not ends or unit not in UNIT_EXPONENTS or set(map(type, values)) != {int} or set(map(type, ends)) != {str}:
        return None
    scale = 10 ** UNIT_EXPONENTS[unit]
    whs = cast("list[int]", list(values) if scale == 1 else [v * scale for v in values])  # every value an int
    if max(whs) > MAX_WH or min(whs) < -MAX_WH:
        return None
    try:
        end_at = list(map(datetime.fromisoformat, cast("Sequence[str]", ends)))  # every end a str
        # A start that is not text (None) raises TypeError: the per-read path says it is missing.
        start_at: list[datetime | None] = (
            list(map(datetime.fromisoformat, cast("Sequence[str]", starts)))
            if read_type == "History"
            else [None] * len(ends)
        )
    except (TypeError, ValueError):  # not text, or not a timestamp
        return None
    if set(map(_TZINFO, end_at)) != {UTC} or (read_type == "History" and set(map(_TZINFO, start_at)) != {UTC}):
        return None
    return Reads(list(range(len(ends))), start_at, end_at, whs)


_TZINFO = attrgetter("tzinfo")


def fingerprint(read_type: str, reads: Reads) -> bytes:
    """Identifies the content of a batch: an identical resubmission has the same fingerprint.

    (start or -1, end, Wh) per read, instants as microseconds since the epoch, packed as
    integers (much cheaper than text); the columns are filled a whole batch at a time.
    """
    numbers = array("q", [-1]) * (3 * len(reads))
    if reads:
        numbers[1::3] = array("q", reads.ends_us)
        numbers[2::3] = array("q", reads.values_wh)
        if read_type in ("History", CHARGING_SESSIONS):
            starts = reads.starts_us
            if starts is None:
                starts = [-1 if start is None else micros(start) for start in reads.starts]
            numbers[0::3] = array("q", starts)
    return hashlib.sha256(read_type.encode() + numbers.tobytes()).digest()


_MICROSECOND = timedelta(microseconds=1)


# -- yield and plausibility -------------------------------------------------------


def annual_yield(
    device_yield: float | None,
    country_code: str | None,
    country_yields: Mapping[str, float],
    configured_yield: float | None = None,
) -> float:
    """kWh per kWp per year, the first that is set (> 0) of: the device's own (device.registered's
    yield_value), the country's Active configured yield (`/api/yield/config`, `configured_yield`), the
    country's in the COUNTRY_YIELDS setting (`country_yields`), the default 2000."""
    if device_yield and device_yield > 0:
        return device_yield
    if configured_yield and configured_yield > 0:
        return configured_yield
    if country_code and country_yields.get(country_code, 0) > 0:
        return country_yields[country_code]
    return DEFAULT_ANNUAL_YIELD


# -- yield configuration (/api/yield/config) ---------------------------------------

YieldStatus = Literal["Y", "N"]  # D-REC's YieldStatus: Y (Active: used by the rules), N (kept, not used)
MAX_CONFIGURED_YIELD = 3000.0  # kWh per kWp per year: above the sunniest sites' ~2,500 (a sane bound)
MAX_COUNTRY_NAME = 200


def normalize_country_code(code: str) -> str:
    """An ISO 3166 alpha-3 country code (alpha-2 taken too, any case) -> alpha-3, as devices store it."""
    text = code.strip().upper()
    alpha3 = countries.ALPHA3_OF.get(text) if len(text) == 2 else text
    if alpha3 not in countries.NAMES:
        raise ValueError(
            f"countryCode {code!r} is not an ISO 3166 country code: use alpha-3 (e.g. IND, GBR, CAN, DEU) "
            "or alpha-2; GET /api/countrycode/list lists them"
        )
    return alpha3


def normalize_country_name(name: str) -> str:
    text = " ".join(name.split())
    if not text:
        raise ValueError("countryName must not be blank")
    return text


def whole_years_between(earlier: datetime, later: datetime) -> int:
    years = later.year - earlier.year
    if (later.month, later.day, later.time()) < (earlier.month, earlier.day, earlier.time()):
        years -= 1
    return years


def years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February in a year without one
        return moment.replace(year=moment.year - years, day=28)


def plausibility_bound_wh(device: Device, start: datetime, end: datetime) -> float:
    """The most energy a device can plausibly produce between start and end.

    1.2 × capacity (kW) × 1000 × hours × (yield / 8760) × 0.995^(age − 1), age in whole years
    since commissioning at the interval's start, at least 1.
    """
    hours = (end - start).total_seconds() / 3600
    age = max(1, whole_years_between(device.commissioning_date, start))
    return (
        PLAUSIBILITY_MARGIN
        * device.capacity_kw
        * 1000
        * hours
        * (device.annual_yield / HOURS_PER_YEAR)
        * YEARLY_DEGRADATION ** (age - 1)
    )


class PlausibilityBounds:
    """plausibility_bound_wh for many intervals of one device, to the last bit the same float.

    The constant factors are multiplied once, in the same order. The age (whole years since
    commissioning at the interval's start) is constant between anniversaries: in calendar year
    Y it is Y − commissioning year, less one before the anniversary in Y (wall time in the
    start's zone, as whole_years_between compares).
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.capacity_factor = PLAUSIBILITY_MARGIN * device.capacity_kw * 1000
        self.yield_factor = device.annual_yield / HOURS_PER_YEAR
        self._years: dict[tuple[int, tzinfo | None], tuple[datetime, float, float]] = {}

    def _year(self, year: int, zone: tzinfo | None) -> tuple[datetime, float, float]:
        """(anniversary in `year`, degradation before it, from it)."""
        found = self._years.get((year, zone))
        if found is None:
            c = self.device.commissioning_date
            try:
                anniversary = datetime(year, c.month, c.day, c.hour, c.minute, c.second, c.microsecond, tzinfo=zone)
            except ValueError:  # 29 February in a year without one: the year is complete from 1 March
                anniversary = datetime(year, 3, 1, tzinfo=zone)
            years = year - c.year
            factors = (YEARLY_DEGRADATION ** (max(1, years - 1) - 1), YEARLY_DEGRADATION ** (max(1, years) - 1))
            self._years[(year, zone)] = found = (anniversary, *factors)
        return found

    def of(self, span: timedelta, degradation: float) -> float:
        return self.of_us(span // _MICROSECOND, degradation)

    def of_us(self, span_us: int, degradation: float) -> float:
        # span_us / 1_000_000 is what timedelta.total_seconds() computes: the same float.
        return self.capacity_factor * (span_us / 1_000_000 / 3600) * self.yield_factor * degradation

    def bound(self, start: datetime, end: datetime) -> float:
        anniversary, before, after = self._year(start.year, start.tzinfo)
        # Datetimes of one zone compare by wall time.
        return self.of(end - start, before if start < anniversary else after)

    def all_below(self, starts_us: list[int], ends_us: list[int], whs: list[int]) -> bool:
        """Whether every wh is below the bound of its interval; instants as µs since the Unix epoch,
        `starts_us` ascending, ages counted in UTC.

        Whole runs at a time: the starts are cut where the age changes, and within a run the
        bound depends only on the interval's length, mostly the same for a whole batch.
        """
        spans = list(map(sub, ends_us, starts_us))
        cuts: list[tuple[int, float]] = []  # (first index, degradation from there)
        for year in range(_utc(starts_us[0]).year, _utc(starts_us[-1]).year + 1):
            anniversary, before, after = self._year(year, UTC)
            cuts.append((bisect_left(starts_us, micros(datetime(year, 1, 1, tzinfo=UTC))), before))
            cuts.append((bisect_left(starts_us, micros(anniversary)), after))
        for (first, degradation), (last, _) in zip(cuts, [*cuts[1:], (len(starts_us), 0.0)], strict=False):
            if first >= last:
                continue
            run_spans, run_whs = spans[first:last], whs[first:last]
            limits = {span: self.of_us(span, degradation) for span in set(run_spans)}
            if len(limits) == 1:
                if max(run_whs) >= limits[run_spans[0]]:
                    return False
            elif not all(map(lt, run_whs, map(limits.__getitem__, run_spans))):
                return False
        return True


def _utc(us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=us)


# -- rules: each returns why it refuses, or None -------------------------------------


def rule_value_positive(wh: int) -> str | None:
    return None if wh > 0 else f"value must be greater than 0 (got {wh} Wh)"


def rule_meter_total_not_negative(wh: int) -> str | None:
    return None if wh >= 0 else f"a meter total cannot be negative (got {wh} Wh)"


def rule_start_given(start: datetime | None) -> str | None:
    return None if start is not None else "starttimestamp is required for History reads"


def rule_start_before_end(start: datetime, end: datetime) -> str | None:
    return None if start < end else f"starttimestamp {iso_exact(start)} must be before endtimestamp {iso_exact(end)}"


def rule_not_before_commissioning(moment: datetime, device: Device, what: str = "timestamp") -> str | None:
    if moment < device.commissioning_date:
        return f"{what} {iso_exact(moment)} is before the device's commissioning date {iso_exact(device.commissioning_date)}"
    return None


def rule_history_before_onboarding(start: datetime, end: datetime, device: Device) -> str | None:
    """History covers the time before onboarding, back at most 3 years."""
    if end > device.onboarded_at:
        return f"History reads must end by the device's onboarding date {iso_exact(device.onboarded_at)} (endtimestamp {iso_exact(end)})"
    earliest = years_before(device.onboarded_at, HISTORY_MAX_YEARS_BEFORE_ONBOARDING)
    if start < earliest:
        return (
            f"History reads may start at most {HISTORY_MAX_YEARS_BEFORE_ONBOARDING} years before onboarding, "
            f"not before {iso_exact(earliest)} (starttimestamp {iso_exact(start)})"
        )
    return None


def rule_end_after_onboarding(end: datetime, device: Device) -> str | None:
    if end <= device.onboarded_at:
        return f"endtimestamp {iso_exact(end)} must be after the device's onboarding date {iso_exact(device.onboarded_at)}; earlier energy is a History read"
    return None


def rule_not_in_future(end: datetime, now: datetime) -> str | None:
    return None if end <= now else f"endtimestamp {iso_exact(end)} is in the future (now {iso_exact(now)})"


def rule_end_increasing(end: datetime, previous_end: datetime | None) -> str | None:
    if previous_end is not None and end <= previous_end:
        return f"endtimestamp {iso_exact(end)} must be after the previous read's end {iso_exact(previous_end)}"
    return None


def rule_total_increasing(total: int, previous_total: int) -> str | None:
    if total <= previous_total:
        return f"meter total {total} Wh must be greater than the previous total {previous_total} Wh"
    return None


def rule_ongoing_type(current: str | None, requested: str) -> str | None:
    """A device's ongoing read type is fixed by its first Delta or Aggregate read."""
    if requested in ONGOING_TYPES and current is not None and current != requested:
        return f"this device reports {current} reads; {requested} reads are refused (the type is fixed by the first ongoing read)"
    return None


def rule_device_takes_reads(device: str, deleted_at: datetime | None) -> str | None:
    """A deleted device takes no new reads (its stored ones stay); `device` names it in the reason.

    (The deletion time is server-stamped: milliseconds, `iso`; read instants are written with `iso_exact`.)"""
    if deleted_at is None:
        return None
    return f"device {device} was deleted on {iso(deleted_at)}: it takes no new reads"


def rule_submission_names_device(device_id: int, known: tuple[str, int], submitted: tuple[str, int]) -> str | None:
    """A submission names the device by id, and must agree on its (external id, organization)."""
    if known == submitted:
        return None
    return f"device {device_id} is {known[0]!r} of organization {known[1]}, not {submitted[0]!r} of {submitted[1]}"


def rule_plausible(device: Device, start: datetime, end: datetime, wh: int) -> str | None:
    bound = plausibility_bound_wh(device, start, end)
    if wh < bound:
        return None
    hours = (end - start).total_seconds() / 3600
    return (
        f"{wh} Wh between {iso_exact(start)} and {iso_exact(end)} ({hours:.2f} h) is not plausible for a "
        f"{device.capacity_kw:g} kW device: it must be below {math.floor(bound)} Wh "
        f"(1.2 × capacity × hours × {device.annual_yield:g}/8760 × 0.995^(age−1))"
    )


def charger_bound_wh(device: Device, start: datetime, end: datetime) -> float:
    """The most energy a charger can deliver between start and end: rated power (capacity, kW) × hours × 1.05."""
    return device.capacity_kw * 1000 * ((end - start).total_seconds() / 3600) * CHARGER_POWER_TOLERANCE


def rule_charger_plausible(device: Device, start: datetime, end: datetime, wh: int) -> str | None:
    """A charging session delivers at most the charger's rated power for its duration (with the tolerance): a
    session at full power is accepted, more is refused. Not the solar yield rule: a charger runs at full power
    for as long as a car draws it, day or night."""
    bound = charger_bound_wh(device, start, end)
    if wh <= bound:
        return None
    seconds = (end - start).total_seconds()
    return (
        f"{wh} Wh between {iso_exact(start)} and {iso_exact(end)} ({seconds:g} s) is more than a "
        f"{device.capacity_kw:g} kW charger can deliver: at most {math.floor(bound)} Wh "
        f"(capacity × hours × {CHARGER_POWER_TOLERANCE:g})"
    )


def rule_start_not_before_onboarding(start: datetime, device: Device) -> str | None:
    if start < device.onboarded_at:
        return (
            f"starttimestamp {iso_exact(start)} is before the device's onboarding date "
            f"{iso_exact(device.onboarded_at)}; earlier energy is a History read"
        )
    return None


def rule_no_overlap(
    start: datetime, end: datetime, other_start: datetime, other_end: datetime, what: str
) -> str | None:
    if start < other_end and other_start < end:
        return f"overlaps {what} {iso_exact(other_start)} – {iso_exact(other_end)}"
    return None


# -- batches ------------------------------------------------------------------------


def _refuse_overlaps(
    candidates: list[Read],
    known_intervals: Iterable[tuple[datetime, datetime]],
    reasons_by_index: dict[int, list[str]],
    known_label: str,
    batch_label: str,
) -> None:
    """Add to each candidate's reasons its overlap with a known interval (`known_label`) and with an earlier
    candidate of its batch (`batch_label` and its index): one sorted pass, a bisection each."""
    known = sorted(known_intervals)
    known_ends = [end for _, end in known]
    latest: Read | None = None
    for r in sorted(candidates, key=lambda c: (c.start, c.end)):
        assert r.start is not None
        i = bisect_right(known_ends, r.start)  # the first known interval ending after r starts
        if i < len(known):
            clash = rule_no_overlap(r.start, r.end, known[i][0], known[i][1], known_label)
            if clash:
                reasons_by_index[r.index].append(clash)
        if latest is not None:
            assert latest.start is not None
            clash = rule_no_overlap(
                r.start, r.end, latest.start, latest.end, f"{batch_label} {latest.index} of this batch"
            )
            if clash:
                reasons_by_index[r.index].append(clash)
        if latest is None or r.end > latest.end:
            latest = r


def validate_batch(
    read_type: ReadType,
    device: Device,
    last: LastRead,
    reads: Reads,
    *,
    now: datetime,
    history: Sequence[tuple[datetime, datetime]] = (),
) -> Verdict:
    """Judge a whole batch; `history` holds the device's stored intervals (any read type) near the batch."""
    type_error = rule_ongoing_type(last.ongoing_type, read_type)
    if type_error:
        return Verdict(errors=[ReadError(None, type_error)], last=last)
    if read_type == "History":
        return validate_history(device, last, reads, history)
    if read_type == "Delta":
        return validate_delta(device, last, reads, now=now)
    return validate_aggregate(device, last, reads, now=now)


def validate_history(
    device: Device, last: LastRead, reads: Reads, history: Sequence[tuple[datetime, datetime]]
) -> Verdict:
    all_accepted = _history_all_accepted(device, last, reads, history)
    if all_accepted is not None:
        return all_accepted
    verdict = Verdict(last=last)
    reasons_by_index: dict[int, list[str]] = {}
    candidates: list[Read] = []
    for r in reads:
        reasons: list[str] = []
        if r.start is None:
            reasons += _present(rule_start_given(r.start))
        elif order := rule_start_before_end(r.start, r.end):
            reasons.append(order)
        else:
            reasons += _present(
                rule_not_before_commissioning(r.start, device, "starttimestamp"),
                rule_history_before_onboarding(r.start, r.end, device),
                rule_value_positive(r.value_wh) or rule_plausible(device, r.start, r.end, r.value_wh),
            )
            candidates.append(r)
        if r.start is None or r.start >= r.end:
            reasons += _present(rule_value_positive(r.value_wh))
        reasons_by_index[r.index] = reasons

    # Overlaps: with accepted History reads, and between reads of this batch.
    _refuse_overlaps(candidates, history, reasons_by_index, "an accepted read", "read")

    accepted: list[Interval] = []
    for r in reads:
        if reasons := reasons_by_index[r.index]:
            verdict.errors.append(ReadError(r.index, "; ".join(reasons)))
        elif r.start is not None:
            accepted.append(Interval(r.start, r.end, r.value_wh))
    if not verdict.errors:
        verdict.intervals = Intervals.of(accepted)
    return verdict


def _history_all_accepted(
    device: Device, last: LastRead, reads: Reads, history: Sequence[tuple[datetime, datetime]]
) -> Verdict | None:
    """The verdict on a History batch whose every read passes every rule, found a whole batch at a time; None otherwise.

    Taken when the reads come in time order, none overlapping the next (how a backfill is sent);
    any other order is left to the per-read rules. The conditions of validate_history on the
    instants as integers: each start before its end, not before commissioning nor more than 3 years
    before onboarding, each end by onboarding; values positive and plausible (ages counted in UTC:
    every start must be in UTC); no overlap with the stored reads in `history`.
    """
    starts_us = reads.starts_us
    if not reads or starts_us is None:
        return None
    ends_us, whs = reads.ends_us, reads.values_wh
    earliest = max(device.commissioning_date, years_before(device.onboarded_at, HISTORY_MAX_YEARS_BEFORE_ONBOARDING))
    if not (
        all(map(lt, starts_us, ends_us))
        and all(map(le, ends_us, starts_us[1:]))
        and starts_us[0] >= micros(earliest)
        and ends_us[-1] <= micros(device.onboarded_at)
        and min(whs) > 0
        and set(map(_TZINFO, reads.starts)) == {UTC}
        and PlausibilityBounds(device).all_below(starts_us, ends_us, whs)
        and not _overlaps_any(starts_us, ends_us, history)
    ):
        return None
    starts = cast("list[datetime]", reads.starts)  # every History read has its start (starts_us is not None)
    return Verdict(intervals=Intervals(starts, reads.ends, whs, starts_us, ends_us), last=last)


def _overlaps_any(starts_us: list[int], ends_us: list[int], others: Sequence[tuple[datetime, datetime]]) -> bool:
    """Whether any of the intervals (in time order, none overlapping the next) overlaps any of `others`."""
    for other_start, other_end in others:
        i = bisect_right(ends_us, micros(other_start))  # the first interval ending after the other starts
        if i < len(ends_us) and starts_us[i] < micros(other_end):
            return True
    return False


def _present(*reasons: str | None) -> list[str]:
    return [reason for reason in reasons if reason]


def _end_reasons(r: Read, device: Device, previous_end: datetime | None, now: datetime) -> list[str]:
    end = r.end
    # The common case (an end after the previous one, after onboarding, not in the future) in
    # three comparisons; otherwise the rules say what is wrong.
    if (
        previous_end is not None
        and previous_end < end <= now
        and end > device.onboarded_at
        and end >= device.commissioning_date
    ):
        return []
    return _present(
        rule_end_after_onboarding(end, device),
        rule_not_before_commissioning(end, device, "endtimestamp"),
        rule_not_in_future(end, now),
        rule_end_increasing(end, previous_end),
    )


def validate_delta(device: Device, last: LastRead, reads: Reads, *, now: datetime) -> Verdict:
    all_accepted = _delta_all_accepted(device, last, reads, now)
    if all_accepted is not None:
        return all_accepted
    verdict = Verdict()
    previous_end = last.end  # None: the first Delta read of the device, which counts from onboarding
    last_wh = last.value_wh
    bounds = PlausibilityBounds(device)
    onboarded, commissioned = device.onboarded_at, device.commissioning_date
    accepted: list[Interval] = []
    accept = accepted.append
    for r in reads:
        end, wh = r.end, r.value_wh
        # The common case, every rule passing, in a few comparisons (_end_reasons' fast test, value
        # positive, below the plausibility bound); otherwise the rules below say what is wrong.
        if (
            previous_end is not None
            and previous_end < end <= now
            and end > onboarded
            and end >= commissioned
            and wh > 0
            and wh < bounds.bound(previous_end, end)
        ):
            accept(_new(Interval, (previous_end, end, wh)))
            previous_end, last_wh = end, wh
            continue
        end_reasons = _end_reasons(r, device, previous_end, now)
        reasons = list(end_reasons)
        start = previous_end or device.onboarded_at
        positive = rule_value_positive(r.value_wh)
        if positive:
            reasons.append(positive)
        elif not reasons:
            plausible = rule_plausible(device, start, r.end, r.value_wh)
            if plausible:
                reasons.append(plausible)
        if reasons:
            verdict.errors.append(ReadError(r.index, "; ".join(reasons)))
        else:
            accept(Interval(start, r.end, r.value_wh))
            last_wh = r.value_wh
        if not end_reasons:
            previous_end = r.end  # later reads are judged from this end, even if this value was bad
    verdict.last = LastRead("Delta", previous_end, last_wh, None)
    if verdict.errors:
        verdict.last = last
    else:
        verdict.intervals = Intervals.of(accepted)
    return verdict


def _consecutive_all_accepted(
    device: Device, first_start: datetime, ends: list[datetime], ends_us: list[int], whs: list[int], now: datetime
) -> Intervals | None:
    """The intervals first_start–ends[0], ends[0]–ends[1], … carrying `whs`, if every one passes the
    rules of an ongoing read; None otherwise (the per-read rules then say what is wrong).

    The conditions of the per-read loops, a whole batch at a time on the instants as integers: each
    end after the one before (the first after `first_start`), after onboarding, not before
    commissioning, not in the future; energy positive and plausible. Ages for plausibility are
    counted in UTC, so every instant must be in UTC (as parsed) for the answer to be the per-read one.
    """
    if not ends:
        return Intervals.of(())
    starts_us = [micros(first_start), *ends_us[:-1]]
    if not (
        starts_us[0] < ends_us[0]
        and ends[0] > device.onboarded_at
        and ends[0] >= device.commissioning_date
        and ends[-1] <= now
        and all(map(lt, ends_us, ends_us[1:]))
        and min(whs) > 0
        and first_start.tzinfo is UTC
        and set(map(_TZINFO, ends)) == {UTC}
        and PlausibilityBounds(device).all_below(starts_us, ends_us, whs)
    ):
        return None
    return Intervals([first_start, *ends[:-1]], ends, whs, starts_us, ends_us)


def _delta_all_accepted(device: Device, last: LastRead, reads: Reads, now: datetime) -> Verdict | None:
    """The verdict on a Delta batch whose every read passes every rule, found a whole batch at a time; None otherwise."""
    if not reads:
        return None
    intervals = _consecutive_all_accepted(
        device, last.end or device.onboarded_at, reads.ends, reads.ends_us, reads.values_wh, now
    )
    if intervals is None:
        return None
    return Verdict(intervals=intervals, last=LastRead("Delta", reads.ends[-1], reads.values_wh[-1], None))


def _aggregate_all_accepted(device: Device, last: LastRead, reads: Reads, now: datetime) -> Verdict | None:
    """The verdict on an Aggregate batch whose every read passes every rule, found a whole batch at a time; None otherwise.

    Energies are the differences of consecutive totals (positive when the totals increase); a
    device's first total is the baseline, which must pass the end rules and not be negative.
    """
    if not reads:
        return None
    ends, ends_us, totals = reads.ends, reads.ends_us, reads.values_wh
    if last.meter_total_wh is None:
        first = ends[0]
        if not (
            (last.end is None or first > last.end)
            and first > device.onboarded_at
            and first >= device.commissioning_date
            and first <= now
            and totals[0] >= 0
        ):
            return None
        first_start, base_total = first, totals[0]
        ends, ends_us, totals = ends[1:], ends_us[1:], totals[1:]
    elif last.end is None or last.meter_total_wh < 0:
        return None
    else:
        first_start, base_total = last.end, last.meter_total_wh
    energies = list(map(sub, totals, [base_total, *totals[:-1]]))
    intervals = _consecutive_all_accepted(device, first_start, ends, ends_us, energies, now)
    if intervals is None:
        return None
    last_wh = energies[-1] if energies else 0  # a baseline alone carries no energy
    return Verdict(intervals=intervals, last=LastRead("Aggregate", reads.ends[-1], last_wh, reads.values_wh[-1]))


def validate_aggregate(device: Device, last: LastRead, reads: Reads, *, now: datetime) -> Verdict:
    all_accepted = _aggregate_all_accepted(device, last, reads, now)
    if all_accepted is not None:
        return all_accepted
    verdict = Verdict()
    previous_end, previous_total = last.end, last.meter_total_wh
    last_wh = last.value_wh
    bounds = PlausibilityBounds(device)
    onboarded, commissioned = device.onboarded_at, device.commissioning_date
    accepted: list[Interval] = []
    accept = accepted.append
    for r in reads:
        end, total = r.end, r.value_wh
        # The common case (as in validate_delta): a later end, a greater total, plausible energy.
        if (
            previous_end is not None
            and previous_end < end <= now
            and end > onboarded
            and end >= commissioned
            and previous_total is not None
            and total > previous_total
            and previous_total >= 0
            and total - previous_total < bounds.bound(previous_end, end)
        ):
            last_wh = total - previous_total
            accept(_new(Interval, (previous_end, end, last_wh)))
            previous_end, previous_total = end, total
            continue
        end_reasons = _end_reasons(r, device, previous_end, now)
        reasons = list(end_reasons)
        total_ok = False
        negative = rule_meter_total_not_negative(r.value_wh)
        if negative:
            reasons.append(negative)
        elif previous_total is None:
            total_ok = True  # the first total is the baseline: it carries no energy
        else:
            increasing = rule_total_increasing(r.value_wh, previous_total)
            if increasing:
                reasons.append(increasing)
            else:
                total_ok = True
                if not reasons:
                    assert previous_end is not None
                    plausible = rule_plausible(device, previous_end, r.end, r.value_wh - previous_total)
                    if plausible:
                        reasons.append(plausible)
        if reasons:
            verdict.errors.append(ReadError(r.index, "; ".join(reasons)))
        elif previous_total is None:
            last_wh = 0
        else:
            assert previous_end is not None
            last_wh = r.value_wh - previous_total
            accept(Interval(previous_end, r.end, last_wh))
        if total_ok and not end_reasons:
            # Later reads are judged from this one, even if its energy was implausible.
            previous_end, previous_total = r.end, r.value_wh
    verdict.last = LastRead("Aggregate", previous_end, last_wh, previous_total)
    if verdict.errors:
        verdict.last = last
    else:
        verdict.intervals = Intervals.of(accepted)
    return verdict


def validate_charging_sessions(
    device: Device, last: LastRead, reads: Reads, *, now: datetime, stored: Sequence[tuple[datetime, datetime]]
) -> Verdict:
    """Charging sessions: interval reads, each its energy over exactly [start, end], whatever the gap since the
    previous read (a session at 10:00-11:00 after an idle night is energy of 10:00-11:00, not of the night).

    Each needs its start, start before end, start not before onboarding or commissioning, end not in the
    future, energy > 0 and within what the charger can deliver (`rule_charger_plausible`), and no overlap with
    a stored interval of the device (`stored`: those near the batch, any read type) or another session of the
    batch. Sessions may come in any order (a late one fills its place). They are announced as Delta reads; the
    device's last read moves to the latest end, so a later Delta read counts from there and cannot overlap.
    """
    type_error = rule_ongoing_type(last.ongoing_type, "Delta")
    if type_error:
        return Verdict(errors=[ReadError(None, type_error)], last=last)
    verdict = Verdict(last=last)
    reasons_by_index: dict[int, list[str]] = {}
    candidates: list[Read] = []
    for r in reads:
        reasons: list[str] = []
        if r.start is None:
            reasons.append("starttimestamp is required for a charging session (its interval is [start, end])")
        elif order := rule_start_before_end(r.start, r.end):
            reasons.append(order)
        else:
            reasons += _present(
                rule_start_not_before_onboarding(r.start, device),
                rule_not_before_commissioning(r.start, device, "starttimestamp"),
                rule_not_in_future(r.end, now),
                rule_value_positive(r.value_wh) or rule_charger_plausible(device, r.start, r.end, r.value_wh),
            )
            candidates.append(r)
        if r.start is None or r.start >= r.end:
            reasons += _present(rule_value_positive(r.value_wh))
        reasons_by_index[r.index] = reasons

    _refuse_overlaps(candidates, stored, reasons_by_index, "a stored read of this device", "session")

    accepted: list[Interval] = []
    for r in reads:
        if reasons := reasons_by_index[r.index]:
            verdict.errors.append(ReadError(r.index, "; ".join(reasons)))
        elif r.start is not None:
            accepted.append(Interval(r.start, r.end, r.value_wh))
    if verdict.errors:
        return verdict
    accepted.sort(key=attrgetter("end"))
    verdict.intervals = Intervals.of(accepted)
    newest = accepted[-1]
    if last.end is None or newest.end > last.end:
        verdict.last = LastRead("Delta", newest.end, newest.wh, None)
    else:  # every session fills a gap before the last read: the last read stays, its type fixed as Delta
        verdict.last = LastRead("Delta", last.end, last.value_wh, None)
    return verdict


# -- calendar sums (the reference's accumulationType) -------------------------------------

AccumulationType = Literal["Monthly", "Yearly"]
MIN_YEAR, MAX_YEAR = 1970, 2200


@dataclass(frozen=True)
class CalendarPeriod:
    """A calendar month or year in local time (naive: the device's zone applies), split into days or months."""

    parts: Literal["day", "month"]
    first: datetime  # the period's first local instant
    after: datetime  # the first local instant after it


def accumulation_problem(accumulation: str | None, month: int | None, year: int | None) -> tuple[str, str] | None:
    """Why these accumulationType / Month / Year query values cannot be answered: (parameter, reason), or None."""
    if month is not None and year is None:
        return "Year", "Year is required when month is given"
    if accumulation == "Monthly" and month is None:
        return "Month", "accumulationType=Monthly needs Month and Year"
    if accumulation == "Yearly" and year is None:
        return "Year", "accumulationType=Yearly needs Year"
    if accumulation == "Yearly" and month is not None:
        return "Month", "accumulationType=Yearly takes Year only: Month goes with accumulationType=Monthly"
    return None


def calendar_period(accumulation: AccumulationType, year: int, month: int | None) -> CalendarPeriod:
    """Monthly: the days of `month` of `year`; Yearly: the months of `year` (after accumulation_problem passed)."""
    if accumulation == "Monthly":
        if month is None:
            raise ValueError("accumulationType=Monthly needs Month")
        return CalendarPeriod("day", datetime(year, month, 1), datetime(year + month // 12, month % 12 + 1, 1))
    return CalendarPeriod("month", datetime(year, 1, 1), datetime(year + 1, 1, 1))


# -- announcement ----------------------------------------------------------------


def ingested_events(
    device: Mapping[str, Any], read_type: str, batch_id: uuid.UUID, intervals: Intervals, max_reads: int
) -> list[ReadIngested]:
    """read.ingested for a batch: one event, or several with the same batch_id when it is too big for one message.

    A batch without energy (an Aggregate baseline alone) announces nothing.
    """
    events: list[ReadIngested] = []
    for first in range(0, len(intervals), max_reads):
        part = intervals.part(first, first + max_reads)
        # Not validated again: every value comes from reads this service has just checked
        # (aware UTC instants, start < end, Wh >= 0); a test holds this to the contract's validation.
        events.append(
            ReadIngested.model_construct(
                batch_id=batch_id,
                device_id=device["device_id"],
                external_id=device["external_id"],
                organization_id=device["organization_id"],
                read_type=read_type,
                **ReadIngested.columns_us(part.starts_us, part.ends_us, part.whs),
            )
        )
    return events
