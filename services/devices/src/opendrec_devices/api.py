"""HTTP routes of the D-REC device module: parse, authorize, call the domain and the store, answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from opendrec_kit import ApiError, Pool, Principal, Runtime, outbox, permission
from opendrec_kit.auth import only_roles
from opendrec_kit.errors import field_rule
from opendrec_kit.organizations import acting_organization, visible_organizations

from . import codes, domain, store

MODULE = "DEVICE_MANAGEMENT_CRUDL"
DEFAULT_PAGE_SIZE = 20  # D-REC's page size for /api/device/my
MAX_PAGE_SIZE = 100

router = APIRouter(prefix="/api", tags=["devices"])


class DeviceRegistration(BaseModel):
    """The D-REC device payload (field names as in its API guide and Postman collection).

    Every field is checked and every problem reported in one 400. `groupId` and unknown
    fields are ignored. Field order matters: `timezone` before `commissioningDate` and
    `energyStorage` before `energyStorageCapacity`, which read them.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    organizationId: int | None = Field(
        None,
        description="API users (required) and admins: the Developer organization the device is for; "
        "checked before the device fields",
    )
    externalId: str
    projectName: str = Field(min_length=1, max_length=500)
    address: str = Field(min_length=1, max_length=1000)
    latitude: float = Field(description="decimal degrees or degrees-minutes-seconds, e.g. 19°20'50.97\"S")
    longitude: float = Field(description="decimal degrees or degrees-minutes-seconds, e.g. 46°3'3.21\"W")
    countryCode: str = Field(description="ISO 3166 alpha-2 or alpha-3; stored as alpha-3")
    fuelCode: str = Field(description="I-REC fuel code, see GET /api/device/fuel-type")
    deviceTypeCode: str = Field(description="I-REC technology code, see GET /api/device/device-type")
    capacity: float = Field(description="kW, > 0")
    timezone: str | None = Field(None, description="IANA time zone of the device, e.g. Asia/Kolkata")
    commissioningDate: datetime = Field(description="ISO 8601; without offset: device timezone, else UTC")
    gridInterconnection: bool
    offTaker: str
    yieldValue: float | None = Field(None, ge=0)
    labels: str | None = None
    impactStory: str | None = None
    data: str | None = None
    images: list[str] = Field(default_factory=list)
    deviceDescription: str | None = Field(None, max_length=200)
    energyStorage: bool = False
    energyStorageCapacity: float | None = Field(None, ge=0)
    qualityLabels: str | None = None
    SDGBenefits: list[str] = Field(default_factory=list)
    version: str | None = "1.0"

    @field_validator("externalId")
    @classmethod
    def _external_id(cls, v: str) -> str:
        return field_rule(domain.check_external_id, v)

    @field_validator("latitude", "longitude", mode="before")
    @classmethod
    def _coordinate(cls, v: Any, info: ValidationInfo) -> float:
        return field_rule(domain.parse_coordinate, v, info.field_name)

    @field_validator("countryCode")
    @classmethod
    def _country(cls, v: str) -> str:
        return field_rule(domain.normalize_country, v)

    @field_validator("fuelCode")
    @classmethod
    def _fuel(cls, v: str) -> str:
        return field_rule(domain.check_fuel_code, v)

    @field_validator("deviceTypeCode")
    @classmethod
    def _device_type(cls, v: str) -> str:
        return field_rule(domain.check_device_type_code, v)

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, v: float) -> float:
        if v <= 0:
            raise PydanticCustomError("invalid", "capacity must be greater than 0 kW")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return field_rule(domain.check_timezone, v) if v else None

    @field_validator("commissioningDate", mode="before")
    @classmethod
    def _commissioning(cls, v: Any, info: ValidationInfo) -> datetime:
        return field_rule(domain.parse_commissioning_date, v, info.data.get("timezone"), datetime.now(UTC))

    @field_validator("offTaker")
    @classmethod
    def _off_taker(cls, v: str) -> str:
        return field_rule(domain.check_off_taker, v)

    @field_validator("energyStorageCapacity")
    @classmethod
    def _storage(cls, v: float | None, info: ValidationInfo) -> float | None:
        if "energyStorage" not in info.data:  # energyStorage itself is invalid and already reported
            return v
        return field_rule(domain.check_energy_storage, info.data["energyStorage"], v)

    @field_validator("SDGBenefits", mode="before")
    @classmethod
    def _sdg(cls, v: Any) -> list[str]:
        return domain.normalize_sdg_benefits(v)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    def columns(self) -> dict[str, Any]:
        return {
            "external_id": self.externalId,
            "project_name": self.projectName,
            "address": self.address,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "country_code": self.countryCode,
            "fuel_code": self.fuelCode,
            "device_type_code": self.deviceTypeCode,
            "capacity_kw": self.capacity,
            "commissioning_date": self.commissioningDate,
            "grid_interconnection": self.gridInterconnection,
            "off_taker": self.offTaker,
            "yield_value": self.yieldValue,
            "labels": self.labels,
            "impact_story": self.impactStory,
            "data": self.data,
            "images": self.images,
            "device_description": self.deviceDescription,
            "energy_storage": self.energyStorage,
            "energy_storage_capacity": self.energyStorageCapacity,
            "quality_labels": self.qualityLabels,
            "sdg_benefits": self.SDGBenefits,
            "version": self.version,
            "timezone": self.timezone,
        }


