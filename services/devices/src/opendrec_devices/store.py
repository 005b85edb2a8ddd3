"""SQL for the device registry (asyncpg): one function per query, parameters always bound."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

# Columns a registration writes, in the order insert_device binds them.
DEVICE_COLUMNS = (
    "external_id",
    "project_name",
    "address",
    "latitude",
    "longitude",
    "country_code",
    "fuel_code",
    "device_type_code",
    "capacity_kw",
    "commissioning_date",
    "grid_interconnection",
    "off_taker",
    "yield_value",
    "labels",
    "impact_story",
    "data",
    "images",
    "device_description",
    "energy_storage",
    "energy_storage_capacity",
    "quality_labels",
    "sdg_benefits",
    "version",
    "timezone",
)

_INSERT = (
    f"INSERT INTO devices (device_uuid, organization_id, created_by, {', '.join(DEVICE_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(DEVICE_COLUMNS) + 4))}) RETURNING *"
)


class ExternalIdTaken(Exception):
    pass


async def insert_device(
    conn: asyncpg.Connection, organization_id: int, created_by: int | None, values: dict[str, Any]
) -> asyncpg.Record:
    """Insert a device; raises ExternalIdTaken when the organization already uses its externalId."""
    try:
        return await conn.fetchrow(
            _INSERT, uuid.uuid4(), organization_id, created_by, *(values[c] for c in DEVICE_COLUMNS)
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "devices_org_external_id_key":
            raise ExternalIdTaken(values["external_id"]) from exc
        raise


async def insert_devices(
    conn: asyncpg.Connection, organization_id: int, created_by: int | None, values: list[dict[str, Any]]
) -> list[asyncpg.Record]:
    """Insert many devices in one pipelined round (bulk onboarding); rows come back in input order.
    The caller has checked the externalIds are free (a clash raises and rolls the batch back)."""
    if not values:
        return []
    await conn.executemany(
        _INSERT.removesuffix(" RETURNING *"),
        [(uuid.uuid4(), organization_id, created_by, *(v[c] for c in DEVICE_COLUMNS)) for v in values],
    )
    external_ids = [v["external_id"] for v in values]
    rows = await conn.fetch(
        "SELECT * FROM devices WHERE organization_id = $1 AND external_id = ANY($2::text[])",
        organization_id,
        external_ids,
    )
    by_external_id = {r["external_id"]: r for r in rows}
    return [by_external_id[e] for e in external_ids]


async def get_device(conn: asyncpg.Connection, device_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM devices WHERE id = $1", device_id)


async def find_by_external_id(
    conn: asyncpg.Connection, external_id: str, organization_id: int | None
) -> list[asyncpg.Record]:
    """Devices with this externalId: in one organization, or in all when organization_id is None."""
    return await conn.fetch(
        "SELECT * FROM devices WHERE external_id = $1 AND ($2::bigint IS NULL OR organization_id = $2) ORDER BY id",
        external_id,
        organization_id,
    )


# ---------------------------------------------------------------- updates and deletion

UPDATABLE_COLUMNS = DEVICE_COLUMNS


async def update_device(conn: asyncpg.Connection, device_id: int, values: dict[str, Any]) -> asyncpg.Record:
    """Write every registration column of a device (the merged state); raises ExternalIdTaken."""
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(UPDATABLE_COLUMNS, start=2))
    try:
        return await conn.fetchrow(
            f"UPDATE devices SET {sets}, updated_at = now() WHERE id = $1 RETURNING *",
            device_id,
            *(values[c] for c in UPDATABLE_COLUMNS),
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "devices_org_external_id_key":
            raise ExternalIdTaken(values["external_id"]) from exc
        raise


async def lock_device(conn: asyncpg.Connection, device_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM devices WHERE id = $1 FOR UPDATE", device_id)


async def delete_device(conn: asyncpg.Connection, device_id: int) -> None:
    await conn.execute("DELETE FROM devices WHERE id = $1", device_id)


# A reservation row `r` holds its device while its window is open and no reservation.ended came for it.
_HOLDS = (
    "r.reservation_end > now() "
    "AND NOT EXISTS (SELECT 1 FROM ended_reservations e WHERE e.reservation_id = r.reservation_id)"
)


async def active_reservations(conn: asyncpg.Connection, device_id: int) -> list[int]:
    """Reservations that hold this device now."""
    rows = await conn.fetch(
        f"SELECT r.reservation_id FROM reservation_devices r WHERE r.device_id = $1 AND {_HOLDS} "
        "ORDER BY r.reservation_id",
        device_id,
    )
    return [r["reservation_id"] for r in rows]


async def certified_wh(conn: asyncpg.Connection, device_id: int) -> int:
    return await conn.fetchval(
        "SELECT coalesce(sum(energy_wh), 0)::bigint FROM certified_energy WHERE device_id = $1", device_id
    )


# ---------------------------------------------------------------- read models


async def record_reservation(
    conn: asyncpg.Connection, reservation_id: int, device_ids: list[int], start: Any, end: Any
) -> None:
    await conn.executemany(
        "INSERT INTO reservation_devices (reservation_id, device_id, reservation_start, reservation_end) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, reservation_id) "
        "DO UPDATE SET reservation_start = EXCLUDED.reservation_start, reservation_end = EXCLUDED.reservation_end",
        [(reservation_id, d, start, end) for d in dict.fromkeys(device_ids)],
    )


async def record_reservation_ended(conn: asyncpg.Connection, reservation_id: int, ended_at: Any, reason: str) -> None:
    # the first end counts: a redelivered or repeated event does not move it
    await conn.execute(
        "INSERT INTO ended_reservations (reservation_id, ended_at, reason) VALUES ($1, $2, $3) "
        "ON CONFLICT (reservation_id) DO NOTHING",
        reservation_id,
        ended_at,
        reason,
    )


async def record_certificate(conn: asyncpg.Connection, certificate_id: Any, device_id: int, energy_wh: int) -> None:
    await conn.execute(
        "INSERT INTO certified_energy (certificate_id, device_id, energy_wh) VALUES ($1, $2, $3) "
        "ON CONFLICT (certificate_id) DO NOTHING",
        certificate_id,
        device_id,
        energy_wh,
    )


# ---------------------------------------------------------------- listings

# Filter name -> SQL condition on `d` with {} for the parameter placeholder.
_FILTERS = {
    "organization_id": "d.organization_id = {}",
    "organization_ids": "d.organization_id = ANY({}::bigint[])",
    "country_codes": "d.country_code = ANY({}::text[])",
    "fuel_codes": "d.fuel_code = ANY({}::text[])",
    "device_type_codes": "d.device_type_code = ANY({}::text[])",
    "off_takers": "d.off_taker = ANY({}::text[])",
    "capacity_min": "d.capacity_kw >= {}",
    "capacity_max": "d.capacity_kw <= {}",
    "commissioned_from": "d.commissioning_date >= {}",
    "commissioned_to": "d.commissioning_date <= {}",
    "after_id": "d.id < {}",
}

_AVAILABLE = f"NOT EXISTS (SELECT 1 FROM reservation_devices r WHERE r.device_id = d.id AND {_HOLDS})"


def _where(filters: dict[str, Any], available_only: bool) -> tuple[str, list[Any]]:
    conditions, args = [], []
    for name, value in filters.items():
        if value is None or name not in _FILTERS:
            continue
        if name == "organization_ids" and len(value) == 1:
            # equality, not ANY: the plan then walks an (organization_id, ..., id DESC) index in page order
            name, value = "organization_id", value[0]
        args.append(value)
        conditions.append(_FILTERS[name].format(f"${len(args)}"))
    if available_only:
        conditions.append(_AVAILABLE)
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", args


async def list_devices(
    conn: asyncpg.Connection, filters: dict[str, Any], limit: int, offset: int, *, available_only: bool = False
) -> tuple[int, list[asyncpg.Record]]:
    """(matching count without after_id, one page newest first). `filters` keys are those of _FILTERS."""
    counted = {k: v for k, v in filters.items() if k != "after_id"}
    where, args = _where(counted, available_only)
    total = await conn.fetchval(f"SELECT count(*) FROM devices d{where}", *args)
    where, args = _where(filters, available_only)
    rows = await conn.fetch(
        f"SELECT d.* FROM devices d{where} ORDER BY d.id DESC LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        limit,
        offset,
    )
    return total, rows


# ---------------------------------------------------------------- bulk jobs


async def create_job(
    conn: asyncpg.Connection, organization_id: int, created_by: int | None, file_name: str | None, warnings: list[str]
) -> int:
    return await conn.fetchval(
        "INSERT INTO bulk_jobs (organization_id, created_by, file_name, total_rows, warnings) "
        "VALUES ($1, $2, $3, 0, $4::jsonb) RETURNING id",
        organization_id,
        created_by,
        file_name,
        json.dumps(warnings),
    )


async def stage_rows(conn: asyncpg.Connection, job_id: int, rows: list[tuple[int, str | None, dict[str, Any]]]) -> None:
    """Staged rows: (row number, externalId as written, cells)."""
    await conn.copy_records_to_table(
        "bulk_job_rows",
        columns=("job_id", "row_number", "external_id", "data"),
        records=[(job_id, n, ext, json.dumps(data)) for n, ext, data in rows],
    )


async def set_job_total(conn: asyncpg.Connection, job_id: int, total: int) -> asyncpg.Record:
    return await conn.fetchrow("UPDATE bulk_jobs SET total_rows = $2 WHERE id = $1 RETURNING *", job_id, total)


async def claim_unfinished_job(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The oldest unfinished job no other worker holds, locked for this transaction."""
    return await conn.fetchrow(
        "SELECT * FROM bulk_jobs WHERE status <> 'completed' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    )


async def pending_rows(conn: asyncpg.Connection, job_id: int, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT row_number, external_id, data FROM bulk_job_rows WHERE job_id = $1 AND status = 'pending' "
        "ORDER BY row_number LIMIT $2",
        job_id,
        limit,
    )


async def first_rows_of(conn: asyncpg.Connection, job_id: int, external_ids: list[str]) -> dict[str, int]:
    """externalId -> the first row of the job that has it."""
    rows = await conn.fetch(
        "SELECT external_id, min(row_number) AS first FROM bulk_job_rows "
        "WHERE job_id = $1 AND external_id = ANY($2::text[]) GROUP BY external_id",
        job_id,
        external_ids,
    )
    return {r["external_id"]: r["first"] for r in rows}


async def existing_external_ids(
    conn: asyncpg.Connection, organization_id: int, external_ids: list[str]
) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT external_id, id FROM devices WHERE organization_id = $1 AND external_id = ANY($2::text[])",
        organization_id,
        external_ids,
    )
    return {r["external_id"]: r["id"] for r in rows}


