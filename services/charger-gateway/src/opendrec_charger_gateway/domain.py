"""Kazam transactions -> meter reads: pure rules, no I/O.

From the Kazam collection (shared/seeds/kazam-platform.postman_collection.json): times are unix
seconds; a finished transaction has `tx_status` 0 with `end_time` and `end_reason`, an ongoing one
has neither end field; `total_usage` is in Wh (the unit of `usage_limit`: an example limited to
150 ended with total_usage 150.02 and end_reason "limit_reached").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
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
    ownership: str = "verified"  # unverified: the organization's credentials are yet to be shown to see the charger


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
    """One finished transaction as one interval read (a charging session) of the linked device."""
    txn_id = str(txn["txn_id"])
    start, end = unix(txn.get("start_time")), unix(txn.get("end_time"))
    if start is None or end is None:
        raise InvalidTransaction("start_time or end_time is missing")
    if end < start:
        raise InvalidTransaction(f"end_time {end} is before start_time {start}")
    if end == start:
        raise InvalidTransaction(f"end_time {end} is start_time: a session of no duration")
    wh = usage_wh(txn.get("total_usage"))
    if wh == 0:
        raise InvalidTransaction(f"no energy delivered (total_usage {txn.get('total_usage')!r} Wh is 0 in whole Wh)")
    # A charging session: an interval read over exactly [start_time, end_time] (not from the previous read's end),
    # judged by readings as a charger (rated power x duration).
    return ReadSubmitted(
        submission_id=f"{SOURCE}:{txn_id}",
        device_id=link.device_id,
        external_id=link.external_id,
        organization_id=link.organization_id,
        read_type="Delta",
        source=SOURCE,
        reads=[MeterRead(start=_utc(start), end=_utc(end), value_wh=wh)],
        charging_sessions=True,
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


# ---------------------------------------------------------------- charger state and uptime

# The collection's getDeviceState description: Kazam device states (charge_state) of Kazam-protocol chargers,
# and the OCPP connector states of OCPP chargers on Kazam's CMS.
KAZAM_CHARGE_STATES = {
    0: "idle",
    1: "disabled",
    2: "busy",
    3: "tampered",
    5: "booting",
    6: "paused",
    8: "earth fault",
    10: "updating firmware",
    11: "emergency switch",
    12: "no mains",
}
OCPP_CHARGE_STATES = {
    0: "available",
    1: "unavailable",
    2: "charging",
    3: "faulted",
    4: "reserved",
    9: "preparing",
    13: "finishing",
}


def charge_state_name(protocol: Any, code: Any) -> str:
    """The collection's word for a charge_state code ("unknown (7)" for a code it does not list)."""
    table = OCPP_CHARGE_STATES if str(protocol).lower() == "ocpp" else KAZAM_CHARGE_STATES
    number = unix(code)
    return table.get(number, f"unknown ({code})") if number is not None else "unknown"


def availability(state: Mapping[str, Any]) -> str:
    """The collection's single-connector display rule: Available, Busy or Not Available."""
    protocol = str(state.get("protocol", "kazam")).lower()
    code = unix(state.get("charge_state"))
    online = bool(state.get("network"))
    if protocol == "ocpp":
        if not online:
            return "Not Available"
        return {0: "Available", 2: "Busy", 9: "Busy", 13: "Busy"}.get(code if code is not None else -1, "Not Available")
    if code == 0:
        return "Available" if online else "Available via Bluetooth"
    if code == 2:
        return "Busy"
    return "Not Available"


IST = timezone(timedelta(hours=5, minutes=30))  # Kazam's uptime days start at 00:00 IST
MAX_UPTIME_DAYS = 366
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2100, 12, 31)  # sane bounds (and no overflow at year 1 or 9999)


def ist_day_window(first: date, last: date) -> tuple[int, int]:
    """getDeviceUptime's [start_time, end_time] for the IST days first..last: 00:00 IST of `first` to 00:00 IST of
    the day after `last`, in unix seconds."""
    if not (EARLIEST_DAY <= first <= LATEST_DAY and EARLIEST_DAY <= last <= LATEST_DAY):
        raise ValueError(f"from and to must lie between {EARLIEST_DAY} and {LATEST_DAY}")
    if last < first:
        raise ValueError("to must not be before from")
    if (last - first).days >= MAX_UPTIME_DAYS:
        raise ValueError(f"at most {MAX_UPTIME_DAYS} days at a time")
    start = datetime.combine(first, time(0), IST)
    end = datetime.combine(last + timedelta(days=1), time(0), IST)
    return int(start.timestamp()), int(end.timestamp())


def own_breaker(organization_id: int) -> str:
    """The circuit breaker of an organization's own Kazam account (`kazam_breakers.account`)."""
    return f"organization:{organization_id}"


def platform_breaker(base_url: str) -> str:
    """The circuit breaker of the platform token (dev and test only) at a Kazam base URL."""
    return f"platform:{base_url}"


# ---------------------------------------------------------------- OCPP 1.6J charge points

OCPP_SOURCE = "ocpp"
OCPP_PASSWORD_BYTES = 24  # 32 url-safe characters: within OCPP 1.6 security profile 1's 16-40 character key
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_password(password: str, salt: bytes) -> bytes:
    """salt + scrypt(password): what is stored of a charge point's password."""
    return salt + hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def password_matches(password: str, stored: bytes | None) -> bool:
    if not stored or len(stored) <= 16:
        return False
    salt = bytes(stored[:16])
    return hmac.compare_digest(hash_password(password, salt), bytes(stored))