# D-REC field name -> column, the inverse of DeviceRegistration.columns().
FIELD_COLUMNS: dict[str, str] = {
    "externalId": "external_id",
    "projectName": "project_name",
    "address": "address",
    "latitude": "latitude",
    "longitude": "longitude",
    "countryCode": "country_code",
    "fuelCode": "fuel_code",
    "deviceTypeCode": "device_type_code",
    "capacity": "capacity_kw",
    "commissioningDate": "commissioning_date",
    "gridInterconnection": "grid_interconnection",
    "offTaker": "off_taker",
    "yieldValue": "yield_value",
    "labels": "labels",
    "impactStory": "impact_story",
    "data": "data",
    "images": "images",
    "deviceDescription": "device_description",
    "energyStorage": "energy_storage",
    "energyStorageCapacity": "energy_storage_capacity",
    "qualityLabels": "quality_labels",
    "SDGBenefits": "sdg_benefits",
    "version": "version",
    "timezone": "timezone",
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _degrees(value: float) -> str:
    # D-REC carries coordinates as strings; ours are normalised decimal degrees.
    return f"{value:.7f}".rstrip("0").rstrip(".")


def to_drec(row: asyncpg.Record) -> dict[str, Any]:
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
        "commissioningDate": _iso(row["commissioning_date"]),
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
        "createdAt": _iso(row["created_at"]),
        "updatedAt": _iso(row["updated_at"]),
    }


# ---------------------------------------------------------------- which organization a request acts for
# Roles are checked by route dependencies (they show in OpenAPI); which organization's devices a
# caller reaches is settled here, against the organization directory (organization.registered).


async def developer_organization(
    conn: asyncpg.Connection | asyncpg.Pool, user: Principal, organization_id: int | None, doing: str
) -> int:
    """The Developer organization a write (registration, bulk onboarding) is for: an API user's
    named one, an admin's named one, anyone else's own."""
    if user.role == domain.ADMIN and organization_id in (None, user.organization_id):
        raise ApiError(400, f"organizationId is required: an admin {doing} for the Developer organization it names")
    if user.role not in (domain.ADMIN, domain.API_USER) and user.organization_type != "Developer":
        raise ApiError(
            403,
            f"Only Developer organizations {doing}; your organization is of type {user.organization_type or 'unknown'}",
        )
    return await acting_organization(conn, user, organization_id, organization_type="Developer")


async def device_scope(
    conn: asyncpg.Connection | asyncpg.Pool, user: Principal, organization_id: int | None
) -> int | None:
    """The organization a single-device request looks in (None: any, for an admin naming none).
    An API user names one of its Developer organizations; others get their own."""
    if user.role == domain.ADMIN:
        return organization_id
    kind = "Developer" if user.role == domain.API_USER else None
    return await acting_organization(conn, user, organization_id, organization_type=kind)


async def listing_scope(
    conn: asyncpg.Connection | asyncpg.Pool, user: Principal, organization_id: int | None, *, admin_default: str
) -> list[int] | None:
    """Organizations a listing shows (None: all). An API user naming none sees all its Developer
    organizations; an admin naming none sees its own ("own") or every one ("all")."""
    if user.role == domain.ADMIN:
        if organization_id is not None:
            return [organization_id]
        return None if admin_default == "all" else [user.organization_id]
    kind = "Developer" if user.role == domain.API_USER else None
    return await visible_organizations(conn, user, organization_id, organization_type=kind)


@dataclass(frozen=True)
class Acting:
    user: Principal
    organization_id: int


