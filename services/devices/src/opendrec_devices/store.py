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


async def devices_with_availability(conn: asyncpg.Connection, device_ids: list[int]) -> list[asyncpg.Record]:
    """The devices of these ids that exist, by id, each with `available`: no active reservation holds it."""
    return await conn.fetch(
        f"SELECT d.*, {_AVAILABLE} AS available FROM devices d WHERE d.id = ANY($1::bigint[]) ORDER BY d.id",
        device_ids,
    )


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

# When a change happened (`updated_at`): the clock at the statement, not now() (the transaction's start). Changes
# run after lock_device, so this is after the previous change's commit, hence after the instant its
# device.updated carries, and before this change's event is stamped (at commit): the owner's read-your-writes
# answer (services.devices.device_states) stamps a state with it, and consumers order it among the real events.
_CHANGED_AT = "clock_timestamp()"

UPDATABLE_COLUMNS = DEVICE_COLUMNS


async def update_device(conn: asyncpg.Connection, device_id: int, values: dict[str, Any]) -> asyncpg.Record:
    """Write every registration column of a device (the merged state); raises ExternalIdTaken."""
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(UPDATABLE_COLUMNS, start=2))
    try:
        return await conn.fetchrow(
            f"UPDATE devices SET {sets}, updated_at = {_CHANGED_AT} WHERE id = $1 RETURNING *",
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
    conn: asyncpg.Connection,
    reservation_id: int,
    reservation_uid: uuid.UUID,
    buyer_organization_id: int,
    device_ids: list[int],
    start: Any,
    end: Any,
) -> None:
    """reservation.created: its terms as revision 0, unless a reservation.updated (a later revision) came
    first; a redelivery writes the same terms again."""
    await conn.execute(
        "INSERT INTO reservation_devices "
        "(reservation_id, device_id, reservation_start, reservation_end, reservation_uid, buyer_organization_id) "
        "SELECT $1, d, $3, $4, $5, $6 FROM unnest($2::bigint[]) AS d "
        "WHERE NOT EXISTS (SELECT 1 FROM reservation_devices WHERE reservation_id = $1 AND revision > 0) "
        "ON CONFLICT (device_id, reservation_id) "
        "DO UPDATE SET reservation_start = EXCLUDED.reservation_start, reservation_end = EXCLUDED.reservation_end, "
        "reservation_uid = EXCLUDED.reservation_uid, buyer_organization_id = EXCLUDED.buyer_organization_id "
        "WHERE reservation_devices.revision = 0",
        reservation_id,
        list(dict.fromkeys(device_ids)),
        start,
        end,
        reservation_uid,
        buyer_organization_id,
    )


async def reservation_revision(conn: asyncpg.Connection, reservation_id: int) -> int | None:
    """The revision of the terms held for a reservation (0: as created), None when none are held."""
    return await conn.fetchval(
        "SELECT max(revision) FROM reservation_devices WHERE reservation_id = $1", reservation_id
    )


