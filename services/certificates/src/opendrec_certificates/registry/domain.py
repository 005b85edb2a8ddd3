"""The registry's rules, without I/O: serial ranges, how an operation splits them, balances, serial numbers.

A certificate's energy is held as parts, one per device. Every Wh of a device has a serial number: a per-device
counter hands each issued part the next `energy_wh` serials, so ranges of one device never overlap. A part is held
by organizations as holdings (one per part and holder); a holding's serials are kept as ranges, each in one state.
An operation on N Wh of a holding takes the first N available serials (lowest first): a range is split so that
its first serials go and the rest stays.

Balances (REC inventory): Available = Total - OnSale - OnRetirement - Retired - OnExporting - Exported - OnAuction;
Balance = Available + OnSale + OnRetirement + OnExporting + OnAuction. Energy in a pending transfer is in neither
holding's Total: the transfer holds it until the receiver accepts (then it is the receiver's) or it is rejected
or cancelled (then it is the sender's again).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

State = Literal["available", "on_sale", "on_exporting", "on_auction", "retired", "exported", "transferring"]
LockPurpose = Literal["sale", "export", "auction"]
LockOutcome = Literal["released", "exported"]
TransferStatus = Literal["pending", "accepted", "direct", "rejected", "cancelled"]
Decision = Literal["accept", "reject", "cancel"]
DECISIONS: dict[str, TransferStatus] = {"accept": "accepted", "reject": "rejected", "cancel": "cancelled"}
LOCK_STATE: dict[str, State] = {"sale": "on_sale", "export": "on_exporting", "auction": "on_auction"}
WH_PER_MWH = 1_000_000  # serials count Wh; the inventory writes MWh with 6 decimals (one serial = 0.000001)


@dataclass(frozen=True)
class IssuedCertificate:
    """What issuance hands the registry: the certificate and its per-device parts (device_id, energy_wh)."""

    certificate_id: uuid.UUID
    buyer_organization_id: int
    country_code: str | None
    period_start: datetime
    period_end: datetime
    parts: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SerialRange:
    """Serials `start`..`end` (inclusive) of a device: end - start + 1 Wh."""

    start: int
    end: int
    state: State = "available"

    def __post_init__(self) -> None:
        if self.start < 1 or self.end < self.start:
            raise ValueError(f"not a serial range: {self.start}..{self.end}")

    @property
    def energy_wh(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class Balances:
    """A holding's quantities in Wh (the inventory writes them in MWh)."""

    total: int = 0
    on_sale: int = 0
    on_retirement: int = 0
    retired: int = 0
    on_exporting: int = 0
    exported: int = 0
    on_auction: int = 0

    @property
    def available(self) -> int:
        return (
            self.total
            - self.on_sale
            - self.on_retirement
            - self.retired
            - self.on_exporting
            - self.exported
            - self.on_auction
        )

    @property
    def balance(self) -> int:
        return self.available + self.on_sale + self.on_retirement + self.on_exporting + self.on_auction


def balances_of(ranges: list[SerialRange] | tuple[SerialRange, ...]) -> Balances:
    """A holding's balances from its ranges (what the holding's columns must always equal)."""
    by_state: dict[str, int] = {}
    for r in ranges:
        by_state[r.state] = by_state.get(r.state, 0) + r.energy_wh
    total = sum(wh for state, wh in by_state.items() if state != "transferring")
    return Balances(
        total=total,
        on_sale=by_state.get("on_sale", 0),
        retired=by_state.get("retired", 0),
        on_exporting=by_state.get("on_exporting", 0),
        exported=by_state.get("exported", 0),
        on_auction=by_state.get("on_auction", 0),
    )


@dataclass(frozen=True)
class Holding:
    """Energy of one certificate part held by one organization."""

    id: uuid.UUID
    certificate_id: uuid.UUID
    device_id: int
    organization_id: int
    country_code: str | None
    period_start: datetime
    period_end: datetime
    balances: Balances
    trading_count: int = 0
    ranges: tuple[SerialRange, ...] = field(default=())


