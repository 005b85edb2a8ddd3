"""Transactional outbox: events are rows written with the change; a relay publishes them.

The relay wakes on NOTIFY (or a poll tick), publishes rows in id order under the trace
context they were written in, and deletes them only once the broker acknowledged them.
One relay per service database is active at a time (advisory lock), so per-key order holds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import orjson
from faststream.kafka import KafkaBroker
from opentelemetry import context as otel_context
from opentelemetry import propagate

from opendrec_contracts import Event, envelope_for, topic_of

from .workers import Worker

log = logging.getLogger(__name__)

_RELAY_LOCK = 0x0DEC0001  # advisory lock key, per database


async def add_many(conn: asyncpg.Connection, events: list[Event], producer: str) -> None:
    """Record `events` for publication, in the caller's transaction (the unit of work calls this at commit)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)  # trace context of the request or message that caused the events
    h = orjson.dumps(headers).decode()
    rows = []
    for event in events:
        env = envelope_for(event, producer)
        rows.append((env.event_id, topic_of(event.TYPE), event.key(), env.model_dump_json(), h))
    await conn.executemany(
        "INSERT INTO outbox (event_id, topic, key, envelope, headers) VALUES ($1, $2, $3, $4, $5)", rows
    )


class OutboxRelay:
    """Publishes outbox rows: a worker woken by NOTIFY (or its poll interval) runs `publish_pending`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        broker: KafkaBroker,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.pool = pool
        self.database_url = database_url
        self.broker = broker
        self.batch_size = batch_size
        self.worker = Worker(
            "outbox-relay", self._step, interval_s=poll_interval_s, backoff_max_s=5.0, affects_readiness=True
        )
        self._listener: asyncpg.Connection | None = None
        self.published = 0

    @property
    def healthy(self) -> bool:
        return self.worker.healthy

    async def start(self) -> None:
        self._listener = await asyncpg.connect(self.database_url)
        await self._listener.add_listener("outbox", lambda *_: self.worker.wake())
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        if self._listener:
            await self._listener.close()

    async def _step(self) -> bool:
        return await self.publish_pending() >= self.batch_size  # a full batch: more are waiting

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, envelope, headers FROM outbox ORDER BY id LIMIT $1", self.batch_size
            )
            if not rows:
                return 0
            pending: list[Any] = []
            for row in rows:
                pending.append(await self._send(row))
            await asyncio.gather(*pending)  # every delivery acknowledged before we forget the rows
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)

    async def _send(self, row: asyncpg.Record) -> Any:
        carrier = orjson.loads(row["headers"])
        token = otel_context.attach(propagate.extract(carrier))
        try:
            return await self.broker.publish(
                row["envelope"].encode(),
                topic=row["topic"],
                key=row["key"].encode(),
                headers={"content-type": "application/json"},
                no_confirm=True,
            )
        finally:
            otel_context.detach(token)
