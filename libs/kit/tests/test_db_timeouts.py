"""Every database pool's timeouts (issue 12), on a real Postgres: a stuck statement is cut, a transaction left
idle is ended, and waiting for a connection has a bound; each ends in one of db.OUTAGES, answered 503, not a hang."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from opendrec_kit import db
from opendrec_kit.errors import install_error_handlers

pytestmark = pytest.mark.integration

HANG_GUARD_S = 30  # far beyond every timeout below: reaching it means the timeout did not work


@pytest.fixture(scope="module")
def url(fresh_database):
    return fresh_database("pool_timeouts")


async def test_a_pool_has_sane_timeouts_by_default(url):
    pool = await db.create_pool(url, 1, 2)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "1min"
            assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "2min"
        assert pool.acquire_timeout_s == db.ACQUIRE_TIMEOUT_S
    finally:
        await pool.close()


async def test_a_stuck_statement_is_cut_and_counts_as_an_outage(url):
    pool = await db.create_pool(url, 1, 2, statement_timeout_s=0.3)
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(db.OUTAGES) as cut:
                await pool.fetchval("SELECT pg_sleep(600)")
        assert isinstance(cut.value, asyncpg.QueryCanceledError)
        assert "statement timeout" in str(cut.value)
        assert await pool.fetchval("SELECT 1") == 1  # the connection serves the next request
    finally:
        await pool.close()


async def test_a_statement_waiting_for_a_lock_is_cut(url):
    pool = await db.create_pool(url, 2, 2, statement_timeout_s=0.3)
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS locked (id int PRIMARY KEY, n int)")
        await pool.execute("INSERT INTO locked VALUES (1, 0) ON CONFLICT DO NOTHING")
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("UPDATE locked SET n = n + 1 WHERE id = 1")
            async with asyncio.timeout(HANG_GUARD_S):
                with pytest.raises(asyncpg.QueryCanceledError):
                    await pool.execute("UPDATE locked SET n = n + 1 WHERE id = 1")
    finally:
        await pool.close()


async def test_a_transaction_left_idle_is_ended_and_its_locks_freed(url):
    pool = await db.create_pool(url, 2, 2, idle_in_transaction_timeout_s=0.3)
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS idle_locked (id int PRIMARY KEY, n int)")
        await pool.execute("INSERT INTO idle_locked VALUES (1, 0) ON CONFLICT DO NOTHING")
        async with pool.acquire() as idle:
            closed = asyncio.Event()
            idle.add_termination_listener(lambda _conn: closed.set())
            transaction = idle.transaction()
            await transaction.start()
            await idle.execute("UPDATE idle_locked SET n = n + 1 WHERE id = 1")  # holds the row, then waits on us
            async with asyncio.timeout(HANG_GUARD_S):
                # the other connection's update waits for the row until Postgres ends the idle transaction
                await pool.execute("UPDATE idle_locked SET n = n + 10 WHERE id = 1")
            # Postgres ended the session; once the client has read that (a commit sent while it is still reading the
            # server's last message meets asyncpg's "another operation is in progress" instead), the commit fails.
            async with asyncio.timeout(HANG_GUARD_S):
                await closed.wait()
            with pytest.raises((*db.OUTAGES, asyncpg.InterfaceError)):  # the session is gone
                await transaction.commit()
        assert await pool.fetchval("SELECT n FROM idle_locked WHERE id = 1") == 10  # its change rolled back
        assert await pool.fetchval("SELECT 1") == 1  # the pool replaced the lost connection
    finally:
        await pool.close()


async def test_waiting_for_a_connection_has_a_bound(url):
    pool = await db.create_pool(url, 1, 1, acquire_timeout_s=0.2)
    try:
        async with pool.acquire():
            async with asyncio.timeout(HANG_GUARD_S):
                with pytest.raises(db.PoolTimeout, match=r"no database connection came free within 0\.2 s"):
                    await pool.fetchval("SELECT 1")  # through the pool: its own acquire
                with pytest.raises(db.PoolTimeout):
                    async with pool.acquire():
                        pass
            assert isinstance(db.PoolTimeout(), db.OUTAGES)
        async with pool.acquire(timeout=5) as conn:  # free again; a caller's own timeout wins
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_a_timeout_of_zero_means_none(url):
    pool = await db.create_pool(url, 1, 1, statement_timeout_s=0, idle_in_transaction_timeout_s=0)
    try:
        assert await pool.fetchval("SHOW statement_timeout") == "0"
        assert await pool.fetchval("SHOW idle_in_transaction_session_timeout") == "0"
    finally:
        await pool.close()


async def test_a_request_whose_statement_is_stuck_is_answered_503_not_a_hang(url):
    pool = await db.create_pool(url, 1, 1, statement_timeout_s=0.3, acquire_timeout_s=0.3)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/stuck")
    async def stuck() -> dict[str, int]:
        await pool.execute("SELECT pg_sleep(600)")
        return {"n": 1}

    @app.get("/waiting")
    async def waiting() -> dict[str, int]:
        async with pool.acquire() as conn:  # the only connection is held below: none comes free
            return {"n": await conn.fetchval("SELECT 1")}

    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            async with asyncio.timeout(HANG_GUARD_S):
                answer = await client.get("/stuck")
                assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
                assert answer.json()["message"] == "The database did not answer in time; try again"
                async with pool.acquire():
                    answer = await client.get("/waiting")
                assert answer.status_code == 503 and answer.json()["statusCode"] == 503
    finally:
        await pool.close()
