"""HTTP routes of the D-REC device module: parse, authorize, call the domain and the store, answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query
from opendrec_kit import ApiError, Pool, Principal, Runtime, outbox, permission
from opendrec_kit.errors import field_rule
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

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


async def developer_writer(user: Principal = permission(MODULE, "Write")) -> Principal:
    """Devices belong to Developer organizations; checked before the body so a Buyer gets 403, not 400."""
    if user.organization_type != "Developer":
        raise ApiError(
            403,
            f"Only Developer organizations can register devices; your organization is of type "
            f"{user.organization_type or 'unknown'}",
        )
    return user


@router.post("/device", status_code=201)
async def register_device(
    body: DeviceRegistration, pool: Pool, runtime: Runtime, user: Principal = Depends(developer_writer)
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await store.insert_device(conn, user.organization_id, user.user_id, body.columns())
        except store.ExternalIdTaken:
            raise ApiError(
                409, f"externalId {body.externalId!r} is already used by a device of your organization"
            ) from None
        await outbox.add(conn, domain.registered_event(row), runtime.name)
    return to_drec(row)


@router.get("/device/my")
async def my_devices(
    pool: Pool,
    pagenumber: int = Query(1, ge=1, description="1-based page number"),
    limit: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    """The caller organization's devices, newest first, in D-REC's paged shape."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await store.count_organization_devices(conn, user.organization_id)
        rows = await store.list_organization_devices(conn, user.organization_id, limit, (pagenumber - 1) * limit)
    return {
        "devices": [to_drec(r) for r in rows],
        "currentPage": pagenumber,
        "totalPages": domain.total_pages(total, limit),
        "totalCount": total,
    }


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


@router.get("/device/externalId/{externalId}")
async def device_by_external_id(
    pool: Pool,
    externalId: str = Path(max_length=domain.MAX_EXTERNAL_ID),
    organizationId: int | None = Query(None, description="Admins only: the organization to look in"),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    admin = domain.sees_all_organizations(user.role)
    scope = organizationId if admin else user.organization_id
    async with pool.acquire() as conn:
        rows = await store.find_by_external_id(conn, externalId, scope)
    if not rows:
        raise _not_found(f"with externalId {externalId!r}")
    if len(rows) > 1:  # only possible for an admin looking across organizations
        orgs = ", ".join(str(r["organization_id"]) for r in rows)
        raise ApiError(400, f"externalId {externalId!r} is used in organizations {orgs}; add ?organizationId=")
    return to_drec(rows[0])


@router.get("/device/{id}")
async def device_by_id(
    pool: Pool,
    id: int = Path(ge=1, le=2**63 - 1),
    user: Principal = permission(MODULE, "Read"),
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await store.get_device(conn, id)
    if row is None or not domain.may_see(user.role, user.organization_id, row["organization_id"]):
        raise _not_found(str(id))
    return to_drec(row)
