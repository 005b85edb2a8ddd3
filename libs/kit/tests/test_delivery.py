"""Outbox, inbox, retries, DLQ and tracing against the real database and broker."""

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from fastapi import APIRouter, Request
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opendrec_contracts import DeviceRegistered
from opendrec_contracts.testing import device_registered
from opendrec_kit import EventContext, ServiceRuntime, ServiceSettings, UoW, dlq
from opendrec_kit.telemetry import setup_tracing
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

SPANS = InMemorySpanExporter()
FAIL_ALWAYS = 999_999_001
FAILING_FOR_NOW: set[int] = set()  # devices whose handling fails until a test fixes "the bug"
DEADLOCKS_LEFT: dict[int, int] = {}  # devices whose handling meets that many deadlocks first


SWEEP_FAILS = asyncio.Event()


def build(settings: ServiceSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="sample", migrations=Path(__file__).parent / "sample_migrations")
    router = APIRouter()

    @router.post("/api/auth/getAccess", status_code=410)
    async def get_access(privateKey: str = "") -> dict:
        return {"message": "refused"}

    @router.post("/devices/{device_id}")
    async def register(device_id: int, request: Request, uow: UoW, fail: bool = False) -> dict:
        try:
            async with uow:
                uow.record(device_registered(device_id))
                if fail:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            return {"written": False}
        return {"written": True}

    async def on_device(event: DeviceRegistered, ctx: EventContext) -> None:
        if event.device_id == FAIL_ALWAYS:
            raise ValueError("this device always fails")
        if event.device_id in FAILING_FOR_NOW:
            raise ValueError("a bug, until it is fixed")
        if DEADLOCKS_LEFT.get(event.device_id):
            DEADLOCKS_LEFT[event.device_id] -= 1
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        await ctx.conn.execute("INSERT INTO notes (device_id, trace_id) VALUES ($1, $2)", event.device_id, trace_id)

    async def sweep() -> bool:
        if SWEEP_FAILS.is_set():
            raise ConnectionError("sweep target unreachable")
        return False

    runtime.include_router(router)
    runtime.on(DeviceRegistered, on_device)
    runtime.worker("sample-sweep", sweep, interval_s=0.05, backoff_max_s=0.05)
    return runtime


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap):
    provider = setup_tracing("sample", None, None)
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    settings = settings_for_test(
        ServiceSettings, postgres_url, kafka_bootstrap, service_name="sample", consumer_max_attempts=3
    )
    runtime = build(settings)
    async with started(runtime) as client:
        yield runtime, client


def new_id() -> int:
    return uuid.uuid4().int % 10**9


async def notes(runtime, device_id):
    return await runtime.pool.fetch("SELECT * FROM notes WHERE device_id = $1", device_id)


async def test_service_is_ready_with_database_broker_and_relay(service):
    _runtime, client = service
    await eventually(lambda: _status(client, "/readyz", 200))
    await eventually(lambda: _outbox_ok(client))
    body = (await client.get("/readyz")).json()
    assert body["checks"] == {"database": "ok", "broker": "ok", "outbox": "ok"}
    assert set(body["workers"]) == {"token-revocations", "metrics", "sample-sweep"}
    await eventually(lambda: _workers_ok(client))  # each after its first round


async def _workers_ok(client) -> bool:
    return all(state == "ok" for state in (await client.get("/readyz")).json()["workers"].values())


async def test_a_relay_that_cannot_publish_is_reported_as_behind_and_the_service_stays_ready(service, monkeypatch):
    runtime, client = service
    publish = runtime.relay.publish_pending

    async def broker_away() -> int:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(runtime.relay, "publish_pending", broker_away)
    device_id = new_id()
    assert (await client.post(f"/devices/{device_id}")).json() == {"written": True}  # writes still taken

    async def behind() -> dict | None:
        r = await client.get("/readyz")
        return r.json() if r.json()["checks"]["outbox"].startswith("behind: ") else None

    body = await eventually(behind)
    assert body["status"] == "ready" and body["checks"]["database"] == "ok"
    waiting = int(body["checks"]["outbox"].split()[1])
    assert waiting >= 1 and "events waiting, the oldest" in body["checks"]["outbox"]
    assert (await client.get("/readyz")).status_code == 200

    monkeypatch.setattr(runtime.relay, "publish_pending", publish)
    runtime.relay.worker.wake()
    await eventually(lambda: notes(runtime, device_id))  # nothing lost meanwhile
    await eventually(lambda: _outbox_ok(client))


