"""The unit of work: one transaction of a use case, and the events it records, written to the outbox at commit.

A use case takes a `UnitOfWork` and runs its changes inside `async with uow:`; it records the facts it
establishes with `uow.record(event)`. At a clean exit the recorded events are written to the outbox in the
same transaction, then the transaction commits; on an exception it rolls back and nothing is published.

Entering a unit of work that is already open (an event handler's, opened by the kit around the inbox claim,
or a use case calling another) joins it: only the outermost exit commits. A unit of work may be entered again
after it closed: each entry is a new transaction (batch loops).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import Literal, Self

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from opendrec_contracts import Envelope, Event

from . import outbox

Isolation = Literal["read_committed", "repeatable_read", "serializable"]


class UnitOfWork:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: str,
        *,
        isolation: Isolation | None = None,
        readonly: bool = False,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self._isolation = isolation
        self._readonly = readonly
        self._conn: asyncpg.Connection | None = None
        self._owns_conn = False
        self._tx: asyncpg.transaction.Transaction | None = None
        self._depth = 0
        self._snapshot = True
        self.events: list[Event] = []
        # The trace context each event was recorded in (by id: readings deletes refused submissions' events from
        # `events`): its message continues that trace, e.g. each request's of a group commit, not the group's.
        self._traces: dict[int, Context] = {}
        self.committed: list[Event] = []  # events of the last commit, for callers that answer with them

    def reading(self, isolation: Isolation = "repeatable_read", *, snapshot: bool = True) -> UnitOfWork:
        """The same pool, for a read-only use case: one consistent snapshot (e.g. a page and its total).
        snapshot=False: no transaction (no BEGIN/COMMIT round trips), for a use case of one statement."""
        uow = UnitOfWork(self.pool, self.producer, isolation=isolation, readonly=True)
        uow._snapshot = snapshot
        return uow

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None or self._depth == 0:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._conn

    def record(self, event: Event) -> None:
        """Publish `event` if, and only if, this unit of work commits (under the trace context current now)."""
        self.events.append(event)
        self._traces[id(event)] = otel_context.get_current()

    def record_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.record(event)

    async def __aenter__(self) -> Self:
        self._depth += 1
        if self._depth > 1:
            return self  # joined: the outermost entry owns the transaction
        try:
            if self._conn is None:
                self._conn = await self.pool.acquire()
                self._owns_conn = True
            if self._snapshot:
                self._tx = self._conn.transaction(isolation=self._isolation, readonly=self._readonly)
                await self._tx.start()
        except BaseException:
            await self._close()
            raise
        self.events, self._traces = [], {}
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        if not self._snapshot:
            await self._close()
            return
        assert self._tx is not None
        try:
            if exc_type is None:
                try:
                    if self.events:
                        traces = [self._traces.get(id(event)) for event in self.events]
                        await outbox.add_many(self._conn, self.events, self.producer, traces)
                    await self._tx.commit()
                except BaseException:
                    with contextlib.suppress(Exception):  # the commit's own error is the one to raise
                        await self._tx.rollback()
                    raise
                self.committed, self.events, self._traces = self.events, [], {}
            else:
                self.events, self._traces = [], {}
                await self._tx.rollback()
        finally:
            await self._close()

    async def _close(self) -> None:
        self._tx = None
        self._depth = 0
        if self._conn is not None and self._owns_conn:
            conn, self._conn, self._owns_conn = self._conn, None, False
            await self.pool.release(conn)


class EventContext(UnitOfWork):
    """What an event handler gets: the unit of work the kit opened around the inbox claim (use cases called
    with it join that transaction), and the envelope the event came in."""

    def __init__(self, pool: asyncpg.Pool, producer: str, envelope: Envelope) -> None:
        super().__init__(pool, producer)
        self.envelope = envelope
