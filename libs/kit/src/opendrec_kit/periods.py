"""D-REC's certification periods (the `frequency` of a reservation), in UTC, without I/O.

A period of a frequency starts on the hour (hourly), at midnight (daily), on Monday at midnight (weekly), on the
first of the month (monthly) or on the first of January, April, July or October (quarterly).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FREQUENCIES = ("hourly", "daily", "weekly", "monthly", "quarterly")
_MONTHS = {"monthly": 1, "quarterly": 3}
_FIXED = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}


def period_start(moment: datetime, frequency: str) -> datetime:
    """Start (UTC) of the period of `frequency` that the instant `moment` lies in."""
    t = moment.astimezone(UTC)
    if frequency == "hourly":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if frequency == "daily":
        return day
    if frequency == "weekly":
        return day - timedelta(days=day.weekday())
    if frequency == "monthly":
        return day.replace(day=1)
    if frequency == "quarterly":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    raise ValueError(f"unknown frequency {frequency!r}")


def period_of_end(end: datetime, frequency: str) -> datetime:
    """Start of the period an interval ending at `end` belongs to: an interval ending exactly on a boundary
    belongs to the period before it."""
    return period_start(end - timedelta(microseconds=1), frequency)


def next_period_start(start: datetime, frequency: str) -> datetime:
    """The start of the period after the one starting at `start` (a period_start)."""
    if frequency in _FIXED:
        return start + _FIXED[frequency]
    if frequency not in _MONTHS:
        raise ValueError(f"unknown frequency {frequency!r}")
    month = start.month - 1 + _MONTHS[frequency]
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)
