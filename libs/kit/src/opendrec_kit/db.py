"""Postgres: one database per service on a shared server, migrated before serving."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
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


async def create_pool(database_url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(database_url, min_size=min_size, max_size=max_size)
