"""HTTP adapter of the D-REC device module: parse, authorize, call one use case (`services`), answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from opendrec_kit import ApiError, Principal, UnitOfWork, UoW, permission
from opendrec_kit.auth import only_roles
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query

from . import domain, services
from .models import DeviceQuery, DeviceRegistration
from .services.access import DEVICE_MODULE

MODULE = DEVICE_MODULE
DEFAULT_PAGE_SIZE = 20  # D-REC's page size for /api/device/my
MAX_PAGE_SIZE = 100

router = APIRouter(prefix="/api", tags=["devices"])

Paging = Annotated[Page, Depends(page_query(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, "devices"))]
LogPaging = Annotated[Page, Depends(page_query(10, 100, "devices"))]  # D-REC's certified log: 10 a page
Filters = Annotated[DeviceQuery, Query()]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]


def organization_in_body(body: Any) -> int | None:
    """`organizationId` of a JSON body (D-REC API users put it there), or a 400 naming it."""
    if not isinstance(body, dict):
        return None
    try:
        return domain.parse_organization_id(body.get("organizationId"))
    except ValueError as exc:
        raise ApiError(400, str(exc), [{"field": "organizationId", "message": str(exc), "where": "body"}]) from None


@dataclass(frozen=True)
class Registering:
    user: Principal
    organization_id: int


async def registering_for(request: Request, uow: UoW, user: Principal = permission(MODULE, "Write")) -> Registering:
    """The organization a registration is for, settled before the device fields are checked: a
    caller who may not register there gets 403, never a 400 about the device."""
    # FastAPI has read and parsed the JSON body before dependencies run; this reads its cached value.
    try:
        body = await request.json()
    except ValueError:
        body = None  # not JSON: the body validation reports it
    organization_id = organization_in_body(body)
    return Registering(user, await services.registering_organization(uow, user, organization_id))


@router.post("/device", status_code=201)
async def register_device(
    body: DeviceRegistration, uow: UoW, acting: Registering = Depends(registering_for)
) -> dict[str, Any]:
    return await services.register_device(uow, acting.user, acting.organization_id, body)


@dataclass(frozen=True)
class Listing:
    """What every device listing reads: the caller, the organization named, the filters and the page, and the unit
    of work its use case runs in."""

    uow: UnitOfWork
    user: Principal
    organization_id: int | None
    query: DeviceQuery
    page: Page


async def listing(request: Request, query: Filters, acting: Reading, page: Paging) -> Listing:
    # The unit of work from the runtime, not through one more dependency: FastAPI solves each one for every request
    # (~12 us of CPU each), and the first page of GET /api/device/my is what D-REC clients ask most (issue 16).
    return Listing(request.app.state.runtime.uow(), acting.user, acting.organization_id, query, page)


Listed = Annotated[Listing, Depends(listing)]


def json_answer(data: Any) -> Response:
    """An answer of plain JSON values (str, int, float, bool, None, lists, dicts, and devices serialized already as
    `orjson.Fragment`), serialized once by orjson: FastAPI would walk it with jsonable_encoder first, then serialize
    it (a third of a listing's CPU)."""
    return Response(orjson.dumps(data), media_type="application/json")


@router.get("/device/my", response_class=JSONResponse)
async def my_devices(asked: Listed) -> Response:
    """The caller organization's devices (an API user's: its Developer organizations'), newest first, filtered."""
    return json_answer(
        await services.list_devices(
            asked.uow, asked.user, asked.organization_id, asked.query, asked.page, admin_default="own"
        )
    )


@router.get("/device", dependencies=[only_roles("Admin")], response_class=JSONResponse)
async def all_devices(asked: Listed) -> Response:
    """Every organization's devices, for admins (others: GET /api/device/my)."""
    return json_answer(
        await services.list_devices(
            asked.uow, asked.user, asked.organization_id, asked.query, asked.page, admin_default="all"
        )
    )


@router.get("/device/ungrouped/buyerreservation", dependencies=[only_roles("Admin", "Buyer", "SubBuyer", "ApiUser")])
async def devices_for_reservation(asked: Listed) -> dict[str, Any]:
    """Devices of every developer that no active reservation holds: what a buyer may reserve."""
    return await services.list_available_devices(asked.uow, asked.user, asked.organization_id, asked.query, asked.page)


# Before /device/{id}: these paths would otherwise be taken for a device id.
@router.get("/device/ungrouped", dependencies=[only_roles("Admin", "OrganizationAdmin", "DeviceOwner", "ApiUser")])
async def ungrouped_devices(
    uow: UoW,
    acting: Reading,
    query: Filters,
    orderBy: Annotated[
        list[str] | None,
        Query(description="required: one or more of " + ", ".join(domain.ORDER_BY) + " (repeated, or commas)"),
    ] = None,
) -> list[dict[str, Any]]:
    """The caller organization's devices that no active reservation holds, grouped by the `orderBy` fields
    (D-REC's GroupedDevicesDTO: `[{"name", "devices": [... "commissioningDateRange", "capacityRange",
    "selected"]}]`). The listing filters narrow them; at most 10,000 devices."""
    return await services.ungrouped_devices(uow, acting.user, acting.organization_id, orderBy, query)


@router.get("/device/my/totalamountread")
async def certified_totals(uow: UoW, acting: Reading) -> list[dict[str, Any]]:
    """Every device of the caller's organization: `{"externalId", "totalcertifiedReadValue", "totalReadValue", "id"}`.
    totalcertifiedReadValue: Wh certified for it (certificate.issued); totalReadValue: null, the sum of all
    its reads is the readings service's."""
    return await services.certified_totals(uow, acting.user, acting.organization_id)


@router.get("/device/my/autocomplete")
async def autocomplete(
    uow: UoW,
    acting: Reading,
    externalId: str | None = Query(
        None, max_length=domain.MAX_EXTERNAL_ID, description="required: the beginning of the externalIds"
    ),
    limit: int = Query(100, ge=1, le=1000, description="devices answered at most"),
) -> list[dict[str, Any]]:
    """The caller organization's devices whose externalId starts with `externalId`, by externalId."""
    return await services.autocomplete(uow, acting.user, acting.organization_id, externalId, limit)


@router.get("/admin/devices/autocomplete", tags=["admin"], dependencies=[only_roles("Admin")])
async def admin_autocomplete(
    uow: UoW,
    acting: Reading,
    externalId: str | None = Query(
        None, max_length=domain.MAX_EXTERNAL_ID, description="required: the beginning of the externalIds"
    ),
    limit: int = Query(100, ge=1, le=1000, description="devices answered at most"),
) -> list[dict[str, Any]]:
    """D-REC's admin autocomplete: devices of the organization named by `organizationId` (none named: of every
    organization) whose externalId starts with `externalId`, by externalId."""
    return await services.autocomplete(uow, acting.user, acting.organization_id, externalId, limit, admin_default="all")


IREC_REFUSED = (
    "OpenDREC does not register devices at the I-REC registry: it has no I-REC registry client or account. "
    "Register the device at I-REC yourself; its D-REC registration (GET /api/device/{id}) is unchanged"
)


@router.post(
    "/admin/add/device-into-Irec/{id}",
    status_code=410,
    tags=["admin"],
    dependencies=[only_roles("Admin")],
    responses={410: {"description": IREC_REFUSED}},
)
async def irec_registration_refused(
    id: int = Path(ge=1, le=MAX_ID, description="the device (not read)"),
    user: Principal = permission(MODULE, "Write"),
) -> None:
    """D-REC's registration of a device at the external I-REC registry. Refused: always 410 for admins (nobody
    else may call it), nothing is read or sent; OpenDREC has no I-REC registry client."""
    raise ApiError(410, IREC_REFUSED)


@router.put("/device/my/deviceOnBoardingDate", response_class=PlainTextResponse)
async def change_onboarding_date(
    request: Request,
    uow: UoW,
    deviceId: str | None = Query(
        None, max_length=domain.MAX_EXTERNAL_ID, description="required: the device's externalId"
    ),
    givenDate: str | None = Query(None, max_length=64, description="required: the new onboarding date (ISO 8601)"),
    acting: Acting = acting_for(MODULE, "Write"),
) -> PlainTextResponse:
    """Move a device's onboarding date back by up to six months; answers D-REC's sentence (text). Only where
    ONBOARDING_DATE_CHANGES_ENABLED (D-REC: dev mode), and never for a device with certified energy."""
    enabled = request.app.state.runtime.settings.onboarding_date_changes_enabled
    sentence = await services.change_onboarding_date(
        uow, acting.user, acting.organization_id, deviceId, givenDate, enabled=enabled
    )
    return PlainTextResponse(sentence)


@router.get("/device/certifiedlog/first&lastdate", dependencies=[only_roles("Admin", "Buyer", "SubBuyer", "ApiUser")])
async def certified_log(
    uow: UoW,
    acting: Reading,
    page: LogPaging,
    groupUid: str | None = Query(None, max_length=64, description="required: the reservation's uid"),
    externalId: int | None = Query(
        None, ge=1, le=MAX_ID, description="one device of the reservation, by its id (as D-REC names it)"
    ),
) -> dict[str, Any]:
    """First and last certified instants of a reservation's devices, for its buyer: of one device, or a page of
    every device with certificates (`{"certifieddevices_startToend", "totalItems", "currentPage", "totalPages"}`)."""
    return await services.certified_log(uow, acting.user, acting.organization_id, groupUid, externalId, page)


@router.get("/sdgbenefit")
async def sdg_benefits() -> list[dict[str, Any]]:
    """D-REC's SDG benefit records: `{"id", "SdgbenefitName", "sdgbenefitdescription", "sdgbenefitBitposition"}`."""
    return services.sdg_benefits()


SDG_BENEFIT_REFUSED = (
    "The SDG benefits are the 17 UN Sustainable Development Goals (GET /api/sdgbenefit/code), a fixed list: "
    "devices' SDGBenefits are checked against it (in D-REC too, whose added sdgbenefit rows no device can use), "
    "so none are added"
)


@router.post(
    "/sdgbenefit",
    status_code=410,
    dependencies=[only_roles("Admin")],
    responses={410: {"description": SDG_BENEFIT_REFUSED}},
)
async def add_sdg_benefit_refused(user: Principal = permission(MODULE, "Write")) -> None:
    """D-REC's addition of an SDG benefit row (there without a token). Refused: always 410 for admins (nobody
    else may call it), the body is not read: the list is the fixed 17 goals devices are checked against."""
    raise ApiError(410, SDG_BENEFIT_REFUSED)


@router.get("/sdgbenefit/code")
async def sdg_benefit_codes() -> list[dict[str, str]]:
    """D-REC's SDG benefit codes: `{"name": "SDG1", "value": "No Poverty"}`, ..."""
    return services.sdg_benefit_codes()


@router.get("/device/fuel-type")
async def fuel_types() -> list[dict[str, str]]:
    return services.fuel_types()


@router.get("/device/device-type")
async def device_types() -> list[dict[str, str]]:
    return services.device_types()


@router.get("/countrycode/list")
async def country_codes(searchKeyWord: str | None = Query(None, max_length=100)) -> list[dict[str, Any]]:
    return services.country_codes(searchKeyWord)


@router.get("/device/externalId/{externalId}")
async def device_by_external_id(
    uow: UoW,
    externalId: str = Path(max_length=domain.MAX_EXTERNAL_ID),
    acting: Acting = acting_for(MODULE, "Read"),
) -> dict[str, Any]:
    return await services.device_by_external_id(uow, acting.user, externalId, acting.organization_id)


@router.get("/device/{id}")
async def device_by_id(
    uow: UoW,
    id: int = Path(ge=1, le=MAX_ID),
    apiUserId: str | None = Query(None, max_length=100, description="API users: your API user id (as in D-REC)"),
    acting: Acting = acting_for(MODULE, "Read"),
) -> dict[str, Any]:
    return await services.device_by_id(uow, acting.user, id, acting.organization_id, apiUserId)


@router.patch("/device/{externalId}")
async def update_device(
    uow: UoW,
    externalId: str = Path(max_length=domain.MAX_EXTERNAL_ID),
    body: dict[str, Any] = Body(description="the D-REC device fields to change; the others keep their values"),
    acting: Acting = acting_for(MODULE, "Update"),
) -> dict[str, Any]:
    """Change some fields of a device; publishes device.updated with the full current state.
    API users name their Developer organization here or in the body."""
    named = acting.organization_id
    organization_id = named if named is not None else organization_in_body(body)
    return await services.update_device(uow, acting.user, externalId, organization_id, body)


@router.delete("/device/{id}")
async def delete_device(
    uow: UoW,
    id: int = Path(ge=1, le=MAX_ID),
    acting: Acting = acting_for(MODULE, "Delete"),
) -> dict[str, Any]:
    """Remove a device; refused (409) while an active reservation holds it or it has certified energy."""
    return await services.delete_device(uow, acting.user, id, acting.organization_id)
