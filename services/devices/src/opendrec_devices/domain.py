"""Device rules: pure functions, no I/O. Each check raises ValueError with a message meant for the caller."""

from __future__ import annotations

import math
import mimetypes
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pycountry

from opendrec_contracts import DeviceDeleted, DeviceRegistered, DeviceUpdated
from opendrec_kit.timestamps import client_instant, iso

from .codes import DEVICE_TYPE_CODES, DEVICE_TYPES, FUEL_CODES, FUEL_NAMES, FUEL_TYPES, OFF_TAKERS, TIMEZONES, Code

MAX_EXTERNAL_ID = 200

# ---------------------------------------------------------------- coordinates

_LIMIT = {"latitude": 90.0, "longitude": 180.0}
_HEMISPHERES = {"latitude": {"N": 1, "S": -1}, "longitude": {"E": 1, "W": -1}}
# Marks after a number that say which part it is. U+FFFD stands for a degree sign lost to a
# wrong text encoding, as in the D-REC API guide's `19�20'50.97"S`.
_UNIT_OF_MARK = {
    "°": 0,
    "º": 0,
    "˚": 0,
    "\ufffd": 0,
    "'": 1,
    "′": 1,
    "’": 1,
    "‘": 1,
    '"': 2,
    "″": 2,
    "”": 2,
    "“": 2,
    "''": 2,
}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(''|[°º˚\ufffd'′’‘\"″”“])?")
_SEPARATORS = re.compile(r"[\s:]*")


def parse_coordinate(value: Any, axis: str) -> float:
    """Decimal degrees from a number, a decimal string ("45.67", "-19.3475") or a
    degrees-minutes-seconds string ("19°20'50.97\\"S", "46 3 3.21 W", "N 19°20.85'").

    `axis` is "latitude" or "longitude": it sets the range and the hemisphere letters allowed.
    """
    limit = _LIMIT[axis]
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{axis} is required: decimal degrees or degrees-minutes-seconds")
    if isinstance(value, int | float):
        degrees = float(value)
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
        degrees = _parse_text(text, axis)
    else:
        raise ValueError(f"{axis} must be a number or a string")
    if not math.isfinite(degrees) or abs(degrees) > limit:
        raise ValueError(f"{axis} {text} is out of range: it must lie between -{limit:g} and {limit:g} degrees")
    return round(degrees, 7)


def _parse_text(text: str, axis: str) -> float:
    bad = ValueError(
        f"{axis} {text!r} is neither decimal degrees (e.g. -19.3475) nor degrees-minutes-seconds (e.g. 19°20'50.97\"S)"
    )
    if not text:
        raise ValueError(f"{axis} is empty")
    body = text.upper()
    hemisphere = None
    if body[0] in "NSEW":
        hemisphere, body = body[0], body[1:]
    elif body[-1] in "NSEW":
        hemisphere, body = body[-1], body[:-1]
    body = body.strip()
    sign = 1
    if body[:1] in ("-", "+"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:].lstrip()
    parts = list(_PART.finditer(body))
    if not parts or _SEPARATORS.fullmatch(_PART.sub("", body)) is None:
        raise bad
    if hemisphere is not None:
        allowed = _HEMISPHERES[axis]
        if hemisphere not in allowed:
            raise ValueError(f"{axis} {text!r} has hemisphere {hemisphere}; a {axis} takes {' or '.join(allowed)}")
        if sign == -1:
            raise ValueError(f"{axis} {text!r} has both a minus sign and a hemisphere letter; use one of them")
        sign = allowed[hemisphere]
    values = [0.0, 0.0, 0.0]
    next_unit = 0
    for i, part in enumerate(parts):
        number, mark = part.group(1), part.group(2)
        unit = _UNIT_OF_MARK[mark] if mark else next_unit
        if unit < next_unit or unit > 2:
            raise bad
        if "." in number and i != len(parts) - 1:
            raise ValueError(f"{axis} {text!r}: only the last of degrees, minutes, seconds may have decimals")
        values[unit] = float(number)
        next_unit = unit + 1
    degrees, minutes, seconds = values
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"{axis} {text!r}: minutes and seconds must be below 60")
    return sign * (degrees + minutes / 60 + seconds / 3600)


# ---------------------------------------------------------------- codes and lists


def normalize_country(code: str) -> str:
    """ISO 3166 alpha-2 or alpha-3 (any case) -> alpha-3."""
    text = code.strip().upper()
    country = None
    if len(text) == 2:
        country = pycountry.countries.get(alpha_2=text)
    elif len(text) == 3:
        country = pycountry.countries.get(alpha_3=text)
    if country is None:
        raise ValueError(
            f"countryCode {code!r} is not an ISO 3166 country code: use alpha-2 (e.g. IN) or alpha-3 (e.g. IND); "
            "GET /api/countrycode/list lists them"
        )
    return country.alpha_3


def _irec_code(code: str, table: tuple[Code, ...], known: frozenset[str], field: str, what: str) -> str:
    text = code.strip().upper()
    if text not in known:
        valid = ", ".join(c.code for c in table)
        raise ValueError(f"{field} {code!r} is not an I-REC {what} code. Valid codes: {valid}")
    return text


def check_fuel_code(code: str) -> str:
    return _irec_code(code, FUEL_TYPES, FUEL_CODES, "fuelCode", "fuel")


def check_device_type_code(code: str) -> str:
    return _irec_code(code, DEVICE_TYPES, DEVICE_TYPE_CODES, "deviceTypeCode", "technology")


def check_off_taker(value: str) -> str:
    wanted = value.strip().lower()
    for name in OFF_TAKERS:
        if name.lower() == wanted:
            return name
    raise ValueError(f"offTaker {value!r} is not one of: {', '.join(OFF_TAKERS)}")


def check_timezone(name: str) -> str:
    canonical = TIMEZONES.get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"timezone {name!r} is not an IANA time zone name (e.g. Asia/Kolkata, Africa/Nairobi)")
    return canonical


