from datetime import UTC, datetime, timedelta
from decimal import Decimal

from opendrec_reservations.domain import DeviceState, Window, select_devices, target_wh

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
