"""Kafka: broker factory, explicit topic creation, and idempotent consumers with retries and a DLQ.

A consumer handler gets a parsed event and an open transaction in which its event_id is
already claimed in the inbox: its effect and the claim commit together, so a redelivered
event changes nothing. Offsets are committed after that commit. A message that keeps
failing goes to `<topic>.dlq` with the error in its headers; an outage (database or broker
unreachable) is not the message's fault, so it is redelivered instead.

A batch consumer (`runtime.on(..., batch=N)`, `subscribe_batch`) takes the events the broker has at hand (up to `max_records`) in ONE transaction: the
inbox claims of all of them in one statement, its handler once for the new ones (issue 16: a single-read event
costs a transaction, an inbox row and a certification round; a batch shares them). Should the batch fail, it is
rolled back and its events are handled one by one, each as a plain consumer would (retries, DLQ, watermark hold):
one bad event never takes the others with it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from opendrec_contracts import Envelope, Event, UnknownEvent, dlq_topic, parse_event, topic_of

from . import watermarks
from .kafka_security import broker_security, client_options
from .settings import ServiceSettings
from .uow import EventContext, UnitOfWork

log = logging.getLogger(__name__)


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(),
        client_id=settings.service_name,
        middlewares=[KafkaTelemetryMiddleware()],
        # Outbox + inbox give effectively-once effects; Tansu refuses idempotent producers.
        enable_idempotence=False,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        allow_auto_create_topics=False,
        logger=logging.getLogger(f"faststream.{settings.service_name}"),
    )


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int, replication: int = 1) -> list[str]:
    """Create the topics that don't exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
            except TopicAlreadyExistsError:
                pass  # another service created them first
        return missing
    finally:
        await admin.close()


async def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """How many partitions each topic has on the broker (0 for one it does not know)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    counts = {t["topic"]: len(t.get("partitions") or []) for t in described if not t.get("error_code")}
    return {topic: counts.get(topic, 0) for topic in topics}


class Poison(Exception):
    """The message itself is bad (unparseable, unknown type, invalid payload): no retry helps."""


_OUTAGE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    # The database's passing conditions, not the message's fault (issue 13: a deadlock or "out of shared memory"
    # must not send a reservation.created to the DLQ): redelivered until they pass.
    asyncpg.TransactionRollbackError,  # deadlock detected, serialization failure
    asyncpg.InsufficientResourcesError,  # out of (shared) memory, too many connections, disk full
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,  # a statement timeout
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, _OUTAGE)


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, Poison)


E = TypeVar("E", bound=Event)
Handler = Callable[[E, EventContext], Awaitable[None]]


async def handle_once(
    pool: asyncpg.Pool, consumer: str, producer: str, envelope: Envelope, event: E, handler: Handler[E]
) -> bool:
    """Run `handler` in one unit of work with the inbox claim; False when the event was already handled.

    The handler's effect, the events it records and the claim commit together."""
    async with EventContext(pool, producer, envelope) as uow:
        claimed = await uow.conn.fetchval(
            "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true",
            consumer,
            envelope.event_id,
            envelope.type,
        )
        if not claimed:
            return False
        await handler(event, uow)
        return True


class BatchContext(UnitOfWork):
    """What a batch handler gets: the unit of work the kit opened around the inbox claims of the batch (use cases
    called with it join that transaction), and the envelopes of the events it is given, in the same order."""

    def __init__(self, pool: asyncpg.Pool, producer: str) -> None:
        super().__init__(pool, producer)
        self.envelopes: list[Envelope] = []


BatchHandler = Callable[[list[E], BatchContext], Awaitable[None]]


