"""One timestamp format in every answer: D-REC's `2024-01-01T00:00:00.000Z` (UTC, milliseconds, `Z`)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """`moment` in UTC as D-REC writes it; finer precision (µs) is kept when present, so no read loses it."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def now_iso() -> str:
    now = datetime.now(UTC)
    return iso(now.replace(microsecond=now.microsecond // 1000 * 1000))
