"""The request models of the device module, shared by the HTTP adapter, the use cases and the bulk worker.

`DeviceRegistration` is the D-REC device payload and its rules (each field checked by a `domain` rule);
the bulk worker judges every CSV row with it, so it lives here, not in the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from opendrec_kit.errors import field_rule
from opendrec_kit.models import rule, rule_before
from opendrec_kit.organizations import MAX_ID

from . import domain
from .settings import device_max_capacity_kw


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
    externalId: Annotated[str, rule(domain.check_external_id)]
    projectName: str = Field(min_length=1, max_length=500)
    address: str = Field(min_length=1, max_length=1000)
    latitude: Annotated[float, rule_before(domain.parse_coordinate, "latitude")] = Field(
        description="decimal degrees or degrees-minutes-seconds, e.g. 19°20'50.97\"S"
    )
    longitude: Annotated[float, rule_before(domain.parse_coordinate, "longitude")] = Field(
        description="decimal degrees or degrees-minutes-seconds, e.g. 46°3'3.21\"W"
    )
    countryCode: Annotated[str, rule(domain.normalize_country)] = Field(
        description="ISO 3166 alpha-2 or alpha-3; stored as alpha-3"
    )
    fuelCode: Annotated[str, rule(domain.check_fuel_code)] = Field(
        description="I-REC fuel code, see GET /api/device/fuel-type"
    )
    deviceTypeCode: Annotated[str, rule(domain.check_device_type_code)] = Field(
        description="I-REC technology code, see GET /api/device/device-type"
    )
    capacity: float = Field(description="kW, from 0.001 to DEVICE_MAX_CAPACITY_KW (1,000,000 by default)")
    timezone: str | None = Field(None, description="IANA time zone of the device, e.g. Asia/Kolkata")
    commissioningDate: datetime = Field(description="ISO 8601; without offset: device timezone, else UTC")
    gridInterconnection: bool
    offTaker: Annotated[str, rule(domain.check_off_taker)]
    yieldValue: float | None = Field(
        None, ge=0, le=8760, description="kWh per kWp per year (at most 8760: a year's hours)"
    )
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

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, v: float) -> float:
        return float(field_rule(domain.check_capacity, v, device_max_capacity_kw()))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return field_rule(domain.check_timezone, v) if v else None

    @field_validator("commissioningDate", mode="before")
    @classmethod
    def _commissioning(cls, v: Any, info: ValidationInfo) -> datetime:
        return field_rule(domain.parse_commissioning_date, v, info.data.get("timezone"), datetime.now(UTC))

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


def _not_below(low_field: str, message: str) -> Any:
    """A validator of a range's upper bound: not below the lower one (when both are given and valid)."""

    def check(value: Any, info: ValidationInfo) -> Any:
        low = info.data.get(low_field)
        if value is not None and low is not None and value < low:
            raise PydanticCustomError("invalid", message)
        return value

    return check


class DeviceQuery(BaseModel):
    """Filters of device listings (the page is the kit's `page_query`). List filters take repeated values or
    commas (?fuelCode=ES100,ES200); codes are checked like at registration."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    afterId: int | None = Field(
        None, ge=1, le=MAX_ID, description="keyset paging: devices older than this id (pagenumber is then ignored)"
    )
    countryCode: Annotated[list[str] | None, rule(domain.check_list, domain.normalize_country)] = Field(
        None, description="ISO 3166 alpha-2 or alpha-3"
    )
    fuelCode: Annotated[list[str] | None, rule(domain.check_list, domain.check_fuel_code)] = None
    deviceTypeCode: Annotated[list[str] | None, rule(domain.check_list, domain.check_device_type_code)] = None
    offTaker: Annotated[list[str] | None, rule(domain.check_list, domain.check_off_taker)] = None
    capacityMin: float | None = Field(None, ge=0, description="kW, inclusive")
    capacityMax: float | None = Field(None, ge=0, description="kW, inclusive")
    commissioningDateFrom: datetime | None = Field(None, description="ISO 8601 date or date-time, inclusive")
    commissioningDateTo: datetime | None = Field(None, description="ISO 8601; a bare date includes that whole day")

    _capacity_range = field_validator("capacityMax")(
        _not_below("capacityMin", "capacityMax must not be below capacityMin")
    )

    @field_validator("commissioningDateFrom", mode="before")
    @classmethod
    def _from(cls, v: Any) -> Any:
        return field_rule(domain.parse_date_bound, v) if isinstance(v, str) else v

    @field_validator("commissioningDateTo", mode="before")
    @classmethod
    def _to(cls, v: Any) -> Any:
        return field_rule(domain.parse_date_bound, v, True) if isinstance(v, str) else v

    _date_range = field_validator("commissioningDateTo")(
        _not_below("commissioningDateFrom", "commissioningDateTo must not be before commissioningDateFrom")
    )

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


def merge_patch(current: Mapping[str, Any], patch: dict[str, Any]) -> DeviceRegistration:
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
