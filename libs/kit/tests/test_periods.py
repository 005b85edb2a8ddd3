from datetime import UTC, datetime, timedelta, timezone

import pytest

from opendrec_kit.periods import FREQUENCIES, next_period_start, period_of_end, period_start

IST = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [
        ("hourly", datetime(2025, 5, 14, 13, tzinfo=UTC)),
        ("daily", datetime(2025, 5, 14, tzinfo=UTC)),
        ("weekly", datetime(2025, 5, 12, tzinfo=UTC)),  # a Monday
        ("monthly", datetime(2025, 5, 1, tzinfo=UTC)),
        ("quarterly", datetime(2025, 4, 1, tzinfo=UTC)),
    ],
)
def test_period_start_of_each_frequency(frequency, expected):
    assert period_start(datetime(2025, 5, 14, 13, 20, 5, 7, tzinfo=UTC), frequency) == expected


def test_periods_are_cut_in_utc_whatever_the_moments_zone():
    # 2025-06-01 03:00 in India is still 31 May in UTC
    moment = datetime(2025, 6, 1, 3, 0, tzinfo=IST)
    assert period_start(moment, "daily") == datetime(2025, 5, 31, tzinfo=UTC)
    assert period_start(moment, "monthly") == datetime(2025, 5, 1, tzinfo=UTC)
    assert period_start(moment, "hourly").tzinfo == UTC


def test_a_boundary_starts_its_own_period():
    for frequency, boundary in [
        ("hourly", datetime(2025, 5, 14, 13, tzinfo=UTC)),
        ("daily", datetime(2025, 5, 14, tzinfo=UTC)),
        ("weekly", datetime(2025, 5, 12, tzinfo=UTC)),
        ("monthly", datetime(2025, 6, 1, tzinfo=UTC)),
        ("quarterly", datetime(2025, 7, 1, tzinfo=UTC)),
    ]:
        assert period_start(boundary, frequency) == boundary
        assert period_start(boundary - timedelta(microseconds=1), frequency) < boundary


def test_weeks_start_on_monday():
    sunday = datetime(2025, 5, 18, 23, 59, tzinfo=UTC)
    assert period_start(sunday, "weekly") == datetime(2025, 5, 12, tzinfo=UTC)
    assert period_start(sunday + timedelta(minutes=1), "weekly") == datetime(2025, 5, 19, tzinfo=UTC)
    # a week across a year end
    assert period_start(datetime(2025, 1, 1, tzinfo=UTC), "weekly") == datetime(2024, 12, 30, tzinfo=UTC)


def test_month_and_quarter_ends():
    assert period_start(datetime(2025, 3, 31, 23, 59, tzinfo=UTC), "quarterly") == datetime(2025, 1, 1, tzinfo=UTC)
    assert period_start(datetime(2025, 12, 31, 23, 59, tzinfo=UTC), "quarterly") == datetime(2025, 10, 1, tzinfo=UTC)
    assert period_start(datetime(2025, 1, 31, 12, tzinfo=UTC), "monthly") == datetime(2025, 1, 1, tzinfo=UTC)
    assert next_period_start(datetime(2025, 1, 1, tzinfo=UTC), "monthly") == datetime(2025, 2, 1, tzinfo=UTC)
    assert next_period_start(datetime(2025, 12, 1, tzinfo=UTC), "monthly") == datetime(2026, 1, 1, tzinfo=UTC)
    assert next_period_start(datetime(2025, 10, 1, tzinfo=UTC), "quarterly") == datetime(2026, 1, 1, tzinfo=UTC)
    assert next_period_start(datetime(2025, 4, 1, tzinfo=UTC), "quarterly") == datetime(2025, 7, 1, tzinfo=UTC)


def test_leap_day():
    leap = datetime(2024, 2, 29, 18, tzinfo=UTC)
    assert period_start(leap, "daily") == datetime(2024, 2, 29, tzinfo=UTC)
    assert period_start(leap, "monthly") == datetime(2024, 2, 1, tzinfo=UTC)
    assert next_period_start(datetime(2024, 2, 29, tzinfo=UTC), "daily") == datetime(2024, 3, 1, tzinfo=UTC)
    assert next_period_start(datetime(2024, 2, 1, tzinfo=UTC), "monthly") == datetime(2024, 3, 1, tzinfo=UTC)
    assert period_of_end(datetime(2024, 3, 1, tzinfo=UTC), "daily") == datetime(2024, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize("frequency", FREQUENCIES)
def test_the_next_period_starts_where_this_one_ends(frequency):
    start = period_start(datetime(2025, 11, 20, 7, 30, tzinfo=UTC), frequency)
    following = next_period_start(start, frequency)
    assert following > start
    assert period_start(following, frequency) == following
    assert period_start(following - timedelta(microseconds=1), frequency) == start


def test_an_interval_ending_on_a_boundary_belongs_to_the_period_before():
    hour = datetime(2025, 5, 14, 13, tzinfo=UTC)
    assert period_of_end(hour, "hourly") == hour - timedelta(hours=1)
    assert period_of_end(hour + timedelta(microseconds=1), "hourly") == hour
    assert period_of_end(datetime(2025, 7, 1, tzinfo=UTC), "quarterly") == datetime(2025, 4, 1, tzinfo=UTC)


def test_an_unknown_frequency_is_refused():
    with pytest.raises(ValueError, match="unknown frequency 'yearly'"):
        period_start(datetime(2025, 1, 1, tzinfo=UTC), "yearly")
    with pytest.raises(ValueError, match="unknown frequency 'yearly'"):
        next_period_start(datetime(2025, 1, 1, tzinfo=UTC), "yearly")
