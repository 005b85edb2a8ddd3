"""The use cases of the readings service: each runs in the kit's unit of work.

Adapters parse, authorize and call one of these: `api.py` (HTTP), `handlers.py` (events), the
CSV import worker (wired in `app.py`). The rules are in `domain.py` (and the CSV's pure parts in
`imports.py`), the SQL in `store.py`. Events are recorded on the unit of work and written to the
outbox when it commits; answers are plain data in the D-REC shape: a read's instants written with
`iso_exact` (a client's microseconds kept, so no read's boundary moves), server-stamped times with `iso`.

One batch of reads of one device is judged and stored by `_ingest`, whichever way it came (HTTP,
read.submitted, a CSV import): the device's last-read row is locked first, so batches of one
device are judged one after the other against the state the previous one left; a resubmission
(same Idempotency-Key, or the same content) is recognised under that lock and answered like the
first time. Accepted reads go in with COPY, the last read is updated and read.ingested recorded,
all in the one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal, TypeVar, cast
from urllib.parse import quote

import asyncpg

from opendrec_contracts import (
    DeviceRegistered,
    DeviceUpdated,
    ReadRejected,
    ReadRejection,
    ReadSubmitted,
    ReservationCreated,
    ReservationUpdated,
)
from opendrec_kit import ApiError, Principal, UnitOfWork, db, metrics
from opendrec_kit.organizations import acting_organization, known_organization
from opendrec_kit.owners import OwnerServices
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.telemetry import TraceContext, current_trace, in_trace
from opendrec_kit.timestamps import iso, iso_exact, iso_or_none

from . import domain, imports, store
from .domain import ReadError, Reads, ReadType
from .imports import CsvRow, RowResult
from .settings import Settings

log = logging.getLogger(__name__)

Granularity = Literal["hour", "day", "month", "year"]
T = TypeVar("T")
Span = tuple[datetime, datetime] | None  # the window of a device a buyer may see (None: all of it)


# -- one batch of one device ------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    batch_id: uuid.UUID
    external_id: str
    read_type: str
    count: int
    total_wh: int
    first_at: datetime
    last_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "batchId": str(self.batch_id),
            "externalId": self.external_id,
            "type": self.read_type,
            "count": self.count,
            "totalWh": self.total_wh,
            "firstTimestamp": iso_exact(self.first_at),
            "lastTimestamp": iso_exact(self.last_at),
        }


@dataclass(frozen=True)
class Accepted:
    summary: BatchSummary
    replayed: bool  # True: this batch had been accepted before; nothing was added


@dataclass(frozen=True)
class Rejected:
    errors: list[ReadError]
    device_deleted: bool = False  # refused because the device takes no reads any more


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used for different content."""


async def _device_facts(conn: asyncpg.Connection, row: asyncpg.Record, settings: Settings) -> domain.Device:
    """What the rules know of the device; its yield by `domain.annual_yield`'s precedence (own, the country's
    Active configured one, COUNTRY_YIELDS, 2000), read in the batch's transaction."""
    configured = await store.active_country_yield(conn, row["country_code"])  # one indexed lookup a batch
    return _facts(row, settings, configured)


def _facts(row: Mapping[str, Any], settings: Settings, configured: float | None) -> domain.Device:
    """_device_facts with the country's Active configured yield in hand."""
    return domain.Device(
        device_id=row["device_id"],
        capacity_kw=min(row["capacity_kw"], settings.device_max_capacity_kw),
        commissioning_date=row["commissioning_date"],
        onboarded_at=row["onboarded_at"],
        annual_yield=min(
            domain.annual_yield(row["yield_value"], row["country_code"], settings.country_yields, configured),
            domain.HOURS_PER_YEAR,
        ),
    )


def _summary(row: Mapping[str, Any], external_id: str) -> BatchSummary:
    return BatchSummary(
        row["batch_id"],
        external_id,
        row["read_type"],
        row["read_count"],
        int(row["total_wh"]),
        row["first_at"],
        row["last_at"],
    )


def _refused_if_deleted(device: str, deleted_at: datetime | None) -> Rejected | None:
    """The one place a deleted device's batch is refused (HTTP 409, read.rejected, a CSV row's reason)."""
    reason = domain.rule_device_takes_reads(device, deleted_at)
    return Rejected([ReadError(None, reason)], device_deleted=True) if reason else None


class Ledger:
    """Where `_ingest` reads what judging a batch needs and writes an accepted one: straight through `store` in the
    unit of work's transaction (this class), or a group's (GroupLedger: read for many batches at once, written at
    the end). Either way a batch sees every batch judged before it in the transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def find_device(self, organization_id: int, external_id: str) -> Mapping[str, Any] | None:
        return await store.find_device(self.conn, organization_id, external_id)

    async def lock(self, device_id: int, fingerprint: bytes) -> Mapping[str, Any] | None:
        """store.lock_for_batch: the last read locked, the device read under the lock, its country's configured
        yield and the earliest batch of the same content."""
        return await store.lock_for_batch(self.conn, device_id, fingerprint)

    async def batch_by_key(self, device_id: int, idempotency_key: str) -> Mapping[str, Any] | None:
        return await store.find_batch_by_key(self.conn, device_id, idempotency_key)

    async def intervals_near(self, device_id: int, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        return await store.intervals_near(self.conn, device_id, start, end)

    async def set_timezone_if_missing(self, device_id: int, timezone: str) -> None:
        await store.set_timezone_if_missing(self.conn, device_id, timezone)

    async def store(self, batch: dict[str, Any], intervals: domain.Intervals, last: domain.LastRead) -> None:
        """An accepted batch: its intervals, its row and (ongoing reads) the device's new last read."""
        device_id, read_type, source = batch["device_id"], batch["read_type"], batch["source"]
        if read_type != "History" and len(intervals) <= store.SMALL_BATCH:
            await store.store_small_batch(self.conn, intervals=intervals, last=last, **batch)
            return
        if intervals:
            await store.copy_intervals(self.conn, device_id, read_type, source, batch["batch_id"], intervals)
        if read_type != "History":
            await store.save_last_read(self.conn, device_id, last)
        await store.insert_batch(self.conn, **batch)