async def replace_reservation_terms(
    conn: asyncpg.Connection,
    reservation_id: int,
    revision: int,
    reservation_uid: uuid.UUID,
    buyer_organization_id: int,
    device_ids: list[int],
    start: Any,
    end: Any,
) -> None:
    """A reservation's full terms at `revision`: its rows become exactly these devices over [start, end); a row
    already written from a later revision is left as it is."""
    devices = list(dict.fromkeys(device_ids))
    await conn.execute(
        "DELETE FROM reservation_devices WHERE reservation_id = $1 AND revision < $2 AND NOT device_id = ANY($3)",
        reservation_id,
        revision,
        devices,
    )
    await conn.execute(
        "INSERT INTO reservation_devices (reservation_id, device_id, reservation_start, reservation_end, "
        "reservation_uid, buyer_organization_id, revision) "
        "SELECT $1, d, $4, $5, $6, $7, $2 FROM unnest($3::bigint[]) AS d "
        "ON CONFLICT (device_id, reservation_id) "
        "DO UPDATE SET reservation_start = EXCLUDED.reservation_start, reservation_end = EXCLUDED.reservation_end, "
        "reservation_uid = EXCLUDED.reservation_uid, buyer_organization_id = EXCLUDED.buyer_organization_id, "
        "revision = EXCLUDED.revision WHERE reservation_devices.revision < EXCLUDED.revision",
        reservation_id,
        revision,
        devices,
        start,
        end,
        reservation_uid,
        buyer_organization_id,
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


async def record_certificate(
    conn: asyncpg.Connection, certificate: dict[str, Any], parts: list[tuple[int, int]]
) -> None:
    """One certificate.issued (keys: the columns of certified_energy but the device's), a row per part (device_id,
    energy_wh); a repeated certificate counts once."""
    await conn.execute(
        "INSERT INTO certified_energy (certificate_id, device_id, energy_wh, reservation_id, reservation_uid, "
        "buyer_organization_id, generation_start, generation_end) "
        "SELECT $1, p.device_id, p.energy_wh, $2, $3, $4, $5, $6 "
        "FROM unnest($7::bigint[], $8::bigint[]) AS p (device_id, energy_wh) "
        "ON CONFLICT (certificate_id, device_id) DO NOTHING",
        certificate["certificate_id"],
        certificate["reservation_id"],
        certificate["reservation_uid"],
        certificate["buyer_organization_id"],
        certificate["generation_start"],
        certificate["generation_end"],
        [device for device, _ in parts],
        [wh for _, wh in parts],
    )


async def reservation_buyer(conn: asyncpg.Connection, reservation_uid: uuid.UUID) -> int | None:
    """The buyer organization of a reservation known by its uid (from reservation.created, else from
    its certificates), or None when unknown."""
    return await conn.fetchval(
        "SELECT buyer_organization_id FROM reservation_devices WHERE reservation_uid = $1 "
        "UNION ALL SELECT buyer_organization_id FROM certified_energy WHERE reservation_uid = $1 LIMIT 1",
        reservation_uid,
    )


async def certified_range(conn: asyncpg.Connection, reservation_uid: uuid.UUID, device_id: int) -> asyncpg.Record:
    """(first, last, certificates): the certified period of one device in a reservation."""
    return await conn.fetchrow(
        "SELECT min(generation_start) AS first, max(generation_end) AS last, count(*) AS certificates "
        "FROM certified_energy WHERE reservation_uid = $1 AND device_id = $2",
        reservation_uid,
        device_id,
    )


async def certified_ranges(
    conn: asyncpg.Connection, reservation_uid: uuid.UUID, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    """(devices with certificates, one page of them by device id with their externalId, first and last certified instants)."""
    total = await conn.fetchval(
        "SELECT count(DISTINCT device_id) FROM certified_energy WHERE reservation_uid = $1", reservation_uid
    )
    rows = await conn.fetch(
        "SELECT c.device_id, d.external_id, min(c.generation_start) AS first, max(c.generation_end) AS last "
        "FROM certified_energy c LEFT JOIN devices d ON d.id = c.device_id WHERE c.reservation_uid = $1 "
        "GROUP BY c.device_id, d.external_id ORDER BY c.device_id LIMIT $2 OFFSET $3",
        reservation_uid,
        limit,
        offset,
    )
    return total, rows


async def reservation_holds(conn: asyncpg.Connection, reservation_uid: uuid.UUID, device_id: int) -> bool:
    """Whether the reservation names the device (reservation.created) or certified energy of it."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM reservation_devices WHERE reservation_uid = $1 AND device_id = $2) "
        "OR EXISTS (SELECT 1 FROM certified_energy WHERE reservation_uid = $1 AND device_id = $2)",
        reservation_uid,
        device_id,
    )


async def certified_totals(conn: asyncpg.Connection, organization_ids: list[int] | None) -> list[asyncpg.Record]:
    """Every device of the organizations (None: all) with its certified Wh, oldest first."""
    return await conn.fetch(
        "SELECT d.id, d.external_id, coalesce(c.wh, 0)::bigint AS certified_wh FROM devices d "
        "LEFT JOIN (SELECT device_id, sum(energy_wh) AS wh FROM certified_energy GROUP BY device_id) c "
        "ON c.device_id = d.id WHERE ($1::bigint[] IS NULL OR d.organization_id = ANY($1)) ORDER BY d.id",
        organization_ids,
    )


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def devices_by_prefix(
    conn: asyncpg.Connection, organization_ids: list[int] | None, prefix: str, limit: int
) -> list[asyncpg.Record]:
    """Devices whose externalId starts with `prefix` (taken literally), by externalId."""
    return await conn.fetch(
        "SELECT * FROM devices WHERE ($1::bigint[] IS NULL OR organization_id = ANY($1)) "
        "AND external_id LIKE $2 ESCAPE '\\' ORDER BY external_id, id LIMIT $3",
        organization_ids,
        _like_prefix(prefix),
        limit,
    )


async def set_onboarded_at(conn: asyncpg.Connection, device_id: int, onboarded_at: Any) -> asyncpg.Record:
    """Move a device's onboarding date (its `created_at`, D-REC's createdAt)."""
    return await conn.fetchrow(
        f"UPDATE devices SET created_at = $2, updated_at = {_CHANGED_AT} WHERE id = $1 RETURNING *",
        device_id,
        onboarded_at,
    )


# ---------------------------------------------------------------- uploaded files


async def insert_file(conn: asyncpg.Connection, file: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO files (id, key, file_name, content_type, size_bytes, data, organization_id, uploaded_by) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        file["id"],
        file["key"],
        file["file_name"],
        file["content_type"],
        len(file["data"]),
        file["data"],
        file["organization_id"],
        file["uploaded_by"],
    )


async def get_file(conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    """An uploaded file by its key (or its uuid)."""
    try:
        file_id: uuid.UUID | None = uuid.UUID(key)
    except ValueError:
        file_id = None
    return await conn.fetchrow("SELECT * FROM files WHERE key = $1 OR id = $2 LIMIT 1", key, file_id)


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


def _where(filters: dict[str, Any], available_only: bool, numbered_after: int = 0) -> tuple[str, list[Any]]:
    """The WHERE clause of `filters` and its parameters, numbered from $(numbered_after + 1)."""
    conditions, args = [], []
    for name, value in filters.items():
        if value is None or name not in _FILTERS:
            continue
        if name == "organization_ids" and len(value) == 1:
            # equality, not ANY: the plan then walks an (organization_id, ..., id DESC) index in page order
            name, value = "organization_id", value[0]
        args.append(value)
        conditions.append(_FILTERS[name].format(f"${len(args) + numbered_after}"))
    if available_only:
        conditions.append(_AVAILABLE)
    return (" WHERE " + " AND ".join(conditions)) if conditions else "", args


async def list_devices(
    conn: asyncpg.Connection, filters: dict[str, Any], limit: int, offset: int, *, available_only: bool = False
) -> tuple[int, list[asyncpg.Record]]:
    """(matching count without after_id, one page newest first). `filters` keys are those of _FILTERS.

    One statement (one round trip, one snapshot): the count, and the page joined to it, so that an empty page still
    gives its count (a row of NULL device columns, dropped here). Each part keeps its own plan (the count an
    index-only scan, the page a walk of the id index in page order). Each row also has its `row_version` (the
    xmin of its tuple: every change of the row makes a new one)."""
    return await _listing(conn, "d.*, d.xmin AS row_version", filters, limit, offset, available_only)


async def list_device_versions(
    conn: asyncpg.Connection, filters: dict[str, Any], limit: int, offset: int, *, available_only: bool = False
) -> tuple[int, list[asyncpg.Record]]:
    """`list_devices` with only each device's `id` and `row_version`: what a listing whose devices are serialized
    already needs (a fraction of the decoding, here and in Postgres)."""
    return await _listing(conn, "d.id, d.xmin AS row_version", filters, limit, offset, available_only)


async def _listing(
    conn: asyncpg.Connection,
    columns: str,
    filters: dict[str, Any],
    limit: int,
    offset: int,
    available_only: bool,
) -> tuple[int, list[asyncpg.Record]]:
    counted = {k: v for k, v in filters.items() if k != "after_id"}
    count_where, count_args = _where(counted, available_only)
    where, args = _where(filters, available_only, numbered_after=len(count_args))
    n = len(count_args) + len(args)
    rows = await conn.fetch(
        f"""
        SELECT c.total AS listed_total, p.* FROM (SELECT count(*) AS total FROM devices d{count_where}) c
        LEFT JOIN LATERAL (
            SELECT {columns} FROM devices d{where} ORDER BY d.id DESC LIMIT ${n + 1} OFFSET ${n + 2}
        ) p ON true
        ORDER BY p.id DESC
        """,
        *count_args,
        *args,
        limit,
        offset,
    )
    return rows[0]["listed_total"], [row for row in rows if row["id"] is not None]


async def devices_by_ids(conn: asyncpg.Connection, ids: list[int]) -> list[asyncpg.Record]:
    """The devices of `ids` that exist, each with its `row_version`, in no particular order."""
    return await conn.fetch("SELECT d.*, d.xmin AS row_version FROM devices d WHERE d.id = ANY($1::bigint[])", ids)


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


async def strike_job(conn: asyncpg.Connection, job_id: int, first_row: int, last_row: int, error: str) -> int:
    """A batch from `first_row` to `last_row` failed with `error`; returns the failures of batches starting there."""
    return await conn.fetchval(
        "UPDATE bulk_jobs SET strikes = CASE WHEN strike_row = $2 THEN strikes + 1 ELSE 1 END, strike_row = $2, "
        "careful_until = greatest(coalesce(careful_until, 0), $3), last_error = $4 WHERE id = $1 RETURNING strikes",
        job_id,
        first_row,
        last_row,
        error,
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