async def record_row_results(
    conn: asyncpg.Connection,
    job_id: int,
    results: list[tuple[int, str, int | None, list[Any] | None, list[str] | None]],
) -> None:
    """(row number, status, device id, errors, warnings) per row."""
    await conn.executemany(
        "UPDATE bulk_job_rows SET status = $3, device_id = $4, errors = $5::jsonb, warnings = $6::jsonb "
        "WHERE job_id = $1 AND row_number = $2",
        [
            (
                job_id,
                n,
                status,
                device,
                json.dumps(errors) if errors else None,
                json.dumps(warnings) if warnings else None,
            )
            for n, status, device, errors, warnings in results
        ],
    )


async def advance_job(conn: asyncpg.Connection, job_id: int, created: int, warned: int, failed: int) -> None:
    await conn.execute(
        "UPDATE bulk_jobs SET status = 'running', started_at = coalesce(started_at, now()), "
        "done_rows = done_rows + $2 + $3 + $4, created_rows = created_rows + $2, warning_rows = warning_rows + $3, "
        "failed_rows = failed_rows + $4 WHERE id = $1",
        job_id,
        created,
        warned,
        failed,
    )


async def finish_job(conn: asyncpg.Connection, job_id: int) -> None:
    await conn.execute(
        "UPDATE bulk_jobs SET status = 'completed', started_at = coalesce(started_at, now()), finished_at = now() "
        "WHERE id = $1",
        job_id,
    )


