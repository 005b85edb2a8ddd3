"""The console's rules, pure: reading the API's refusals, paging links, chart series, form values."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

PAGE_SIZE = 20
MAX_TEXT = 200  # no form field of the console takes more (the API bounds its own fields further)
ORGANIZATION_TYPES = ("Developer", "Buyer")
# The ACL modules an API user asks for (D-REC's names; the API refuses any it does not know, with its message).
API_USER_MODULES = (
    "ORGANIZATION_MANAGEMENT_CRUDL",
    "USER_MANAGEMENT_CRUDL",
    "DEVICE_MANAGEMENT_CRUDL",
    "DEVICE_BULK_MANAGEMENT_CRUDL",
    "READS_MANAGEMENT_CRUDL",
    "BUYER_RESERVATION_MANAGEMENT_CRUDL",
    "CERTIFICATE_LOG_MANAGEMENT_CRUDL",
)
PERMISSIONS = ("Read", "Write", "Update", "Delete")
FREQUENCIES = ("hourly", "daily", "weekly", "monthly", "quarterly")


def refusal_of(status: int, body: Any) -> tuple[str, dict[str, str]]:
    """The envelope's message and the message for each field it names (`details`: [{field, message}]).

    A nested field keeps its leaf's name (`reads.0.value` -> `value`) as well, so a form shows it next to the
    input of that name."""
    if not isinstance(body, dict):
        return f"The platform answered {status}", {}
    message = str(body.get("message") or body.get("error") or f"The platform answered {status}")
    fields: dict[str, str] = {}
    details = body.get("details")
    if isinstance(details, list):
        for item in details:
            if not isinstance(item, dict) or not item.get("field"):
                continue
            name = str(item["field"])
            text = str(item.get("message") or "invalid")
            fields.setdefault(name, text)
            fields.setdefault(name.split(".")[-1], text)
    return message, fields


def field_text(value: str | None, *, limit: int = MAX_TEXT) -> str:
    """A form field as the API gets it: trimmed and bounded (longer input is cut, the API then judges it)."""
    return (value or "").strip()[:limit]


def page_number(value: str | None) -> int:
    try:
        number = int(value or 1)
    except ValueError:
        return 1
    return min(max(number, 1), 100_000)


def page_count(total: int, limit: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(total / limit))


def iso_utc(value: str) -> str | None:
    """A datetime-local input (`2024-05-01T10:30`, taken as UTC) as the API's instant; None when unreadable."""
    text = value.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def kwh(wh: float | int | None) -> str:
    """Energy for people: Wh up to 10 kWh, then kWh/MWh with sensible decimals."""
    if wh is None:
        return "—"
    value = float(wh)
    if abs(value) < 10_000:
        return f"{value:,.0f} Wh"
    if abs(value) < 10_000_000:
        return f"{value / 1000:,.1f} kWh"
    return f"{value / 1_000_000:,.3f} MWh"


def series(points: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Chart data (labels, values in kWh) from the API's accumulated periods `[{startdate, value}]`."""
    labels = [str(p.get("startdate", ""))[:10] for p in points]
    values = [round(float(p.get("value") or 0) / 1000, 3) for p in points]
    return {"labels": labels, "values": values}


def progress_percent(done_wh: float, target_mwh: float | None) -> float:
    if not target_mwh or target_mwh <= 0:
        return 0.0
    return round(min(100.0, done_wh / (target_mwh * 1_000_000) * 100), 2)


def per_device(certificates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A reservation's certified energy per device, from its certificates' parts, largest first."""
    totals: dict[Any, dict[str, Any]] = {}
    for certificate in certificates:
        for part in certificate.get("parts") or []:
            key = part.get("deviceId")
            row = totals.setdefault(key, {"deviceId": key, "externalId": part.get("externalId"), "energyWh": 0})
            row["energyWh"] += int(part.get("energyWh") or 0)
    return sorted(totals.values(), key=lambda r: -r["energyWh"])


MAX_PAGES_READ = 50  # a page that gathers a whole listing reads at most this many pages of it


def reservations_of(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reservations a developer's certificate log names: each with its devices, energy and period."""
    found: dict[Any, dict[str, Any]] = {}
    for entry in log:
        key = entry.get("devicegroup_uid") or entry.get("reservationName")
        row = found.setdefault(
            key,
            {"name": entry.get("reservationName"), "devices": set(), "energyWh": 0, "start": None, "end": None},
        )
        row["devices"].add(entry.get("externalId"))
        row["energyWh"] += int(entry.get("energyWh") or 0)
        start, end = str(entry.get("periodStart") or ""), str(entry.get("periodEnd") or "")
        row["start"] = min(row["start"] or start, start)
        row["end"] = max(row["end"] or end, end)
    return [
        {**row, "devices": sorted(d for d in row["devices"] if d)}
        for row in sorted(found.values(), key=lambda r: r["end"] or "", reverse=True)
    ]


# Roles an invitation gives, by the inviting organization's type (identity's rule).
INVITED_ROLES = {"Developer": ("DeviceOwner", "User", "OrganizationAdmin"), "Buyer": ("SubBuyer", "User", "Buyer")}
ORGANIZATION_STATUSES = ("Submitted", "Active", "Denied")
ORGANIZATION_KINDS = ("Developer", "Buyer", "ApiUser", "Admin")  # what the admin listing filters on
USER_STATUSES = ("Pending", "Active", "Suspended", "Deleted")
MODULE_STATUSES = ("Enable", "Disable")


def day(value: str | None) -> str | None:
    """A date input's value (YYYY-MM-DD), or None when it is not one."""
    try:
        return datetime.strptime((value or "").strip(), "%Y-%m-%d").date().isoformat()
    except ValueError:
        return None