def check_external_id(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("externalId must not be empty")
    if len(text) > MAX_EXTERNAL_ID:
        raise ValueError(f"externalId is longer than {MAX_EXTERNAL_ID} characters")
    # It appears in URL paths (/api/device/externalId/{externalId}, /api/meter-reads/new/{externalId}).
    if any(ch in "/?#%\\" or ord(ch) < 32 for ch in text):
        raise ValueError("externalId must not contain / ? # % \\ or control characters (it is used in URL paths)")
    return text


def parse_commissioning_date(value: Any, timezone: str | None, now: datetime) -> datetime:
    """ISO 8601 date or date-time; without an offset it is local time of the device's
    timezone when known, else UTC. Must not lie in the future."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"commissioningDate {value!r} is not an ISO 8601 date or date-time (e.g. 2022-08-09T19:00:00Z)"
            ) from None
    else:
        raise ValueError("commissioningDate must be an ISO 8601 date-time string")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone) if timezone else UTC)
    moment = client_instant(moment, "commissioningDate")
    if moment > now:
        raise ValueError(f"commissioningDate {iso(moment)} is in the future")
    return moment


def parse_date_bound(value: str, end_of_day: bool = False) -> datetime:
    """A listing filter bound: ISO 8601 date or date-time, UTC unless it has an offset.
    A bare date as an upper bound means the whole of that day."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date or date-time (e.g. 2022-08-09)") from None
    if end_of_day and len(text) == 10:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999999)
    return client_instant(moment)