@dataclass
class _Failures:
    count: int = 0  # wrong passwords in a row
    last: float = 0.0  # when the last one came (monotonic seconds)
    until: float = 0.0  # an address: refused before this moment
    checking: bool = False  # an address: a password check under way


class PasswordThrottle:
    """Wrong OCPP passwords at the WebSocket upgrade, throttled with backoff instead of a lockout (no I/O: the caller
    gives the time).

    A wrong password holds its client address back: `base_s` doubling with the wrong passwords in a row of that
    address, or of the charge point id it named (from any address), whichever is longer, at most `max_s`.
    Meanwhile that address is refused before any check (a check costs a scrypt hash), one check at a time. Other
    addresses are not held back: the real charge point, with the right password from its own address, connects
    while someone elsewhere guesses its password; each guessing address gets one check, then waits the longer the
    more that id was guessed. A right password clears its address; failures older than `forget_s` are forgotten.
    At most `max_entries` addresses and ids are kept, the least recently failed forgotten first."""

    def __init__(self, base_s: float, max_s: float, *, forget_s: float = 3600.0, max_entries: int = 10_000) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.forget_s = forget_s
        self.max_entries = max_entries
        self.addresses: dict[str, _Failures] = {}
        self.ids: dict[str, _Failures] = {}

    def _current(self, table: dict[str, _Failures], key: str, now: float) -> _Failures:
        found = table.get(key)
        if found is None or (now - found.last > self.forget_s and not found.checking):
            found = table[key] = _Failures()
        return found

    def admit(self, address: str, now: float) -> float:
        """0: check this attempt's password now (then report it with `checked`); else the seconds to wait."""
        failures = self._current(self.addresses, address, now)
        if failures.checking:
            return self.base_s
        if now < failures.until:
            return failures.until - now
        failures.checking = True
        return 0.0

    def released(self, address: str) -> None:
        """The admitted check could not be made (e.g. the database away): nothing is counted."""
        failures = self.addresses.get(address)
        if failures is not None:
            failures.checking = False

    def checked(self, charger_id: str, address: str, right: bool, now: float) -> None:
        failures = self._current(self.addresses, address, now)
        failures.checking = False
        if right:
            self.addresses.pop(address, None)
            return
        guessed = self._current(self.ids, charger_id, now)
        for counted, table, key in ((failures, self.addresses, address), (guessed, self.ids, charger_id)):
            counted.count, counted.last = counted.count + 1, now
            table[key] = table.pop(key)  # most recently failed last: the first ones are forgotten first
            while len(table) > self.max_entries:
                oldest = next(iter(table))
                if table[oldest].checking:
                    break
                del table[oldest]
        worst = max(failures.count, guessed.count)
        failures.until = now + min(self.base_s * 2 ** min(worst - 1, 62), self.max_s)


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic Authorization header, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def ocpp_time(text: str) -> datetime:
    """An OCPP timestamp (ISO 8601 with an offset) as an aware UTC datetime; ValueError otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return moment.astimezone(UTC)


_ENERGY = "Energy.Active.Import.Register"
_WH_PER_UNIT = {"Wh": 1, "kWh": 1000}


def energy_register_wh(meter_values: Iterable[Mapping[str, Any]]) -> tuple[datetime, int] | None:
    """The latest Energy.Active.Import.Register reading (time, Wh) of MeterValues' meterValue list (the default
    measurand when none is named; unit Wh or kWh), or None."""
    latest: tuple[datetime, int] | None = None
    for meter_value in meter_values:
        try:
            at = ocpp_time(str(meter_value.get("timestamp")))
        except ValueError:
            continue
        for sample in meter_value.get("sampled_value") or meter_value.get("sampledValue") or []:
            if sample.get("measurand", _ENERGY) != _ENERGY or sample.get("phase"):
                continue
            scale = _WH_PER_UNIT.get(sample.get("unit", "Wh"))
            try:
                wh = round(Decimal(str(sample.get("value"))) * (scale or 0))
            except (InvalidOperation, ValueError):
                continue
            if scale and (latest is None or at >= latest[0]):
                latest = (at, int(wh))
    return latest


def ocpp_session(
    charger_id: str,
    transaction_id: int,
    device_id: int,
    external_id: str,
    organization_id: int,
    started: tuple[datetime, int],
    stopped: tuple[datetime, int],
) -> ReadSubmitted:
    """A finished OCPP transaction as one charging session: meter stop - meter start (Wh) over [start, stop].
    InvalidTransaction when it carries no read (no energy, no duration, a meter running backwards)."""
    (start_at, meter_start), (stop_at, meter_stop) = started, stopped
    if stop_at <= start_at:
        raise InvalidTransaction(f"stopped at {stop_at.isoformat()}, not after its start {start_at.isoformat()}")
    energy = meter_stop - meter_start
    if energy < 0:
        raise InvalidTransaction(f"meterStop {meter_stop} Wh is below meterStart {meter_start} Wh")
    if energy == 0:
        raise InvalidTransaction("no energy delivered (meterStop equals meterStart)")
    return ReadSubmitted(
        submission_id=f"{OCPP_SOURCE}:{charger_id}:{transaction_id}",
        device_id=device_id,
        external_id=external_id,
        organization_id=organization_id,
        read_type="Delta",
        source=OCPP_SOURCE,
        reads=[MeterRead(start=start_at, end=stop_at, value_wh=energy)],
        charging_sessions=True,
    )
