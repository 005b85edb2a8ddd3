import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from opendrec_kit.paging import Page, total_pages
from opendrec_reservations.domain import (
    MAX_PAST,
    Bounds,
    DeviceState,
    Window,
    capacity_range,
    commissioning_date_range,
    expiry_of,
    group_attributes,
    may_see_reservation,
    ongoing_period,
    period_start,
    refuse_ahead,
    refuse_buyer,
    refuse_dates,
    refuse_end,
    refuse_new_end,
    refuse_target,
    same_api_user,
    select_devices,
    state_of,
    target_wh,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
D = timedelta(days=1)


def test_free_known_devices_are_accepted_in_request_order_without_repeats():
    known = {1: DeviceState(1, 10), 2: DeviceState(2, 10)}
    sel = select_devices([2, 1, 2], known, Window(T0, T0 + D))
    assert sel.accepted == [2, 1] and sel.refused == {}


def test_unknown_and_overlapping_devices_are_refused_with_reasons():
    known = {1: DeviceState(1, 10, [Window(T0, T0 + 2 * D)]), 2: DeviceState(2, 10, [Window(T0 + 2 * D, T0 + 3 * D)])}
    sel = select_devices([1, 2, 3], known, Window(T0 + D, T0 + 2 * D))
    assert sel.accepted == [2]  # touching windows don't overlap
    assert sel.refused == {1: "already reserved in an overlapping window", 3: "unknown device"}


def test_target_converts_mwh_to_whole_wh_exactly():
    assert target_wh(Decimal("20")) == 20_000_000
    assert target_wh(Decimal("0.000001")) == 1
    assert target_wh(None) is None


def test_a_reservation_is_ended_once_recorded_or_once_its_end_date_passed():
    end = T0 + D
    assert state_of(end, None, None, T0).state == "active"
    assert state_of(end, T0 + D / 2, "ended_by_buyer", T0 + D / 2) == state_of(end, T0 + D / 2, "ended_by_buyer", T0)
    assert state_of(end, T0 + D / 2, "ended_by_buyer", T0).ended_at == T0 + D / 2
    passed = state_of(end, None, None, end)  # the sweep has not run yet: still shown ended, at its end date
    assert (passed.state, passed.ended_at, passed.end_reason) == ("ended", end, "expired")


def test_ending_is_refused_once_ended():
    end = T0 + D
    assert refuse_end(7, end, None, None, T0) is None
    assert (
        refuse_end(7, end, T0, "ended_by_buyer", T0)
        == "Reservation 7 already ended at 2025-01-01T00:00:00.000Z (ended by its buyer)"
    )
    assert "its end date passed" in refuse_end(7, end, None, None, end + D)


def test_pages_and_api_user_ids():
    assert Page(3, 20).offset == 40 and total_pages(0, 20) == 0 and total_pages(41, 20) == 3
    me = uuid.uuid4()
    assert same_api_user(str(me).upper(), me) and not same_api_user(None, me) and not same_api_user("x", me)


def test_deleted_devices_are_refused():
    sel = select_devices([1, 2], {1: DeviceState(1, 10, deleted=True), 2: DeviceState(2, 10)}, Window(T0, T0 + D))
    assert sel.accepted == [2] and sel.refused == {1: "device deleted"}


BOUNDS = Bounds(max_future=3653 * D, expiry_after_end=60 * D)


def test_a_window_may_lie_up_to_three_years_back_and_ten_years_ahead():
    assert refuse_dates(T0 - D, T0 + D, None, T0, BOUNDS) == []
    assert refuse_dates(T0 - 1000 * D, T0 - 900 * D, None, T0, BOUNDS) == []  # past output: History energy
    assert timedelta(milliseconds=3 * 3.164e10) == MAX_PAST
    too_old = refuse_dates(T0 - MAX_PAST, T0 - D, None, T0, BOUNDS)
    assert [f for f, _ in too_old] == ["reservationStartDate"] and "3 year" in too_old[0][1]
    assert [f for f, _ in refuse_dates(T0 - 2 * MAX_PAST, T0 - MAX_PAST, None, T0, BOUNDS)] == [
        "reservationStartDate",
        "reservationEndDate",
    ]
    assert refuse_dates(T0, T0 + 3653 * D, None, T0, BOUNDS) == []
    [(field, message)] = refuse_dates(T0, T0 + 3654 * D, None, T0, BOUNDS)
    assert field == "reservationEndDate" and "within 3653 days" in message


def test_an_expiry_is_not_before_the_end_and_defaults_to_the_end_plus_the_configured_days():
    assert refuse_ahead(T0 + D, T0 + D, T0, BOUNDS) == []
    [(field, message)] = refuse_ahead(T0 + D, T0 + D / 2, T0, BOUNDS)
    assert field == "reservationExpiryDate" and "Expiry date cannot be less" in message
    assert [f for f, _ in refuse_ahead(T0 + D, T0 + 4000 * D, T0, BOUNDS)] == ["reservationExpiryDate"]
    assert expiry_of(T0, None, BOUNDS) == T0 + 60 * D and expiry_of(T0, T0 + D, BOUNDS) == T0 + D


def test_a_target_the_devices_cannot_reach_in_the_window_is_refused():
    day = Window(T0, T0 + D)
    assert refuse_target(100, day, 2_400_000) is None  # 100 kW × 24 h = 2.4 MWh exactly
    assert refuse_target(100, day, None) is None
    details = refuse_target(100, day, 2_400_001)
    assert details == {
        "meteredTimePeriodInHours": 24.0,
        "targetCapacityInMegaWattHour": 2.400001,
        "probablyAchievableCapacityInMegaWattHour": 2.4,
    }


def test_the_end_moves_after_the_start_and_not_before_the_current_period():
    now = T0 + 5 * D + timedelta(hours=7, minutes=30)
    start = T0
    assert refuse_new_end(start, now + D, "hourly", now) is None
    assert refuse_new_end(start, now.replace(minute=0), "hourly", now) is None  # the current hour's start
    status, message = refuse_new_end(start, now.replace(minute=0) - timedelta(seconds=1), "hourly", now)
    assert status == 409 and "cannot reduce below start time:2025-01-06T07:00:00.000Z" in message
    assert refuse_new_end(start, T0 + 5 * D - timedelta(seconds=1), "daily", now)[0] == 409
    assert refuse_new_end(start, T0 + 5 * D, "daily", now) is None  # today's start
    assert refuse_new_end(start, start, "hourly", now)[0] == 400


def test_periods_and_the_one_under_way():
    t = datetime(2025, 5, 14, 13, 20, tzinfo=UTC)  # a Wednesday
    assert period_start(t, "hourly") == datetime(2025, 5, 14, 13, tzinfo=UTC)
    assert period_start(t, "weekly") == datetime(2025, 5, 12, tzinfo=UTC)
    assert period_start(t, "quarterly") == datetime(2025, 4, 1, tzinfo=UTC)
    within = ongoing_period(T0, datetime(2025, 12, 1, tzinfo=UTC), "monthly", t)
    assert within == Window(datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC))
    cut = ongoing_period(datetime(2025, 5, 10, tzinfo=UTC), datetime(2025, 5, 20, tzinfo=UTC), "monthly", t)
    assert cut == Window(datetime(2025, 5, 10, tzinfo=UTC), datetime(2025, 5, 20, tzinfo=UTC))
    ahead = ongoing_period(datetime(2025, 11, 15, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "quarterly", t)
    assert ahead == Window(datetime(2025, 11, 15, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_group_attributes_from_the_devices():
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert [capacity_range(kw) for kw in (1, 2, 50, 51, 500, 5000, 5600)] == [
        "0.1W - 1kW",
        "1.01kW - 50kW",
        "1.01kW - 50kW",
        "51kW - 500kW",
        "51kW - 500kW",
        "500kW - 5MW",
        "5MW+",
    ]
    years = [datetime(y, 2, 1, tzinfo=UTC) for y in (2025, 2024, 2021, 2020, 2015, 2011, 2010)]
    assert [commissioning_date_range(d, now) for d in years] == [
        "Year 1 - Q1",
        "Year 2",
        "Year 5",
        "6 - 10 years",
        "11 - 15 years",
        "11 - 15 years",
        "15 years+",
    ]
    attributes = group_attributes(["IND"], ["ES100", "ES200"], ["TC110"], 150.7, [years[1], years[1]], now)
    assert attributes == {
        "countryCode": ["IND"],
        "fuelCode": ["ES100", "ES200"],
        "deviceTypeCodes": ["TC110"],
        "offTakers": [],
        "aggregatedCapacity": 150,
        "capacityRange": "51kW - 500kW",
        "commissioningDateRange": ["Year 2"],
    }


def test_an_admin_names_a_buyer_organization():
    assert "organizationId is required" in refuse_buyer("Admin", 1, "Admin", None)
    assert "your own Admin organization" in refuse_buyer("Admin", 1, "Admin", 1)
    assert refuse_buyer("Admin", 1, "Admin", 7) is None  # acting_organization checks it is a Buyer organization
    assert refuse_buyer("Buyer", 7, "Buyer", None) is None


def test_a_reservation_s_state_is_seen_by_an_admin_its_buyer_and_its_devices_owners():
    assert may_see_reservation(True, set(), 700, [500])
    assert may_see_reservation(False, {700}, 700, [500])
    assert may_see_reservation(False, {3, 501}, 700, [500, 501])  # an API user's developer organization
    assert not may_see_reservation(False, {701, 502}, 700, [500, 501])
    assert not may_see_reservation(False, set(), 700, [500])