def organization_in_body(body: Any) -> int | None:
    """`organizationId` of a JSON body (D-REC API users put it there), or a 400 naming it."""
    if not isinstance(body, dict):
        return None
    try:
        return domain.parse_organization_id(body.get("organizationId"))
    except ValueError as exc:
        raise ApiError(400, str(exc), [{"field": "organizationId", "message": str(exc), "where": "body"}]) from None


async def _body_organization_id(request: Request) -> int | None:
    # FastAPI has read and parsed the JSON body before dependencies run; this reads its cached value.
    try:
        body = await request.json()
    except ValueError:
        return None  # not JSON: the body validation reports it
    return organization_in_body(body)


async def registering_for(request: Request, pool: Pool, user: Principal = permission(MODULE, "Write")) -> Acting:
    """The organization a registration is for, settled before the device fields are checked: a
    caller who may not register there gets 403, never a 400 about the device."""
    organization_id = await _body_organization_id(request)
    return Acting(user, await developer_organization(pool, user, organization_id, "register devices"))


@router.post("/device", status_code=201)
async def register_device(
    body: DeviceRegistration, pool: Pool, runtime: Runtime, acting: Acting = Depends(registering_for)
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await store.insert_device(conn, acting.organization_id, acting.user.user_id, body.columns())
        except store.ExternalIdTaken:
            raise ApiError(
                409,
                f"externalId {body.externalId!r} is already used by a device of organization {acting.organization_id}",
            ) from None
        await outbox.add(conn, domain.registered_event(row), runtime.name)
    return to_drec(row)


class DeviceQuery(BaseModel):
    """Paging and filters of device listings. List filters take repeated values or commas
    (?fuelCode=ES100,ES200); codes are checked like at registration."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    pagenumber: int = Field(1, ge=1, description="1-based page number")
    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    afterId: int | None = Field(
        None, ge=1, le=2**63 - 1, description="keyset paging: devices older than this id (pagenumber is then ignored)"
    )
    countryCode: list[str] | None = Field(None, description="ISO 3166 alpha-2 or alpha-3")
    fuelCode: list[str] | None = None
    deviceTypeCode: list[str] | None = None
    offTaker: list[str] | None = None
    capacityMin: float | None = Field(None, ge=0, description="kW, inclusive")
    capacityMax: float | None = Field(None, ge=0, description="kW, inclusive")
    commissioningDateFrom: datetime | None = Field(None, description="ISO 8601 date or date-time, inclusive")
    commissioningDateTo: datetime | None = Field(None, description="ISO 8601; a bare date includes that whole day")

    @field_validator("countryCode")
    @classmethod
    def _countries(cls, v: list[str] | None) -> list[str] | None:
        return field_rule(domain.check_each, domain.normalize_country, domain.split_list(v)) or None

    @field_validator("fuelCode")
    @classmethod
    def _fuels(cls, v: list[str] | None) -> list[str] | None:
        return field_rule(domain.check_each, domain.check_fuel_code, domain.split_list(v)) or None

    @field_validator("deviceTypeCode")
    @classmethod
    def _types(cls, v: list[str] | None) -> list[str] | None:
        return field_rule(domain.check_each, domain.check_device_type_code, domain.split_list(v)) or None

    @field_validator("offTaker")
    @classmethod
    def _off_takers(cls, v: list[str] | None) -> list[str] | None:
        return field_rule(domain.check_each, domain.check_off_taker, domain.split_list(v)) or None

    @field_validator("capacityMax")
    @classmethod
    def _capacity_range(cls, v: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("capacityMin")
        if v is not None and low is not None and v < low:
            raise PydanticCustomError("invalid", "capacityMax must not be below capacityMin")
        return v

    @field_validator("commissioningDateFrom", mode="before")
    @classmethod
    def _from(cls, v: Any) -> Any:
        return field_rule(domain.parse_date_bound, v) if isinstance(v, str) else v

    @field_validator("commissioningDateTo", mode="before")
    @classmethod
    def _to(cls, v: Any) -> Any:
        return field_rule(domain.parse_date_bound, v, True) if isinstance(v, str) else v

    @field_validator("commissioningDateTo")
    @classmethod
    def _date_range(cls, v: datetime | None, info: ValidationInfo) -> datetime | None:
        low = info.data.get("commissioningDateFrom")
        if v is not None and low is not None and v < low:
            raise PydanticCustomError("invalid", "commissioningDateTo must not be before commissioningDateFrom")
        return v

    def filters(self, organization_ids: list[int] | None) -> dict[str, Any]:
        return {
            "organization_ids": organization_ids,
            "country_codes": self.countryCode,
            "fuel_codes": self.fuelCode,
            "device_type_codes": self.deviceTypeCode,
            "off_takers": self.offTaker,
            "capacity_min": self.capacityMin,
            "capacity_max": self.capacityMax,
            "commissioned_from": self.commissioningDateFrom,
            "commissioned_to": self.commissioningDateTo,
            "after_id": self.afterId,
        }


async def _page(
    pool: asyncpg.Pool, query: DeviceQuery, organization_ids: list[int] | None, *, available_only: bool = False
) -> dict[str, Any]:
    """One page in D-REC's paged shape, plus `nextAfterId` for keyset paging."""
    offset = 0 if query.afterId else (query.pagenumber - 1) * query.limit
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total, rows = await store.list_devices(
            conn, query.filters(organization_ids), query.limit, offset, available_only=available_only
        )
    return {
        "devices": [to_drec(r) for r in rows],
        "currentPage": query.pagenumber,
        "totalPages": domain.total_pages(total, query.limit),
        "totalCount": total,
        "nextAfterId": rows[-1]["id"] if len(rows) == query.limit else None,
    }


@router.get("/device/my")
async def my_devices(
    pool: Pool,
    query: Annotated[DeviceQuery, Query()],
    organizationId: int | None = Query(
        None,
        ge=1,
        le=2**63 - 1,
        description="API users: one of your Developer organizations (none: all of them); admins: any organization",
    ),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    """The caller organization's devices (an API user's: its Developer organizations'), newest first, filtered."""
    return await _page(pool, query, await listing_scope(pool, user, organizationId, admin_default="own"))


@router.get("/device", dependencies=[only_roles("Admin")])
async def all_devices(
    pool: Pool,
    query: Annotated[DeviceQuery, Query()],
    organizationId: int | None = Query(None, ge=1, le=2**63 - 1, description="only this organization's devices"),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    """Every organization's devices, for admins (others: GET /api/device/my)."""
    return await _page(pool, query, await listing_scope(pool, user, organizationId, admin_default="all"))


@router.get("/device/ungrouped/buyerreservation", dependencies=[only_roles("Admin", "Buyer", "SubBuyer", "ApiUser")])
async def devices_for_reservation(
    pool: Pool,
    query: Annotated[DeviceQuery, Query()],
    organizationId: int | None = Query(
        None, ge=1, le=2**63 - 1, description="API users (required): the Buyer organization you act for"
    ),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    """Devices of every developer that no active reservation holds: what a buyer may reserve."""
    if user.role != domain.ADMIN or organizationId is not None:
        # the buyer acted for: an API user's named Buyer organization, a buyer's own
        await acting_organization(pool, user, organizationId, organization_type="Buyer")
    return await _page(pool, query, None, available_only=True)


@router.get("/device/fuel-type")
async def fuel_types() -> list[dict[str, str]]:
    return [{"code": c.code, "name": c.name} for c in codes.FUEL_TYPES]


@router.get("/device/device-type")
async def device_types() -> list[dict[str, str]]:
    return [{"code": c.code, "name": c.name} for c in codes.DEVICE_TYPES]


@router.get("/countrycode/list")
async def country_codes(searchKeyWord: str | None = Query(None, max_length=100)) -> list[dict[str, Any]]:
    if not searchKeyWord:
        return list(codes.COUNTRIES)
    key = searchKeyWord.strip().lower()
    return [c for c in codes.COUNTRIES if key in str(c["country"]).lower() or key in str(c["countryCode"]).lower()]


def _not_found(what: str) -> ApiError:
    # Another organization's device answers exactly like a missing one: existence is not disclosed.
    return ApiError(404, f"No device {what}")


def _one_of(rows: list[asyncpg.Record], external_id: str) -> asyncpg.Record:
    if not rows:
        raise _not_found(f"with externalId {external_id!r}")
    if len(rows) > 1:  # only possible for an admin looking across organizations
        orgs = ", ".join(str(r["organization_id"]) for r in rows)
        raise ApiError(400, f"externalId {external_id!r} is used in organizations {orgs}; add ?organizationId=")
    return rows[0]


@router.get("/device/externalId/{externalId}")
async def device_by_external_id(
    pool: Pool,
    externalId: str = Path(max_length=domain.MAX_EXTERNAL_ID),
    organizationId: int | None = Query(
        None, ge=1, le=2**63 - 1, description="API users (required): your Developer organization; admins: where to look"
    ),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        scope = await device_scope(conn, user, organizationId)
        rows = await store.find_by_external_id(conn, externalId, scope)
    return to_drec(_one_of(rows, externalId))


@router.get("/device/{id}")
async def device_by_id(
    pool: Pool,
    id: int = Path(ge=1, le=2**63 - 1),
    organizationId: int | None = Query(
        None, ge=1, le=2**63 - 1, description="API users (required): the Developer organization of the device"
    ),
    apiUserId: str | None = Query(None, max_length=100, description="API users: your API user id (as in D-REC)"),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    if apiUserId is not None and apiUserId != user.api_user_id:
        raise ApiError(403, "apiUserId is not yours: give your own API user id, or leave it out")
    async with pool.acquire() as conn:
        scope = await device_scope(conn, user, organizationId)
        row = await store.get_device(conn, id)
    if row is None or not domain.within(None if scope is None else [scope], row["organization_id"]):
        raise _not_found(str(id))
    return to_drec(row)


def merge_patch(current: asyncpg.Record, patch: dict[str, Any]) -> DeviceRegistration:
    """The device after applying `patch` (D-REC field names, only the fields to change), checked
    by the registration rules as a whole, so cross-field rules (storage, timezone) hold after it.
    Errors name the patch's fields: the stored ones were valid already."""
    merged = {name: current[column] for name, column in FIELD_COLUMNS.items()}
    merged["images"] = list(merged["images"])
    merged["SDGBenefits"] = list(merged["SDGBenefits"])
    merged.update(patch)
    try:
        return DeviceRegistration.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


@router.patch("/device/{externalId}")
async def update_device(
    pool: Pool,
    runtime: Runtime,
    externalId: str = Path(max_length=domain.MAX_EXTERNAL_ID),
    organizationId: int | None = Query(
        None,
        ge=1,
        le=2**63 - 1,
        description="API users (required, here or in the body): your Developer organization; admins: where to look",
    ),
    body: dict[str, Any] = Body(description="the D-REC device fields to change; the others keep their values"),
    user: Principal = permission(MODULE, "Update"),
) -> dict[str, Any]:
    """Change some fields of a device; publishes device.updated with the full current state."""
    organization_id = organizationId if organizationId is not None else organization_in_body(body)
    patch = {k: v for k, v in body.items() if k in FIELD_COLUMNS}
    async with pool.acquire() as conn, conn.transaction():
        scope = await device_scope(conn, user, organization_id)  # who may change what, before what is asked
        if not patch:
            raise ApiError(400, f"Nothing to change: give at least one of {', '.join(FIELD_COLUMNS)}")
        found = _one_of(await store.find_by_external_id(conn, externalId, scope), externalId)
        current = await store.lock_device(conn, found["id"])
        if current is None:  # deleted meanwhile
            raise _not_found(f"with externalId {externalId!r}")
        values = merge_patch(current, patch).columns()
        if all(
            values[c] == current[c] or (c in ("images", "sdg_benefits") and list(current[c]) == values[c])
            for c in store.DEVICE_COLUMNS
        ):
            return to_drec(current)  # nothing changed: no event
        try:
            row = await store.update_device(conn, current["id"], values)
        except store.ExternalIdTaken:
            raise ApiError(
                409, f"externalId {values['external_id']!r} is already used by another device of the organization"
            ) from None
        await outbox.add(conn, domain.updated_event(row), runtime.name)
    return to_drec(row)


@router.delete("/device/{id}")
async def delete_device(
    pool: Pool,
    runtime: Runtime,
    id: int = Path(ge=1, le=2**63 - 1),
    organizationId: int | None = Query(
        None, ge=1, le=2**63 - 1, description="API users (required): the Developer organization of the device"
    ),
    user: Principal = permission(MODULE, "Delete"),
) -> dict[str, Any]:
    """Remove a device; refused (409) while an active reservation holds it or it has certified energy."""
    async with pool.acquire() as conn, conn.transaction():
        scope = await device_scope(conn, user, organizationId)
        row = await store.lock_device(conn, id)
        if row is None or not domain.within(None if scope is None else [scope], row["organization_id"]):
            raise _not_found(str(id))
        refusal = domain.deletion_refusal(await store.active_reservations(conn, id), await store.certified_wh(conn, id))
        if refusal:
            raise ApiError(409, refusal)
        await store.delete_device(conn, id)
        await outbox.add(conn, domain.deleted_event(row), runtime.name)
    return {
        "id": row["id"],
        "externalId": row["external_id"],
        "organizationId": row["organization_id"],
        "deleted": True,
    }
