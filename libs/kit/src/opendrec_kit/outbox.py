"""Transactional outbox: events are rows written with the change; a relay publishes them.

The relay wakes on NOTIFY (or a poll tick) and publishes rows in id order under the trace context they were
written in; one relay per service database is active at a time (advisory lock), so per-key order holds.

Nothing is lost when the broker is (issue 13):
- A row is marked published only once the broker acknowledged it, and kept OUTBOX_RETENTION_S after that.
- The broker's data is recognised by its epoch: a marker message, the first of the topic `opendrec.broker-epoch`,
  written by the first service that finds none. Every BROKER_EPOCH_CHECK_S (and at start) the relay reads it, and
  creates any topic that is gone. A marker other than the one this service last published under means the broker
  lost its data (a memory-only broker restarted, an unreplicated cluster was rebuilt): every retained row is
  published again, in id order, before anything newer. Consumers' inboxes make the repeats harmless.
- A row the broker refuses for good (a non-retriable error, e.g. larger than its message limit) is set aside with
  its error (failed_at) and the relay goes on: one bad row never holds up the service's other events. Transient
  failures (broker down, a topic being created) are retried by the worker with backoff, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from faststream.kafka import KafkaBroker
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind

from opendrec_contracts import Event, all_topics, envelope_for, topic_of

from .kafka_security import client_options
from .watermarks import HEADER as WATERMARK_HEADER
from .workers import Worker

log = logging.getLogger(__name__)

_RELAY_LOCK = 0x0DEC0001  # advisory lock key, per database
EPOCH_TOPIC = "opendrec.broker-epoch"
# What the broker refuses about a row itself, for good: set aside. Anything else (down, timed out, a topic being
# created...) is retried, in order.
_REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordTooLargeError, InvalidTopicError)


# The largest envelope a message may carry: Kafka's default limit (message.max.bytes, 1 MiB) less room for the
# record's key, headers and batch framing. Sized by bytes, not by a count of items.
MAX_EVENT_BYTES = 1024 * 1024 - 16 * 1024


class EventTooLarge(ValueError):
    """An event whose envelope no broker with default limits takes: refused when written, so the change it reports
    is not committed either (a producer splits such events; one that reaches here is a bug to fix there)."""


async def add_many(
    conn: asyncpg.Connection, events: list[Event], producer: str, traces: Sequence[Context | None] | None = None
) -> None:
    """Record `events` for publication, in the caller's transaction (the unit of work calls this at commit), each
    with the trace context of the request or message that caused it: `traces[i]`, else the current one.
    Raises EventTooLarge for an envelope above MAX_EVENT_BYTES: the transaction rolls back."""
    carriers: dict[int, str] = {}  # one injection per distinct context (a group commit has one per request)

    def headers(context: Context | None) -> str:
        key = id(context)
        if (h := carriers.get(key)) is None:
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=context)
            h = carriers[key] = orjson.dumps(carrier).decode()
        return h

    rows = []
    for i, event in enumerate(events):
        h = headers(traces[i] if traces is not None else None)
        env = envelope_for(event, producer)
        body = env.model_dump_json()
        if len(body) > MAX_EVENT_BYTES:  # characters: a lower bound of the bytes, and JSON here is ASCII-heavy
            size = len(body.encode())
            raise EventTooLarge(f"{event.TYPE} of {size} bytes is larger than {MAX_EVENT_BYTES}: split it")
        rows.append((env.event_id, topic_of(event.TYPE), event.key(), body, h))
    await conn.executemany(
        "INSERT INTO outbox (event_id, topic, key, envelope, headers) VALUES ($1, $2, $3, $4, $5)", rows
    )


class BrokerEpoch:
    """The marker of the broker's data: the first message of `topic` (created, with every event topic that is
    missing, when absent)."""

    def __init__(
        self, bootstrap: str, partitions: int, replication: int, topic: str = EPOCH_TOPIC, read_timeout_s: float = 10.0
    ) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.replication = replication
        self.topic = topic
        self.read_timeout_s = read_timeout_s

    async def current(self, broker: KafkaBroker) -> str:
        """The broker's epoch; a new one is made when it has none. Also recreates any topic that is gone."""
        from .messaging import ensure_topics  # messaging imports this module

        await ensure_topics(self.bootstrap, all_topics(), self.partitions, self.replication)
        await ensure_topics(self.bootstrap, [self.topic], 1, self.replication)  # one partition: one first message
        marker = await self._first()
        if marker is None:
            await broker.publish(uuid.uuid4().hex.encode(), topic=self.topic, partition=0)
            marker = await self._first()  # the first one written wins, if two services raced
        if marker is None:
            raise RuntimeError(f"the broker kept no epoch marker on {self.topic}")
        return marker

    async def _first(self) -> str | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **client_options())
        await admin.start()
        try:
            if self.topic not in await admin.list_topics():
                return None
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **client_options())
        await consumer.start()
        try:
            partition = TopicPartition(self.topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            if end == 0:
                return None
            try:
                async with asyncio.timeout(self.read_timeout_s):
                    record = await consumer.getone(partition)
            except TimeoutError:
                # A marker the broker counts but does not deliver (seen with Tansu after two restarts a second apart):
                # not knowing the broker's data is treated as another broker's, and the retained events go out again
                # (harmless: inboxes), instead of failing every relay step from now on (issue 13, fault injection).
                log.warning("the broker's epoch marker cannot be read", extra={"topic": self.topic, "end": end})
                return f"unreadable@{end}"
            return bytes(record.value or b"").decode()
        finally:
            await consumer.stop()


class OutboxRelay:
    """Publishes outbox rows: a worker woken by NOTIFY (or its poll interval) runs `publish_pending`, follows the
    broker's epoch and forgets rows published longer ago than the retention."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        broker: KafkaBroker,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        *,
        epoch: BrokerEpoch | None = None,
        retention_s: float = 0.0,
        epoch_check_s: float = 30.0,
    ) -> None:
        self.pool = pool
        self.database_url = database_url
        self.broker = broker
        self.batch_size = batch_size
        self.epoch = epoch
        self.retention_s = retention_s
        self.epoch_check_s = epoch_check_s
        self.worker = Worker(
            "outbox-relay", self._step, interval_s=poll_interval_s, backoff_max_s=5.0, affects_readiness=True
        )
        self._listener: asyncpg.Connection | None = None
        self._epoch_due = 0.0  # monotonic time of the next epoch check (0: at the first step)
        self.published = 0
        self.republished = 0
        self.set_aside = 0

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
        if self.epoch is not None and time.monotonic() >= self._epoch_due:
            await self.follow_epoch()
            await self.forget_published()
            self._epoch_due = time.monotonic() + self.epoch_check_s
        return await self.publish_pending() >= self.batch_size  # a full batch: more are waiting

    async def follow_epoch(self) -> bool:
        """Read the broker's epoch; when it is not the one this service published under, publish again every row
        still retained (True). Recreates any topic that is gone."""
        assert self.epoch is not None
        current = await self.epoch.current(self.broker)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return False  # another relay of this service follows it
            known = await conn.fetchval("SELECT value FROM kit_state WHERE name = 'broker_epoch' FOR UPDATE")
            if known == current:
                return False
            again = 0
            if known is not None:
                again = int(
                    (
                        await conn.execute("UPDATE outbox SET published_at = NULL WHERE published_at IS NOT NULL")
                    ).split()[-1]
                )
            await conn.execute(
                "INSERT INTO kit_state (name, value) VALUES ('broker_epoch', $1) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                current,
            )
        if known is not None:
            self.republished += again
            log.warning("the broker lost its data: publishing retained events again", extra={"events": again})
        return known is not None

    async def forget_published(self, batch: int = 10_000) -> int:
        """Delete rows published longer ago than the retention (a batch at a time)."""
        status = await self.pool.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1)"
            " ORDER BY published_at LIMIT $2)",
            self.retention_s,
            batch,
        )
        return int(status.split()[-1])

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published (set-aside ones not counted).

        Four round trips a batch, whatever its size: BEGIN, the rows (only to the relay holding the lock), marking
        them published (or deleting them), COMMIT; the rows go to the broker's producer together, in one `outbox
        publish` span, each message with the trace context its row was written in."""
        async with self.pool.acquire() as conn, conn.transaction():
            # The lock's InitPlan runs once: another relay holding it sees no rows.
            rows = await conn.fetch(
                "SELECT id, topic, key, envelope, headers, partition, kind FROM outbox"
                " WHERE (SELECT pg_try_advisory_xact_lock($2)) AND published_at IS NULL AND failed_at IS NULL"
                " ORDER BY id LIMIT $1",
                self.batch_size,
                _RELAY_LOCK,
            )
            if not rows:
                return 0
            # One span for the batch, linked to the contexts its rows were written in; each message carries its
            # row's context itself, so a consumer's span continues the trace of the request that caused the event.
            carriers: list[dict[str, str]] = [orjson.loads(row["headers"]) for row in rows]
            with _tracer.start_as_current_span(
                "outbox publish",
                kind=SpanKind.PRODUCER,
                links=_links(carriers),
                attributes={"messaging.batch.message_count": len(rows)},
            ):
                try:
                    producer = _kafka_producer(self.broker)
                    pending = [await _send(producer, row, carrier) for row, carrier in zip(rows, carriers, strict=True)]
                    await asyncio.gather(*pending)  # every delivery acknowledged before the rows count as published
                    published = [r["id"] for r in rows]
                except _REFUSED_FOR_GOOD:
                    published = await self._one_by_one(conn, rows)
                except KafkaError:
                    self._epoch_due = 0.0  # e.g. a topic that is gone: recreate it at the next step
                    raise
            if self.retention_s > 0:
                # Watermarks are not kept: after a broker loss, newer ones follow the events published again.
                await conn.execute(
                    "WITH watermarks AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND kind = 'watermark')"
                    " UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[]) AND kind <> 'watermark'",
                    published,
                )
            else:
                await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", published)
        self.published += len(published)
        return len(published)

    async def _one_by_one(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[int]:
        """A batch the broker refused for good: publish its rows one at a time, setting aside the ones it refuses
        (failed_at, error) and keeping the order of the others. A transient failure is raised (retried)."""
        published = []
        producer = _kafka_producer(self.broker)
        for row in rows:
            try:
                await (await _send(producer, row, orjson.loads(row["headers"])))
            except _REFUSED_FOR_GOOD as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                await conn.execute("UPDATE outbox SET failed_at = now(), error = $2 WHERE id = $1", row["id"], error)
                self.set_aside += 1
                log.error(
                    "event set aside: the broker refuses it",
                    extra={"outbox_id": row["id"], "topic": row["topic"], "error": error},
                )
                continue
            published.append(row["id"])
        return published


_tracer = trace.get_tracer(__name__)
_JSON = b"application/json"
_MAX_LINKS = 128  # the SDK's default span link limit


def _kafka_producer(broker: KafkaBroker) -> AIOKafkaProducer:
    """The aiokafka producer the broker connected at its start (its settings, its security). The relay hands it rows
    itself: FastStream's publish takes ~60 µs of CPU a message (its command, middlewares, a span), less without a span
    a message (issue 16: a row per single-read group member). FastStream 0.6 keeps it in its producer's state."""
    producer = getattr(cast(Any, broker.config.producer)._producer, "producer", None)
    if not isinstance(producer, AIOKafkaProducer):
        raise KafkaConnectionError("the broker's producer is not connected")  # retried by the worker
    return producer


async def _send(producer: AIOKafkaProducer, row: asyncpg.Record, carrier: dict[str, str]) -> asyncio.Future[Any]:
    """Hand one row to the producer with the trace context it was written in (`carrier`, its headers, in the
    message's headers); the future resolves when the broker acknowledged it. No span of its own: the batch has one
    (issue 16: a span a message cost the relay ~35 us of CPU, a row per single read)."""
    topic = row["topic"]
    headers = [("content-type", _JSON), *((name, value.encode()) for name, value in carrier.items())]
    if row["kind"] == "watermark":  # to its own partition, marked so consumers record it, not handle it
        headers.append((WATERMARK_HEADER, b"1"))
        return await producer.send(topic, row["envelope"].encode(), partition=row["partition"], headers=headers)
    return await producer.send(topic, row["envelope"].encode(), key=row["key"].encode(), headers=headers)


def _links(carriers: list[dict[str, str]]) -> list[Link]:
    """Links from a batch's span to the contexts its rows were written in (the SDK keeps at most 128)."""
    links = []
    for carrier in carriers[:_MAX_LINKS]:
        context = trace.get_current_span(propagate.extract(carrier)).get_span_context()
        if context.is_valid:
            links.append(Link(context))
    return links