def split_list(values: list[str] | str | None) -> list[str]:
    """Query values as given repeatedly (?x=a&x=b) and/or comma-separated (?x=a,b)."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def check_each(check: Any, values: list[str]) -> list[str]:
    """Run a code check on every value; one error naming all the bad ones."""
    out, errors = [], []
    for value in values:
        try:
            out.append(check(value))
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("; ".join(errors))
    return list(dict.fromkeys(out))


def check_list(values: list[str] | None, check: Any) -> list[str] | None:
    """A list filter of a query (repeated and/or comma-separated values), each value checked; None: no filter."""
    return check_each(check, split_list(values)) or None


MIN_CAPACITY_KW = 0.001  # 1 W: below it, no read could be plausible


def check_capacity(capacity: float, largest_kw: float) -> float:
    """A device's capacity in kW, within what a device can be (reads are judged against it)."""
    if not math.isfinite(capacity) or not MIN_CAPACITY_KW <= capacity <= largest_kw:
        raise ValueError(f"capacity must be from {MIN_CAPACITY_KW:g} kW (1 W) to {largest_kw:g} kW")
    return capacity


def check_energy_storage(energy_storage: bool | None, capacity: float | None) -> float | None:
    """A storage capacity only makes sense on a device with storage (0 counts as none)."""
    if capacity is not None and capacity > 0 and not energy_storage:
        raise ValueError("energyStorageCapacity is given but energyStorage is not true")
    return capacity


def normalize_sdg_benefits(value: Any) -> list[str]:
    """D-REC clients send a list of SDG names, or 0/1 as a placeholder (the Postman collection and
    the API guide do): placeholders and empty values mean none."""
    if value is None or isinstance(value, bool | int | float):
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        text = str(item).strip()
        if text and text not in ("0", "1"):
            out.append(text)
    return out


# ---------------------------------------------------------------- events


def _device_state(device: Mapping[str, Any]) -> dict[str, Any]:
    yield_value = device["yield_value"]
    return {
        "device_id": device["id"],
        "device_uuid": device["device_uuid"],
        "external_id": device["external_id"],
        "organization_id": device["organization_id"],
        "capacity_kw": device["capacity_kw"],
        "country_code": device["country_code"],
        "fuel_code": device["fuel_code"],
        "device_type_code": device["device_type_code"],
        "commissioning_date": device["commissioning_date"],
        "onboarded_at": device["created_at"],
        "timezone": device["timezone"],
        # D-REC clients send 0 for "unknown" (the API guide does); 0 would make every read implausible.
        "yield_value": yield_value if yield_value else None,
        "off_taker": device["off_taker"],
        "sdg_benefits": list(device["sdg_benefits"] or []),
        "project_name": device["project_name"],
        "fuel_name": FUEL_NAMES.get(device["fuel_code"]),
    }


def registered_event(device: Mapping[str, Any]) -> DeviceRegistered:
    """The `device.registered` fact for a stored device row."""
    return DeviceRegistered(**_device_state(device))


def updated_event(device: Mapping[str, Any]) -> DeviceUpdated:
    """The `device.updated` fact: the full current state of the stored row."""
    return DeviceUpdated(**_device_state(device))


def deleted_event(device: Mapping[str, Any]) -> DeviceDeleted:
    return DeviceDeleted(
        device_id=device["id"], external_id=device["external_id"], organization_id=device["organization_id"]
    )


def deletion_refusal(active_reservations: list[int], certified_wh: int) -> str | None:
    """Why a device may not be deleted, or None. A device in an active reservation, or with
    certified energy, is part of someone's claim: removing it would orphan that claim."""
    reasons = []
    if active_reservations:
        ids = ", ".join(str(r) for r in active_reservations)
        reasons.append(f"it is in active reservation(s) {ids}")
    if certified_wh > 0:
        reasons.append(f"it has certified energy ({certified_wh} Wh)")
    if not reasons:
        return None
    return "The device cannot be deleted: " + " and ".join(reasons)


# ---------------------------------------------------------------- access


def within(organizations: list[int] | None, organization_id: int) -> bool:
    """Whether a record of `organization_id` lies in a caller's scope (None: every organization)."""
    return organizations is None or organization_id in organizations


