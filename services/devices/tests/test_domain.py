"""Device rules, without I/O."""

import uuid
from datetime import UTC, datetime

import pytest

from opendrec_devices import codes, domain
from opendrec_kit import paging

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "axis", "expected"),
    [
        ("45.67", "latitude", 45.67),
        ("78.990", "longitude", 78.99),
        ("-19.3475", "latitude", -19.3475),
        ("+12.5", "longitude", 12.5),
        (45.67, "latitude", 45.67),
        (-180, "longitude", -180.0),
        # the API guide's values, with the degree sign and with the U+FFFD it shows instead
        ("19°20'50.97\"S", "latitude", -19.3474917),
        ("46° 3'3.21\"W", "longitude", -46.0508917),
        ("19\ufffd20'50.97\"S", "latitude", -19.3474917),
        ("46\ufffd 3'3.21\"W", "longitude", -46.0508917),
        ("N 19°20'50.97\"", "latitude", 19.3474917),
        ("19 20 50.97 S", "latitude", -19.3474917),
        ("19:20:50.97N", "latitude", 19.3474917),
        ("19°20.85'S", "latitude", -19.3475),
        ("19°S", "latitude", -19.0),
        ("77°12′34″E", "longitude", 77.2094444),
        ("12°30''", "latitude", 12.0083333),  # 30 seconds written with two apostrophes
        ("0", "latitude", 0.0),
    ],
)
def test_coordinates_parse(text, axis, expected):
    assert domain.parse_coordinate(text, axis) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    ("text", "axis", "fragment"),
    [
        ("91", "latitude", "out of range"),
        ("-90.0001", "latitude", "out of range"),
        ("181", "longitude", "out of range"),
        ("95°0'0\"N", "latitude", "out of range"),
        ("19°20'50\"E", "latitude", "takes N or S"),
        ("46°3'3\"N", "longitude", "takes E or W"),
        ("-19°20'S", "latitude", "both a minus sign and a hemisphere"),
        ("19°61'0\"S", "latitude", "below 60"),
        ("19°20'60\"S", "latitude", "below 60"),
        ("19.5°20'S", "latitude", "only the last"),
        ("20'19°", "latitude", "neither decimal"),  # minutes before degrees
        ("abc", "latitude", "neither decimal"),
        ("1.5e3", "latitude", "neither decimal"),
        ("19,5", "latitude", "neither decimal"),
        ("", "latitude", "empty"),
        ("  ", "longitude", "empty"),
        (None, "latitude", "required"),
        (True, "latitude", "required"),
        (float("nan"), "latitude", "out of range"),
    ],
)
def test_bad_coordinates_say_why(text, axis, fragment):
    with pytest.raises(ValueError, match=fragment):
        domain.parse_coordinate(text, axis)


@pytest.mark.parametrize(
    ("code", "alpha3"), [("IN", "IND"), ("ind", "IND"), ("IND", "IND"), (" ke ", "KEN"), ("GB", "GBR")]
)
def test_countries_normalise_to_alpha3(code, alpha3):
    assert domain.normalize_country(code) == alpha3


@pytest.mark.parametrize("code", ["XX", "XXX", "INDIA", "I", ""])
def test_unknown_countries_are_refused(code):
    with pytest.raises(ValueError, match="not an ISO 3166 country code"):
        domain.normalize_country(code)


def test_code_tables_hold_the_irec_families():
    fuels = {c.code for c in codes.FUEL_TYPES}
    types = {c.code for c in codes.DEVICE_TYPES}
    # solar, wind, hydro, marine (ES430: the Postman sample), biomass, biogas
    assert {"ES100", "ES200", "ES300", "ES430", "ES510", "ES730"} <= fuels
    # PV (TC120: the Postman sample), wind, hydro incl. pumped storage, thermal/biomass
    assert {"TC110", "TC120", "TC210", "TC310", "TC320", "TC330", "TC421"} <= types
    assert len(fuels) == len(codes.FUEL_TYPES) and len(types) == len(codes.DEVICE_TYPES)  # no duplicates
    assert all(c.name for c in codes.FUEL_TYPES + codes.DEVICE_TYPES)


def test_codes_are_checked_case_insensitively_and_unknown_ones_list_the_valid_ones():
    assert domain.check_fuel_code("es100") == "ES100"
    assert domain.check_device_type_code(" tc120 ") == "TC120"
    with pytest.raises(ValueError) as fuel:
        domain.check_fuel_code("fuel8")
    assert "fuelCode 'fuel8' is not an I-REC fuel code" in str(fuel.value)
    assert all(c.code in str(fuel.value) for c in codes.FUEL_TYPES)
    with pytest.raises(ValueError) as kind:
        domain.check_device_type_code("type3")
    assert all(c.code in str(kind.value) for c in codes.DEVICE_TYPES)


def test_off_takers_from_the_drec_list():
    assert domain.check_off_taker("Residential") == "Residential"
    assert domain.check_off_taker("school") == "School"
    assert domain.check_off_taker("public sector") == "Public Sector"
    with pytest.raises(ValueError, match="Residential"):
        domain.check_off_taker("Spaceport")


