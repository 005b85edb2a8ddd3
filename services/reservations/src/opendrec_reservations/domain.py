"""Reservation rules, without I/O."""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from opendrec_kit.periods import next_period_start, period_start
from opendrec_kit.timestamps import iso_exact

WH_PER_MWH = 1_000_000
HOUR = timedelta(hours=1)
# How far back a reservation may reach: D-REC's 3 × 3.164e10 ms (3 years of ~366 days). Reserving past output is
# how History energy gets certified.
MAX_PAST = 3 * timedelta(milliseconds=3.164e10)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class DeviceState:
    device_id: int
    organization_id: int
    reserved: list[Window] = field(
        default_factory=list
    )  # windows of the device's reservations, up to their effective end
    deleted: bool = False  # deleted in the devices service (device.deleted)
    capacity_kw: float = 0.0


@dataclass
class Selection:
    accepted: list[int]
    refused: dict[int, str]  # device id -> why


def select_devices(requested: list[int], known: dict[int, DeviceState], window: Window) -> Selection:
    """Which requested devices can join a reservation over `window`, and why the others can't."""
    accepted: list[int] = []
    refused: dict[int, str] = {}
    for device_id in dict.fromkeys(requested):  # keep order, drop repeats
        device = known.get(device_id)
        if device is None:
            refused[device_id] = "unknown device"
        elif device.deleted:
            refused[device_id] = "device deleted"
        elif any(window.overlaps(w) for w in device.reserved):
            refused[device_id] = "already reserved in an overlapping window"
        else:
            accepted.append(device_id)
    return Selection(accepted, refused)


@dataclass(frozen=True)
class Bounds:
    """Settings the window rules read: how far ahead a reservation may end, and how long after its end it
    stays certifiable when its buyer names no expiry (D-REC's certificate_setting.no_of_days)."""

    max_future: timedelta
    expiry_after_end: timedelta


Problem = tuple[str, str]  # (field, message)


def refuse_dates(
    start: datetime, end: datetime, expiry: datetime | None, now: datetime, bounds: Bounds
) -> list[Problem]:
    """What is wrong with a new reservation's dates (end after start is the body's own rule): start and end
    may lie up to 3 years back (MAX_PAST); then as refuse_ahead."""
    problems: list[Problem] = []
    oldest = now - MAX_PAST
    for name, moment in (("reservationStartDate", start), ("reservationEndDate", end)):
        if moment <= oldest:
            problems.append(
                (
                    name,
                    f"{name} {iso_exact(moment)} is more than 3 years ago (before {iso_exact(oldest)}): "
                    "start date or end date cannot be less than 3 year from current date",
                )
            )
    return problems + refuse_ahead(end, expiry, now, bounds)


def refuse_ahead(end: datetime, expiry: datetime | None, now: datetime, bounds: Bounds) -> list[Problem]:
    """The end at most `bounds.max_future` ahead; an expiry the buyer names not before the end, nor further
    ahead than an end may be."""
    problems: list[Problem] = []
    latest = now + bounds.max_future
    if end > latest:
        problems.append(
            (
                "reservationEndDate",
                f"reservationEndDate {iso_exact(end)} is too far ahead: a reservation ends "
                f"within {bounds.max_future.days} days from now (by {iso_exact(latest)})",
            )
        )
    if expiry is not None:
        if expiry < end:
            problems.append(
                (
                    "reservationExpiryDate",
                    f"reservationExpiryDate {iso_exact(expiry)} is before reservationEndDate "
                    f"{iso_exact(end)}: Expiry date cannot be less than from start and end date",
                )
            )
        elif expiry > latest:
            problems.append(
                (
                    "reservationExpiryDate",
                    f"reservationExpiryDate {iso_exact(expiry)} is too far ahead: "
                    f"within {bounds.max_future.days} days from now (by {iso_exact(latest)})",
                )
            )
    return problems


def expiry_of(end: datetime, named: datetime | None, bounds: Bounds) -> datetime:
    """The moment from which nothing is certified for a reservation: the one its buyer named, else its end
    plus the configured days."""
    return named if named is not None else end + bounds.expiry_after_end


TARGET_UNREACHABLE = (
    "Target Capacity Cannot be reached by selected devices within provided start date and end date, "
    "either add more devices or increase the end date duration"
)


def refuse_target(capacity_kw: float, window: Window, target_wh: int | None) -> dict[str, float] | None:
    """Why the devices (`capacity_kw` together) can't produce the target in the window, as D-REC details it
    (None: they can, or there is no target): capacity × hours < target."""
    if target_wh is None:
        return None
    hours = (window.end - window.start) / HOUR
    achievable_wh = capacity_kw * 1000 * hours
    if achievable_wh >= target_wh:
        return None
    return {
        "meteredTimePeriodInHours": hours,
        "targetCapacityInMegaWattHour": target_wh / WH_PER_MWH,
        "probablyAchievableCapacityInMegaWattHour": achievable_wh / WH_PER_MWH,
    }


