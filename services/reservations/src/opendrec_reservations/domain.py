"""Reservation rules, without I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

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
    reserved: list[Window] = field(default_factory=list)  # windows of the device's active reservations


@dataclass
class Selection:
    accepted: list[int]
    refused: dict[int, str]  # device id -> why


def select_devices(
    requested: list[int], known: dict[int, DeviceState], window: Window
) -> Selection:
    """Which requested devices can join a reservation over `window`, and why the others can't."""
    accepted: list[int] = []
    refused: dict[int, str] = {}
    for device_id in dict.fromkeys(requested):  # keep order, drop repeats
        device = known.get(device_id)
        if device is None:
            refused[device_id] = "unknown device"
        elif any(window.overlaps(w) for w in device.reserved):
            refused[device_id] = "already reserved in an overlapping window"
        else:
            accepted.append(device_id)
    return Selection(accepted, refused)


def target_wh(target_mwh: Decimal | None) -> int | None:
    """Target capacity in whole Wh (exact: MWh given as a decimal)."""
    if target_mwh is None:
        return None
    return int(target_mwh * WH_PER_MWH)