async def get_job(conn: asyncpg.Connection, job_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM bulk_jobs WHERE id = $1", job_id)


async def list_jobs(
    conn: asyncpg.Connection, organization_ids: list[int] | None, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    """Jobs of these organizations (all when None), newest first."""
    total = await conn.fetchval(
        "SELECT count(*) FROM bulk_jobs WHERE $1::bigint[] IS NULL OR organization_id = ANY($1)", organization_ids
    )
    rows = await conn.fetch(
        "SELECT * FROM bulk_jobs WHERE $1::bigint[] IS NULL OR organization_id = ANY($1) "
        "ORDER BY id DESC LIMIT $2 OFFSET $3",
        organization_ids,
        limit,
        offset,
    )
    return total, rows


async def job_rows(
    conn: asyncpg.Connection, job_id: int, status: str | None, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    total = await conn.fetchval(
        "SELECT count(*) FROM bulk_job_rows WHERE job_id = $1 AND ($2::text IS NULL OR status = $2)", job_id, status
    )
    rows = await conn.fetch(
        "SELECT row_number, external_id, status, device_id, errors, warnings FROM bulk_job_rows "
        "WHERE job_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY row_number LIMIT $3 OFFSET $4",
        job_id,
        status,
        limit,
        offset,
    )
    return total, rows