class NotEnoughEnergy(Exception):
    def __init__(self, wanted: int, available: int) -> None:
        super().__init__(f"{wanted} Wh asked, {available} Wh available")
        self.wanted = wanted
        self.available = available


def take(ranges: list[SerialRange], energy_wh: int) -> tuple[list[SerialRange], SerialRange | None]:
    """The first `energy_wh` serials of the available `ranges` (lowest first): the ranges taken whole, the last
    one cut to what is left to take; and the remainder of the range that was cut (None when none was cut)."""
    if energy_wh <= 0:
        raise ValueError("an operation moves at least 1 Wh")
    available = sorted((r for r in ranges if r.state == "available"), key=lambda r: r.start)
    have = sum(r.energy_wh for r in available)
    if have < energy_wh:
        raise NotEnoughEnergy(energy_wh, have)
    taken: list[SerialRange] = []
    left = energy_wh
    for r in available:
        if r.energy_wh <= left:
            taken.append(r)
            left -= r.energy_wh
            if left == 0:
                return taken, None
        else:
            taken.append(SerialRange(r.start, r.start + left - 1, r.state))
            return taken, SerialRange(r.start + left, r.end, r.state)
    raise AssertionError("unreachable: enough energy was counted")


def merged(ranges: list[SerialRange] | tuple[SerialRange, ...]) -> list[tuple[int, int]]:
    """Serial intervals with adjacent ranges joined (whatever their state): what a serial number lists."""
    out: list[tuple[int, int]] = []
    for r in sorted(ranges, key=lambda r: r.start):
        if out and out[-1][1] + 1 == r.start:
            out[-1] = (out[-1][0], r.end)
        else:
            out.append((r.start, r.end))
    return out


def mwh(wh: int) -> str:
    """Wh as MWh with 6 decimals, exactly (no floats): 1767250000 -> '1767.250000'."""
    whole, frac = divmod(wh, WH_PER_MWH)
    return f"{whole}.{frac:06d}"


def quantity(wh: int) -> int | float:
    """Wh as the inventory's decimal(18,6) MWh, a JSON number as the seed writes it: 1 when whole, else the
    6-decimal value (0.00025; exact as text below 10^9 MWh: the shortest float text of n / 10^6 is n's decimals)."""
    whole, frac = divmod(wh, WH_PER_MWH)
    return whole if frac == 0 else float(Decimal(wh).scaleb(-6))


def registry_id(device_id: int) -> str:
    """A device's id in this registry (the inventory's RegistryId; the seed's looks like 'GFNIES10001')."""
    return f"DEV{device_id:08d}"


def vintage(period_start: datetime, period_end: datetime) -> str:
    """'2021-1106-1110': the vintage year (both years when the period's last instant is in another year), then
    the start's and end's month and day (the end as VintageTo writes it: the period's end)."""
    first, last = period_start.year, (period_end - timedelta(microseconds=1)).year
    years = f"{first}" if first == last else f"{first}-{last}"
    return f"{years}-{period_start:%m%d}-{period_end:%m%d}"


def serial_number(
    prefix: str,
    device_id: int,
    country_code: str | None,
    period_start: datetime,
    period_end: datetime,
    ranges: list[tuple[int, int]],
) -> str:
    """`{prefix}-{registry id}-{country}-{vintage}-{first MWh} to {last MWh}`, as the seed's
    'IREC-GFNIES10001-SG-2021-1106-1110-1767.250000 to 1768.249999'. Serial s (1-based, one per Wh) is written
    s / 10^6 MWh; several ranges (a holding left with gaps) are joined by ', '. Unknown country: 'XX'."""
    spans = ", ".join(f"{mwh(start)} to {mwh(end)}" for start, end in ranges)
    return f"{prefix}-{registry_id(device_id)}-{country_code or 'XX'}-{vintage(period_start, period_end)}-{spans}"


def request_hash(operation: str, body: dict[str, Any]) -> str:
    """What an idempotency key is bound to: the operation and its body, canonically."""
    text = json.dumps({"operation": operation, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
