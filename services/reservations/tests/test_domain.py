import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from opendrec_kit.paging import Page, total_pages
from opendrec_reservations.domain import (
    DeviceState,
    Window,
    refuse_buyer,
    refuse_end,
    refuse_window,
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


def test_a_window_must_end_after_now():
    assert refuse_window(Window(T0 - D, T0 + D), T0) is None
    assert "is in the past" in refuse_window(Window(T0 - D, T0), T0)


def test_an_admin_names_a_buyer_organization():
    assert "organizationId is required" in refuse_buyer("Admin", 1, "Admin", None)
    assert "your own Admin organization" in refuse_buyer("Admin", 1, "Admin", 1)
    assert refuse_buyer("Admin", 1, "Admin", 7) is None  # acting_organization checks it is a Buyer organization
    assert refuse_buyer("Buyer", 7, "Buyer", None) is None