def parse_organization_id(value: Any) -> int | None:
    """`organizationId` as D-REC clients send it in a JSON body: a number or a numeric string."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("organizationId must be an organization id (a positive integer)")
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 2**63 - 1:
        raise ValueError(f"organizationId {value!r} is not an organization id (a positive integer)")
    return int(text)


# ---------------------------------------------------------------- devices grouped for a reservation (D-REC /device/ungrouped)

# D-REC's DeviceOrderBy values, and the device field (D-REC name) each groups by.
ORDER_BY: dict[str, str] = {
    "Offtaker": "offTaker",
    "Fuel code": "fuelCode",
    "Country": "countryCode",
    "Grid Interconnection": "gridInterconnection",
    "Capacity": "capacity",
    "Commissioning Date": "commissioningDate",
}


def parse_order_by(values: list[str] | None) -> list[str]:
    """`orderBy` as D-REC takes it (repeated; commas accepted too): one or more DeviceOrderBy values, any case."""
    items = split_list(values)
    if not items:
        raise ValueError(f"orderBy is required: one or more of {', '.join(ORDER_BY)}")
    known = {name.lower(): name for name in ORDER_BY}
    bad = [item for item in items if item.lower() not in known]
    if bad:
        raise ValueError(f"orderBy {', '.join(map(repr, bad))} is not one of {', '.join(ORDER_BY)}")
    return list(dict.fromkeys(known[item.lower()] for item in items))


def _band(value: float, bands: tuple[tuple[float, str], ...], beyond: str) -> str:
    """The label of the first band whose upper limit (inclusive) `value` stays within; `beyond` above them all."""
    return next((label for limit, label in bands if value <= limit), beyond)


# upper limits in kW
_CAPACITY_RANGES = ((1, "0.1W - 1kW"), (50, "1.01kW - 50kW"), (500, "51kW - 500kW"), (5000, "500kW - 5MW"))


def capacity_range(capacity_kw: float) -> str:
    """D-REC's CapacityRange of a capacity in kW."""
    return _band(capacity_kw, _CAPACITY_RANGES, "5MW+")


def commissioning_date_range(commissioned: datetime, now: datetime) -> str:
    """D-REC's CommissioningDateRange: by calendar years since commissioning ("Year 1 - Q3" in the year
    itself, by quarter; then "Year 2" ... "Year 5", "6 - 10 years", "11 - 15 years", "15 years+")."""
    years = now.year - commissioned.year
    if years <= 0:
        return f"Year 1 - Q{(commissioned.month - 1) // 3 + 1}"
    if years <= 4:
        return f"Year {years + 1}"
    return _band(years, ((9, "6 - 10 years"), (14, "11 - 15 years")), "15 years+")


