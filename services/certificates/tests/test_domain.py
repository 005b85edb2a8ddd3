"""The certification rules: every Wh at most once, in proportion to the window, within target."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from opendrec_certificates import domain
from opendrec_certificates.domain import (
    HISTORY,
    PERIOD,
    Read,
    Reservation,
    allocate,
    certifiable,
    certificate_id,
    issuable,
    issue_round,
    share_in_window,
    split,
)
from opendrec_kit.periods import period_of_end

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)


def res(start=T0, end=T0 + 10 * H, target=None, exceed=True, certified=0, frequency="hourly"):
    return Reservation(1, start, end, frequency, target, exceed, certified)


def test_read_inside_window_is_certified_whole():
    reads = [Read(1, T0, T0 + H, 1000, 0)]
    [a] = allocate(reads, res())
    assert (a.read_id, a.energy_wh, a.start, a.end) == (1, 1000, T0, T0 + H)


def test_read_half_outside_window_gives_half_rounded_down():
    reads = [Read(1, T0 - H, T0 + H, 1001, 0)]
    [a] = allocate(reads, res())
    assert a.energy_wh == 500 and a.start == T0 and a.end == T0 + H


def test_read_outside_window_gives_nothing():
    assert allocate([Read(1, T0 - 2 * H, T0, 1000, 0)], res()) == []
    assert allocate([Read(1, T0 + 10 * H, T0 + 11 * H, 1000, 0)], res()) == []


def test_already_certified_energy_is_never_certified_again():
    [a] = allocate([Read(1, T0, T0 + H, 1000, 800)], res())
    assert a.energy_wh == 200
    assert allocate([Read(1, T0, T0 + H, 1000, 1000)], res()) == []


def test_target_caps_without_authority_to_exceed():
    reads = [Read(i, T0 + i * H, T0 + (i + 1) * H, 1000, 0) for i in range(3)]
    allocations = allocate(reads, res(target=2500, exceed=False, certified=0))
    assert [a.energy_wh for a in allocations] == [1000, 1000, 500]
    assert allocate(reads, res(target=2500, exceed=False, certified=2500)) == []


def test_target_is_indicative_with_authority_to_exceed():
    reads = [Read(i, T0 + i * H, T0 + (i + 1) * H, 1000, 0) for i in range(3)]
    assert sum(a.energy_wh for a in allocate(reads, res(target=1500, exceed=True))) == 3000


def test_adjacent_windows_never_share_more_than_the_read():
    read = Read(1, T0, T0 + 3 * H, 1000, 0)
    first = share_in_window(read, T0 - H, T0 + H)
    second = share_in_window(read, T0 + H, T0 + 4 * H)
    assert first[0] + second[0] <= 1000 and first[0] == 333 and second[0] == 666


def test_instant_read_counts_when_its_time_is_inside():
    assert share_in_window(Read(1, T0, T0, 50, 0), T0 - H, T0 + H)[0] == 50
    assert share_in_window(Read(1, T0, T0, 50, 0), T0 + H, T0 + 2 * H) is None


def test_reads_are_allocated_to_the_hour_they_lie_in():
    reads = [
        Read(1, T0, T0 + timedelta(minutes=30), 100, 0),
        Read(2, T0 + timedelta(minutes=30), T0 + H, 200, 0),
        Read(3, T0 + H, T0 + 2 * H, 300, 0),
    ]
    out = allocate(reads, res())
    assert [(a.read_id, a.period_start, a.period_end, a.energy_wh, a.kind) for a in out] == [
        (1, T0, T0 + H, 100, PERIOD),
        (2, T0, T0 + H, 200, PERIOD),
        (3, T0 + H, T0 + 2 * H, 300, PERIOD),
    ]


def test_a_read_straddling_boundaries_is_split_exactly_in_proportion_to_time():
    # 1001 Wh over 3 hours from 10:20: 40 min, 60 min, 60 min, 20 min -> cumulative floors, summing to 1001
    read = Read(1, T0 + timedelta(minutes=20), T0 + 3 * H + timedelta(minutes=20), 1001, 0)
    out = allocate([read], res())
    assert [(a.period_start, a.energy_wh) for a in out] == [
        (T0, 222),
        (T0 + H, 334),
        (T0 + 2 * H, 333),
        (T0 + 3 * H, 112),
    ]
    assert sum(a.energy_wh for a in out) == 1001
    assert out[0].start == read.start and out[-1].end == read.end and out[1].start == out[0].end == T0 + H
    # the window cuts the periods: one starting at 10:20 is the period [10:20, 11:00)
    cut = allocate([read], res(start=T0 + timedelta(minutes=20), end=T0 + 2 * H))
    assert [(a.period_start, a.period_end) for a in cut] == [(T0 + timedelta(minutes=20), T0 + H), (T0 + H, T0 + 2 * H)]
    assert sum(a.energy_wh for a in cut) == 1001 * 100 // 180 == 556


@pytest.mark.parametrize(
    ("frequency", "lo", "hi", "boundary"),
    [
        (
            "hourly",
            datetime(2025, 5, 14, 13, 30, tzinfo=UTC),
            datetime(2025, 5, 14, 14, 30, tzinfo=UTC),
            datetime(2025, 5, 14, 14, tzinfo=UTC),
        ),
        (
            "daily",
            datetime(2025, 5, 14, 12, tzinfo=UTC),
            datetime(2025, 5, 15, 12, tzinfo=UTC),
            datetime(2025, 5, 15, tzinfo=UTC),
        ),
        (
            "weekly",
            datetime(2025, 5, 18, 12, tzinfo=UTC),
            datetime(2025, 5, 19, 12, tzinfo=UTC),
            datetime(2025, 5, 19, tzinfo=UTC),
        ),  # Sunday -> Monday
        (
            "monthly",
            datetime(2025, 1, 31, 12, tzinfo=UTC),
            datetime(2025, 2, 1, 12, tzinfo=UTC),
            datetime(2025, 2, 1, tzinfo=UTC),
        ),
        (
            "quarterly",
            datetime(2025, 3, 31, 12, tzinfo=UTC),
            datetime(2025, 4, 1, 12, tzinfo=UTC),
            datetime(2025, 4, 1, tzinfo=UTC),
        ),
        (
            "daily",
            datetime(2028, 2, 29, 12, tzinfo=UTC),
            datetime(2028, 3, 1, 12, tzinfo=UTC),
            datetime(2028, 3, 1, tzinfo=UTC),
        ),  # leap day
        (
            "monthly",
            datetime(2028, 2, 28, tzinfo=UTC),
            datetime(2028, 3, 2, tzinfo=UTC),
            datetime(2028, 3, 1, tzinfo=UTC),
        ),
    ],
)
def test_period_boundaries(frequency, lo, hi, boundary):
    window = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    parts = split(1000, lo, hi, frequency, *window)
    assert (parts[0][1], parts[0][4]) == (boundary, boundary)
    assert parts[1][0] == boundary and parts[1][3] == boundary
    assert sum(wh for _, _, wh, _, _ in parts) == 1000
    # in proportion to time, to the Wh
    us = timedelta(microseconds=1)
    assert parts[0][2] == 1000 * ((boundary - lo) // us) // ((hi - lo) // us)


def test_leap_day_is_a_day_of_its_own():
    window = (datetime(2028, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC))
    parts = split(300, datetime(2028, 2, 28, tzinfo=UTC), datetime(2028, 3, 2, tzinfo=UTC), "daily", *window)
    assert [(p_lo.day, wh) for p_lo, _, wh, _, _ in parts] == [(28, 100), (29, 100), (1, 100)]


def test_a_history_read_is_one_allocation_of_its_own():
    [a] = allocate([Read(1, T0 - 5 * H, T0 + 5 * H, 2000, 0, history=True)], res(start=T0 - 10 * H))
    assert (a.kind, a.period_start, a.period_end, a.energy_wh) == (HISTORY, T0 - 5 * H, T0 + 5 * H, 2000)


def test_whole_kwh_are_issued_and_the_remainder_carried_to_the_next_certificate():
    first = issue_round({}, {1: 700, 2: 800})
    assert (first.issued_wh, first.carry_out_wh, first.parts, first.carry_out) == (
        1000,
        500,
        ((1, 700), (2, 300)),
        ((2, 500),),
    )
    second = issue_round(dict(first.carry_out), {1: 600})
    assert (second.carry_in_wh, second.allocated_wh, second.issued_wh, second.carry_out_wh) == (500, 600, 1000, 100)
    assert second.parts == ((1, 500), (2, 500))  # the carried energy leaves first
    nothing = issue_round(dict(second.carry_out), {3: 50})
    assert (nothing.issued_wh, nothing.carry_out_wh, nothing.parts) == (0, 150, ())
    for r in (first, second, nothing):
        assert r.allocated_wh + r.carry_in_wh == r.issued_wh + r.carry_out_wh
        assert sum(wh for _, wh in r.parts) == r.issued_wh


def test_the_certificate_that_reaches_the_target_is_cut_to_what_remains():
    cut = issue_round({1: 400}, {1: 3000}, target_left=2500, full=False)
    assert (cut.issued_wh, cut.target_reached, cut.carry_out_wh) == (2500, True, 900)
    full = issue_round({1: 400}, {1: 100}, target_left=500, full=True)  # allocated up to the target: to the Wh
    assert (full.issued_wh, full.target_reached, full.carry_out_wh) == (500, True, 0)
    partial = issue_round({}, {1: 1500}, target_left=5000, full=True)
    assert (partial.issued_wh, partial.target_reached) == (1500, False)


def test_a_history_certificate_needs_a_whole_kwh():
    assert issue_round({}, {1: 999}, whole_kwh_only=True).issued_wh == 0
    assert issue_round({}, {1: 2500}, whole_kwh_only=True).issued_wh == 2000


def test_a_period_is_issued_once_closed_and_settled():
    settle = timedelta(seconds=30)
    assert not issuable(T0 + H, T0 + 10 * H, settle, T0 + H)
    assert issuable(T0 + H, T0 + 10 * H, settle, T0 + H + settle)
    assert issuable(T0 + H, T0 + H / 2, settle, T0 + H / 2 + settle)  # the window ended earlier


def test_a_certificate_id_is_its_key():
    assert certificate_id(7, "DEU", T0, "period", 0) == certificate_id(7, "DEU", T0, "period", 0)
    assert certificate_id(7, "DEU", T0, "period", 0) != certificate_id(7, "DEU", T0, "late", 1)
    assert certificate_id(7, None, T0, "period", 0) != certificate_id(7, "DEU", T0, "period", 0)


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [
        ("hourly", datetime(2025, 5, 14, 13, tzinfo=UTC)),
        ("daily", datetime(2025, 5, 14, tzinfo=UTC)),
        ("weekly", datetime(2025, 5, 12, tzinfo=UTC)),
        ("monthly", datetime(2025, 5, 1, tzinfo=UTC)),
        ("quarterly", datetime(2025, 4, 1, tzinfo=UTC)),
    ],
)
def test_period_of_an_end(frequency, expected):
    assert period_of_end(datetime(2025, 5, 14, 13, 20, tzinfo=UTC), frequency) == expected


def test_interval_ending_on_the_hour_belongs_to_the_hour_before():
    assert period_of_end(T0 + H, "hourly") == T0


def test_an_early_end_moves_the_window_end_and_a_later_one_does_not():
    from opendrec_certificates.domain import effective_end

    assert effective_end(T0 + 10 * H, None) == T0 + 10 * H
    assert effective_end(T0 + 10 * H, T0 + 2 * H) == T0 + 2 * H
    assert effective_end(T0 + 10 * H, T0 + 12 * H) == T0 + 10 * H
    # Ended before it started: an empty window, nothing is certified.
    assert allocate([Read(1, T0, T0 + H, 1000, 0)], res(start=T0 + H, end=effective_end(T0 + 10 * H, T0))) == []


def test_an_organizations_log_is_of_its_devices_or_its_reservations():
    from opendrec_certificates.domain import organization_view

    assert organization_view("Developer") == "owner" and organization_view("Buyer") == "buyer"
    assert organization_view("Admin") is None and organization_view("ApiUser") is None


def test_nothing_is_certifiable_from_the_expiry_on():
    res = Reservation(1, T0, T0 + H, "hourly", None, True, 0, expiry=T0 + 2 * H)
    assert certifiable(res, T0 + 2 * H - H / 60) and not certifiable(res, T0 + 2 * H)
    assert certifiable(Reservation(1, T0, T0 + H, "hourly", None, True, 0), T0 + 1000 * H)


def test_device_filter_and_generation_window_rules():
    assert domain.device_filter({}) == domain.NO_DEVICE_LOG_FILTER and not domain.device_filter({}).on_devices
    assert domain.device_filter({"countryCode": "deu"}).countries == ("DEU",)
    assert domain.device_filter({"countryCode": ["deu", "ind"]}).countries == ("DEU", "IND")
    both = domain.device_filter({"fuelCode": "es100", "offTakers": ["School", "Residential"], "toCapacity": "5"})
    assert (both.fuel_codes, both.off_takers, both.capacity_to_kw, both.on_devices) == (
        ("ES100",),
        ("School", "Residential"),
        5.0,
        True,
    )
    for fields, field in (
        ({"gridInterconnection": True}, "deviceFilter[gridInterconnection]"),
        ({"colour": "red"}, "deviceFilter[colour]"),
        ({"countryCode": "D1"}, "deviceFilter[countryCode]"),
        ({"countryCode": 7}, "deviceFilter[countryCode]"),
        ({"offTakers": [1]}, "deviceFilter[offTakers]"),
        ({"fromCapacity": True}, "deviceFilter[fromCapacity]"),
        ({"toCapacity": "inf"}, "deviceFilter[toCapacity]"),
        ({"toCapacity": 10**400}, "deviceFilter[toCapacity]"),
        ({"fromCapacity": 5, "toCapacity": 4}, "deviceFilter[fromCapacity]"),
        ({"fromCommissioningDate": "2024-02-30"}, "deviceFilter[fromCommissioningDate]"),
        ({"toCommissioningDate": 20240101}, "deviceFilter[toCommissioningDate]"),
    ):
        with pytest.raises(domain.FilterError) as raised:
            domain.device_filter(fields)
        assert raised.value.field == field
    with pytest.raises(domain.FilterError):
        domain.generation_window(T0 + timedelta(hours=1), T0)
    assert domain.megawatt_hours_to_wh(Decimal("1.0000019")) == 1_000_001


def test_csv_cells_never_start_a_formula():
    assert [domain.csv_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "a=b", None, 5, "")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "a=b",
        "",
        "5",
        "",
    ]
    assert domain.export_filename('a"b\r\nc é', "2025-03-01") == "a_b__c _ 2025-03-01.csv"
    assert domain.export_filename("", "2025-03-01") == "reservation 2025-03-01.csv"
