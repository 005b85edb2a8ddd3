"""Use cases of the device registry: register, list, read, change, delete (and the public code lists).

Each runs in the unit of work it is given: reads in `uow.reading()` (one snapshot), changes in
`async with uow:` with their events recorded (`uow.record`), written to the outbox at commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from opendrec_contracts import DeviceRegistered
from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.owners import answer
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


class SerializedDevices:
    """The D-REC JSON of listed devices, serialized once per version of each row (its `row_version`), not once per
    listing: the same first page asked again costs a lookup per device (to_drec and its timestamps were a fifth of
    a listing's CPU), and only the devices' ids and versions are read. A device changed is a new row version, so an
    answer never shows an old one. Bounded: past `size` versions the oldest kept goes first."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._json: dict[tuple[int, int], orjson.Fragment] = {}

    def get(self, device_id: int, version: int) -> orjson.Fragment | None:
        return self._json.get((device_id, version))

    def of(self, row: Mapping[str, Any]) -> orjson.Fragment:
        key = (row["id"], row["row_version"])
        found = self._json.get(key)
        if found is None:
            if len(self._json) >= self.size:
                del self._json[next(iter(self._json))]
            found = self._json[key] = orjson.Fragment(orjson.dumps(to_drec(row)))
        return found


_serialized = SerializedDevices()


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
    return _paged([to_drec(row) for row in rows], total, page, rows)


async def _serialized_page(
    conn: asyncpg.Connection, query: DeviceQuery, page: Page, organization_ids: list[int] | None
) -> dict[str, Any]:
    """`_page` with each device as its JSON already (an `orjson.Fragment`: the answer is written by orjson): the
    page's ids and row versions, then only the devices not serialized at their version yet (in the reading unit's
    snapshot: the same versions; a device gone in between, were there none, would be left out)."""
    offset = 0 if query.afterId else page.offset
    total, listed = await store.list_device_versions(conn, query.filters(organization_ids), page.limit, offset)
    # Taken before the next await: another request may push them out of the bounded cache meanwhile.
    found = [_serialized.get(row["id"], row["row_version"]) for row in listed]
    missing = [row["id"] for row, json in zip(listed, found, strict=True) if json is None]
    fetched = {row["id"]: _serialized.of(row) for row in await store.devices_by_ids(conn, missing)} if missing else {}
    devices = [json or fetched.get(row["id"]) for row, json in zip(listed, found, strict=True)]
    return _paged([json for json in devices if json is not None], total, page, listed)


def _paged(devices: list[Any], total: int, page: Page, listed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "devices": devices,
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
        "nextAfterId": listed[-1]["id"] if len(listed) == page.limit else None,
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
    the page and its total from one statement, each device already serialized (answer it with orjson). No
    transaction around them (three round trips a listing): a device changed after that statement is answered at
    its newer version, one deleted meanwhile is left out, as a listing taken a moment later would show."""
    async with uow.reading(snapshot=False) as r:
        scope = await access.listing_scope(r.conn, user, organization_id, admin_default=admin_default)
        return await _serialized_page(r.conn, query, page, scope)


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


# ---------------------------------------------------------------- read-your-writes (opendrec_kit.owners)
#
# Other services learn devices from device.registered / device.updated a moment after they happen; a client
# that got 201 may use the device at once. On a miss they ask here, on their caller's behalf: the answer is
# device.registered as the service would announce the device NOW (`domain.registered_event`, the builder of
# device.registered and device.updated), stamped with the row's `updated_at` (store._CHANGED_AT: the moment of
# its last change, a little before the instant its own event carries and after the previous change's), so
# consumers order it among the real events as they order any delivery. Deleted devices are gone from the table:
# they are simply not answered.


def _state(row: Mapping[str, Any]) -> tuple[DeviceRegistered, datetime]:
    return domain.registered_event(row), row["updated_at"]


async def device_states(uow: UnitOfWork, user: Principal, device_ids: Sequence[int]) -> dict[str, Any]:
    """device.registered with the current state of each of these devices that the caller sees through the public
    API (`access.devices_seen`: GET /api/device/{id}, and for a buyer the devices it may reserve); the others
    (unknown, deleted, not the caller's to see) are left out, so nothing about them is told."""
    async with uow.reading() as r:
        rows = await store.devices_with_availability(r.conn, sorted(set(device_ids)))
        seen = await access.devices_seen(r.conn, user, rows)
    return answer([_state(row) for row in seen], "devices")


async def device_state_by_external_id(
    uow: UnitOfWork, user: Principal, organization_id: int, external_id: str
) -> dict[str, Any]:
    """device.registered with the current state of the organization's device of this externalId, for a caller who
    may read that organization's devices (`access.may_read_devices_of`); 404 otherwise, like an unknown one."""
    async with uow.reading() as r:
        rows = await store.find_by_external_id(r.conn, external_id, organization_id)
        if rows and not await access.may_read_devices_of(r.conn, user, organization_id):
            rows = []
    if not rows:
        raise _not_found(f"with externalId {external_id!r} in organization {organization_id}")
    return answer([_state(rows[0])], "devices")


# ---------------------------------------------------------------- D-REC's device helpers

UNGROUPED_MAX = 10_000  # devices one /device/ungrouped answer groups


async def ungrouped_devices(
    uow: UnitOfWork, user: Principal, organization_id: int | None, order_by: list[str] | None, query: DeviceQuery
) -> list[dict[str, Any]]:
    """The caller organization's devices that no active reservation holds, grouped by the `order_by` fields
    (D-REC's GroupedDevicesDTO list), newest first within a group; the listing filters narrow them."""
    async with uow.reading() as r:
        scope = await access.listing_scope(r.conn, user, organization_id, admin_default="own")
        try:
            rules = domain.parse_order_by(order_by)
        except ValueError as exc:
            raise ApiError(400, str(exc), [{"field": "orderBy", "message": str(exc), "where": "query"}]) from None
        total, rows = await store.list_devices(r.conn, query.filters(scope), UNGROUPED_MAX, 0, available_only=True)
    if total > UNGROUPED_MAX:
        raise ApiError(
            400,
            f"{total} devices match, more than {UNGROUPED_MAX} in one answer: narrow them with the listing "
            "filters (countryCode, fuelCode, deviceTypeCode, offTaker, capacityMin/Max, commissioningDateFrom/To)",
        )
    return domain.group_devices([to_drec(row) for row in rows], rules, datetime.now(UTC))


async def autocomplete(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    prefix: str | None,
    limit: int,
    *,
    admin_default: str = "own",
) -> list[dict[str, Any]]:
    """The caller organization's devices whose externalId starts with `prefix` (taken literally), by externalId.
    An admin naming no organization: its own (`admin_default="own"`, /api/device/my/autocomplete) or every one
    ("all", /api/admin/devices/autocomplete)."""
    async with uow.reading() as r:
        scope = await access.listing_scope(r.conn, user, organization_id, admin_default=admin_default)
        text = (prefix or "").strip()
        if not text:
            raise ApiError(400, "externalId is required: the beginning of the externalIds looked for")
        rows = await store.devices_by_prefix(r.conn, scope, text, limit)
    return [to_drec(row) for row in rows]


def _onboarding_request(external_id: str | None, given_date: str | None) -> tuple[str, datetime]:
    errors = []
    if not external_id or not external_id.strip():
        errors.append({"field": "deviceId", "message": "deviceId is required: the device's externalId"})
    moment = None
    if not given_date or not given_date.strip():
        errors.append({"field": "givenDate", "message": "givenDate is required: the new onboarding date"})
    else:
        try:
            moment = domain.parse_instant(given_date, "givenDate")
        except ValueError as exc:
            errors.append({"field": "givenDate", "message": str(exc)})
    if errors or external_id is None or moment is None:
        raise ApiError(400, "; ".join(e["message"] for e in errors), [{**e, "where": "query"} for e in errors])
    return external_id.strip(), moment


async def change_onboarding_date(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    external_id: str | None,
    given_date: str | None,
    *,
    enabled: bool,
) -> str:
    """Move a device's onboarding date (createdAt) back by up to six months (D-REC: dev mode only, and only
    while the device has no reads; devices knows of its certified energy, not its reads). Announces
    device.updated with the new `onboarded_at`. Answers D-REC's sentence."""
    async with uow:
        scope = await access.device_scope(uow.conn, user, organization_id)
        if not enabled:
            raise ApiError(
                400,
                "Changing a device's onboarding date is not enabled here (as in D-REC outside dev mode; "
                "ONBOARDING_DATE_CHANGES_ENABLED)",
            )
        external_id, given = _onboarding_request(external_id, given_date)
        found = _one_of(await store.find_by_external_id(uow.conn, external_id, scope), external_id)
        current = await store.lock_device(uow.conn, found["id"])
        if current is None:  # deleted meanwhile
            raise _not_found(f"with externalId {external_id!r}")
        try:
            domain.check_onboarding_date(given, current["created_at"])
        except ValueError as exc:
            raise ApiError(400, str(exc), [{"field": "givenDate", "message": str(exc), "where": "query"}]) from None
        refusal = domain.onboarding_change_refusal(await store.certified_wh(uow.conn, current["id"]))
        if refusal:
            raise ApiError(409, refusal)
        row = await store.set_onboarded_at(uow.conn, current["id"], given)
        uow.record(domain.updated_event(row))
    return f"Changed createdAt date from {iso(current['created_at'])} to {iso(row['created_at'])}"


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


def sdg_benefit_codes() -> list[dict[str, str]]:
    """D-REC's SDG benefit codes: `[{"name": "SDG1", "value": "No Poverty"}, ...]`."""
    return [dict(item) for item in codes.SDG_BENEFITS]


def sdg_benefits() -> list[dict[str, Any]]:
    """D-REC's SDG benefit records (its `sdgbenefit` table), here the fixed list of the 17 goals."""
    return [
        {
            "id": number,
            "SdgbenefitName": item["name"],
            "sdgbenefitdescription": item["value"],
            "sdgbenefitBitposition": number,
        }
        for number, item in enumerate(codes.SDG_BENEFITS, start=1)
    ]