def refuse_buyer(role: str, own_organization_id: int, own_organization_type: str, named: int | None) -> str | None:
    """Why this reservation can't be made for the organization named (None: acting_organization decides).
    An admin reserves for a Buyer organization it names, not for its own Admin organization."""
    if role != "Admin" or own_organization_type == "Buyer":
        return None
    if named is None:
        return "organizationId is required: an admin reserves for a Buyer organization it names (orgId or body organizationId)"
    if named == own_organization_id:
        return f"Organization {named} is your own {own_organization_type} organization; an admin reserves for a Buyer organization"
    return None


def target_wh(target_mwh: Decimal | None) -> int | None:
    """Target capacity in whole Wh (exact: MWh given as a decimal)."""
    if target_mwh is None:
        return None
    return int(target_mwh * WH_PER_MWH)


# -- the end of a reservation ---------------------------------------------------------------

END_REASONS = {
    "expired": "its end date passed",
    "ended_by_buyer": "ended by its buyer",
    "target_reached": "its target was certified",
    "deleted": "deleted before its window began",
}


def target_end(start: datetime, end: datetime, certified_until: datetime) -> datetime:
    """When a reservation whose target was certified ends: at the end of the period that reached it, within its
    window."""
    return min(max(certified_until, start), end)


@dataclass(frozen=True)
class State:
    state: str  # "active" | "ended"
    ended_at: datetime | None
    end_reason: str | None


def state_of(end: datetime, ended_at: datetime | None, end_reason: str | None, now: datetime) -> State:
    """What a reader should see: a reservation whose end date passed is ended even before the sweep records it."""
    if ended_at is not None:
        return State("ended", ended_at, end_reason)
    if end <= now:
        return State("ended", end, "expired")
    return State("active", None, None)


def refuse_end(
    reservation_id: int, end: datetime, ended_at: datetime | None, end_reason: str | None, now: datetime
) -> str | None:
    """Why the buyer cannot end this reservation now (None: it can): it ends only once."""
    state = state_of(end, ended_at, end_reason, now)
    if state.state == "active":
        return None
    assert state.ended_at is not None  # an ended state has its moment
    why = END_REASONS.get(state.end_reason or "", state.end_reason)
    return f"Reservation {reservation_id} already ended at {iso_exact(state.ended_at)} ({why})"


# -- changing a reservation -------------------------------------------------------------------------


def ongoing_period(start: datetime, end: datetime, frequency: str, now: datetime) -> Window:
    """The certification period under way within the window [start, end): the one `now` lies in (the first one
    before the window starts), cut to the window."""
    moment = max(now, start)
    begins = period_start(moment, frequency)
    return Window(max(begins, start), min(next_period_start(begins, frequency), end))


def refuse_new_end(start: datetime, new_end: datetime, frequency: str, now: datetime) -> tuple[int, str] | None:
    """Why a reservation's end can't move to `new_end` now (None: it can), with the status to answer: after
    its start, and never before the start of the current certification period (what came before may be
    certified already). How far ahead is refuse_dates' rule."""
    if new_end <= start:
        return 400, f"reservationEndDate {iso_exact(new_end)} must be after reservationStartDate {iso_exact(start)}"
    current = max(period_start(now, frequency), start)
    if new_end < current:
        return 409, (
            "Certificates are already generated or in progress for device group, cannot reduce below start "
            f"time:{iso_exact(current)} (reservationEndDate {iso_exact(new_end)})"
        )
    return None


# -- a group's attributes, from its devices ----------------------------------------------------------


def capacity_range(capacity_kw: float) -> str:
    """D-REC's CapacityRange of an aggregated capacity."""
    if capacity_kw <= 1:
        return "0.1W - 1kW"
    if round(capacity_kw) <= 50:
        return "1.01kW - 50kW"
    if round(capacity_kw) <= 500:
        return "51kW - 500kW"
    if round(capacity_kw / 1000) <= 5:
        return "500kW - 5MW"
    return "5MW+"


def commissioning_date_range(commissioned: datetime, now: datetime) -> str:
    """D-REC's CommissioningDateRange: the quarter within the first year (the current calendar year), then by
    year of age."""
    year = now.year - commissioned.year + 1
    if year <= 1:
        return f"Year 1 - Q{(commissioned.month - 1) // 3 + 1}"
    if year <= 5:
        return f"Year {year}"
    if year <= 10:
        return "6 - 10 years"
    if year <= 15:
        return "11 - 15 years"
    return "15 years+"


def group_attributes(
    country_codes: list[str],
    fuel_codes: list[str],
    device_type_codes: list[str],
    capacity_kw: float,
    commissioning_dates: list[datetime],
    now: datetime,
) -> dict[str, object]:
    """A device group's attributes as D-REC shows them, derived from its devices."""
    aggregated = math.floor(capacity_kw)
    return {
        "countryCode": sorted(country_codes),
        "fuelCode": sorted(fuel_codes),
        "deviceTypeCodes": sorted(device_type_codes),
        "offTakers": [],  # device.registered does not say a device's off-taker
        "aggregatedCapacity": aggregated,
        "capacityRange": capacity_range(aggregated),
        "commissioningDateRange": list(
            dict.fromkeys(commissioning_date_range(d, now) for d in sorted(commissioning_dates))
        ),
    }