class GroupLedger(Ledger):
    """The ledger of a group commit (ReadGroups): what its batches need is read for all of them in one statement
    (`load`: store.lock_group, their devices' last reads locked), and what the accepted ones store is written in one
    statement (`flush`: store.store_group) before the group commits. In between each batch is judged against what
    the ones before it left, kept here: the device's last read, its timezone, the batches of the same content or
    Idempotency-Key. Whatever was not read ahead (a History batch's stored intervals, a large batch) is asked of the
    database after the writes waiting are flushed, so it too sees every batch before it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        self._named: dict[tuple[int, str], dict[str, Any]] = {}  # (organization, external id) -> the device
        self._state: dict[int, dict[str, Any]] = {}  # device id -> lock_for_batch's row but `previous_*`
        self._previous: dict[tuple[int, bytes], dict[str, Any] | None] = {}  # (device, fingerprint) -> previous_*
        self._keyed: dict[tuple[int, str], Mapping[str, Any] | None] = {}  # (device, key) -> the batch
        self._pending: list[tuple[dict[str, Any], domain.Intervals]] = []
        self._zones: dict[int, str] = {}
        self._moved: set[int] = set()  # devices whose last read changed

    async def load(self, wanted: Sequence[tuple[int, str, bytes, str | None]]) -> None:
        """Read ahead for batches (organization, external id, fingerprint, Idempotency-Key) and lock their devices."""
        if not wanted:
            return
        organizations, external_ids, fingerprints, keys = (list(column) for column in zip(*wanted, strict=True))
        for row in await store.lock_group(self.conn, organizations, external_ids, fingerprints, keys):
            organization, external_id, fingerprint, key = wanted[row["i"]]
            found = dict(row)
            device_id = found["device_id"]
            self._named[organization, external_id] = found
            if found["locked"]:
                self._state.setdefault(device_id, found)
            self._previous[device_id, fingerprint] = (
                {name: found[name] for name in _PREVIOUS} if found["previous_batch_id"] is not None else None
            )
            if key is not None:
                self._keyed[device_id, key] = (
                    {name: found[f"keyed_{name}"] for name in _KEYED} if found["keyed_batch_id"] is not None else None
                )

    async def find_device(self, organization_id: int, external_id: str) -> Mapping[str, Any] | None:
        if (organization_id, external_id) in self._named:
            return self._named[organization_id, external_id]
        await self.flush()
        return await super().find_device(organization_id, external_id)

    async def lock(self, device_id: int, fingerprint: bytes) -> Mapping[str, Any] | None:
        state = self._state.get(device_id)
        if state is None or (device_id, fingerprint) not in self._previous:
            await self.flush()
            return await super().lock(device_id, fingerprint)
        return {**state, **(self._previous[device_id, fingerprint] or _NO_PREVIOUS)}

    async def batch_by_key(self, device_id: int, idempotency_key: str) -> Mapping[str, Any] | None:
        if (device_id, idempotency_key) in self._keyed:
            return self._keyed[device_id, idempotency_key]
        await self.flush()
        return await super().batch_by_key(device_id, idempotency_key)

    async def intervals_near(self, device_id: int, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        await self.flush()
        return await super().intervals_near(device_id, start, end)

    async def set_timezone_if_missing(self, device_id: int, timezone: str) -> None:
        state = self._state.get(device_id)
        if state is None:
            await self.flush()
            await super().set_timezone_if_missing(device_id, timezone)
        elif state["timezone"] is None:
            state["timezone"] = self._zones[device_id] = timezone

    async def store(self, batch: dict[str, Any], intervals: domain.Intervals, last: domain.LastRead) -> None:
        device_id, read_type = batch["device_id"], batch["read_type"]
        state = self._state.get(device_id)
        waits = state is not None and read_type != "History" and len(intervals) <= store.SMALL_BATCH
        if waits:
            self._pending.append((batch, intervals))
        else:
            await self.flush()
            await super().store(batch, intervals, last)
        if state is None:
            return
        if read_type != "History":
            state.update(
                last_ongoing_type=last.ongoing_type,
                last_end=last.end,
                last_value_wh=last.value_wh,
                last_meter_total_wh=last.meter_total_wh,
            )
            if waits:
                self._moved.add(device_id)
        same = (device_id, batch["fingerprint"])
        if same in self._previous and self._previous[same] is None:
            self._previous[same] = {f"previous_{name}": batch[name] for name in _BATCH_SUMMARY}
        if batch["idempotency_key"] is not None:
            self._keyed[device_id, batch["idempotency_key"]] = batch

    async def flush(self) -> None:
        """Write what waits: the intervals and rows of the batches stored, timezones learned, new last reads."""
        if not self._pending and not self._zones and not self._moved:
            return
        intervals: list[list[Any]] = [[] for _ in store.INTERVAL_COLUMNS]
        batches: list[list[Any]] = [[] for _ in _BATCH_COLUMNS]
        for batch, part in self._pending:
            n = len(part)
            columns: tuple[list[Any], ...] = (
                [batch["device_id"]] * n,
                part.starts,
                part.ends,
                part.whs,
                [batch["read_type"]] * n,
                [batch["source"]] * n,
                [batch["batch_id"]] * n,
            )
            for column, values in zip(intervals, columns, strict=True):
                column.extend(values)
            for column, name in zip(batches, _BATCH_COLUMNS, strict=True):
                column.append(batch[name])
        moved = sorted(self._moved)
        states = [self._state[device_id] for device_id in moved]
        last_reads: list[list[Any]] = [
            moved,
            [s["last_ongoing_type"] for s in states],
            [s["last_end"] for s in states],
            [s["last_value_wh"] for s in states],
            [s["last_meter_total_wh"] for s in states],
        ]
        zones: list[list[Any]] = [list(self._zones), list(self._zones.values())]
        self._pending, self._zones, self._moved = [], {}, set()
        await store.store_group(self.conn, intervals, batches, zones, last_reads)


_BATCH_SUMMARY = ("batch_id", "read_type", "read_count", "total_wh", "first_at", "last_at")
_PREVIOUS = tuple(f"previous_{name}" for name in _BATCH_SUMMARY)
_NO_PREVIOUS = dict.fromkeys(_PREVIOUS)
_KEYED = (*_BATCH_SUMMARY, "fingerprint")
# insert_batch's columns, in its order
_BATCH_COLUMNS = (
    "batch_id",
    "device_id",
    "read_type",
    "source",
    "idempotency_key",
    "fingerprint",
    "read_count",
    "total_wh",
    "first_at",
    "last_at",
)


async def _ingest(
    uow: UnitOfWork,
    settings: Settings,
    device: Mapping[str, Any],
    read_type: ReadType,
    reads: Reads,
    *,
    source: str,
    parse_errors: Sequence[ReadError] = (),
    idempotency_key: str | None = None,
    timezone: str | None = None,
    now: datetime | None = None,
    charging_sessions: bool = False,
    ledger: Ledger | None = None,
) -> Accepted | Rejected:
    """Judge `reads` of `device` as one batch and store them if all pass, in the open unit of work (through
    `ledger`: a group's, else straight to the database). `charging_sessions`: Delta reads that are interval reads
    over exactly [start, end], judged as a charger."""
    ledger = ledger or Ledger(uow.conn)
    device_id, external_id = device["device_id"], device["external_id"]
    fingerprint = domain.fingerprint(domain.CHARGING_SESSIONS if charging_sessions else read_type, reads)
    # The last read locked, the device read again under the lock (a device.updated/deleted handled meanwhile is
    # seen), its country's configured yield and a batch of the same content: one round trip.
    locked = await ledger.lock(device_id, fingerprint)
    if locked is None:
        raise LookupError(f"device {device_id} has no last_reads row")
    device, last = locked, store.locked_last_read(locked)
    deleted = _refused_if_deleted(repr(external_id), device["deleted_at"])
    if deleted is not None:
        metrics.reads_refused(len(reads), "device_deleted", source=source)
        return deleted

    if not parse_errors:
        previous = await ledger.batch_by_key(device_id, idempotency_key) if idempotency_key else None
        if previous is not None and bytes(previous["fingerprint"]) != fingerprint:
            raise IdempotencyConflict(idempotency_key)
        if previous is not None:
            return Accepted(_summary(previous, external_id), replayed=True)
        if locked["previous_batch_id"] is not None:
            same = {key: locked[f"previous_{key}"] for key in ("batch_id", "read_type", "read_count", "total_wh")}
            same.update(first_at=locked["previous_first_at"], last_at=locked["previous_last_at"])
            return Accepted(_summary(same, external_id), replayed=True)

    history: list[tuple[datetime, datetime]] = []
    starts = [start for start in reads.starts if start is not None] if read_type == "History" else []
    if starts:
        # Every stored read of the device, not only History: an onboarding date moved later would otherwise let a
        # History read cover ongoing reads already taken (found by certificates' model test, issue 13).
        history = await ledger.intervals_near(device_id, min(starts), max(reads.ends))
    facts = _facts(device, settings, locked["configured_yield"])
    if charging_sessions:
        starts = [start for start in reads.starts if start is not None]
        stored = await ledger.intervals_near(device_id, min(starts), max(reads.ends)) if starts else []
        verdict = domain.validate_charging_sessions(facts, last, reads, now=now or datetime.now(UTC), stored=stored)
    else:
        verdict = domain.validate_batch(read_type, facts, last, reads, now=now or datetime.now(UTC), history=history)
    if parse_errors or verdict.errors:
        errors = sorted([*parse_errors, *verdict.errors], key=lambda e: -1 if e.index is None else e.index)
        metrics.reads_refused(len(reads), "unparseable" if parse_errors else "invalid", source=source)
        return Rejected(errors)

    batch_id = uuid.uuid4()
    intervals = verdict.intervals
    if timezone and device["timezone"] is None:
        await ledger.set_timezone_if_missing(device_id, timezone)
    summary = BatchSummary(
        batch_id=batch_id,
        external_id=external_id,
        read_type=read_type,
        count=len(reads),
        total_wh=sum(intervals.whs),
        # An Aggregate baseline alone has no interval: its end is the batch's only instant.
        first_at=min(intervals.starts) if intervals else min(reads.ends),
        last_at=max(reads.ends),
    )
    batch = {
        "batch_id": batch_id,
        "device_id": device_id,
        "read_type": read_type,
        "source": source,
        "idempotency_key": idempotency_key,
        "fingerprint": fingerprint,
        "read_count": summary.count,
        "total_wh": summary.total_wh,
        "first_at": summary.first_at,
        "last_at": summary.last_at,
    }
    await ledger.store(batch, intervals, verdict.last)
    uow.record_all(domain.ingested_events(device, read_type, batch_id, intervals, settings.read_ingested_max_reads))
    metrics.reads_accepted(summary.count, summary.total_wh, source=source)
    return Accepted(summary, replayed=False)


# -- HTTP: adding reads -------------------------------------------------------------------------


# -- read-your-writes: a device registered a moment ago ------------------------------------------


class UnknownDevice(ApiError):
    """A 404 for a device this read model does not know (yet): the devices service may (`path`: what to ask it)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(404, message)
        self.path = path


async def learn_device(uow: UnitOfWork, settings: Settings, owners: OwnerServices, user: Principal, path: str) -> None:
    """Ask devices, on the caller's behalf, for a device not known here yet (device.registered is on its way)
    and take its answer exactly as the event (take_device_state: the newer state wins, whichever comes first)."""
    for known in await owners.ask("devices", path, user):
        if isinstance(known.event, DeviceRegistered | DeviceUpdated):
            await take_device_state(uow, settings, known.event, known.occurred_at)


async def _knowing_devices(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    attempt: Callable[[bool], Awaitable[T]],
) -> T:
    """`attempt(first)` (which opens and leaves its own unit of work); on a device not known here, devices is asked
    once, outside any transaction, and it runs again (a miss then is the usual 404). A known device costs nothing."""
    try:
        return await attempt(True)
    except UnknownDevice as miss:
        await learn_device(uow, settings, owners, user, miss.path)
    return await attempt(False)


async def _device(
    conn: asyncpg.Connection,
    organization_id: int,
    external_id: str,
    *,
    live: bool = False,
    ledger: Ledger | None = None,
) -> Mapping[str, Any]:
    """The organization's device by external id (a deleted one too, unless `live`), else UnknownDevice."""
    external_id = external_id.strip()
    device = await (ledger or Ledger(conn)).find_device(organization_id, external_id)
    if device is None or (live and device["deleted_at"] is not None):
        raise UnknownDevice(
            f"No device with external id {external_id!r} in organization {organization_id}",
            f"/devices/by-external-id?organizationId={organization_id}&externalId={quote(external_id)}",
        )
    return device


@dataclass(frozen=True)
class Submission:
    """One request's batch of reads, parsed, for a device of the acting organization."""

    user: Principal
    external_id: str
    organization_id: int | None
    read_type: ReadType
    reads: Reads
    parse_errors: Sequence[ReadError]
    idempotency_key: str | None
    timezone: str | None
    # The request's trace context: in a group commit its read.ingested continues the request's trace
    trace: TraceContext = field(default_factory=current_trace, compare=False, repr=False)


async def _acting(uow: UnitOfWork, s: Submission) -> int:
    return await acting_organization(uow.conn, s.user, s.organization_id, organization_type="Developer")


async def _add_in(
    uow: UnitOfWork,
    settings: Settings,
    s: Submission,
    first: bool,
    *,
    organization: int | None = None,
    ledger: Ledger | None = None,
) -> Accepted | Rejected:
    """Judge and store one submission in `uow` (opened here, or joined when already open: a group's, with its
    ledger and the organization it found the submission acting for)."""
    async with uow:
        if organization is None:
            organization = await _acting(uow, s)
        # First time, a deleted device is a miss too: the external id may name a device registered since.
        device = await _device(uow.conn, organization, s.external_id, live=first, ledger=ledger)
        try:
            return await _ingest(
                uow,
                settings,
                device,
                s.read_type,
                s.reads,
                source="api",
                parse_errors=s.parse_errors,
                idempotency_key=s.idempotency_key,
                timezone=s.timezone,
                ledger=ledger,
            )
        except IdempotencyConflict as exc:
            raise ApiError(
                409, f"Idempotency-Key {s.idempotency_key!r} was already used for different reads of this device"
            ) from exc


async def _add_alone(uow: UnitOfWork, settings: Settings, owners: OwnerServices, s: Submission) -> Accepted | Rejected:
    return await _knowing_devices(uow, settings, owners, s.user, lambda first: _add_in(uow, settings, s, first))


class ReadGroups:
    """Group commit of single-read requests: the ones that arrive within `window_s` of each other are judged and
    stored in one transaction (one BEGIN/COMMIT, one outbox write, one WAL flush for all).

    Each submission is still judged by every rule, in its turn, against what the ones before it in the group left
    (`_ingest`, its device's last read locked); its read.ingested is recorded in the group's transaction, so it is
    announced exactly once, if and only if the group commits; a request is answered only after that commit. A
    refusal (400, 409, an unknown device) concerns its submission only: it writes nothing. The group's statements
    do not grow with it: one reads and locks what all its submissions need, one writes what the accepted ones store
    (GroupLedger), then the outbox and the commit. An outage of the database (db.OUTAGES: away, too slow) answers
    each request 503; any other error (a deadlock, a failed commit) rolls the whole group back, and then every
    submission of it is run alone, as if there had been no group: a resubmission the failed commit did store is
    recognised (idempotent). A device not known here yet (read-your-writes) is asked for after the group, and its
    submission then run alone.

    At most `concurrent` groups are open at once; a group takes at most `max_size` submissions.
    """

    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        settings: Settings,
        owners: OwnerServices,
        *,
        window_s: float,
        max_size: int,
        concurrent: int,
    ) -> None:
        self._uow, self._settings, self._owners = uow, settings, owners
        self.window_s, self.max_size, self.concurrent = window_s, max_size, concurrent
        self._waiting: list[tuple[Submission, asyncio.Future[Accepted | Rejected]]] = []
        self._open = 0  # groups being formed or committed
        self._tasks: set[asyncio.Task[None]] = set()
        self.groups = 0  # committed groups and submissions in them: for tests and measurements
        self.grouped = 0

    async def add(self, submission: Submission) -> Accepted | Rejected:
        future: asyncio.Future[Accepted | Rejected] = asyncio.get_running_loop().create_future()
        self._waiting.append((submission, future))
        if self._open < self.concurrent:
            self._open += 1
            self._spawn(self._form(), "read-group")
        return await future

    async def _form(self) -> None:
        """Wait `window_s` for company, take what waits (up to max_size), commit it; again while more waits."""
        try:
            await asyncio.sleep(self.window_s)
            while self._waiting:
                group, self._waiting = self._waiting[: self.max_size], self._waiting[self.max_size :]
                await self._commit(group)
        finally:
            self._open -= 1

    async def _commit(self, group: list[tuple[Submission, asyncio.Future[Accepted | Rejected]]]) -> None:
        """Judge and store `group` in one transaction, in its order (one device's in their arrival order), through a
        GroupLedger: one statement reads and locks what every submission needs, one writes what they store."""
        # None: a device to ask devices for; else the submission's outcome (an exception: its refusal)
        outcomes: list[Accepted | Rejected | BaseException | None] = [None] * len(group)
        uow = self._uow()
        try:
            async with uow:
                ledger = GroupLedger(uow.conn)
                acting: list[tuple[int, int]] = []  # (index in the group, the organization it acts for)
                for i, (submission, _) in enumerate(group):
                    try:
                        acting.append((i, await _acting(uow, submission)))
                    except ApiError as refused:
                        outcomes[i] = refused
                await ledger.load(
                    [
                        (
                            organization,
                            group[i][0].external_id.strip(),
                            domain.fingerprint(group[i][0].read_type, group[i][0].reads),
                            group[i][0].idempotency_key,
                        )
                        for i, organization in acting
                    ]
                )
                for i, organization in acting:
                    recorded = len(uow.events)
                    try:
                        with in_trace(group[i][0].trace):
                            outcomes[i] = await _add_in(
                                uow, self._settings, group[i][0], True, organization=organization, ledger=ledger
                            )
                    except UnknownDevice:
                        del uow.events[recorded:]
                        outcomes[i] = None
                    except ApiError as refused:
                        del uow.events[recorded:]
                        outcomes[i] = refused
                await ledger.flush()
        except db.OUTAGES as exc:  # the database is away or too slow: each request answers so (503) at once
            log.warning("a group of reads met an outage of the database", exc_info=True)
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception:  # any other failure of the group's transaction (a deadlock...): each submission alone
            log.warning("a group of reads failed; its submissions are run alone", exc_info=True)
            for submission, future in group:  # one after the other: one device's keep their order
                await self._alone(submission, future)
            return
        except BaseException as exc:  # cancelled (stopping): nobody waits for an answer that will not come
            for _, future in group:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ApiError(503, "Stopping; try again"))
            raise
        self.groups += 1
        self.grouped += len(group)
        alone = []
        for (submission, future), outcome in zip(group, outcomes, strict=True):
            if outcome is None:
                alone.append((submission, future))
            elif not future.done():
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        if alone:
            # Devices asks about them on the caller's behalf: in a task of their own, so the next group need not wait
            # for another service (one device's still in their order).
            self._spawn(self._all_alone(alone), "read-group-unknown-devices")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _all_alone(self, submissions: list[tuple[Submission, asyncio.Future[Accepted | Rejected]]]) -> None:
        for submission, future in submissions:
            await self._alone(submission, future)

    async def _alone(self, submission: Submission, future: asyncio.Future[Accepted | Rejected]) -> None:
        try:
            with in_trace(submission.trace):
                outcome = await _add_alone(self._uow(), self._settings, self._owners, submission)
        except Exception as exc:  # noqa: BLE001 - the request's own outcome: its caller raises it
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(outcome)


