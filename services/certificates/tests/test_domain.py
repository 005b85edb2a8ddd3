"""The certification rules: every Wh at most once, in proportion to the window, within target."""

from datetime import UTC, datetime, timedelta

import pytest

from opendrec_certificates.domain import (
    Read,
    Reservation,
    allocate,
    certifiable,
    issues,
    share_in_window,
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


def test_hourly_issues_group_by_hour_of_read_end():
    reads = [
        Read(1, T0, T0 + timedelta(minutes=30), 100, 0),
        Read(2, T0 + timedelta(minutes=30), T0 + H, 200, 0),
        Read(3, T0 + H, T0 + 2 * H, 300, 0),
    ]
    out = issues(allocate(reads, res()), "hourly")
    assert [(i.period_start, i.energy_wh) for i in out] == [(T0, 300), (T0 + H, 300)]
    assert out[0].generation_start == T0 and out[0].generation_end == T0 + H


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