async def _outbox_ok(client) -> bool:
    return (await client.get("/readyz")).json()["checks"]["outbox"] == "ok"


async def test_a_failing_worker_is_reported_without_taking_the_service_out_of_rotation(service):
    _runtime, client = service
    SWEEP_FAILS.set()
    try:

        async def failing() -> dict | None:
            r = await client.get("/readyz")
            return r.json() if r.json()["workers"]["sample-sweep"].startswith("failing") else None

        body = await eventually(failing)
        assert "ConnectionError: sweep target unreachable" in body["workers"]["sample-sweep"]
        assert body["status"] == "ready"  # the API still answers; the worker retries on its own
    finally:
        SWEEP_FAILS.clear()
    await eventually(lambda: _worker_ok(client))


async def _worker_ok(client) -> bool:
    return (await client.get("/readyz")).json()["workers"]["sample-sweep"] == "ok"


async def _status(client, path, code):
    return (await client.get(path)).status_code == code


async def test_committed_event_is_published_once_and_rolled_back_one_never(service, kafka_bootstrap):
    runtime, client = service
    kept, dropped = new_id(), new_id()
    assert (await client.post(f"/devices/{dropped}", params={"fail": True})).json() == {"written": False}
    assert (await client.post(f"/devices/{kept}")).json() == {"written": True}
    await eventually(lambda: notes(runtime, kept))
    # every row published (kept for the retention): the relay marks a row once the broker acknowledged it, which
    # may be after a consumer already handled the message
    await eventually(lambda: _all_published(runtime))
    marker = new_id()
    await client.post(f"/devices/{marker}")
    await eventually(lambda: notes(runtime, marker))
    assert await notes(runtime, dropped) == []
    assert len(await notes(runtime, kept)) == 1


async def _all_published(runtime) -> bool:
    unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL AND failed_at IS NULL"
    return await runtime.pool.fetchval(unpublished) == 0


async def test_a_delivered_twice_event_changes_nothing(service, kafka_bootstrap):
    runtime, _ = service
    device_id = new_id()
    [env] = await publish_events(kafka_bootstrap, [device_registered(device_id)])
    await eventually(lambda: notes(runtime, device_id))
    before = runtime.consumer_stats["device.registered"]["duplicates"]
    await publish_envelopes(kafka_bootstrap, [("device.registered", str(device_id), env.model_dump_json().encode())])
    await eventually(lambda: _stat_at_least(runtime, "duplicates", before + 1))
    assert len(await notes(runtime, device_id)) == 1


async def _stat_at_least(runtime, key, n):
    return runtime.consumer_stats["device.registered"][key] >= n


async def test_poison_and_failing_messages_go_to_the_dlq_and_the_partition_moves_on(service, kafka_bootstrap):
    runtime, _ = service
    tag = uuid.uuid4().hex
    await publish_envelopes(kafka_bootstrap, [("device.registered", "x", f'{{"not an envelope": "{tag}"}}'.encode())])
    [failing] = await publish_events(kafka_bootstrap, [device_registered(FAIL_ALWAYS)])
    after = new_id()
    await publish_events(kafka_bootstrap, [device_registered(after)])
    await eventually(lambda: notes(runtime, after))  # not stuck behind the bad ones

    _poison, headers = await wait_for_event(
        kafka_bootstrap, "device.registered.dlq", lambda e: e.get("not an envelope") == tag
    )
    assert headers["x-error-type"] == "Poison" and headers["x-original-topic"] == "device.registered"
    assert headers["x-attempts"] == "0"  # bad data is not retried
    _dead, headers = await wait_for_event(
        kafka_bootstrap, "device.registered.dlq", lambda e: e.get("event_id") == str(failing.event_id)
    )
    assert headers["x-error-type"] == "ValueError" and "always fails" in headers["x-error-message"]
    assert headers["x-attempts"] == "3" and headers["x-original-offset"].isdigit()


async def test_a_deadlock_is_retried_until_it_passes_never_dead_lettered(service, kafka_bootstrap):
    runtime, _ = service
    device_id = new_id()
    DEADLOCKS_LEFT[device_id] = 5  # more than CONSUMER_MAX_ATTEMPTS (3): one delivery's retries are not enough
    [event] = await publish_events(kafka_bootstrap, [device_registered(device_id)])
    await eventually(lambda: notes(runtime, device_id))
    assert DEADLOCKS_LEFT[device_id] == 0
    assert len(await notes(runtime, device_id)) == 1
    dead = await all_events(
        kafka_bootstrap, "device.registered.dlq", lambda e: e.get("event_id") == str(event.event_id)
    )
    assert dead == []