async def add_meter_reads(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    external_id: str,
    *,
    organization_id: int | None,
    read_type: ReadType,
    unit: str,
    timezone: str | None,
    starts: Sequence[str | None],
    ends: Sequence[str | None],
    values: Sequence[Any],
    idempotency_key: str | None = None,
    groups: ReadGroups | None = None,
) -> Accepted:
    """Add a batch of reads to a device of the acting (Developer) organization: all of them, or none (ApiError).
    A single read joins a group commit when `groups` is given (ReadGroups)."""
    tz = None
    if timezone and timezone.strip():
        try:
            tz = domain.resolve_timezone(timezone)
        except ValueError as exc:
            raise ApiError(400, str(exc), [{"field": "timezone", "message": str(exc), "where": "body"}]) from exc
    reads, parse_errors = domain.parse_reads(starts, ends, values, read_type, unit, tz)
    submission = Submission(
        user, external_id, organization_id, read_type, reads, parse_errors, idempotency_key, tz.key if tz else None
    )
    if groups is not None and len(values) == 1:
        result = await groups.add(submission)
    else:
        result = await _add_alone(uow, settings, owners, submission)
    if isinstance(result, Accepted):
        return result
    if result.device_deleted:
        reason = result.errors[0].reason
        raise ApiError(409, reason[:1].upper() + reason[1:])
    bad = len({e.index for e in result.errors})
    raise ApiError(
        400,
        f"{read_type} reads refused, nothing was stored: {bad} of {len(values)} reads are not acceptable"
        if all(e.index is not None for e in result.errors)
        else f"{read_type} reads refused, nothing was stored: {result.errors[0].reason}",
        [e.as_dict() for e in result.errors],
    )


