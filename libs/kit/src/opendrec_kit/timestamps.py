"""One timestamp format in every answer: D-REC's `2024-01-01T00:00:00.000Z` (UTC, milliseconds, `Z`)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """`moment` in UTC as D-REC writes it, to the millisecond (server-stamped times: created, updated, ...)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def iso_exact(moment: datetime) -> str:
    """The same format for an instant a client sent (a read's start and end): milliseconds, or microseconds when
    the client gave them, so an answer never moves a read's boundary."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


# The years an instant a client sends may fall in: no device, read or reservation is older, and far-off years
# overflow when moved to UTC (0001-01-01T00:00:00+14:00 has no UTC; issue 12).
EARLIEST_YEAR, LATEST_YEAR = 1900, 2199


def client_instant(moment: datetime, field: str = "the date") -> datetime:
    """An instant a client sent, in UTC (without an offset: UTC); ValueError naming `field` outside the years
    EARLIEST_YEAR to LATEST_YEAR."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValueError(f"{field} must fall within the years {EARLIEST_YEAR} to {LATEST_YEAR}")
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)


def now_iso() -> str:
    return iso(datetime.now(UTC))
