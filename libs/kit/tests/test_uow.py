"""The unit of work on a real Postgres: events reach the outbox only with a commit; joined units commit once."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from opendrec_contracts import DeviceDeleted, envelope_for
from opendrec_kit import db
from opendrec_kit.testing import dispatch
from opendrec_kit.uow import UnitOfWork

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def pool(fresh_database):
    url = fresh_database("uow")
    await db.migrate(url, Path(__file__).parent / "sample_migrations")
    pool = await db.create_pool(url, 1, 4)
    yield pool
    await pool.close()


def deleted(device_id: int) -> DeviceDeleted:
    return DeviceDeleted(device_id=device_id, external_id=f"e{device_id}", organization_id=1)


async def outbox_devices(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch("SELECT envelope::jsonb -> 'payload' ->> 'device_id' AS d FROM outbox ORDER BY id")
    return [int(r["d"]) for r in rows]


async def notes(pool: asyncpg.Pool, device_id: int) -> int:
    return await pool.fetchval("SELECT count(*) FROM notes WHERE device_id = $1", device_id)


async def test_recorded_events_and_changes_commit_together(pool):
    device_id = uuid.uuid4().int % 10**9
    uow = UnitOfWork(pool, "sample")
    async with uow:
        await uow.conn.execute("INSERT INTO notes (device_id, trace_id) VALUES ($1, 'x')", device_id)
        uow.record(deleted(device_id))
        assert device_id not in await outbox_devices(pool)  # not before the commit
    assert device_id in await outbox_devices(pool)
    assert await notes(pool, device_id) == 1
    assert [e.device_id for e in uow.committed] == [device_id]


async def test_an_exception_rolls_back_the_change_and_publishes_nothing(pool):
    device_id = uuid.uuid4().int % 10**9
    uow = UnitOfWork(pool, "sample")
    with pytest.raises(RuntimeError):
        async with uow:
            await uow.conn.execute("INSERT INTO notes (device_id, trace_id) VALUES ($1, 'x')", device_id)
            uow.record(deleted(device_id))
            raise RuntimeError("refused")
    assert device_id not in await outbox_devices(pool)
    assert await notes(pool, device_id) == 0
    assert pool.get_idle_size() == pool.get_size()  # the connection went back


async def test_a_joined_unit_commits_with_the_outer_one_only(pool):
    first, second = uuid.uuid4().int % 10**9, uuid.uuid4().int % 10**9
    uow = UnitOfWork(pool, "sample")
    with pytest.raises(ValueError):
        async with uow:
            async with uow:  # a use case calling another: joins the transaction
                uow.record(deleted(first))
            assert first not in await outbox_devices(pool)  # the inner exit committed nothing
            uow.record(deleted(second))
            raise ValueError("the outer one fails")
    assert first not in await outbox_devices(pool) and second not in await outbox_devices(pool)


async def test_a_closed_unit_can_be_entered_again_as_a_new_transaction(pool):
    first, second = uuid.uuid4().int % 10**9, uuid.uuid4().int % 10**9
    uow = UnitOfWork(pool, "sample")
    async with uow:
        uow.record(deleted(first))
    with pytest.raises(RuntimeError):
        async with uow:
            uow.record(deleted(second))
            raise RuntimeError
    published = await outbox_devices(pool)
    assert first in published and second not in published


async def test_the_connection_is_refused_outside_the_unit(pool):
    uow = UnitOfWork(pool, "sample")
    with pytest.raises(RuntimeError, match="not open"):
        _ = uow.conn


async def test_a_read_only_unit_refuses_writes(pool):
    uow = UnitOfWork(pool, "sample").reading()
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        async with uow:
            await uow.conn.execute("INSERT INTO notes (device_id, trace_id) VALUES (1, 'x')")


async def test_a_reading_without_a_snapshot_runs_its_statement_outside_any_transaction(pool):
    """reading(snapshot=False): a use case of one statement spends no BEGIN and COMMIT round trips."""
    uow = UnitOfWork(pool, "sample").reading(snapshot=False)
    async with uow:
        assert not uow.conn.is_in_transaction()
        assert await uow.conn.fetchval("SELECT 1") == 1
    with pytest.raises(RuntimeError, match="not open"):
        _ = uow.conn
    async with UnitOfWork(pool, "sample").reading() as snapshot:
        assert snapshot.conn.is_in_transaction()


async def test_a_connection_given_back_inside_a_transaction_is_rolled_back_for_the_next_user(fresh_database):
    """The pool does not reset session state (no pooled connection keeps any: a round trip a release saved), but
    a transaction left open is still rolled back before the connection is handed out again."""
    url = fresh_database("pool_reset")
    await db.migrate(url, Path(__file__).parent / "sample_migrations")
    one = await db.create_pool(url, 1, 1)
    try:
        async with one.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO notes (device_id, trace_id) VALUES (7, 'left open')")
        async with one.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM notes WHERE device_id = 7") == 0
    finally:
        await one.close()


async def test_dispatch_runs_a_handler_once_per_event_with_its_events_at_commit(pool):
    device_id = uuid.uuid4().int % 10**9
    seen: list[int] = []

    async def handler(event: DeviceDeleted, uow) -> None:
        seen.append(event.device_id)
        await uow.conn.execute("INSERT INTO notes (device_id, trace_id) VALUES ($1, 'h')", event.device_id)
        uow.record(deleted(event.device_id + 1))

    event = deleted(device_id)
    envelope = envelope_for(event, "devices")
    assert await dispatch(pool, "sample", handler, event, envelope=envelope) is True
    assert await notes(pool, device_id) == 1 and device_id + 1 in await outbox_devices(pool)
    # Redelivered (same event id): nothing happens again.
    assert await dispatch(pool, "sample", handler, event, envelope=envelope) is False
    assert await notes(pool, device_id) == 1 and seen == [device_id]
    assert (await outbox_devices(pool)).count(device_id + 1) == 1


async def test_an_event_too_large_for_the_broker_is_refused_with_its_change(pool):
    from opendrec_kit.outbox import MAX_EVENT_BYTES, EventTooLarge

    device_id = uuid.uuid4().int % 10**9
    too_large = DeviceDeleted(device_id=device_id, external_id="x" * MAX_EVENT_BYTES, organization_id=1)
    before = await outbox_devices(pool)
    with pytest.raises(EventTooLarge, match=r"device\.deleted of \d+ bytes is larger than"):
        async with UnitOfWork(pool, "sample") as uow:
            await uow.conn.execute("INSERT INTO notes (device_id) VALUES ($1)", device_id)
            uow.record(deleted(device_id + 1))  # a fine event of the same unit: not written either
            uow.record(too_large)
    assert await notes(pool, device_id) == 0
    assert await outbox_devices(pool) == before