# -- HTTP: reading back ---------------------------------------------------------------------------


def _read_out(row: Any) -> dict[str, Any]:
    return {"startdate": iso_exact(row["start_at"]), "enddate": iso_exact(row["end_at"]), "value": row["wh"]}


async def _organization_type(conn: asyncpg.Connection, user: Principal, organization_id: int) -> str:
    if organization_id == user.organization_id:
        return user.organization_type
    known = await known_organization(conn, user, organization_id)  # identity is asked if it is new here
    return known.organization_type if known else ""


async def _visible(
    conn: asyncpg.Connection, user: Principal, organization_id: int | None, path_id: str
) -> tuple[asyncpg.Record, Span]:
    """The device the caller may read, and the window it may see (None: all of it).

    Developers name their own devices by external id. Buyers name a device by its id (as in
    the D-REC manual) and see it only if one of their reservations holds it, within the span
    of those reservations.
    """
    organization = await acting_organization(conn, user, organization_id)
    if await _organization_type(conn, user, organization) != "Buyer":
        return await _device(conn, organization, path_id), None
    device_id = int(path_id) if path_id.strip().isdigit() else None
    span = await store.reservation_span(conn, organization, device_id) if device_id is not None else None
    device = await store.get_device(conn, device_id) if device_id is not None and span is not None else None
    message = f"No device with id {path_id!r} in a reservation of organization {organization}"
    if device is None and span is not None:  # reserved, but its device.registered is not here yet
        raise UnknownDevice(message, f"/devices?id={device_id}")
    if device is None or span is None:
        raise ApiError(404, message)
    return device, span