async def handle_batch(
    pool: asyncpg.Pool,
    consumer: str,
    producer: str,
    items: Sequence[tuple[Envelope, E]],
    handler: BatchHandler[E],
) -> list[uuid.UUID]:
    """Run `handler` once, in one unit of work with the inbox claims of `items` (one statement), for the events not
    handled before, in their order (an event met twice in `items` once); the ids of those events (the others were
    duplicates). The handler's effect, the events it records and every claim commit together, or none does."""
    async with BatchContext(pool, producer) as uow:
        claimed = await uow.conn.fetch(
            "INSERT INTO inbox (consumer, event_id, event_type) "
            "SELECT $1, e.id, e.type FROM unnest($2::uuid[], $3::text[]) AS e (id, type) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            consumer,
            [envelope.event_id for envelope, _ in items],
            [envelope.type for envelope, _ in items],
        )
        new = {row["event_id"] for row in claimed}
        fresh = []
        for envelope, event in items:
            if envelope.event_id in new:
                new.discard(envelope.event_id)
                fresh.append((envelope, event))
        if fresh:
            uow.envelopes = [envelope for envelope, _ in fresh]
            await handler([event for _, event in fresh], uow)
        return [envelope.event_id for envelope, _ in fresh]


def decode(raw: bytes) -> tuple[Envelope, Event]:
    try:
        envelope = Envelope.model_validate_json(raw)
        return envelope, parse_event(envelope)
    except (ValidationError, UnknownEvent, ValueError) as exc:
        raise Poison(str(exc)) from exc


