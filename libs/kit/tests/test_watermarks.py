"""Watermarks against the real database and broker: a consumer learns when it holds every event a producer decided
before a moment, however long a decision's transaction stays open."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opendrec_contracts import DeviceRegistered, topic_of
from opendrec_contracts.testing import device_registered
from opendrec_kit import EventContext, ServiceRuntime, ServiceSettings, dlq, watermarks
from opendrec_kit.testing import eventually, publish_envelopes, settings_for_test, started, wait_for_event

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOPIC = topic_of(DeviceRegistered.TYPE)
MIGRATIONS = Path(__file__).parent / "sample_migrations"
FAILING: set[int] = set()  # devices whose handling fails until a test fixes "the bug"


def producer_runtime(settings: ServiceSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="producer", migrations=MIGRATIONS)
    runtime.watermarks(DeviceRegistered)
    return runtime


def consumer_runtime(settings: ServiceSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="consumer", migrations=MIGRATIONS)

    async def on_device(event: DeviceRegistered, ctx: EventContext) -> None:
        if event.device_id in FAILING:
            raise RuntimeError(f"cannot handle device {event.device_id} (a bug)")
        await ctx.conn.execute("INSERT INTO notes (device_id) VALUES ($1)", event.device_id)

    runtime.on(DeviceRegistered, on_device, watermarks=True)
    return runtime


@pytest.fixture(scope="module")
async def pair(postgres_url, kafka_bootstrap):
    common = {"watermark_interval_s": 0.1}
    producer = producer_runtime(
        settings_for_test(ServiceSettings, postgres_url, kafka_bootstrap, service_name="wm-producer", **common)
    )
    consumer = consumer_runtime(
        settings_for_test(ServiceSettings, postgres_url, kafka_bootstrap, service_name="wm-consumer", **common)
    )
    async with started(producer), started(consumer):
        yield producer, consumer


async def passed(runtime: ServiceRuntime) -> datetime | None:
    async with runtime.pool.acquire() as conn:
        return await watermarks.passed(conn, [TOPIC])


async def test_the_consumer_follows_the_producers_clock(pair):
    producer, consumer = pair
    before = await producer.pool.fetchval("SELECT clock_timestamp()")
    reached = await eventually(lambda: _passed_beyond(consumer, before))
    assert reached <= await producer.pool.fetchval("SELECT clock_timestamp()")
    # watermark rows are not kept once published: only events are retained for a broker loss
    await eventually(lambda: _no_published_watermarks(producer))


async def _passed_beyond(runtime: ServiceRuntime, moment: datetime) -> datetime | None:
    at = await passed(runtime)
    return at if at is not None and at > moment else None


async def _no_published_watermarks(runtime: ServiceRuntime) -> bool:
    kept = await runtime.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE kind = 'watermark' AND published_at IS NOT NULL"
    )
    return kept == 0


async def test_no_watermark_passes_a_decision_before_its_event_is_handled(pair):
    """A decision taken at T in a transaction that stays open: the watermark writer waits for it, so the consumer's
    watermark passes T only once the decision's event was handled."""
    producer, consumer = pair
    device_id = uuid.uuid4().int % 10**9
    uow = producer.uow()
    async with uow:
        decided_at = await watermarks.decision_time(uow.conn)
        uow.record(device_registered(device_id))
        await eventually(lambda: _watermark_writer_waits(producer))  # it has tried, and waits for this commit
        at = await passed(consumer)
        assert at is None or at < decided_at
    await eventually(lambda: _passed_beyond(consumer, decided_at))
    handled = await consumer.pool.fetchval("SELECT count(*) FROM notes WHERE device_id = $1", device_id)
    assert handled == 1


async def _watermark_writer_waits(runtime: ServiceRuntime) -> bool:
    waiting = await runtime.pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return waiting > 0


async def test_a_watermark_only_moves_forward_and_needs_every_partition(pair):
    _producer, consumer = pair
    topic = f"test.{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with consumer.pool.acquire() as conn:
        await watermarks.record(consumer.pool, "group", topic, 0, now, 2)
        assert await watermarks.passed(conn, [topic]) is None  # partition 1 has no watermark yet
        await watermarks.record(consumer.pool, "group", topic, 1, now + timedelta(seconds=5), 2)
        assert await watermarks.passed(conn, [topic]) == now  # the slowest partition
        await watermarks.record(consumer.pool, "group", topic, 0, now - timedelta(hours=1), 2)  # replayed, older
        assert await watermarks.passed(conn, [topic]) == now
        await watermarks.record(consumer.pool, "group", topic, 0, now + timedelta(seconds=9), 2)
        assert await watermarks.passed(conn, [topic]) == now + timedelta(seconds=5)
        assert await watermarks.passed(conn, [topic, "test.never-seen"]) is None  # a topic without any
        # the topic came back with one partition (a broker that lost it): partition 1's old watermark is not waited on
        await watermarks.record(consumer.pool, "group", topic, 0, now + timedelta(seconds=20), 1)
        assert await watermarks.passed(conn, [topic]) == now + timedelta(seconds=20)


async def test_a_dead_lettered_event_holds_the_watermark_until_it_is_replayed_and_handled(pair, kafka_bootstrap):
    """A decision the consumer failed to apply (dead-lettered) is never passed over: the watermark of its partition
    stays where it was until the event is replayed and handled; readiness names the hold meanwhile."""
    producer, consumer = pair
    # Poison (not an event at all) is dead-lettered without a hold: its replay could never succeed.
    tag = uuid.uuid4().hex
    await publish_envelopes(kafka_bootstrap, [(TOPIC, "x", f'{{"not an envelope": "{tag}"}}'.encode())])
    await wait_for_event(kafka_bootstrap, dlq.dlq_topic(TOPIC), lambda e: e.get("not an envelope") == tag)
    assert (await consumer.readiness())["watermarks"] == "ok"

    device_id = uuid.uuid4().int % 10**9
    FAILING.add(device_id)
    async with producer.uow() as uow:
        uow.record(device_registered(device_id))
    held = await eventually(
        lambda: consumer.pool.fetchrow("SELECT * FROM watermark_holds WHERE error LIKE $1", f"%device {device_id}%")
    )
    # The producer's later watermarks reach that partition (recorded past the hold), and still nothing passes it.
    await eventually(
        lambda: consumer.pool.fetchval(
            "SELECT at > $1::timestamptz + interval '1 second' FROM watermarks WHERE topic = $2 AND partition = $3",
            held["at"],
            TOPIC,
            held["partition"],
        )
    )
    assert await passed(consumer) <= held["at"]
    ready = (await consumer.readiness())["watermarks"]
    assert ready.startswith("held by 1 dead letter") and f"{TOPIC}/{held['partition']}@{held['offset']}" in ready

    FAILING.discard(device_id)  # the bug fixed, the dead letter replayed
    letters = [
        d
        for d in await dlq.dead_letters(kafka_bootstrap, [dlq.dlq_topic(TOPIC)])
        if d.event_id == str(held["event_id"])
    ]
    assert len(letters) == 1
    await dlq.replay(kafka_bootstrap, letters)
    await eventually(lambda: _passed_beyond(consumer, held["at"] + timedelta(seconds=1)))
    assert await consumer.pool.fetchval("SELECT count(*) FROM notes WHERE device_id = $1", device_id) == 1
    assert (await consumer.readiness())["watermarks"] == "ok"
