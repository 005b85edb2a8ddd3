"""Watermarks: a producer's promise that a topic holds every event about a moment before W (issue 13).

A consumer that must not act on a moment before it knows everything the producer decided about it (certificates
must not issue a period before it knows whether the reservation ended inside it, however late reservation.ended
arrives) waits for the producer's watermark on that topic to pass the moment.

How the promise is kept:
- The producer takes `decision_time(conn)` in a use case whose decision takes effect at that moment (an early end,
  a shorter end date): a shared advisory lock held to commit, and the database's clock.
- Its watermark worker (`runtime.watermarks(...)`) takes the same lock exclusively, so every such transaction that
  took the clock before has committed (and written its outbox rows), then writes one watermark row per partition
  of each topic with the clock's time W. Outbox rows are published in id order, so on every partition a watermark
  follows every event decided before W.
- The consumer's subscription (`runtime.on(..., watermarks=True)`) records a watermark when it meets one
  (`record`), after every earlier message of that partition was handled; `passed(conn, topics)` is the moment every partition of every topic has reached (None
  until each has one). A paused consumer, a stalled relay or a broker outage stop the watermark, never skip it.

One service produces each watermarked topic (reservations for reservation.ended and reservation.updated).
An event of such a topic whose handling failed for good (dead-lettered) holds the consumer's watermark on its
partition where it was (`hold`), until the event is handled, replayed from the DLQ (`release`): a decision that failed
to apply is never passed over. While held, `holds` names them (readiness details). Poison (not an event of the
topic at all) is dead-lettered without a hold: its replay could never succeed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import orjson

from .timestamps import iso_exact

_DECISIONS_LOCK = 0x0DEC0002  # advisory lock key, per database
HEADER = "opendrec-watermark"  # a Kafka header marking a watermark message (no envelope)


async def decision_time(conn: asyncpg.Connection) -> datetime:
    """The moment a decision in this transaction takes effect: no watermark at or after it is published before
    this transaction's events. Call it inside the unit of work, before deciding."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", _DECISIONS_LOCK)
    moment: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return moment


async def write(conn: asyncpg.Connection, partitions: dict[str, int], producer: str) -> datetime:
    """Write a watermark row per partition of each topic (topic -> its partition count on the broker) to the
    outbox, in the caller's transaction; returns W. Waits for the transactions that took a decision time before
    (they hold the lock shared until commit)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _DECISIONS_LOCK)
    moment: datetime = await conn.fetchval("SELECT clock_timestamp()")
    rows = []
    for topic, count in partitions.items():
        body = orjson.dumps({"at": iso_exact(moment), "partitions": count, "producer": producer}).decode()
        rows += [(uuid.uuid4(), topic, body, p) for p in range(count)]
    await conn.executemany(
        "INSERT INTO outbox (event_id, topic, key, envelope, partition, kind) VALUES ($1, $2, '', $3, $4, 'watermark')",
        rows,
    )
    return moment


def parse(raw: bytes) -> tuple[datetime, int]:
    """A watermark message's moment and the producer's partition count; ValueError when it is not one."""
    try:
        body = orjson.loads(raw)
        return datetime.fromisoformat(body["at"]), int(body["partitions"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a watermark: {exc}") from exc


async def record(
    pool: asyncpg.Pool, consumer: str, topic: str, partition: int, moment: datetime, partitions: int
) -> None:
    """What a consumer met on one partition: watermarks only move forward (a replay after a broker loss repeats
    older ones)."""
    await pool.execute(
        "INSERT INTO watermarks (consumer, topic, partition, at, partitions) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (consumer, topic, partition) DO UPDATE SET at = GREATEST(watermarks.at, EXCLUDED.at), "
        "partitions = EXCLUDED.partitions",
        consumer,
        topic,
        partition,
        moment,
        partitions,
    )


async def hold(
    pool: asyncpg.Pool, consumer: str, topic: str, partition: int, offset: int, event_id: uuid.UUID, error: str
) -> None:
    """An event of this partition was dead-lettered: the partition's watermark stays where it is now (before any
    watermark: at the epoch) until the event is handled."""
    await pool.execute(
        'INSERT INTO watermark_holds (consumer, topic, partition, "offset", event_id, at, error) '
        "SELECT $1, $2, $3, $4, $5, coalesce(max(at), 'epoch'), $6 FROM watermarks "
        "WHERE consumer = $1 AND topic = $2 AND partition = $3 "
        "ON CONFLICT DO NOTHING",
        consumer,
        topic,
        partition,
        offset,
        event_id,
        error[:2000],
    )


async def release(pool: asyncpg.Pool, consumer: str, event_id: uuid.UUID) -> None:
    """The held event was handled (replayed from the DLQ): its partition's watermark moves on."""
    await pool.execute("DELETE FROM watermark_holds WHERE consumer = $1 AND event_id = $2", consumer, event_id)


async def release_many(pool: asyncpg.Pool, consumer: str, event_ids: list[uuid.UUID]) -> None:
    """`release`, for the events a batch handled (one statement)."""
    if event_ids:
        await pool.execute(
            "DELETE FROM watermark_holds WHERE consumer = $1 AND event_id = ANY($2::uuid[])", consumer, event_ids
        )


async def holds(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """The dead letters holding a watermark, oldest first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        'SELECT consumer, topic, partition, "offset", event_id, at, error, created_at FROM watermark_holds '
        "ORDER BY created_at"
    )
    return rows


async def passed(conn: asyncpg.Connection, topics: list[str]) -> datetime | None:
    """The moment every partition of every topic has passed (by the slowest of this service's consumers of the
    topic, if it has several, and no later than a dead letter holds it); None while one of them has met no
    watermark yet."""
    # Only the partitions the producer's latest watermark counts: a partition a topic no longer has (the broker lost
    # the topic and it came back with fewer) must not hold the moment back forever.
    row = await conn.fetchrow(
        """
        WITH latest AS (
            SELECT DISTINCT ON (topic) topic, partitions FROM watermarks
            WHERE topic = ANY($1::text[]) ORDER BY topic, at DESC
        ), held AS (
            SELECT topic, partition, min(at) AS at FROM watermark_holds
            WHERE topic = ANY($1::text[]) GROUP BY topic, partition
        ), best AS (
            SELECT w.topic, w.partition, least(min(w.at), min(h.at)) AS at
            FROM watermarks w JOIN latest l USING (topic) LEFT JOIN held h USING (topic, partition)
            WHERE w.partition < l.partitions GROUP BY w.topic, w.partition
        ), per_topic AS (
            SELECT b.topic, min(b.at) AS at, count(*) AS seen, min(l.partitions) AS partitions
            FROM best b JOIN latest l USING (topic) GROUP BY b.topic
        )
        SELECT min(at) AS at, bool_and(seen >= partitions) AS complete, count(*) AS topics FROM per_topic
        """,
        topics,
    )
    if row is None or row["topics"] < len(set(topics)) or not row["complete"]:
        return None
    moment: datetime = row["at"]
    return moment
