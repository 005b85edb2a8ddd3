"""SQL for the device registry (asyncpg): one function per query, parameters always bound."""

from __future__ import annotations

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


async def list_organization_devices(
    conn: asyncpg.Connection, organization_id: int, limit: int, offset: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM devices WHERE organization_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        organization_id,
        limit,
        offset,
    )


async def count_organization_devices(conn: asyncpg.Connection, organization_id: int) -> int:
    return await conn.fetchval("SELECT count(*) FROM devices WHERE organization_id = $1", organization_id)


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
