from datetime import UTC, datetime, timedelta, timezone

import pytest

from opendrec_kit.timestamps import client_instant, iso, iso_exact, iso_or_none


def test_answers_use_d_recs_format_in_utc_to_the_millisecond():
    ist = timezone(timedelta(hours=5, minutes=30))
    assert iso(datetime(2024, 1, 1, 5, 30, tzinfo=ist)) == "2024-01-01T00:00:00.000Z"
    assert iso(datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)) == "2024-02-29T23:59:59.999Z"
    assert iso_or_none(None) is None


def test_a_clients_instant_keeps_its_microseconds():
    assert iso_exact(datetime(2024, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)) == "2024-01-01T00:00:00.123Z"
    assert iso_exact(datetime(2024, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)) == "2024-01-01T00:00:00.123456Z"


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31T23:59:59", "2200-01-01"]
)
def test_an_instant_a_client_sends_outside_the_years_taken_is_refused_naming_the_field(moment):
    # the first two have no UTC at all (issue 12: they were 500s on several endpoints)
    with pytest.raises(ValueError, match=r"^reservationEndDate must fall within the years 1900 to 2199$"):
        client_instant(datetime.fromisoformat(moment), "reservationEndDate")


def test_an_instant_a_client_sends_is_taken_in_utc_and_naive_means_utc():
    ist = timezone(timedelta(hours=5, minutes=30))
    assert client_instant(datetime(1900, 1, 1, 5, 30, tzinfo=ist)) == datetime(1900, 1, 1, tzinfo=UTC)
    assert client_instant(datetime(2199, 12, 31, 23, 59)) == datetime(2199, 12, 31, 23, 59, tzinfo=UTC)
