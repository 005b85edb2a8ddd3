"""D-REC's yield configuration over HTTP (`/api/yield/config`, the reference's yieldconfig.controller.ts).

One annual yield (kWh per kWp per year) per country, kept by an Admin. An Active one (status `Y`) is the
country's yield in the plausibility bound of meter reads (`domain.annual_yield`). The reference guarded
these with its YIELD_CONFIG_MANAGEMENT_CRUDL module (Read, Write, Update) and, but for POST, the Admin role;
that module is not one of ours, and it was the Admin's alone: every route here is `only_roles("Admin")`.

An adapter: each route parses the request, is authorized, calls one use case of services.py and answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from opendrec_kit import ApiError, Principal, UoW
from opendrec_kit.auth import only_roles
from opendrec_kit.models import rule

from . import domain, services

router = APIRouter(tags=["yield-config"])

ConfigId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The configured yield's id")]
CountryCode = Annotated[str, Field(min_length=1, max_length=10), rule(domain.normalize_country_code)]
CountryName = Annotated[
    str, Field(min_length=1, max_length=domain.MAX_COUNTRY_NAME), rule(domain.normalize_country_name)
]
YieldValue = Annotated[
    float,
    Field(
        strict=True,  # a JSON number: not a string, not true
        gt=0,
        le=domain.MAX_CONFIGURED_YIELD,
        allow_inf_nan=False,
        description=f"kWh per kWp per year, > 0 and at most {domain.MAX_CONFIGURED_YIELD:g}",
    ),
]


class NewYieldConfigIn(BaseModel):
    """The reference's NewYieldConfigDTO."""

    model_config = ConfigDict(extra="ignore")

    countryName: CountryName
    countryCode: CountryCode = Field(description="ISO 3166 alpha-3 (alpha-2 taken too), any case; stored as alpha-3")
    yieldValue: YieldValue
    status: domain.YieldStatus = Field("Y", description="Y: Active (judges the country's reads), N: kept unused")


class UpdateYieldValueIn(BaseModel):
    """The reference's UpdateYieldValueDTO; each field optional here, those given (not null) are changed."""

    model_config = ConfigDict(extra="ignore")

    countryName: CountryName | None = None
    countryCode: CountryCode | None = Field(None, description="ISO 3166 alpha-3 (alpha-2 taken too); another: 409")
    yieldValue: YieldValue | None = None
    status: domain.YieldStatus | None = None


ADMIN = only_roles("Admin")


@router.get("/api/yield/config", summary="Every country's configured yield (kWh per kWp per year)")
async def get_yield_configs(uow: UoW, _: Principal = ADMIN) -> list[dict[str, Any]]:
    return await services.yield_configs(uow)


@router.get("/api/yield/config/{id}", summary="One configured country yield by its id")
async def get_yield_config(id: ConfigId, uow: UoW, _: Principal = ADMIN) -> dict[str, Any]:
    return await services.yield_config(uow, id)


@router.post(
    "/api/yield/config",
    status_code=201,
    summary="Configure a country's yield (one per country: 409 for a second); Active, it judges the country's reads",
)
async def create_yield_config(body: NewYieldConfigIn, uow: UoW, user: Principal = ADMIN) -> dict[str, Any]:
    return await services.create_yield_config(
        uow, user, body.countryCode, body.countryName, body.yieldValue, body.status
    )


@router.patch(
    "/api/yield/config/update/{id}",
    summary="Change a configured yield's value, status (Y/N), country or name: the fields given",
)
async def update_yield_config(
    id: ConfigId, body: UpdateYieldValueIn, uow: UoW, user: Principal = ADMIN
) -> dict[str, Any]:
    given = {
        "country_name": body.countryName,
        "country_code": body.countryCode,
        "yield_value": body.yieldValue,
        "status": body.status,
    }
    changes = {column: value for column, value in given.items() if value is not None}
    if not changes:
        message = "Give at least one of countryName, countryCode, yieldValue, status"
        raise ApiError(400, message, [{"field": "body", "message": message, "where": "body"}])
    return await services.update_yield_config(uow, user, id, changes)