# -- who may list ------------------------------------------------------------------------------


def same_api_user(own: str | None, named: uuid.UUID) -> bool:
    """Whether an API user's own id (a token claim, text) is the one named in a query."""
    try:
        return own is not None and uuid.UUID(own) == named
    except ValueError:
        return False


def may_see_reservation(
    is_admin: bool, caller_organizations: set[int], buyer_organization_id: int, device_organizations: list[int]
) -> bool:
    """Who may see one reservation's state through the owner's internal answer (read-your-writes): an admin, its
    buyer organization (an API user: any of its organizations), and the organizations owning its devices."""
    return (
        is_admin
        or buyer_organization_id in caller_organizations
        or any(o in caller_organizations for o in device_organizations)
    )


# -- listing filters (D-REC's UnreservedDeviceGroupsFilterDTO) ---------------------------------------------

MAX_FILTER_VALUES = 50
COUNTRY_CODE = re.compile(r"[A-Z]{3}")
FUEL_CODE = re.compile(r"[A-Z]{2}[0-9]{3}")
ACTIVITY = {"all": None, "active": True, "deactive": False}
# D-REC filters this service cannot answer: the device.registered it learns devices from does not carry them.
UNKNOWN_ATTRIBUTES = {"offTaker": "off-takers", "sdgbenefit": "SDG benefits"}


@dataclass(frozen=True)
class ListingFilter:
    """Which reservations a listing shows: every condition given holds (None / empty: no condition)."""

    name: str | None = None  # part of the name, any case
    countries: tuple[str, ...] = ()  # the group's country codes include them all
    fuel_codes: tuple[str, ...] = ()  # the group's fuel codes include them all
    start: datetime | None = None  # the window lies within [start, end]
    end: datetime | None = None
    active: bool | None = None  # True: active now; False: ended (or its end date passed)


def filter_values(values: list[str] | None, field_name: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    """A list filter given repeatedly (?x=a&x=b) and/or with commas (?x=a,b), upper-cased, each value of the
    code's form (ValueError naming the first bad one); at most MAX_FILTER_VALUES distinct values."""
    codes = [part.strip().upper() for value in values or [] for part in value.split(",") if part.strip()]
    for code in codes:
        if not pattern.fullmatch(code):
            raise ValueError(f"{field_name} {code!r} is not a code of the form {pattern.pattern}")
    unique = tuple(dict.fromkeys(codes))
    if len(unique) > MAX_FILTER_VALUES:
        raise ValueError(f"{field_name}: at most {MAX_FILTER_VALUES} values")
    return unique


def activity(value: str | None) -> bool | None:
    """D-REC's reservationActive filter (All, Active, Deactive; any case): None for all."""
    if value is None or not value.strip():
        return None
    wanted = value.strip().lower()
    if wanted not in ACTIVITY:
        raise ValueError(f"reservationActive {value!r} is not one of All, Active, Deactive")
    return ACTIVITY[wanted]


def refuse_filter_window(start: datetime | None, end: datetime | None) -> list[Problem]:
    """Both bounds of the date filter, or neither; the end after the start (D-REC's rules and wording)."""
    if start is None and end is None:
        return []
    if end is None:
        return [("end_date", "End Date should be mandatory: give end_date with start_date")]
    if start is None:
        return [("start_date", "Start Date should be mandatory: give start_date with end_date")]
    if end <= start:
        return [("end_date", "End date should be greater then from Start date")]
    return []


def refuse_unknown_attributes(given: dict[str, str | None]) -> list[Problem]:
    """Filters by attributes this service does not know of devices are refused rather than answered empty."""
    return [
        (
            name,
            f"{name} cannot filter reservations here: this service does not know devices' {what} "
            "(device.registered does not carry them; groups show offTakers [])",
        )
        for name, what in UNKNOWN_ATTRIBUTES.items()
        if given.get(name)
    ]


# -- deleting a reservation ------------------------------------------------------------------------------


def refuse_delete(reservation_id: int, start: datetime, ended_at: datetime | None, now: datetime) -> str | None:
    """Why a reservation can't be deleted (None: it can). Only one that nothing can have been certified against
    may vanish: its window has not begun yet, or it was ended before it began (it held nothing). Once its window
    began, energy of it may be certified already, and a registry keeps what it certified: it is ended instead."""
    if start > now or (ended_at is not None and ended_at <= start):
        return None
    refusal = (
        f"Reservation {reservation_id} began at {iso_exact(start)}: energy of its window may be certified against "
        "it already, and a registry keeps what it certified, so it cannot be deleted"
    )
    if ended_at is not None:
        return f"{refusal}; it ended at {iso_exact(ended_at)} and stays on record"
    return (
        f"{refusal}. End it instead (DELETE /api/buyer-reservation/endreservation/{reservation_id}): nothing "
        "generated after that is certified for it, and its devices are free again"
    )