async def test_trace_started_by_a_request_continues_in_the_consumer(service):
    runtime, client = service
    device_id = new_id()
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    await client.post(f"/devices/{device_id}", headers={"traceparent": traceparent})
    [row] = await eventually(lambda: notes(runtime, device_id))
    assert row["trace_id"] == trace_id
    spans = SPANS.get_finished_spans()
    names = {s.name for s in spans if format(s.context.trace_id, "032x") == trace_id}
    assert {"POST /devices/{device_id}", "device.registered process"} <= names
    # The relay's span of the batch that published the event links to the request's trace.
    relayed = [
        s
        for s in spans
        if s.name == "outbox publish" and any(format(link.context.trace_id, "032x") == trace_id for link in s.links)
    ]
    assert relayed and relayed[0].attributes["messaging.batch.message_count"] >= 1


async def test_a_private_key_sent_in_a_query_string_reaches_no_span(service):
    _runtime, client = service
    secret = f"MC4CAQAwBQYDK2VwBCIEI{uuid.uuid4().hex}"
    SPANS.clear()
    r = await client.post("/api/auth/getAccess", params={"privateKey": secret})
    assert r.status_code == 410
    await client.post(f"/devices/{new_id()}")  # a traced request after it: the exporter is running
    # Name, attributes and events of every span (to_json() fails on a Kafka span's bytes key).
    spans = [
        f"{s.name} {dict(s.attributes or {})} {[dict(e.attributes or {}) for e in s.events]}"
        for s in SPANS.get_finished_spans()
    ]
    assert spans and all(secret not in text for text in spans)
    assert not [text for text in spans if "getAccess" in text]


async def test_a_revoked_token_is_refused_within_moments(service, kafka_bootstrap):
    from datetime import timedelta

    from opendrec_contracts import AccessTokenRevoked
    from opendrec_kit.testing import TokenIssuer

    runtime, _client = service
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    token = issuer.token(user_id=77)
    verifier = runtime.app.state.token_verifier
    assert (await verifier.verify(token)).user_id == 77
    jti = __import__("jwt").decode(token, options={"verify_signature": False})["jti"]
    await publish_events(
        kafka_bootstrap,
        [AccessTokenRevoked(token_id=jti, user_id=77, expires_at=datetime.now(UTC) + timedelta(minutes=15))],
    )
    await eventually(lambda: _async(verifier.is_revoked(jti)))
    with pytest.raises(Exception, match="revoked"):
        await verifier.verify(token)


async def _async(value):
    return value


async def test_a_revoked_token_stays_refused_after_a_restart(service, kafka_bootstrap):
    """Revocations live in each process's memory, rebuilt at start from token.revoked read from its beginning (the
    identity outbox keeps them at least as long as a token lives, to publish again to a broker that lost them)."""
    from datetime import timedelta

    from opendrec_contracts import AccessTokenRevoked
    from opendrec_kit.testing import TokenIssuer

    runtime, _client = service
    issuer = TokenIssuer()
    token = issuer.token(user_id=78)
    jti = __import__("jwt").decode(token, options={"verify_signature": False})["jti"]
    await publish_events(
        kafka_bootstrap,
        [AccessTokenRevoked(token_id=jti, user_id=78, expires_at=datetime.now(UTC) + timedelta(minutes=15))],
    )
    # the same service started again after the logout (its own consumer groups: the running one keeps its partitions)
    restarted = build(runtime.settings.model_copy(update={"kafka_group_prefix": f"r{uuid.uuid4().hex[:8]}_"}))
    issuer.trust_in(restarted)
    async with started(restarted):
        verifier = restarted.app.state.token_verifier
        with pytest.raises(Exception, match="revoked"):  # from its first request on
            await verifier.verify(token)


