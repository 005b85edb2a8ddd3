"""Reference data shipped with the package: I-REC code tables, ISO 3166 countries, IANA time zones.

Loaded once at import; everything here is read-only.
"""

from __future__ import annotations

import json
import zoneinfo
from dataclasses import dataclass
from importlib import resources

import pycountry


@dataclass(frozen=True)
class Code:
    code: str
    name: str


def _load_codes(filename: str) -> tuple[Code, ...]:
    raw = json.loads(resources.files(__package__).joinpath("data", filename).read_text(encoding="utf-8"))
    return tuple(Code(item["code"], item["name"]) for item in raw)


# I-REC energy source ("fuel") and technology ("device type") codes.
FUEL_TYPES: tuple[Code, ...] = _load_codes("irec_fuel_types.json")
DEVICE_TYPES: tuple[Code, ...] = _load_codes("irec_device_types.json")
FUEL_CODES: frozenset[str] = frozenset(c.code for c in FUEL_TYPES)
FUEL_NAMES: dict[str, str] = {c.code: c.name for c in FUEL_TYPES}
DEVICE_TYPE_CODES: frozenset[str] = frozenset(c.code for c in DEVICE_TYPES)

# The UN Sustainable Development Goals as D-REC lists them (its `SDGBenefits` model):
# {"name": "SDG7", "value": "Affordable and Clean Energy"}, in goal order.
SDG_BENEFITS: tuple[dict[str, str], ...] = tuple(
    {"name": item["name"], "value": item["value"]}
    for item in json.loads(resources.files(__package__).joinpath("data", "sdg_benefits.json").read_text("utf-8"))
)

# The D-REC off-taker list (its API accepts these; "Residential" in the Postman collection,
# "School" in the API guide). Matched case-insensitively, stored as written here.
OFF_TAKERS: tuple[str, ...] = (
    "School",
    "Education",
    "Health Facility",
    "Residential",
    "Commercial",
    "Industrial",
    "Public Sector",
    "Agriculture",
    "Utility",
    "Off-Grid Community",
)


def _zones_by_country() -> dict[str, list[str]]:
    """alpha-2 -> IANA zone names, from the tzdata wheel's zone.tab."""
    zones: dict[str, list[str]] = {}
    try:
        text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return zones
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) >= 3:
            zones.setdefault(cols[0], []).append(cols[2])
    return zones


_ZONES = _zones_by_country()

COUNTRIES: tuple[dict[str, object], ...] = tuple(
    {
        "country": getattr(c, "common_name", None) or c.name,
        "alpha2": c.alpha_2,
        "alpha3": c.alpha_3,
        "numeric": c.numeric,
        "countryCode": c.alpha_3,  # D-REC's name for the code it stores
        "timezones": sorted(_ZONES.get(c.alpha_2, [])),
    }
    for c in sorted(pycountry.countries, key=lambda c: getattr(c, "common_name", None) or c.name)
)

# IANA names, matched case-insensitively and stored in their canonical spelling.
TIMEZONES: dict[str, str] = {name.lower(): name for name in zoneinfo.available_timezones()}