def test_timezones_are_iana_names():
    assert domain.check_timezone("Asia/Kolkata") == "Asia/Kolkata"
    assert domain.check_timezone("africa/nairobi") == "Africa/Nairobi"
    with pytest.raises(ValueError, match="IANA"):
        domain.check_timezone("India Standard Time")


def test_countries_list_their_time_zones():
    india = next(c for c in codes.COUNTRIES if c["alpha2"] == "IN")
    assert india["countryCode"] == "IND" and india["alpha3"] == "IND"
    assert "Asia/Kolkata" in india["timezones"]


def test_commissioning_date():
    assert domain.parse_commissioning_date("2021-01-02T11:35:27.740Z", None, NOW) == datetime(
        2021, 1, 2, 11, 35, 27, 740000, tzinfo=UTC
    )
    # no offset: UTC, or the device's own time zone when it has one
    assert domain.parse_commissioning_date("2022-08-09T19:00:00", None, NOW) == datetime(2022, 8, 9, 19, tzinfo=UTC)
    assert domain.parse_commissioning_date("2022-08-09T19:00:00", "Asia/Kolkata", NOW) == datetime(
        2022, 8, 9, 13, 30, tzinfo=UTC
    )
    assert domain.parse_commissioning_date("2022-08-09", None, NOW) == datetime(2022, 8, 9, tzinfo=UTC)
    assert domain.parse_commissioning_date(NOW.isoformat(), None, NOW) == NOW
    with pytest.raises(ValueError, match="in the future"):
        domain.parse_commissioning_date("2025-06-01T12:00:01Z", None, NOW)
    with pytest.raises(ValueError, match="ISO 8601"):
        domain.parse_commissioning_date("yesterday", None, NOW)


def test_storage_capacity_needs_storage():
    assert domain.check_energy_storage(True, 90) == 90
    assert domain.check_energy_storage(True, 0) == 0  # the API guide sends this
    assert domain.check_energy_storage(False, 0) == 0
    assert domain.check_energy_storage(False, None) is None
    with pytest.raises(ValueError, match="energyStorage is not true"):
        domain.check_energy_storage(False, 5)


@pytest.mark.parametrize(
    ("external_id", "ok"),
    [("UAT_STAGE_Drec4", True), (" a b ", True), ("a/b", False), ("x?y", False), ("", False), ("x" * 201, False)],
)
def test_external_ids(external_id, ok):
    if ok:
        assert domain.check_external_id(external_id) == external_id.strip()
    else:
        with pytest.raises(ValueError):
            domain.check_external_id(external_id)


def test_sdg_benefits_placeholders_mean_none():
    assert domain.normalize_sdg_benefits(0) == []
    assert domain.normalize_sdg_benefits(1) == []
    assert domain.normalize_sdg_benefits(None) == []
    assert domain.normalize_sdg_benefits(["SDG 7", "0", " SDG 13 "]) == ["SDG 7", "SDG 13"]
    assert domain.normalize_sdg_benefits("SDG 7") == ["SDG 7"]


def test_registered_event_from_a_row():
    row = {
        "id": 7,
        "device_uuid": uuid.uuid4(),
        "external_id": "ext",
        "organization_id": 3,
        "capacity_kw": 200.0,
        "country_code": "IND",
        "fuel_code": "ES100",
        "device_type_code": "TC120",
        "commissioning_date": datetime(2021, 1, 2, tzinfo=UTC),
        "created_at": NOW,
        "timezone": None,
        "yield_value": 0,
        "off_taker": "Residential",
        "sdg_benefits": ["SDG7"],
        "project_name": "Rooftop Hyderabad",
    }
    event = domain.registered_event(row)
    assert (event.device_id, event.external_id, event.organization_id, event.onboarded_at) == (7, "ext", 3, NOW)
    # what reservation views and the REC inventory show of a device (ES100 is I-REC's solar code)
    assert (event.off_taker, event.sdg_benefits, event.project_name) == ("Residential", ["SDG7"], "Rooftop Hyderabad")
    assert event.fuel_name is not None and event.fuel_name.lower().startswith("solar")
    assert event.yield_value is None  # 0 means "not given" in D-REC payloads
    assert domain.registered_event({**row, "yield_value": 1500.0}).yield_value == 1500.0


def test_visibility_and_pages():
    assert domain.within([1, 5], 5) and not domain.within([1], 2) and not domain.within([], 2)
    assert domain.within(None, 2)  # an admin's unscoped request
    assert [paging.total_pages(n, 20) for n in (0, 1, 20, 21)] == [0, 1, 1, 2]


@pytest.mark.parametrize(("value", "expected"), [(25, 25), ("25", 25), (" 7 ", 7), (None, None), ("", None)])
def test_organization_id_in_a_body(value, expected):
    assert domain.parse_organization_id(value) == expected


@pytest.mark.parametrize("value", [0, -3, "x", "2.5", 2.5, True, [1], "²", 2**63])
def test_bad_organization_id_in_a_body(value):
    with pytest.raises(ValueError, match="organization id"):
        domain.parse_organization_id(value)