def _group_text(field: str, value: Any) -> str:
    """One part of a group's name, as D-REC writes it: a fuel by its name, booleans and numbers as JavaScript does."""
    if field == "fuelCode":
        return next((c.name for c in FUEL_TYPES if c.code == value), str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def group_devices(devices: Sequence[Mapping[str, Any]], order_by: list[str], now: datetime) -> list[dict[str, Any]]:
    """Devices (in D-REC field names) grouped by the values of the `order_by` fields, groups in the order
    their first device comes: `[{"name", "devices": [device + commissioningDateRange, capacityRange, selected]}]`."""
    fields = [ORDER_BY[rule] for rule in order_by]
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for device in devices:
        key = tuple(device[f] for f in fields)
        group = groups.get(key)
        if group is None:
            name = ",".join(_group_text(f, v) for f, v in zip(fields, key, strict=True))
            group = groups[key] = {"name": name, "devices": []}
        commissioned = datetime.fromisoformat(device["commissioningDate"])
        group["devices"].append(
            {
                **device,
                "commissioningDateRange": commissioning_date_range(commissioned, now),
                "capacityRange": capacity_range(device["capacity"]),
                "selected": True,
            }
        )
    return list(groups.values())


# ---------------------------------------------------------------- onboarding date (D-REC dev mode)

ONBOARDING_MONTHS_BACK = 6


def parse_instant(value: str, field: str) -> datetime:
    """An ISO 8601 date or date-time a client sent; UTC unless it has an offset."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{field} {value!r} is not an ISO 8601 date or date-time (e.g. 2024-01-31T00:00:00Z)"
        ) from None
    return client_instant(moment, field)


def months_before(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months earlier (the month's last day when it has fewer days)."""
    month_index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(month_index, 12)
    day = moment.day
    while True:
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:
            day -= 1


def check_onboarding_date(given: datetime, onboarded: datetime) -> None:
    """A device's onboarding date may only move back, by at most six months (D-REC's rule). The onboarding
    date counts as answers show it, to the millisecond: giving the date shown is not a move back."""
    onboarded = onboarded.replace(microsecond=onboarded.microsecond // 1000 * 1000)
    earliest = months_before(onboarded, ONBOARDING_MONTHS_BACK)
    if not earliest <= given < onboarded:
        raise ValueError(
            f"givenDate {iso(given)} must be before the onboarding date {iso(onboarded)} and not more than "
            f"{ONBOARDING_MONTHS_BACK} months before it (from {iso(earliest)})"
        )


def onboarding_change_refusal(certified_wh: int) -> str | None:
    """Why the onboarding date may not move: energy of the device was certified already (the reads
    behind it were judged against the current date)."""
    if certified_wh > 0:
        return f"The onboarding date cannot be changed: the device has certified energy ({certified_wh} Wh)"
    return None


# ---------------------------------------------------------------- uploaded files

# D-REC's supported upload types (origin's PDF and images, plus CSV); CSV also as Excel and browsers label it.
FILE_TYPES: dict[str, str] = {
    "application/pdf": ".pdf",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/png": ".png",
    "text/csv": ".csv",
    "application/csv": ".csv",
    "application/vnd.ms-excel": ".csv",
}
_UNLABELLED = ("", "application/octet-stream")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,10}")
MAX_FILE_KEY = 300


def file_type(content_type: str, file_name: str) -> str:
    """The media type a file is stored with: the part's own, or (unlabelled) the one its name implies;
    ValueError when it is not a supported type."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in _UNLABELLED:
        kind = (mimetypes.guess_type(file_name)[0] or "").lower()
    if kind not in FILE_TYPES:
        raise ValueError(
            f"{file_name!r}: unsupported file type {kind or 'unknown'}; supported: PDF, JPEG, PNG and CSV files"
        )
    return "image/jpeg" if kind == "image/jpg" else kind


def file_key(file_name: str, content_type: str, unique: uuid.UUID) -> str:
    """The key an upload answers (as D-REC's `<name>-<uuid>.csv`): the name's stem made URL-safe, a uuid,
    and the name's extension (or the type's)."""
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    if not dot:
        stem, extension = base, ""
    extension = f".{extension.lower()}"
    if not _EXTENSION.fullmatch(extension):
        extension = FILE_TYPES.get(content_type, "")
    stem = _UNSAFE_NAME.sub("_", stem).strip("._-")[:100] or "file"
    return f"{stem}-{unique}{extension}"


def may_read_file(role: str, organization_id: int, file_organization_id: int) -> bool:
    """Who may read an uploaded file: its uploader's organization, and admins."""
    return role == "Admin" or organization_id == file_organization_id


class NoFileName(ValueError):
    """A bulk onboarding body naming no file (D-REC: 409 "File Not Found")."""


class NotCsvFileName(ValueError):
    """A bulk onboarding body naming a file that is not a CSV one (D-REC: 409 "Invalid file")."""


def check_bulk_file_name(value: Any) -> str:
    """`fileName` of a bulk onboarding body: the key of an uploaded CSV file."""
    if not isinstance(value, str) or not value.strip():
        raise NoFileName("fileName is required: the key POST /api/file answered for the CSV file")
    name = value.strip()
    if len(name) > MAX_FILE_KEY:
        raise ValueError(f"fileName is longer than {MAX_FILE_KEY} characters")
    if not name.lower().endswith(".csv"):
        raise NotCsvFileName(f"Invalid file: fileName {name!r} does not name a CSV file (.csv)")
    return name