def _clip(start: datetime | None, end: datetime | None, span: Span) -> tuple[datetime | None, datetime | None]:
    if span is None:
        return start, end
    return max(start, span[0]) if start else span[0], min(end, span[1]) if end else span[1]


async def _reading_visible(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    organization_id: int | None,
    path_id: str,
    read: Callable[[asyncpg.Connection, asyncpg.Record, Span], Awaitable[T]],
) -> T:
    """`read(conn, device, span)` in one reading unit, of the device the caller may read (`_visible`), learnt from
    devices on a miss."""

    async def attempt(_first: bool) -> T:
        async with uow.reading() as r:
            device, span = await _visible(r.conn, user, organization_id, path_id)
            return await read(r.conn, device, span)

    return await _knowing_devices(uow, settings, owners, user, attempt)


async def meter_reads(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    organization_id: int | None,
    path_id: str,
    start: datetime | None,
    end: datetime | None,
    page: Page,
) -> dict[str, Any]:
    """One page of a device's intervals overlapping [start, end), split into History and ongoing."""

    async def read(conn: asyncpg.Connection, device: asyncpg.Record, span: Span) -> tuple[int, list[asyncpg.Record]]:
        since, until = _clip(start, end, span)
        empty = since is not None and until is not None and since >= until
        device_id = device["device_id"]
        total = 0 if empty else await store.count_intervals(conn, device_id, since, until)
        rows = [] if empty else await store.list_intervals(conn, device_id, since, until, page.limit, page.offset)
        return total, rows

    total, rows = await _reading_visible(uow, settings, owners, user, organization_id, path_id, read)
    return {
        "historyread": [_read_out(row) for row in rows if row["read_type"] == "History"],
        "ongoing": [_read_out(row) for row in rows if row["read_type"] != "History"],
        "numberOfReads": total,
        "numberOfPages": total_pages(total, page.limit),
        "currentPageNumber": page.number,
    }


async def accumulated(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    organization_id: int | None,
    path_id: str,
    granularity: Granularity,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any]:
    """A device's energy per hour/day/month/year, in its timezone (else UTC), of intervals ending in (start, end]."""

    async def read(
        conn: asyncpg.Connection, device: asyncpg.Record, span: Span
    ) -> tuple[asyncpg.Record, str, list[asyncpg.Record]]:
        since, until = _clip(start, end, span)
        empty = since is not None and until is not None and since >= until
        zone = device["timezone"] or "UTC"
        rows = [] if empty else await store.accumulate(conn, device["device_id"], granularity, zone, since, until)
        return device, zone, rows

    device, zone, rows = await _reading_visible(uow, settings, owners, user, organization_id, path_id, read)
    return {
        "externalId": device["external_id"],
        "deviceId": device["device_id"],
        "granularity": granularity,
        "timezone": zone,
        "accumulated": [_read_out(row) for row in rows],
        "totalWh": sum(row["wh"] for row in rows),
    }


async def accumulated_calendar(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    organization_id: int | None,
    path_id: str,
    accumulation: domain.AccumulationType,
    year: int,
    month: int | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any]:
    """The reference's accumulationType: a device's energy per day of a month (Monthly) or per month of a year
    (Yearly), in its timezone (else UTC), every day or month listed (0 without reads); `start`/`end` narrow it."""
    period = domain.calendar_period(accumulation, year, month)

    async def read(
        conn: asyncpg.Connection, device: asyncpg.Record, span: Span
    ) -> tuple[asyncpg.Record, str, list[asyncpg.Record]]:
        since, until = _clip(start, end, span)
        zone = device["timezone"] or "UTC"
        rows = await store.accumulate_calendar(
            conn, device["device_id"], period.parts, zone, period.first, period.after, since, until
        )
        return device, zone, rows

    device, zone, rows = await _reading_visible(uow, settings, owners, user, organization_id, path_id, read)
    return {
        "aggregateType": accumulation,
        "accumulatedReads": [
            {"startTime": iso(row["start_at"]), "endTime": iso(row["end_at"]), "value": row["wh"]} for row in rows
        ],
        "timezone": zone,
        "externalId": device["external_id"],
        "deviceId": device["device_id"],
        "totalWh": sum(row["wh"] for row in rows),
    }


