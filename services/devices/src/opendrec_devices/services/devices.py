"""Use cases of the device registry: register, list, read, change, delete (and the public code lists).

Each runs in the unit of work it is given: reads in `uow.reading()` (one snapshot), changes in
`async with uow:` with their events recorded (`uow.record`), written to the outbox at commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso

from .. import codes, domain, store
from ..models import FIELD_COLUMNS, DeviceQuery, DeviceRegistration, merge_patch
from . import access

# ---------------------------------------------------------------- answers


def _degrees(value: float) -> str:
    # D-REC carries coordinates as strings; ours are normalised decimal degrees.
    return f"{value:.7f}".rstrip("0").rstrip(".")


def to_drec(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored device in D-REC field names, plus our `id` and `deviceUuid`."""
    return {
        "id": row["id"],
        "deviceUuid": str(row["device_uuid"]),
        "externalId": row["external_id"],
        "organizationId": row["organization_id"],
        "projectName": row["project_name"],
        "address": row["address"],
        "latitude": _degrees(row["latitude"]),
        "longitude": _degrees(row["longitude"]),
        "countryCode": row["country_code"],
        "fuelCode": row["fuel_code"],
        "deviceTypeCode": row["device_type_code"],
        "capacity": row["capacity_kw"],
        "commissioningDate": iso(row["commissioning_date"]),
        "gridInterconnection": row["grid_interconnection"],
        "offTaker": row["off_taker"],
        "yieldValue": row["yield_value"],
        "labels": row["labels"],
        "impactStory": row["impact_story"],
        "data": row["data"],
        "images": list(row["images"]),
        "deviceDescription": row["device_description"],
        "energyStorage": row["energy_storage"],
        "energyStorageCapacity": row["energy_storage_capacity"],
        "qualityLabels": row["quality_labels"],
        "SDGBenefits": list(row["sdg_benefits"]),
        "version": row["version"],
        "timezone": row["timezone"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _not_found(what: str) -> ApiError:
    # Another organization's device answers exactly like a missing one: existence is not disclosed.
    return ApiError(404, f"No device {what}")


def _one_of(rows: Sequence[Mapping[str, Any]], external_id: str) -> Mapping[str, Any]:
    if not rows:
        raise _not_found(f"with externalId {external_id!r}")
    if len(rows) > 1:  # only possible for an admin looking across organizations
        orgs = ", ".join(str(r["organization_id"]) for r in rows)
        raise ApiError(400, f"externalId {external_id!r} is used in organizations {orgs}; add ?organizationId=")
    return rows[0]


# ---------------------------------------------------------------- registration


async def registering_organization(uow: UnitOfWork, user: Principal, organization_id: int | None) -> int:
    """The Developer organization a registration is for (settled before the device fields are checked:
    a caller who may not register there gets 403, never a 400 about the device)."""
    async with uow.reading() as r:
        return await access.developer_organization(r.conn, user, organization_id, "register devices")


async def register_device(
    uow: UnitOfWork, user: Principal, organization_id: int, registration: DeviceRegistration
) -> dict[str, Any]:
    """Register a device for `organization_id` (see `registering_organization`); announces device.registered."""
    async with uow:
        try:
            row = await store.insert_device(uow.conn, organization_id, user.user_id, registration.columns())
        except store.ExternalIdTaken:
            raise ApiError(
                409,
                f"externalId {registration.externalId!r} is already used by a device of organization {organization_id}",
            ) from None
        uow.record(domain.registered_event(row))
    return to_drec(row)


# ---------------------------------------------------------------- listings


async def _page(
    conn: asyncpg.Connection,
    query: DeviceQuery,
    page: Page,
    organization_ids: list[int] | None,
    *,
    available_only: bool = False,
) -> dict[str, Any]:
    """One page in D-REC's paged shape, plus `nextAfterId` for keyset paging."""
    offset = 0 if query.afterId else page.offset
    total, rows = await store.list_devices(
        conn, query.filters(organization_ids), page.limit, offset, available_only=available_only
    )
    return {
        "devices": [to_drec(row) for row in rows],
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
        "nextAfterId": rows[-1]["id"] if len(rows) == page.limit else None,
    }


async def list_devices(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    query: DeviceQuery,
    page: Page,
    *,
    admin_default: str,
) -> dict[str, Any]:
    """Devices of the organizations the caller sees (see `access.listing_scope`), newest first, filtered:
    the page and its total from one snapshot."""
    async with uow.reading() as r:
        scope = await access.listing_scope(r.conn, user, organization_id, admin_default=admin_default)
        return await _page(r.conn, query, page, scope)


async def list_available_devices(
    uow: UnitOfWork, user: Principal, organization_id: int | None, query: DeviceQuery, page: Page
) -> dict[str, Any]:
    """Devices of every developer that no active reservation holds: what a buyer may reserve."""
    async with uow.reading() as r:
        await access.check_buyer(r.conn, user, organization_id)
        return await _page(r.conn, query, page, None, available_only=True)


# ---------------------------------------------------------------- one device


async def device_by_external_id(
    uow: UnitOfWork, user: Principal, external_id: str, organization_id: int | None
) -> dict[str, Any]:
    async with uow.reading() as r:
        scope = await access.device_scope(r.conn, user, organization_id)
        rows = await store.find_by_external_id(r.conn, external_id, scope)
    return to_drec(_one_of(rows, external_id))


async def device_by_id(
    uow: UnitOfWork, user: Principal, device_id: int, organization_id: int | None, api_user_id: str | None
) -> dict[str, Any]:
    if api_user_id is not None and api_user_id != user.api_user_id:
        raise ApiError(403, "apiUserId is not yours: give your own API user id, or leave it out")
    async with uow.reading() as r:
        scope = await access.device_scope(r.conn, user, organization_id)
        row = await store.get_device(r.conn, device_id)
    if row is None or not domain.within(None if scope is None else [scope], row["organization_id"]):
        raise _not_found(str(device_id))
    return to_drec(row)


async def update_device(
    uow: UnitOfWork, user: Principal, external_id: str, organization_id: int | None, body: Mapping[str, Any]
) -> dict[str, Any]:
    """Change the device fields given in `body` (the others keep their values); announces device.updated
    with the full current state, unless nothing changed."""
    patch = {k: v for k, v in body.items() if k in FIELD_COLUMNS}
    async with uow:
        scope = await access.device_scope(uow.conn, user, organization_id)  # who may change what, before what is asked
        if not patch:
            raise ApiError(400, f"Nothing to change: give at least one of {', '.join(FIELD_COLUMNS)}")
        found = _one_of(await store.find_by_external_id(uow.conn, external_id, scope), external_id)
        current = await store.lock_device(uow.conn, found["id"])
        if current is None:  # deleted meanwhile
            raise _not_found(f"with externalId {external_id!r}")
        values = merge_patch(current, patch).columns()
        if all(
            values[c] == current[c] or (c in ("images", "sdg_benefits") and list(current[c]) == values[c])
            for c in store.DEVICE_COLUMNS
        ):
            return to_drec(current)  # nothing changed: no event
        try:
            row = await store.update_device(uow.conn, current["id"], values)
        except store.ExternalIdTaken:
            raise ApiError(
                409, f"externalId {values['external_id']!r} is already used by another device of the organization"
            ) from None
        uow.record(domain.updated_event(row))
    return to_drec(row)


async def delete_device(
    uow: UnitOfWork, user: Principal, device_id: int, organization_id: int | None
) -> dict[str, Any]:
    """Remove a device; refused (409) while an active reservation holds it or it has certified energy."""
    async with uow:
        scope = await access.device_scope(uow.conn, user, organization_id)
        row = await store.lock_device(uow.conn, device_id)
        if row is None or not domain.within(None if scope is None else [scope], row["organization_id"]):
            raise _not_found(str(device_id))
        refusal = domain.deletion_refusal(
            await store.active_reservations(uow.conn, device_id), await store.certified_wh(uow.conn, device_id)
        )
        if refusal:
            raise ApiError(409, refusal)
        await store.delete_device(uow.conn, device_id)
        uow.record(domain.deleted_event(row))
    return {
        "id": row["id"],
        "externalId": row["external_id"],
        "organizationId": row["organization_id"],
        "deleted": True,
    }


# ---------------------------------------------------------------- code lists (no database)


def fuel_types() -> list[dict[str, str]]:
    return [{"code": c.code, "name": c.name} for c in codes.FUEL_TYPES]


def device_types() -> list[dict[str, str]]:
    return [{"code": c.code, "name": c.name} for c in codes.DEVICE_TYPES]


def country_codes(search: str | None) -> list[dict[str, Any]]:
    """Countries whose name or code contains `search` (any case); all without one."""
    if not search:
        return list(codes.COUNTRIES)
    key = search.strip().lower()
    return [c for c in codes.COUNTRIES if key in str(c["country"]).lower() or key in str(c["countryCode"]).lower()]
