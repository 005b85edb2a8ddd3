"""The rules behind D-REC's device helpers and uploaded files (domain.py): pure functions, no service."""

import uuid
from datetime import UTC, datetime

import pytest

from opendrec_devices import domain

NOW = datetime(2026, 6, 15, tzinfo=UTC)
U = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        (0.1, "0.1W - 1kW"),
        (1, "0.1W - 1kW"),
        (1.01, "1.01kW - 50kW"),
        (50, "1.01kW - 50kW"),
        (50.5, "51kW - 500kW"),
        (500, "51kW - 500kW"),
        (5000, "500kW - 5MW"),
        (5000.1, "5MW+"),
    ],
)
def test_capacity_range(kw, expected):
    assert domain.capacity_range(kw) == expected


@pytest.mark.parametrize(
    ("commissioned", "expected"),
    [
        (datetime(2026, 1, 10, tzinfo=UTC), "Year 1 - Q1"),
        (datetime(2026, 4, 1, tzinfo=UTC), "Year 1 - Q2"),
        (datetime(2026, 12, 31, tzinfo=UTC), "Year 1 - Q4"),
        (datetime(2025, 12, 31, tzinfo=UTC), "Year 2"),
        (datetime(2022, 1, 1, tzinfo=UTC), "Year 5"),
        (datetime(2021, 1, 1, tzinfo=UTC), "6 - 10 years"),
        (datetime(2017, 1, 1, tzinfo=UTC), "6 - 10 years"),
        (datetime(2016, 1, 1, tzinfo=UTC), "11 - 15 years"),
        (datetime(2011, 1, 1, tzinfo=UTC), "15 years+"),
    ],
)
def test_commissioning_date_range(commissioned, expected):
    assert domain.commissioning_date_range(commissioned, NOW) == expected


def test_order_by_takes_drec_values_in_any_case_and_refuses_others():
    assert domain.parse_order_by(["fuel code,COUNTRY", "Fuel code"]) == ["Fuel code", "Country"]
    with pytest.raises(ValueError, match="orderBy is required"):
        domain.parse_order_by([" , "])
    with pytest.raises(ValueError, match="'Sector' is not one of"):
        domain.parse_order_by(["Country", "Sector"])


def test_groups_are_named_as_drec_names_them():
    def device(i, **kw):
        return {
            "id": i,
            "fuelCode": "ES100",
            "gridInterconnection": True,
            "capacity": 200.0,
            "commissioningDate": "2026-02-01T00:00:00.000Z",
            **kw,
        }

    devices = [device(1), device(2, capacity=2.5), device(3), device(4, gridInterconnection=False)]
    groups = domain.group_devices(devices, ["Fuel code", "Grid Interconnection", "Capacity"], NOW)
    assert [(g["name"], [d["id"] for d in g["devices"]]) for g in groups] == [
        ("Solar,true,200", [1, 3]),
        ("Solar,true,2.5", [2]),
        ("Solar,false,200", [4]),
    ]
    assert groups[0]["devices"][0] | {} == {
        **device(1),
        "commissioningDateRange": "Year 1 - Q1",
        "capacityRange": "51kW - 500kW",
        "selected": True,
    }


def test_onboarding_date_moves_back_at_most_six_calendar_months():
    onboarded = datetime(2026, 8, 31, 12, 0, 0, 123456, tzinfo=UTC)
    assert domain.months_before(onboarded, 6) == datetime(2026, 2, 28, 12, 0, 0, 123456, tzinfo=UTC)
    assert domain.months_before(datetime(2026, 3, 15, tzinfo=UTC), 6) == datetime(2025, 9, 15, tzinfo=UTC)
    domain.check_onboarding_date(datetime(2026, 2, 28, 12, 0, 0, 123000, tzinfo=UTC), onboarded)
    domain.check_onboarding_date(datetime(2026, 8, 31, 12, 0, 0, 122000, tzinfo=UTC), onboarded)
    for given in (datetime(2026, 2, 28, 11, 59, tzinfo=UTC), datetime(2026, 8, 31, 12, 0, 0, 123000, tzinfo=UTC)):
        with pytest.raises(ValueError, match="must be before the onboarding date"):
            domain.check_onboarding_date(given, onboarded)
    assert domain.onboarding_change_refusal(0) is None
    assert "certified energy (5 Wh)" in domain.onboarding_change_refusal(5)


def test_instants_without_offset_are_utc():
    assert domain.parse_instant(" 2024-01-31 ", "givenDate") == datetime(2024, 1, 31, tzinfo=UTC)
    assert domain.parse_instant("2024-01-31T02:00:00+02:00", "givenDate") == datetime(2024, 1, 31, tzinfo=UTC)
    with pytest.raises(ValueError, match="givenDate 'soon' is not an ISO 8601"):
        domain.parse_instant("soon", "givenDate")


@pytest.mark.parametrize(
    ("name", "content_type", "key"),
    [
        ("devices.csv", "text/csv", f"devices-{U}.csv"),
        ("C:\\Users\\me\\My Devices (2).CSV", "text/csv", f"My_Devices_2-{U}.csv"),
        ("../../etc/passwd.png", "image/png", f"passwd-{U}.png"),
        ("photo", "image/jpeg", f"photo-{U}.jpg"),
        ("...", "application/pdf", f"file-{U}.pdf"),
        ("x.tar.gz?x=1", "text/csv", f"x.tar-{U}.csv"),
    ],
)
def test_file_keys_are_url_safe(name, content_type, key):
    assert domain.file_key(name, content_type, U) == key


def test_file_types():
    assert domain.file_type("text/csv; charset=utf-8", "a.csv") == "text/csv"
    assert domain.file_type("image/jpg", "a.jpg") == "image/jpeg"
    assert domain.file_type("application/octet-stream", "a.pdf") == "application/pdf"
    assert domain.file_type("", "a.png") == "image/png"
    for content_type, name in (("text/html", "a.html"), ("", "a.exe"), ("application/octet-stream", "noname")):
        with pytest.raises(ValueError, match="unsupported file type"):
            domain.file_type(content_type, name)


def test_who_reads_a_file_and_which_names_a_bulk_onboarding_takes():
    assert domain.may_read_file("OrganizationAdmin", 5, 5)
    assert not domain.may_read_file("OrganizationAdmin", 5, 6)
    assert domain.may_read_file("Admin", 1, 6)
    assert domain.check_bulk_file_name(" a-1.CSV ") == "a-1.CSV"
    for bad in (None, "", 3, "a.png"):
        with pytest.raises(ValueError):
            domain.check_bulk_file_name(bad)