async def reads_by_end(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    organization_id: int | None,
    path_id: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """A device's reads as the reference's time series: each interval's end and energy (Wh), for intervals
    ending in (start, end], `limit` of them after the first `offset`."""

    async def read(conn: asyncpg.Connection, device: asyncpg.Record, span: Span) -> list[asyncpg.Record]:
        since, until = _clip(start, end, span)
        empty = since is not None and until is not None and since >= until
        return [] if empty else await store.list_reads_ending(conn, device["device_id"], since, until, limit, offset)

    rows = await _reading_visible(uow, settings, owners, user, organization_id, path_id, read)
    return [{"timestamp": iso_exact(row["end_at"]), "value": row["wh"]} for row in rows]


def time_zones(keyword: str | None) -> list[str]:
    """The IANA zone names (those containing `keyword`, in any case): nothing stored is read, so no unit of work."""
    return domain.search_timezones(keyword)


async def latest_read(
    uow: UnitOfWork,
    settings: Settings,
    owners: OwnerServices,
    user: Principal,
    organization_id: int | None,
    path_id: str,
) -> dict[str, Any]:
    """The latest Delta or Aggregate read of a device (within a buyer's reservations)."""

    async def read(conn: asyncpg.Connection, device: asyncpg.Record, span: Span) -> tuple[domain.LastRead | None, Span]:
        return await store.get_last_read(conn, device["device_id"]), span

    last, span = await _reading_visible(uow, settings, owners, user, organization_id, path_id, read)
    if last is None or last.end is None or (span is not None and not span[0] < last.end <= span[1]):
        raise ApiError(
            404,
            f"Device {path_id!r} has no Delta or Aggregate read yet" + (" within your reservations" if span else ""),
        )
    answer: dict[str, Any] = {"enddate": iso_exact(last.end), "value": last.value_wh, "readType": last.ongoing_type}
    if last.ongoing_type == "Aggregate":
        answer["meterTotal"] = last.meter_total_wh
    return answer


# -- events: devices and reservations --------------------------------------------------------------


async def take_device_state(
    uow: UnitOfWork, settings: Settings, event: DeviceRegistered | DeviceUpdated, state_at: datetime
) -> None:
    """A device as announced at `state_at` (registered or updated); submissions waiting for it are decided."""
    async with uow:
        # Serialised with a submission that finds no device, so none is left waiting unseen,
        # and with a batch being judged (last_reads lock), which then sees the state before or after.
        await store.lock_device_arrival(uow.conn, event.device_id)
        if await store.get_device(uow.conn, event.device_id):
            await store.lock_last_read(uow.conn, event.device_id)
        if not await store.upsert_device(uow.conn, event, state_at):
            log.info(
                "device state older than the one known, or device deleted; ignored",
                extra={"device_id": event.device_id},
            )
        await _decide_waiting(uow, settings, event.device_id)


async def delete_device(uow: UnitOfWork, settings: Settings, device_id: int, deleted_at: datetime) -> None:
    """The device takes no new reads from now on (its stored ones stay); waiting submissions are refused."""
    async with uow:
        await store.lock_device_arrival(uow.conn, device_id)
        if await store.get_device(uow.conn, device_id):
            await store.lock_last_read(uow.conn, device_id)  # a batch being judged finishes first
        await store.delete_device(uow.conn, device_id, deleted_at)
        log.info("device deleted: it takes no new reads", extra={"device_id": device_id})
        await _decide_waiting(uow, settings, device_id)


async def record_reservation(uow: UnitOfWork, event: ReservationCreated) -> None:
    """The buyer may now see the reads of these devices (GET by device id)."""
    async with uow:
        await store.upsert_reservation(uow.conn, event)


async def change_reservation(uow: UnitOfWork, event: ReservationUpdated) -> bool:
    """The buyer changed the reservation's terms: from now on they see its devices' reads over the new window.
    The highest revision wins in any order (reservation.created is revision 0, and may come after); an older or
    replayed change is ignored (False); an early end still bounds the window (reservation_span)."""
    async with uow:
        changed = await store.change_reservation(uow.conn, event)
        if not changed:
            log.info(
                "reservation change older than the terms known; ignored",
                extra={"reservation_id": event.reservation_id, "revision": event.revision},
            )
        return changed


async def end_reservation(uow: UnitOfWork, reservation_id: int, ended_at: datetime) -> None:
    """An early end shortens what the buyer sees; an expiry (ended at the planned end) changes nothing."""
    async with uow:
        await store.record_reservation_end(uow.conn, reservation_id, ended_at)


# -- events: reads submitted by machine sources --------------------------------------------------


async def read_submitted(uow: UnitOfWork, settings: Settings, event: ReadSubmitted, event_id: uuid.UUID) -> None:
    """Decide a submission once: accepted, rejected (recorded, announced as read.rejected), or left waiting
    until its device is known (device.registered comes on another topic, in no guaranteed order)."""
    async with uow:
        conn = uow.conn
        if await store.submission_known(conn, event.submission_id):
            log.info("read submission already decided; ignored", extra={"submission_id": event.submission_id})
            return
        device = await store.get_device(conn, event.device_id)
        if device is None:
            await store.lock_device_arrival(conn, event.device_id)
            device = await store.get_device(conn, event.device_id)
        if device is None and await store.deleted_at(conn, event.device_id) is None:
            await store.record_submission(
                conn,
                event.submission_id,
                event.device_id,
                event.source,
                "waiting",
                event_id,
                payload=event.model_dump(mode="json"),
            )
            log.info(
                "read submission waits for its device",
                extra={"submission_id": event.submission_id, "device_id": event.device_id},
            )
            return
        await _decide(uow, settings, device, event, event_id)


async def _decide_waiting(uow: UnitOfWork, settings: Settings, device_id: int) -> None:
    """Decide the submissions that waited for this device (refused if it was deleted)."""
    waiting = await store.waiting_submissions(uow.conn, device_id)
    device = await store.get_device(uow.conn, device_id) if waiting else None
    for row in waiting:
        submitted = ReadSubmitted.model_validate_json(row["payload"])
        await _decide(uow, settings, device, submitted, row["event_id"])


async def _decide(
    uow: UnitOfWork, settings: Settings, device: asyncpg.Record | None, event: ReadSubmitted, event_id: uuid.UUID
) -> None:
    """Accept or reject one submission of a known (or deleted) device, and record the decision."""
    conn = uow.conn
    result: Accepted | Rejected | None
    if device is None:  # deleted before it was ever known here
        result = _refused_if_deleted(str(event.device_id), await store.deleted_at(conn, event.device_id))
        assert result is not None, "a submission is decided without its device only once the device is deleted"
    elif mismatch := domain.rule_submission_names_device(
        event.device_id,
        (device["external_id"], device["organization_id"]),
        (event.external_id, event.organization_id),
    ):
        result = Rejected([ReadError(None, mismatch)])
    else:
        # Ongoing intervals run from the previous read's end: a sent start plays no part, but in History reads
        # and charging sessions (interval reads over exactly [start, end]).
        sessions = event.charging_sessions and event.read_type == "Delta"
        keep_start = event.read_type == "History" or sessions
        reads = Reads.of(
            domain.Read(
                i, r.start.astimezone(UTC) if keep_start and r.start else None, r.end.astimezone(UTC), r.value_wh
            )
            for i, r in enumerate(event.reads)
        )
        result = await _ingest(
            uow,
            settings,
            device,
            event.read_type,
            reads,
            source=event.source,
            now=datetime.now(UTC),
            charging_sessions=sessions,
        )
    submission = {"submission_id": event.submission_id, "device_id": event.device_id, "source": event.source}
    common = {**submission, "event_id": str(event_id)}  # for the log
    if isinstance(result, Accepted):
        batch_id = result.summary.batch_id
        await store.record_submission(
            conn, event.submission_id, event.device_id, event.source, "accepted", event_id, batch_id=batch_id
        )
        log.info(
            "read submission accepted",
            extra={**common, "batch_id": str(batch_id), "replayed": result.replayed},
        )
        return
    reasons = [e.as_dict() for e in result.errors]
    await store.record_submission(
        conn, event.submission_id, event.device_id, event.source, "rejected", event_id, reasons=reasons
    )
    # The source learns why, through the outbox: recorded and announced in the one transaction.
    uow.record(
        ReadRejected(
            submission_id=event.submission_id,
            device_id=event.device_id,
            external_id=event.external_id,
            organization_id=event.organization_id,
            read_type=event.read_type,
            source=event.source,
            reasons=[ReadRejection(index=e.index, reason=e.reason) for e in result.errors],
        )
    )
    log.warning("read submission rejected", extra={**common, "reasons": reasons})


# -- bulk read import (CSV) ------------------------------------------------------------------------


def job_out(job: Any) -> dict[str, Any]:
    total = job["rows_total"]
    return {
        "jobId": str(job["job_id"]),
        "organizationId": job["organization_id"],
        "fileName": job["file_name"],
        "status": job["status"],
        "rowsTotal": total,
        "rowsDone": job["rows_done"],
        "accepted": job["accepted"],
        "rejected": job["rows_done"] - job["accepted"],
        "progress": round(100 * job["rows_done"] / total, 1) if total else 100.0,
        "createdAt": iso(job["created_at"]),
        "finishedAt": iso_or_none(job["finished_at"]),
    }


def _job_row_out(row: Any) -> dict[str, Any]:
    return {
        "row": row["row_number"],
        "status": "accepted" if row["accepted"] else "rejected",
        "reason": row["reason"],
        "batchId": str(row["batch_id"]) if row["batch_id"] else None,
    }


STAGE_BATCH = 1000  # rows parsed (in a thread) and staged (one COPY) at a time
IMPORT_LEASE_S = 120.0  # a worker's hold on a job, renewed at each group; a dead worker's runs out
IMPORT_MAX_STRIKES = 3  # claims of a job at the same row before the group there is set aside


async def _stage_csv(conn: asyncpg.Connection, job_id: uuid.UUID, rows: Iterator[CsvRow]) -> int:
    """Stage the rows of a CSV, parsed a batch at a time in a worker thread: the event loop never parses, and
    memory holds one batch. Raises ApiError 400/413 naming what is wrong with the file."""
    total = 0
    try:
        while batch := await asyncio.to_thread(lambda: list(itertools.islice(rows, STAGE_BATCH))):
            await store.stage_rows(conn, job_id, batch)
            total += len(batch)
    except imports.TooLarge as exc:
        raise ApiError(413, f"Not a usable reads CSV: {exc}") from None
    except ValueError as exc:
        raise ApiError(400, f"Not a reads CSV: {exc}") from None
    return total


async def create_import_job(
    uow: UnitOfWork, user: Principal, organization_id: int | None, file_name: str | None, file: IO[bytes]
) -> dict[str, Any]:
    """Queue a CSV of reads (a spooled upload, which the caller closes) for the import worker: refused at once
    (400/413) when it is not a reads CSV. Its rows are staged in the same transaction as the job."""
    async with uow.reading("read_committed") as r:
        organization = await acting_organization(r.conn, user, organization_id, organization_type="Developer")
    job_id = uuid.uuid4()
    async with uow:
        await store.create_job(
            uow.conn, job_id=job_id, organization_id=organization, user_id=user.user_id, file_name=file_name
        )
        total = await _stage_csv(uow.conn, job_id, imports.read_csv(file))
        if not total:
            raise ApiError(400, "The file has a header but no rows")
        job = await store.set_job_total(uow.conn, job_id, total)
    return job_out(job)


async def import_jobs(uow: UnitOfWork, user: Principal, organization_id: int | None, page: Page) -> dict[str, Any]:
    """The organization's bulk read imports, newest first."""
    async with uow.reading() as r:
        organization = await acting_organization(r.conn, user, organization_id)
        jobs = await store.list_jobs(r.conn, organization, page.limit, page.offset)
    return {"jobs": [job_out(j) for j in jobs], "currentPageNumber": page.number}


async def import_job(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    job_id: uuid.UUID,
    accepted: bool | None,
    page: Page,
) -> dict[str, Any]:
    """A job's progress and one page of its row results (accepted or rejected ones only, if asked)."""
    async with uow.reading() as r:
        organization = await acting_organization(r.conn, user, organization_id)
        job = await store.get_job(r.conn, job_id)
        if job is None or job["organization_id"] != organization:
            raise ApiError(404, f"No bulk read import {job_id} in organization {organization}")
        rows = await store.job_rows(r.conn, job_id, accepted, page.limit, page.offset)
    return {**job_out(job), "rows": [_job_row_out(row) for row in rows], "currentPageNumber": page.number}


async def import_next_job(uow: UnitOfWork, settings: Settings) -> bool:
    """Work through one queued (or interrupted) job that no other worker holds; False when there is none.

    A job is held by a lease, renewed at each group, not by a transaction left open: a worker that dies lets it
    run out and another goes on at the job's cursor. A group that failed IMPORT_MAX_STRIKES times (an error that is
    not an outage of the database) is set aside, each row rejected with the error, and the job goes on: one poison
    group never holds the job, or the worker, for ever."""
    async with uow:
        job = await store.claim_job(uow.conn, IMPORT_LEASE_S)
    if job is None:
        return False
    job_id = job["job_id"]
    try:
        if job["content"] is not None:  # queued before rows were staged (migration 0009): staged now
            async with uow:
                await _stage_csv(uow.conn, job_id, imports.read_csv(io.BytesIO(job["content"].encode())))
                await store.set_job_total(uow.conn, job_id, job["rows_total"])
        await _run_job(uow, settings, job)
    except BaseException as exc:
        # Given back at once: the next step, or another replica, goes on. A failure of the group (not an outage of
        # the database, not a stop) is a strike against it.
        struck = not isinstance(exc, (asyncio.CancelledError, *db.OUTAGES)) and isinstance(exc, Exception)
        with contextlib.suppress(Exception):
            async with uow:
                await store.release_job(uow.conn, job_id, f"{type(exc).__name__}: {exc}"[:1000] if struck else None)
        raise
    return True


async def _run_job(uow: UnitOfWork, settings: Settings, job: Mapping[str, Any]) -> None:
    """Each group of rows is stored with its results and the job's cursor in one transaction, so a job cut
    short resumes at its first row not done and adds nothing twice."""
    job_id, last_row, organization = job["job_id"], job["last_row"], job["organization_id"]
    log.info("bulk read import working", extra={"job_id": str(job_id), "after_row": last_row})
    set_aside = job["strikes"] >= IMPORT_MAX_STRIKES and job["strike_row"] == last_row
    while rows := imports.rows_from_cells(await _staged(uow, job_id, last_row, domain.MAX_READS_PER_REQUEST)):
        for group in imports.groups(rows):
            async with uow:
                if not await store.hold_job(uow.conn, job_id, last_row):
                    return  # another worker went on with it (this one's lease ran out)
                if set_aside:
                    why = f"set aside: judging its group failed {IMPORT_MAX_STRIKES} times ({job['error'] or 'the worker stopped'})"
                    results = [RowResult(r.number, False, why) for r in group]
                    log.error("bulk read import group set aside", extra={"job_id": str(job_id), "rows": len(group)})
                    set_aside = False
                else:
                    results = await _judge_group(uow, settings, organization, group)
                await store.save_row_results(uow.conn, job_id, results)
                last_row = group[-1].number
                accepted = sum(r.accepted for r in results)
                await store.advance_job(uow.conn, job_id, last_row, len(results), accepted, IMPORT_LEASE_S)
            metrics.bulk_rows("reads_import", len(results))
    async with uow:
        if await store.hold_job(uow.conn, job_id, last_row):
            await store.finish_job(uow.conn, job_id)
    log.info("bulk read import done", extra={"job_id": str(job_id)})


async def _staged(uow: UnitOfWork, job_id: uuid.UUID, after: int, limit: int) -> list[tuple[int, list[str]]]:
    async with uow.reading("read_committed") as r:
        return await store.staged_rows(r.conn, job_id, after, limit)


async def _judge_group(
    uow: UnitOfWork, settings: Settings, organization_id: int, rows: Sequence[CsvRow]
) -> list[RowResult]:
    """Judge and store one group in the open unit of work; a result for every row.

    Unlike the API, a bad row does not refuse its neighbours: it is set aside with its reason and
    the rest judged again (a Delta read then counts from the previous accepted one).
    """
    first = rows[0]
    reason = imports.group_error(first)
    device = None
    if reason is None:
        device = await store.find_device(uow.conn, organization_id, first.external_id)
        if device is None:
            reason = f"no device with external id {first.external_id!r} in organization {organization_id}"
    if reason is not None or device is None:
        return [RowResult(r.number, False, reason) for r in rows]
    read_type = cast(ReadType, first.read_type)  # one of READ_TYPES: group_error said so
    remaining, results = imports.parse_group(rows)
    tz = domain.resolve_timezone(first.timezone).key if first.timezone else None
    while remaining:
        verdict = await _ingest(uow, settings, device, read_type, remaining, source=imports.SOURCE, timezone=tz)
        if isinstance(verdict, Accepted):
            results += [RowResult(number, True, None, verdict.summary.batch_id) for number in remaining.indexes]
            break
        whole = [e.reason for e in verdict.errors if e.index is None]
        if whole:
            results += [RowResult(number, False, whole[0]) for number in remaining.indexes]
            break
        bad: dict[int, str] = {}
        for e in verdict.errors:
            assert e.index is not None
            bad[e.index] = f"{bad[e.index]}; {e.reason}" if e.index in bad else e.reason
        results += [RowResult(number, False, why) for number, why in bad.items()]
        remaining = Reads.of(r for r in remaining if r.index not in bad)
    return sorted(results, key=lambda r: r.number)


# -- yield configuration (/api/yield/config) ----------------------------------------------------


def _yield_value(value: float) -> int | float:
    return int(value) if value.is_integer() else value  # 1600, as D-REC's integer column answered


def _yield_config_answer(row: asyncpg.Record) -> dict[str, Any]:
    """D-REC's YieldConfig entity: its fields (created_By, updated_By as it spells them) and timestamps."""
    return {
        "id": row["id"],
        "countryName": row["country_name"],
        "countryCode": row["country_code"],
        "yieldValue": _yield_value(row["yield_value"]),
        "status": row["status"],
        "created_By": row["created_by"],
        "updated_By": row["updated_by"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _no_yield_config(config_id: int) -> ApiError:
    return ApiError(404, f"No Yield value found with id {config_id}")


def _yield_exists(country_code: str, row: asyncpg.Record) -> ApiError:
    message = f"Yield value for this country {row['country_name']} ({country_code}) already exists (id {row['id']})"
    return ApiError(409, message, [{"field": "countryCode", "message": message, "where": "body"}])


async def yield_configs(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Every country's configured yield, by id."""
    async with uow.reading() as r:
        return [_yield_config_answer(row) for row in await store.yield_configs(r.conn)]


async def yield_config(uow: UnitOfWork, config_id: int) -> dict[str, Any]:
    async with uow.reading() as r:
        row = await store.yield_config(r.conn, config_id)
    if row is None:
        raise _no_yield_config(config_id)
    return _yield_config_answer(row)


async def create_yield_config(
    uow: UnitOfWork, user: Principal, country_code: str, country_name: str, yield_value: float, status: str
) -> dict[str, Any]:
    """A country's yield (one per country: 409 for a second); Active ('Y'), it judges the country's reads."""
    async with uow:
        row = await store.insert_yield_config(uow.conn, country_code, country_name, yield_value, status, user.user_id)
        if row is None:
            existing = await store.yield_config_of_country(uow.conn, country_code)
            assert existing is not None  # the conflict was on country_code
            raise _yield_exists(country_code, existing)
    log.info("country yield configured", extra={"country_code": country_code, "yield_value": yield_value})
    return _yield_config_answer(row)


async def update_yield_config(
    uow: UnitOfWork, user: Principal, config_id: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change a configured yield's value, status, country or name (those in `changes`, by column name)."""
    async with uow:
        row = await store.yield_config(uow.conn, config_id, lock=True)
        if row is None:
            raise _no_yield_config(config_id)
        code = changes.get("country_code")
        if code is not None and code != row["country_code"]:
            other = await store.yield_config_of_country(uow.conn, code)
            if other is not None:
                raise _yield_exists(code, other)
        try:
            updated = await store.update_yield_config(uow.conn, config_id, changes, user.user_id)
        except asyncpg.UniqueViolationError as exc:  # the country configured meanwhile
            message = f"Yield value for this country {code} already exists"
            raise ApiError(409, message, [{"field": "countryCode", "message": message, "where": "body"}]) from exc
        assert updated is not None  # locked above
    log.info("country yield changed", extra={"yield_config_id": config_id, "changes": changes})
    return _yield_config_answer(updated)