async def test_a_stuck_shutdown_step_is_left_behind_by_name_and_the_pool_still_closes(service, monkeypatch, caplog):
    """Shutdown always ends (an orchestrator's grace period, a test's teardown): a hook that never returns and a
    connection it holds are named in the log and cut, the other steps still run."""
    import opendrec_kit.runtime as runtime_module

    runtime, _client = service
    monkeypatch.setattr(runtime_module, "SHUTDOWN_STEP_S", 0.5)
    other = build(runtime.settings.model_copy(update={"kafka_group_prefix": f"s{uuid.uuid4().hex[:8]}_"}))
    held = asyncio.Event()

    async def never_returns(rt: ServiceRuntime) -> None:
        async with rt.pool.acquire():  # a connection the pool's close would wait for forever
            held.set()
            await asyncio.Event().wait()

    other.on_shutdown(lambda rt: asyncio.Event().wait())
    async with started(other):
        task = asyncio.create_task(never_returns(other))
        await held.wait()
    assert other.pool.is_closing()
    stuck = [r for r in caplog.records if r.getMessage().startswith("shutdown step did not finish")]
    assert [r.step for r in stuck] == ["hook <lambda>", "database pool"]
    task.cancel()


async def test_replicas_starting_at_once_prepare_one_database_without_failing(postgres_url, kafka_bootstrap):
    # HTTP_WORKERS or several replicas: each one creates its database if missing and migrates it.
    settings = settings_for_test(ServiceSettings, postgres_url, kafka_bootstrap, service_name="sample")
    replicas = [build(settings) for _ in range(6)]
    await asyncio.gather(*(replica.prepare() for replica in replicas))
    assert len({replica.database_url for replica in replicas}) == 1
    conn = await asyncpg.connect(replicas[0].database_url)
    try:
        applied = await conn.fetch("SELECT migration_id FROM _yoyo_migration ORDER BY migration_id")
    finally:
        await conn.close()
    ids = [r["migration_id"] for r in applied]
    assert len(ids) == len(set(ids)) and any(i.startswith("kit-") for i in ids) and len(ids) > 3


# -- broker faults (issue 13): nothing lost when the broker loses its data, no row holds up the others -------------


async def outbox_row(runtime, device_id: int):
    return await runtime.pool.fetchrow(
        "SELECT event_id, published_at, failed_at, error FROM outbox WHERE envelope::jsonb -> 'payload' ->> 'device_id' = $1",
        str(device_id),
    )


async def test_published_events_are_kept_for_the_retention_then_forgotten(service):
    runtime, client = service
    device_id = new_id()
    await client.post(f"/devices/{device_id}")
    await eventually(lambda: notes(runtime, device_id))
    row = await outbox_row(runtime, device_id)
    assert row["published_at"] is not None and row["failed_at"] is None  # kept, marked published
    retention, runtime.relay.retention_s = runtime.relay.retention_s, 0.0
    try:
        assert await runtime.relay.forget_published() >= 1
    finally:
        runtime.relay.retention_s = retention
    assert await outbox_row(runtime, device_id) is None


async def test_a_broker_that_lost_its_data_gets_every_retained_event_again(service, kafka_bootstrap):
    """A memory-only broker restarted: its epoch marker is gone. Seen here as a marker topic with nothing in it."""
    runtime, client = service
    device_id = new_id()
    await client.post(f"/devices/{device_id}")
    await eventually(lambda: notes(runtime, device_id))
    event_id = str((await outbox_row(runtime, device_id))["event_id"])

    runtime.relay.epoch.topic = f"opendrec.broker-epoch.test-{uuid.uuid4().hex[:8]}"  # no marker there yet
    assert await runtime.relay.follow_epoch() is True
    assert (await outbox_row(runtime, device_id))["published_at"] is None  # to be published again
    runtime.relay.worker.wake()

    async def published_twice() -> bool:
        seen = await all_events(kafka_bootstrap, "device.registered", lambda e: e["event_id"] == event_id)
        return len(seen) == 2

    await eventually(published_twice, timeout=20)
    assert len(await notes(runtime, device_id)) == 1  # the consumer's inbox: the repeat changed nothing
    assert await runtime.relay.follow_epoch() is False  # same broker since: nothing again


