"""Reservation rules, without I/O."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from opendrec_kit.timestamps import iso_exact

WH_PER_MWH = 1_000_000
FREQUENCIES = ("hourly", "daily", "weekly", "monthly", "quarterly")


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


def refuse_window(window: Window, now: datetime) -> str | None:
    """Why a reservation can't be made over `window` now (None: it can). One ending in the past would be made
    and ended at once by the expiry sweep; a start in the past is fine (energy generated since then counts)."""
    if window.end <= now:
        return f"reservationEndDate {iso_exact(window.end)} is in the past: a reservation must end after now"
    return None


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

END_REASONS = {"expired": "its end date passed", "ended_by_buyer": "ended by its buyer"}


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


# -- who may list ------------------------------------------------------------------------------


def same_api_user(own: str | None, named: uuid.UUID) -> bool:
    """Whether an API user's own id (a token claim, text) is the one named in a query."""
    try:
        return own is not None and uuid.UUID(own) == named
    except ValueError:
        return False
