"""Kafka: broker factory, explicit topic creation, and idempotent consumers with retries and a DLQ.

A consumer handler gets a parsed event and an open transaction in which its event_id is
already claimed in the inbox: its effect and the claim commit together, so a redelivered
event changes nothing. Offsets are committed after that commit. A message that keeps
failing goes to `<topic>.dlq` with the error in its headers; an outage (database or broker
unreachable) is not the message's fault, so it is redelivered instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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
from .uow import EventContext

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


def decode(raw: bytes) -> tuple[Envelope, Event]:
    try:
        envelope = Envelope.model_validate_json(raw)
        return envelope, parse_event(envelope)
    except (ValidationError, UnknownEvent, ValueError) as exc:
        raise Poison(str(exc)) from exc


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
    topic = topic_of(event_class.TYPE)
    group = settings.kafka_group_prefix + (group or f"{settings.service_name}.{topic}")
    stats = {"handled": 0, "duplicates": 0, "dead_lettered": 0, "watermarks": 0}

    @broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
    )
    async def consume(body: Any, msg: KafkaMessage) -> None:
        record = msg.raw_message
        if (msg.headers or {}).get(watermarks.HEADER):
            if follow_watermarks:
                await _take_watermark(pool_getter(), group, topic, record, msg.body)
                stats["watermarks"] += 1
            return
        attempts = 0
        envelope: Envelope | None = None
        try:
            envelope, event = decode(msg.body)
            if not isinstance(event, event_class):
                raise Poison(f"{envelope.type} on {topic}: this consumer handles {event_class.TYPE} only")
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(settings.consumer_max_attempts),
                wait=wait_exponential(multiplier=settings.consumer_retry_backoff_ms / 1000, max=5),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    done = await handle_once(pool_getter(), group, settings.service_name, envelope, event, handler)
            stats["handled" if done else "duplicates"] += 1
            if follow_watermarks:
                await watermarks.release(pool_getter(), group, envelope.event_id)
        except Exception as exc:
            if is_outage(exc):
                log.warning("outage while handling; will be redelivered", extra={"topic": topic, "error": repr(exc)})
                raise
            if follow_watermarks and envelope is not None and not isinstance(exc, Poison):
                # An event whose handling failed holds the watermark until replayed (before the DLQ: a crash in
                # between redelivers, never passes over it). Poison does not: replaying the same bytes cannot
                # succeed, so holding would stop the consumer's clock for good.
                await watermarks.hold(
                    pool_getter(),
                    group,
                    topic,
                    int(getattr(record, "partition", 0)),
                    int(getattr(record, "offset", 0)),
                    envelope.event_id,
                    repr(exc),
                )
            await dead_letter(broker, topic, msg, exc, attempts)
            stats["dead_lettered"] += 1
            log.error(
                "message sent to DLQ",
                extra={
                    "topic": topic,
                    "partition": getattr(record, "partition", None),
                    "offset": getattr(record, "offset", None),
                    "error": repr(exc),
                },
            )

    return stats


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
    record = msg.raw_message
    headers = {
        k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for k, v in (msg.headers or {}).items()
    }
    headers.update(
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
    await broker.publish(msg.body, topic=dlq_topic(topic), key=key, headers=headers)
