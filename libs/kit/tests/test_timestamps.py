from datetime import UTC, datetime, timedelta, timezone

from opendrec_kit.timestamps import iso, iso_exact, iso_or_none


def test_answers_use_d_recs_format_in_utc_to_the_millisecond():
    ist = timezone(timedelta(hours=5, minutes=30))
    assert iso(datetime(2024, 1, 1, 5, 30, tzinfo=ist)) == "2024-01-01T00:00:00.000Z"
    assert iso(datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)) == "2024-02-29T23:59:59.999Z"
    assert iso_or_none(None) is None


def test_a_clients_instant_keeps_its_microseconds():
    assert iso_exact(datetime(2024, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC)) == "2024-01-01T00:00:00.123Z"
    assert iso_exact(datetime(2024, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)) == "2024-01-01T00:00:00.123456Z"
