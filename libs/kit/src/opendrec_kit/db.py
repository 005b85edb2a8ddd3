"""Postgres: one database per service on a shared server, migrated before serving."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from yoyo import get_backend, read_migrations

log = logging.getLogger(__name__)

KIT_MIGRATIONS = Path(__file__).parent / "migrations"


def with_database(server_url: str, name: str) -> str:
    """The same server URL, pointing at database `name`."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if it is missing; return its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"unsafe database name {name!r}")
    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                # Identifiers cannot be bound as parameters; the name is checked above.
                await conn.execute(f'CREATE DATABASE "{name}"')
                log.info("created database", extra={"database": name})
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                # Another process created it between our check and our create (a create still
                # in flight when ours started fails on pg_database's unique index instead).
                pass
    finally:
        await conn.close()
    return with_database(server_url, name)


def _migrate_sync(database_url: str, sources: list[Path]) -> list[str]:
    backend = get_backend(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "postgres://", "postgresql+psycopg://", 1
        )
    )
    applied: list[str] = []
    try:
        # Kit tables first, then the service's own, each source in file order.
        for source in sources:
            migrations = read_migrations(str(source))
            with backend.lock():
                pending = backend.to_apply(migrations)
                backend.apply_migrations(pending)
                applied += [m.id for m in pending]
    finally:
        backend.connection.close()
    return applied


async def migrate(database_url: str, service_migrations: Path | None) -> list[str]:
    """Apply pending migrations (kit's, then the service's); returns the ids applied."""
    sources = [KIT_MIGRATIONS] + ([service_migrations] if service_migrations else [])
    # yoyo is synchronous: keep it off the event loop.
    applied = await asyncio.to_thread(_migrate_sync, database_url, sources)
    if applied:
        log.info("applied migrations", extra={"migrations": applied})
    return applied


# Every pool's timeouts (issue 12): a request never waits without bound for a connection, a stuck statement is
# cut, and a transaction left open cannot hold its locks for good. Migrations run on their own connections
# (yoyo's), without these.
ACQUIRE_TIMEOUT_S = 15.0  # waiting for a free connection of the pool
STATEMENT_TIMEOUT_S = 60.0  # one statement, lock waits included (Postgres' statement_timeout)
IDLE_IN_TRANSACTION_TIMEOUT_S = 120.0  # a transaction waiting on its client (idle_in_transaction_session_timeout)

# What a timeout above, or a database that is away, raises: an outage of the service (503), not a fault of the
# request. QueryCanceledError is also a statement cut by statement_timeout.
OUTAGES: tuple[type[Exception], ...] = (
    TimeoutError,  # PoolTimeout among them
    asyncpg.QueryCanceledError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.IdleInTransactionSessionTimeoutError,
    asyncpg.AdminShutdownError,
)


class PoolTimeout(TimeoutError):
    """No connection of the pool came free within its acquire timeout."""


class _Acquiring:
    """asyncpg's acquire context, its timeout said as a PoolTimeout."""

    def __init__(self, context: Any, timeout_s: float) -> None:
        self._context = context
        self._timeout_s = timeout_s

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            return await self._context.__aenter__()
        except TimeoutError:
            raise PoolTimeout(f"no database connection came free within {self._timeout_s:g} s") from None

    async def __aexit__(self, *exc: object) -> None:
        await self._context.__aexit__(*exc)

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self.__aenter__().__await__()


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose acquire (and so every query through the pool) waits at most `acquire_timeout_s`
    unless the caller gives its own timeout."""

    def __init__(self, *args: Any, acquire_timeout_s: float = ACQUIRE_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> Any:
        timeout_s = self.acquire_timeout_s if timeout is None else timeout
        return _Acquiring(super().acquire(timeout=timeout_s), timeout_s)


async def _no_session_state(conn: asyncpg.Connection) -> None:
    return None


def _milliseconds(seconds: float) -> str:
    return str(max(0, round(seconds * 1000)))  # 0: no limit, as Postgres reads it


async def create_pool(
    database_url: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    idle_in_transaction_timeout_s: float = IDLE_IN_TRANSACTION_TIMEOUT_S,
) -> asyncpg.Pool:
    """A pool on `database_url` with the timeouts above (0 for a Postgres timeout: none)."""
    pool = BoundedPool(
        database_url,
        acquire_timeout_s=acquire_timeout_s,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,  # asyncpg's defaults, which create_pool would give
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        # asyncpg rolls back an open transaction on release anyway; the reset query (advisory locks, cursors,
        # LISTEN, settings) is a round trip for session state no pooled connection keeps.
        reset=_no_session_state,
        server_settings={
            "statement_timeout": _milliseconds(statement_timeout_s),
            "idle_in_transaction_session_timeout": _milliseconds(idle_in_transaction_timeout_s),
        },
    )
    return await pool
