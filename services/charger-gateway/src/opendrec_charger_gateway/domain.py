"""Kazam transactions -> meter reads: pure rules, no I/O.

From the Kazam collection (shared/seeds/kazam-platform.postman_collection.json): times are unix
seconds; a finished transaction has `tx_status` 0 with `end_time` and `end_reason`, an ongoing one
has neither end field; `total_usage` is in Wh (the unit of `usage_limit`: an example limited to
150 ended with total_usage 150.02 and end_reason "limit_reached").
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from opendrec_contracts import MeterRead, ReadSubmitted

TX_FINISHED = 0
SOURCE = "kazam"


@dataclass(frozen=True)
class DeviceState:
    """A device as registered or updated at `state_at` (its event's time: states may arrive out of order)."""

    device_id: int
    external_id: str
    organization_id: int
    onboarded_at: datetime
    state_at: datetime


@dataclass(frozen=True)
class Link:
    """A charger linked to one of our devices, as the poller sees it."""

    charger_id: str
    device_id: int
    external_id: str
    organization_id: int
    linked_at: datetime
    poll_cursor: int  # unix seconds


class InvalidTransaction(ValueError):
    """A finished transaction we cannot turn into a read (its reason is kept with it)."""


def unix(value: Any) -> int | None:
    """Kazam sends times as numbers and sometimes as quoted numbers."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) else None


def is_finished(txn: Mapping[str, Any]) -> bool:
    status = txn.get("tx_status")
    return (status is None or unix(status) == TX_FINISHED) and unix(txn.get("end_time")) is not None


def counts_for(txn: Mapping[str, Any], link: Link) -> bool:
    """A finished transaction counts for a link when it ended at or after the link (to the second:
    Kazam times have no fractions, so a transaction ending in the link's own second counts)."""
    end = unix(txn.get("end_time"))
    return is_finished(txn) and end is not None and end >= math.floor(link.linked_at.timestamp())


def usage_wh(total_usage: Any) -> int:
    """Kazam's total_usage (Wh, two decimals) as whole watt-hours, halves rounded up."""
    if total_usage is None or isinstance(total_usage, bool):
        raise InvalidTransaction("total_usage is missing")
    try:
        value = Decimal(str(total_usage))
    except InvalidOperation:
        raise InvalidTransaction(f"total_usage {total_usage!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise InvalidTransaction(f"total_usage {total_usage!r} is not a non-negative number")
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def read_for(txn: Mapping[str, Any], link: Link) -> ReadSubmitted:
    """One finished transaction as one Delta read of the linked device."""
    txn_id = str(txn["txn_id"])
    start, end = unix(txn.get("start_time")), unix(txn.get("end_time"))
    if start is None or end is None:
        raise InvalidTransaction("start_time or end_time is missing")
    if end < start:
        raise InvalidTransaction(f"end_time {end} is before start_time {start}")
    return ReadSubmitted(
        submission_id=f"{SOURCE}:{txn_id}",
        device_id=link.device_id,
        external_id=link.external_id,
        organization_id=link.organization_id,
        read_type="Delta",
        source=SOURCE,
        reads=[MeterRead(start=_utc(start), end=_utc(end), value_wh=usage_wh(txn.get("total_usage")))],
    )


def query_window(cursor: int, now: int, lookback_s: int) -> tuple[int, int]:
    """The start_time range to ask Kazam for."""
    return cursor - lookback_s, now


def next_cursor(window_end: int, ongoing_starts: Iterable[int]) -> int:
    """Kazam selects transactions by start_time: the cursor must not pass the start of a transaction
    still running, or that transaction would never be asked for again once it finishes."""
    return min([window_end, *ongoing_starts])


def group_by_cursor(links: Iterable[Link], size: int) -> list[tuple[int, list[Link]]]:
    """Links sharing a cursor share a request (at most `size` chargers each). After a quiet poll all
    cursors are equal, so this is usually one request per `size` chargers."""
    by_cursor: dict[int, list[Link]] = defaultdict(list)
    for link in links:
        by_cursor[link.poll_cursor].append(link)
    return [
        (cursor, group[i : i + size]) for cursor, group in sorted(by_cursor.items()) for i in range(0, len(group), size)
    ]


@dataclass
class Outcome:
    """What one Kazam answer means for a set of links: rows to record, reads to emit, cursors to set."""

    records: list[tuple[str, str, int, datetime | None, datetime | None, int | None, str, str | None]]
    reads: dict[str, ReadSubmitted]  # txn_id -> read
    cursors: dict[str, int]  # charger_id -> new cursor
    ignored: int = 0


def _end_order(txn: Mapping[str, Any]) -> tuple[bool, int]:
    end = unix(txn.get("end_time"))
    return (end is None, end or 0)


def plan(transactions: Iterable[Mapping[str, Any]], links: Mapping[str, Link], window_end: int) -> Outcome:
    """Sort a poll's transactions into reads to submit, transactions to skip (with the reason) and
    new cursors. Transactions of other chargers, ongoing ones and ones that ended before their
    link are not recorded (ongoing ones hold the cursor back)."""
    outcome = Outcome(records=[], reads={}, cursors={})
    ongoing: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    # Oldest end first: Kazam answers newest first, but a charger's Delta reads must arrive in time order
    # (readings refuses a Delta that does not end after the previous one).
    for txn in sorted(transactions, key=_end_order):
        link = links.get(str(txn.get("device_id")))
        txn_id = txn.get("txn_id")
        if link is None or txn_id is None or str(txn_id) in seen:
            outcome.ignored += 1
            continue
        txn_id = str(txn_id)
        seen.add(txn_id)
        if not is_finished(txn):
            start = unix(txn.get("start_time"))
            if start is not None:
                ongoing[link.charger_id].append(start)
            continue
        if not counts_for(txn, link):
            outcome.ignored += 1
            continue
        start, end = unix(txn.get("start_time")), unix(txn.get("end_time"))
        start_at = _utc(start) if start is not None else None
        end_at = _utc(end) if end is not None else None
        try:
            read = read_for(txn, link)
        except InvalidTransaction as exc:
            outcome.records.append(
                (txn_id, link.charger_id, link.device_id, start_at, end_at, None, "skipped", str(exc))
            )
            continue
        outcome.reads[txn_id] = read
        outcome.records.append(
            (txn_id, link.charger_id, link.device_id, start_at, end_at, read.reads[0].value_wh, "submitted", None)
        )
    outcome.cursors = {cid: next_cursor(window_end, ongoing[cid]) for cid in links}
    return outcome
