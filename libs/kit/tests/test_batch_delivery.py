"""Batch consumers (runtime.on(..., batch=N), issue 16) against the real database and broker: many events a transaction,
each still once, and a bad one never takes the others with it (DLQ, retries, watermark hold as a plain consumer)."""

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from opendrec_contracts import DeviceRegistered, envelope_for, topic_of
from opendrec_contracts.testing import device_registered
from opendrec_kit import ServiceRuntime, ServiceSettings, dlq, watermarks
from opendrec_kit.messaging import BatchContext, handle_batch
from opendrec_kit.testing import (
    all_events,
    eventually,
    publish_envelopes,
    publish_events,
    settings_for_test,
    started,
    wait_for_event,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOPIC = topic_of(DeviceRegistered.TYPE)
MIGRATIONS = Path(__file__).parent / "sample_migrations"
FAILING: set[int] = set()  # devices whose handling fails until a test fixes "the bug"
DEADLOCKS_LEFT: dict[int, int] = {}  # devices whose batch meets that many deadlocks first
GATES: dict[int, asyncio.Event] = {}  # devices whose batch waits until the test opens the gate
BATCHES: list[list[int]] = []  # the devices of every batch the handler was given


async def on_devices(events: list[DeviceRegistered], ctx: BatchContext) -> None:
    ids = [e.device_id for e in events]
    assert [env.event_id for env in ctx.envelopes] and len(ctx.envelopes) == len(events)
    for device_id in ids:
        if device_id in GATES:
            await GATES[device_id].wait()
        if device_id in FAILING:
            raise RuntimeError(f"cannot handle device {device_id} (a bug)")
        if DEADLOCKS_LEFT.get(device_id):
            DEADLOCKS_LEFT[device_id] -= 1
            raise asyncpg.DeadlockDetectedError("deadlock detected")
    await ctx.conn.execute("INSERT INTO notes (device_id) SELECT unnest($1::bigint[])", ids)
    BATCHES.append(ids)


@pytest.fixture(scope="module")
async def pair(postgres_url, kafka_bootstrap):
    """A producer publishing watermarks on device.registered, and a batch consumer following them."""
    common = {"watermark_interval_s": 0.1, "consumer_max_attempts": 3}
    producer = ServiceRuntime(
        settings_for_test(ServiceSettings, postgres_url, kafka_bootstrap, service_name="batch-producer", **common),
        title="producer",
        migrations=MIGRATIONS,
    )
    producer.watermarks(DeviceRegistered)
    consumer = ServiceRuntime(
        settings_for_test(ServiceSettings, postgres_url, kafka_bootstrap, service_name="batch-consumer", **common),
        title="consumer",
        migrations=MIGRATIONS,
    )
    consumer.on(DeviceRegistered, on_devices, batch=100, watermarks=True)
    async with started(producer), started(consumer):
        yield producer, consumer


def new_id() -> int:
    return uuid.uuid4().int % 10**9


async def noted(runtime: ServiceRuntime, device_ids: list[int]) -> dict[int, int]:
    rows = await runtime.pool.fetch(
        "SELECT device_id, count(*) AS n FROM notes WHERE device_id = ANY($1::bigint[]) GROUP BY device_id",
        device_ids,
    )
    return {r["device_id"]: r["n"] for r in rows}


async def gated(kafka_bootstrap: str, events: list[DeviceRegistered]) -> asyncio.Event:
    """Publish a first event whose batch waits, then `events` (queued behind it meanwhile: the next batch)."""
    gate_device = new_id()
    gate = GATES[gate_device] = asyncio.Event()
    await publish_events(kafka_bootstrap, [device_registered(gate_device)])
    await publish_events(kafka_bootstrap, events)
    return gate


async def test_events_queued_are_handled_together_and_each_once(pair, kafka_bootstrap):
    _producer, consumer = pair
    ids = [new_id() for _ in range(30)]
    gate = await gated(kafka_bootstrap, [device_registered(i) for i in ids[:20]])
    again = await publish_events(kafka_bootstrap, [device_registered(i) for i in ids[20:]])
    # the same events delivered twice (a redelivery): the inbox makes the second one nothing
    await publish_envelopes(
        kafka_bootstrap, [(TOPIC, str(e.payload["device_id"]), e.model_dump_json().encode()) for e in again]
    )
    gate.set()
    await eventually(lambda: _all_noted(consumer, ids))
    # the copies come after the events in the topic, maybe in a later batch: counted once they were consumed
    await eventually(lambda: _duplicates_seen(consumer, 10))
    assert await noted(consumer, ids) == {i: 1 for i in ids}
    together = max(len(set(batch) & set(ids)) for batch in BATCHES)
    assert together > 1, "the events queued behind the gate were given one at a time"


async def _duplicates_seen(runtime: ServiceRuntime, n: int) -> bool:
    return runtime.consumer_stats[TOPIC]["duplicates"] >= n


async def _all_noted(runtime: ServiceRuntime, ids: list[int]) -> dict[int, int] | None:
    counts = await noted(runtime, ids)
    return counts if len(counts) == len(ids) else None


async def test_a_failing_event_is_dead_lettered_alone_holding_the_watermark_and_the_batch_goes_on(
    pair, kafka_bootstrap
):
    _producer, consumer = pair
    ok_before, bad, ok_after = new_id(), new_id(), new_id()
    FAILING.add(bad)
    tag = uuid.uuid4().hex
    gate = await gated(kafka_bootstrap, [device_registered(ok_before)])
    [failing] = await publish_events(kafka_bootstrap, [device_registered(bad)])
    await publish_envelopes(kafka_bootstrap, [(TOPIC, "x", f'{{"not an envelope": "{tag}"}}'.encode())])
    await publish_events(kafka_bootstrap, [device_registered(ok_after)])
    gate.set()

    assert await eventually(lambda: _all_noted(consumer, [ok_before, ok_after])) == {ok_before: 1, ok_after: 1}
    _dead, headers = await wait_for_event(
        kafka_bootstrap, dlq.dlq_topic(TOPIC), lambda e: e.get("event_id") == str(failing.event_id)
    )
    assert headers["x-error-type"] == "RuntimeError" and f"device {bad}" in headers["x-error-message"]
    assert headers["x-attempts"] == "3"  # retried alone, as a plain consumer would
    _poison, headers = await wait_for_event(
        kafka_bootstrap, dlq.dlq_topic(TOPIC), lambda e: e.get("not an envelope") == tag
    )
    assert headers["x-error-type"] == "Poison" and headers["x-attempts"] == "0"
    assert await noted(consumer, [bad]) == {}
    held = await consumer.pool.fetchrow("SELECT * FROM watermark_holds WHERE event_id = $1", failing.event_id)
    assert held is not None  # the failed event holds its partition's watermark; the poison holds nothing
    async with consumer.pool.acquire() as conn:
        assert await watermarks.passed(conn, [TOPIC]) <= held["at"]

    FAILING.discard(bad)  # the bug fixed, the dead letter replayed: handled, the hold released
    letters = [
        d
        for d in await dlq.dead_letters(kafka_bootstrap, [dlq.dlq_topic(TOPIC)])
        if d.event_id == str(failing.event_id)
    ]
    await dlq.replay(kafka_bootstrap, letters)
    assert await eventually(lambda: _all_noted(consumer, [bad])) == {bad: 1}
    await eventually(lambda: _released(consumer, failing.event_id))  # released once handled, within the same delivery


async def _released(runtime: ServiceRuntime, event_id: uuid.UUID) -> bool:
    return not await runtime.pool.fetchval("SELECT 1 FROM watermark_holds WHERE event_id = $1", event_id)


async def test_a_deadlock_in_a_batch_is_retried_never_dead_lettered(pair, kafka_bootstrap):
    _producer, consumer = pair
    ids = [new_id() for _ in range(5)]
    DEADLOCKS_LEFT[ids[2]] = 2
    gate = await gated(kafka_bootstrap, [device_registered(i) for i in ids])
    gate.set()
    assert await eventually(lambda: _all_noted(consumer, ids)) == {i: 1 for i in ids}
    assert DEADLOCKS_LEFT[ids[2]] == 0
    dead = await all_events(
        kafka_bootstrap, dlq.dlq_topic(TOPIC), lambda e: e.get("payload", {}).get("device_id") in ids
    )
    assert dead == []


async def test_handle_batch_claims_each_event_once_and_a_failure_claims_none(pair):
    _producer, consumer = pair
    a, b, c = (device_registered(new_id()) for _ in range(3))
    env_a, env_b, env_c = (envelope_for(e, "test") for e in (a, b, c))
    given: list[list[int]] = []

    async def keep(events: list[DeviceRegistered], ctx: BatchContext) -> None:
        given.append([e.device_id for e in events])

    async def fail(events: list[DeviceRegistered], ctx: BatchContext) -> None:
        await ctx.conn.execute("INSERT INTO notes (device_id) VALUES ($1)", events[0].device_id)
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await handle_batch(consumer.pool, "direct", "test", [(env_a, a), (env_b, b)], fail)
    assert await noted(consumer, [a.device_id]) == {}  # nothing of it stays: no effect, no claim
    handled = await handle_batch(consumer.pool, "direct", "test", [(env_a, a), (env_a, a), (env_b, b)], keep)
    assert handled == [env_a.event_id, env_b.event_id] and given == [[a.device_id, b.device_id]]
    handled = await handle_batch(consumer.pool, "direct", "test", [(env_b, b), (env_c, c), (env_a, a)], keep)
    assert handled == [env_c.event_id] and given[-1] == [c.device_id]
    assert await handle_batch(consumer.pool, "direct", "test", [(env_c, c)], keep) == []
    assert len(given) == 2  # nothing new: the handler is not called