async def test_an_epoch_marker_the_broker_does_not_deliver_counts_as_a_lost_broker_not_as_a_stuck_relay(
    service, kafka_bootstrap, monkeypatch
):
    """Seen with Tansu restarted twice a second apart: the marker topic's end offset is above 0 but no fetch returns
    its record. The relay publishes its retained events again (as after a lost broker) and goes on publishing."""
    from aiokafka import AIOKafkaConsumer

    from opendrec_kit import outbox

    runtime, client = service
    # The relay knows the broker's epoch from its first step (which, on a busy machine, may still be running).
    await eventually(lambda: runtime.pool.fetchval("SELECT value FROM kit_state WHERE name = 'broker_epoch'"))
    epoch = runtime.relay.epoch
    topic, timeout = epoch.topic, epoch.read_timeout_s
    epoch.topic = f"opendrec.broker-epoch.test-{uuid.uuid4().hex[:8]}"
    epoch.read_timeout_s = 0.2
    # The relay's own epoch checks would race the test's calls (and take the epoch lock): none fall due meanwhile.
    monkeypatch.setattr(runtime.relay, "_epoch_due", float("inf"))
    try:
        assert await runtime.relay.follow_epoch() is True  # a marker of its own on the fresh topic: another broker
        device_id = new_id()
        await client.post(f"/devices/{device_id}")
        await eventually(lambda: notes(runtime, device_id))

        class Undelivered(AIOKafkaConsumer):  # the broker counts the record but does not deliver it
            async def getone(self, *partitions):
                await asyncio.Event().wait()

        monkeypatch.setattr(outbox, "AIOKafkaConsumer", Undelivered)  # the epoch check's reader only
        assert await runtime.relay.follow_epoch() is True  # unreadable: what it knows is published again
        assert (await outbox_row(runtime, device_id))["published_at"] is None
        assert await runtime.relay.follow_epoch() is False  # the same unreadable marker: not again
        runtime.relay.worker.wake()
        after = new_id()
        await client.post(f"/devices/{after}")
        await eventually(lambda: notes(runtime, after))  # the relay goes on
        assert len(await notes(runtime, device_id)) == 1  # the repeat changed nothing
    finally:
        epoch.topic, epoch.read_timeout_s = topic, timeout


async def test_an_event_the_broker_refuses_for_good_is_set_aside_and_the_rest_go_out(service):
    runtime, client = service
    too_big = "x" * 2_000_000  # past the producer's 1 MB request limit: refused whatever the retries
    await runtime.pool.execute(
        "INSERT INTO outbox (event_id, topic, key, envelope) VALUES ($1, 'device.registered', '1', $2)",
        uuid.uuid4(),
        too_big,
    )
    after = new_id()
    await client.post(f"/devices/{after}")
    await eventually(lambda: notes(runtime, after))  # not held up behind the refused row
    refused = await runtime.pool.fetchrow(
        "SELECT failed_at, error, published_at FROM outbox WHERE envelope = $1", too_big
    )
    assert refused["failed_at"] is not None and refused["published_at"] is None
    assert refused["error"].startswith("MessageSizeTooLargeError")
    assert (await client.get("/readyz")).json()["checks"]["outbox"] == "ok"


async def test_dead_letters_are_listed_with_their_error_and_replayed_once_the_cause_is_fixed(service, kafka_bootstrap):
    runtime, _client = service
    device_id = new_id()
    FAILING_FOR_NOW.add(device_id)
    [event] = await publish_events(kafka_bootstrap, [device_registered(device_id)])
    event_id = str(event.event_id)

    async def listed() -> list[dlq.DeadLetter]:
        return [d for d in await dlq.dead_letters(kafka_bootstrap, ["device.registered.dlq"]) if d.event_id == event_id]

    [letter] = await eventually(listed, timeout=30)
    assert (letter.original_topic, letter.event_type, letter.error_type) == (
        "device.registered",
        "device.registered",
        "ValueError",
    )
    assert letter.error_message == "a bug, until it is fixed" and letter.attempts == "3"
    assert await notes(runtime, device_id) == []

    FAILING_FOR_NOW.discard(device_id)  # the fix is deployed
    assert await dlq.replay(kafka_bootstrap, [letter]) == 1
    await eventually(lambda: notes(runtime, device_id))
    assert await dlq.replay(kafka_bootstrap, [letter]) == 1  # replayed twice by mistake: the inbox absorbs it
    marker = new_id()
    await publish_events(kafka_bootstrap, [device_registered(marker)])
    await eventually(lambda: notes(runtime, marker))  # handled after the second replay
    assert len(await notes(runtime, device_id)) == 1


async def test_the_dlq_command_lists_as_json_lines_and_refuses_to_replay_every_dlq_at_once(kafka_bootstrap, capsys):
    assert (
        await asyncio.to_thread(dlq.main, ["list", "--bootstrap", kafka_bootstrap, "--topic", "device.registered"]) == 0
    )
    out = capsys.readouterr()
    assert all(json.loads(line)["topic"] == "device.registered.dlq" for line in out.out.splitlines())
    assert "dead letter(s)" in out.err
    assert await asyncio.to_thread(dlq.main, ["replay", "--bootstrap", kafka_bootstrap]) == 2
