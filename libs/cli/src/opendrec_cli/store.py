"""The read-only queries the CLI runs on the services' databases (one function per query, parameters bound).

An operator's view across organizations: the public API shows each user their own organization's jobs and reads,
not the platform's. Nothing here writes.
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def bulk_jobs(conn: asyncpg.Connection, unfinished_only: bool, limit: int) -> list[dict[str, Any]]:
    """Devices' bulk onboarding jobs, newest first."""
    rows = await conn.fetch(
        "SELECT id::text AS id, organization_id, file_name, status, total_rows, done_rows,"
        " created_rows + warning_rows AS accepted_rows, failed_rows, created_at, finished_at"
        " FROM bulk_jobs WHERE (NOT $1 OR status <> 'completed') ORDER BY id DESC LIMIT $2",
        unfinished_only,
        limit,
    )
    return [dict(r) for r in rows]


async def import_jobs(conn: asyncpg.Connection, unfinished_only: bool, limit: int) -> list[dict[str, Any]]:
    """Readings' bulk read imports, newest first."""
    rows = await conn.fetch(
        "SELECT job_id::text AS id, organization_id, file_name, status, rows_total AS total_rows, rows_done AS done_rows,"
        " accepted AS accepted_rows, rows_done - accepted AS failed_rows, created_at, finished_at"
        " FROM import_jobs WHERE (NOT $1 OR status IN ('queued', 'running')) ORDER BY created_at DESC LIMIT $2",
        unfinished_only,
        limit,
    )
    return [dict(r) for r in rows]


async def readings_devices(conn: asyncpg.Connection) -> list[int]:
    return [r["device_id"] for r in await conn.fetch("SELECT device_id FROM devices ORDER BY device_id")]


async def accepted_reads(conn: asyncpg.Connection, device_id: int) -> tuple[int, int]:
    """(reads, Wh) the readings service accepted for a device: its stored intervals."""
    row = await conn.fetchrow(
        "SELECT count(*)::bigint AS n, coalesce(sum(wh), 0)::bigint AS wh FROM intervals WHERE device_id = $1",
        device_id,
    )
    return int(row["n"]), int(row["wh"])


async def held_reads(conn: asyncpg.Connection, device_id: int) -> tuple[int, int, int]:
    """(reads, Wh, Wh allocated to certificates) the certificates service holds for a device (from read.ingested)."""
    row = await conn.fetchrow(
        "SELECT count(*)::bigint AS n, coalesce(sum(energy_wh), 0)::bigint AS wh,"
        " coalesce(sum(certified_wh), 0)::bigint AS allocated FROM reads WHERE device_id = $1",
        device_id,
    )
    return int(row["n"]), int(row["wh"]), int(row["allocated"])


async def certified_wh(conn: asyncpg.Connection, device_id: int) -> tuple[int, int]:
    """(certificates, Wh) issued with a part of this device."""
    row = await conn.fetchrow(
        "SELECT count(*)::bigint AS n, coalesce(sum(energy_wh), 0)::bigint AS wh FROM certificate_parts"
        " WHERE device_id = $1",
        device_id,
    )
    return int(row["n"]), int(row["wh"])
