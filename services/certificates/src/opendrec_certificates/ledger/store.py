"""SQL of the ledger: one function per query."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from .domain import LedgerEntry, canonical


async def lock_head(conn: asyncpg.Connection) -> tuple[int, str]:
    """The chain's head (sequence, hash), locked to the end of the transaction: appends wait for each other."""
    row = await conn.fetchrow("SELECT sequence, hash FROM ledger_head WHERE only_row FOR UPDATE")
    assert row is not None  # the migration inserts it
    return row["sequence"], row["hash"]


async def head(conn: asyncpg.Connection) -> tuple[int, str]:
    row = await conn.fetchrow("SELECT sequence, hash FROM ledger_head WHERE only_row")
    assert row is not None
    return row["sequence"], row["hash"]


async def insert_entry(conn: asyncpg.Connection, entry: LedgerEntry) -> None:
    await conn.execute(
        """INSERT INTO ledger_entries (sequence, kind, certificate_id, body, recorded_at, previous_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        entry.sequence,
        entry.kind,
        entry.certificate_id,
        canonical(entry.body).decode(),
        entry.recorded_at,
        entry.previous_hash,
        entry.hash,
    )


async def insert_entries(conn: asyncpg.Connection, entries: list[LedgerEntry]) -> None:
    """Entries in one statement (arrays)."""
    await conn.execute(
        """INSERT INTO ledger_entries (sequence, kind, certificate_id, body, recorded_at, previous_hash, hash)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[],
                                $7::text[])""",
        [e.sequence for e in entries],
        [e.kind for e in entries],
        [e.certificate_id for e in entries],
        [canonical(e.body).decode() for e in entries],
        [e.recorded_at for e in entries],
        [e.previous_hash for e in entries],
        [e.hash for e in entries],
    )


async def move_head(conn: asyncpg.Connection, sequence: int, hash_: str) -> None:
    await conn.execute("UPDATE ledger_head SET sequence = $1, hash = $2 WHERE only_row", sequence, hash_)


async def entries_after(conn: asyncpg.Connection, after: int, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT sequence, kind, certificate_id, body, recorded_at, previous_hash, hash
           FROM ledger_entries WHERE sequence > $1 ORDER BY sequence LIMIT $2""",
        after,
        limit,
    )


async def entries_of(conn: asyncpg.Connection, certificate_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT sequence, kind, certificate_id, body, recorded_at, previous_hash, hash
           FROM ledger_entries WHERE certificate_id = $1 ORDER BY sequence""",
        certificate_id,
    )


def row_entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        sequence=row["sequence"],
        kind=row["kind"],
        certificate_id=row["certificate_id"],
        body=json.loads(row["body"]),
        recorded_at=row["recorded_at"],
        previous_hash=row["previous_hash"],
        hash=row["hash"],
    )