class _Delivery:
    """One subscription's way with a message, shared by the plain and the batch consumer: retries, the DLQ, and
    the watermark hold of an event that failed for good."""

    def __init__(
        self,
        broker: KafkaBroker,
        settings: ServiceSettings,
        pool_getter: Callable[[], asyncpg.Pool],
        event_class: type[Event],
        group: str,
        follow_watermarks: bool,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.pool = pool_getter
        self.event_class = event_class
        self.topic = topic_of(event_class.TYPE)
        self.group = group
        self.follow_watermarks = follow_watermarks
        self.stats = {"handled": 0, "duplicates": 0, "dead_lettered": 0, "watermarks": 0}

    def decode(self, raw: bytes) -> tuple[Envelope, Event]:
        """The message's envelope and event; Poison when it is not an event of this consumer's class."""
        envelope, event = decode(raw)
        if not isinstance(event, self.event_class):
            raise Poison(f"{envelope.type} on {self.topic}: this consumer handles {self.event_class.TYPE} only")
        return envelope, event

    async def watermark(self, record: Any, raw: bytes) -> None:
        if self.follow_watermarks:
            await _take_watermark(self.pool(), self.group, self.topic, record, raw)
            self.stats["watermarks"] += 1

    async def one(
        self,
        record: Any,
        raw: bytes,
        headers: dict[str, Any],
        run: Callable[[Envelope, Event], Awaitable[bool]],
        decoded: tuple[Envelope, Event] | None = None,
    ) -> None:
        """The message's event handled by `run` (in its own unit of work; False: a duplicate), with retries; a
        message that keeps failing is dead-lettered (an event's failure holding the watermark); an outage raises
        (redelivered). `decoded`: the message as decoded already."""
        attempts = 0
        envelope: Envelope | None = None
        try:
            envelope, event = decoded or self.decode(raw)
            async for retry in AsyncRetrying(
                stop=stop_after_attempt(self.settings.consumer_max_attempts),
                wait=wait_exponential(multiplier=self.settings.consumer_retry_backoff_ms / 1000, max=5),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with retry:
                    attempts += 1
                    done = await run(envelope, event)
            self.stats["handled" if done else "duplicates"] += 1
            if self.follow_watermarks:
                await watermarks.release(self.pool(), self.group, envelope.event_id)
        except Exception as exc:
            if is_outage(exc):
                log.warning(
                    "outage while handling; will be redelivered", extra={"topic": self.topic, "error": repr(exc)}
                )
                raise
            if self.follow_watermarks and envelope is not None and not isinstance(exc, Poison):
                # An event whose handling failed holds the watermark until replayed (before the DLQ: a crash in
                # between redelivers, never passes over it). Poison does not: replaying the same bytes cannot
                # succeed, so holding would stop the consumer's clock for good.
                await watermarks.hold(
                    self.pool(),
                    self.group,
                    self.topic,
                    int(getattr(record, "partition", 0)),
                    int(getattr(record, "offset", 0)),
                    envelope.event_id,
                    repr(exc),
                )
            await self.set_aside(record, raw, headers, exc, attempts=attempts)

    async def set_aside(
        self, record: Any, raw: bytes, headers: dict[str, Any], exc: Exception, *, attempts: int
    ) -> None:
        await dead_letter_record(self.broker, self.topic, record, raw, headers, exc, attempts)
        self.stats["dead_lettered"] += 1
        log.error(
            "message sent to DLQ",
            extra={
                "topic": self.topic,
                "partition": getattr(record, "partition", None),
                "offset": getattr(record, "offset", None),
                "error": repr(exc),
            },
        )


def _group(settings: ServiceSettings, event_class: type[Event], group: str | None) -> str:
    return settings.kafka_group_prefix + (group or f"{settings.service_name}.{topic_of(event_class.TYPE)}")


def subscribe(
    broker: KafkaBroker,
    settings: ServiceSettings,
    pool_getter: Callable[[], asyncpg.Pool],
    event_class: type[E],
    handler: Handler[E],
    *,
    group: str | None = None,
    follow_watermarks: bool = False,
) -> dict[str, int]:
    """Register `handler` for the events of `event_class`, on its topic, in consumer group `group` (default:
    `<service>.<topic>`, after KAFKA_GROUP_PREFIX). The envelope is decoded, upcast and validated into
    `event_class` before the handler runs; a message that is not such an event is poison (DLQ).

    One group per topic: a rebalance of one subscription never pauses another.

    Watermark messages (opendrec_kit.watermarks) never reach `handler`: recorded with `follow_watermarks`, else
    skipped (one dictionary lookup: most consumers don't wait on them).

    Returns live counters (handled, duplicates, dead_lettered, watermarks) for progress and tests.
    """
    delivery = _Delivery(
        broker, settings, pool_getter, event_class, _group(settings, event_class, group), follow_watermarks
    )

    @broker.subscriber(
        delivery.topic,
        group_id=delivery.group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
    )
    async def consume(body: Any, msg: KafkaMessage) -> None:
        record, headers = msg.raw_message, msg.headers or {}
        if headers.get(watermarks.HEADER):
            await delivery.watermark(record, msg.body)
            return

        async def run(envelope: Envelope, event: Event) -> bool:
            checked = cast(E, event)  # decode() checked that it is an event_class
            return await handle_once(pool_getter(), delivery.group, settings.service_name, envelope, checked, handler)

        await delivery.one(record, msg.body, headers, run)

    return delivery.stats


def subscribe_batch(
    broker: KafkaBroker,
    settings: ServiceSettings,
    pool_getter: Callable[[], asyncpg.Pool],
    event_class: type[E],
    handler: BatchHandler[E],
    *,
    max_records: int,
    group: str | None = None,
    follow_watermarks: bool = False,
) -> dict[str, int]:
    """`subscribe`, taking the events the broker has at hand (up to `max_records`, across the group's partitions)
    in one unit of work: `handle_batch`. Each partition's order is kept: a watermark message closes the events
    before it (handled, committed) before it is recorded. A batch that fails is rolled back and its events are
    handled one by one (`handler` given one event a unit of work), with the plain consumer's retries, DLQ and
    watermark holds; an outage met on the way raises, and the whole batch is redelivered (what was committed of
    it is a duplicate then). Poison is dead-lettered once the batch's events are handled."""
    delivery = _Delivery(
        broker, settings, pool_getter, event_class, _group(settings, event_class, group), follow_watermarks
    )

    async def alone(envelope: Envelope, event: Event) -> bool:
        """One event of a failed batch, in a unit of work of its own (as a plain consumer would)."""
        items = [(envelope, cast(E, event))]  # decode() checked that it is an event_class
        return bool(await handle_batch(pool_getter(), delivery.group, settings.service_name, items, handler))

    async def flush(segment: list[tuple[Any, bytes, dict[str, Any], Envelope, E]]) -> None:
        if not segment:
            return
        items = [(envelope, event) for _, _, _, envelope, event in segment]
        try:
            handled = await handle_batch(pool_getter(), delivery.group, settings.service_name, items, handler)
        except Exception as exc:  # noqa: BLE001 - any failure: each event alone, with the plain consumer's semantics
            log.warning(
                "batch failed; its events are handled one by one",
                extra={"topic": delivery.topic, "events": len(segment), "error": repr(exc)},
            )
            for record, raw, headers, envelope, event in segment:
                await delivery.one(record, raw, headers, alone, (envelope, event))
            return
        delivery.stats["handled"] += len(handled)
        delivery.stats["duplicates"] += len(segment) - len(handled)
        if follow_watermarks:
            await watermarks.release_many(pool_getter(), delivery.group, handled)

    @broker.subscriber(
        delivery.topic,
        group_id=delivery.group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        batch=True,
        max_records=max_records,
        decoder=_bodies,
    )
    async def consume(body: Any, msg: KafkaMessage) -> None:
        segment: list[tuple[Any, bytes, dict[str, Any], Envelope, E]] = []
        poison: list[tuple[Any, bytes, dict[str, Any], Poison]] = []
        for record, headers in zip(msg.raw_message, msg.batch_headers, strict=True):
            raw: bytes = record.value or b""
            if headers.get(watermarks.HEADER):
                await flush(segment)  # every earlier event of its partition handled first
                segment = []
                await delivery.watermark(record, raw)
                continue
            try:
                envelope, event = delivery.decode(raw)
            except Poison as refusal:
                poison.append((record, raw, headers, refusal))
                continue
            segment.append((record, raw, headers, envelope, cast(E, event)))  # decode() checked its class
        await flush(segment)
        for bad in poison:
            await delivery.set_aside(*bad, attempts=0)

    return delivery.stats


async def _bodies(msg: KafkaMessage) -> Any:
    """A batch's messages as they came: `decode` reads each once (FastStream's own decoder would parse every one
    as JSON first, for nothing: ~7 % of the consumer's CPU under a stream of small events)."""
    return msg.body


async def _take_watermark(pool: asyncpg.Pool, group: str, topic: str, record: Any, raw: bytes) -> None:
    """A producer's watermark met on this partition, after every earlier message of it was handled: recorded (an
    outage raises: redelivered). One that can't be read is dropped, logged: the next one stands for it."""
    try:
        moment, partitions = watermarks.parse(raw)
    except ValueError as exc:
        log.error("unreadable watermark dropped", extra={"topic": topic, "error": str(exc)})
        return
    await watermarks.record(pool, group, topic, int(getattr(record, "partition", 0)), moment, partitions)


async def dead_letter(broker: KafkaBroker, topic: str, msg: KafkaMessage, exc: BaseException, attempts: int) -> None:
    await dead_letter_record(broker, topic, msg.raw_message, msg.body, msg.headers or {}, exc, attempts)


async def dead_letter_record(
    broker: KafkaBroker,
    topic: str,
    record: Any,
    raw: bytes,
    headers: dict[str, Any],
    exc: BaseException,
    attempts: int,
) -> None:
    """Set one message aside on `<topic>.dlq`, with its key, its headers and the error's."""
    out = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for k, v in headers.items()}
    out.update(
        {
            "x-error-type": type(exc).__name__,
            "x-error-message": str(exc)[:2000],
            "x-original-topic": topic,
            "x-original-partition": str(getattr(record, "partition", "")),
            "x-original-offset": str(getattr(record, "offset", "")),
            "x-attempts": str(attempts),
        }
    )
    key = getattr(record, "key", None)
    await broker.publish(raw, topic=dlq_topic(topic), key=key, headers=out)
