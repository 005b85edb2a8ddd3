"""D-REC certificate log over HTTP: parse, authorize, call a use case (services.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from opendrec_kit import UoW, permission
from opendrec_kit.errors import ApiError
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query
from opendrec_kit.runtime import Owners

from . import domain, services

router = APIRouter(tags=["certificates"])
MODULE = "CERTIFICATE_LOG_MANAGEMENT_CRUDL"
Paging = Annotated[Page, Depends(page_query(default_limit=100, max_limit=1000, what="certificates"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]
# D-REC's certificateReadModule answers 3 a page (its pageSize)
ReadModulePaging = Annotated[Page, Depends(page_query(default_limit=3, max_limit=1000, what="certificates"))]
ExportPaging = Annotated[
    Page,
    Depends(page_query(default_limit=services.EXPORT_MAX_ROWS, max_limit=services.EXPORT_MAX_ROWS, what="parts")),
]


def _learning(request: Request, owners: Owners) -> services.Learning:
    """Read-your-writes: a reservation missing here is asked of its owner and certified as its event would be
    (the settlement the handlers use, app.state.settlement)."""
    settlement = request.app.state.settlement
    return services.Learning(owners, settlement.settle, settlement.clock(), settlement.watermarked)


Learning = Annotated[services.Learning, Depends(_learning)]


TOTAL_COUNT = "X-Total-Count"  # a bare array's total over every page

Moment = Annotated[datetime | None, Query(description="ISO 8601; without a zone: UTC")]
Codes = Annotated[list[str] | None, Query(description="Repeated or comma-separated; any of the values")]
Capacity = Annotated[float | None, Query(ge=0, le=domain.MAX_CAPACITY_KW, allow_inf_nan=False, description="kW")]
Amount = Annotated[int | None, Query(ge=0, le=domain.MAX_WH, description="Wh of the entry")]


@router.get(
    "/api/certificate-log/by-reservation-groupId",
    summary="Certificates of a reservation (by group id), as D-REC's per-device issue log",
)
async def by_reservation_group_id(
    uow: UoW,
    acting: Reading,
    page: Paging,
    learning: Learning,
    response: Response,
    groupId: Annotated[int, Query(ge=1, le=MAX_ID, description="The reservation (device group) id")],
) -> list[dict[str, Any]]:
    """A bare array, one entry per certificate (D-REC's CheckCertificateIssueDateLogForDeviceEntity fields, with
    ours); the number over every page in the `X-Total-Count` header. `organizationId`: API users name the buyer
    organization of the reservation (required); others: their own."""
    entries, total = await services.device_issue_log(uow, acting.user, page, acting.organization_id, learning, groupId)
    response.headers[TOTAL_COUNT] = str(total)
    return entries


@router.get("/api/certificate-log/issuer/certified/{groupUid}", summary="Certificates of a reservation (by group uid)")
async def by_reservation_uid(
    groupUid: uuid.UUID,
    uow: UoW,
    acting: Reading,
    page: Paging,
    learning: Learning,
) -> dict[str, Any]:
    """`organizationId`: API users name the buyer organization of the reservation (required); others: their own."""
    return await services.certificate_log(uow, acting.user, page, acting.organization_id, learning, groupUid)


@router.get(
    "/api/certificate-log/issuer/certified/new/{groupUid}",
    summary="Certificates of a reservation (by group uid; D-REC API-user manual 8.2)",
)
async def by_reservation_uid_new(
    groupUid: uuid.UUID,
    uow: UoW,
    acting: Reading,
    page: Paging,
    learning: Learning,
) -> dict[str, Any]:
    """`organizationId`: the buyer organization of the reservation, optional: an API user naming none sees the
    reservation if one of its Buyer organizations holds it."""
    return await services.certificate_log(
        uow, acting.user, page, acting.organization_id, learning, groupUid, api_user_names_none=True
    )


@router.get(
    "/api/certificate-log/issuer/certifiedlogOfdevices",
    summary="Certificates of an organization: a developer's devices or a buyer's reservations (D-REC API-user manual 8.1)",
)
async def certified_log_of_devices(
    uow: UoW,
    acting: Reading,
    page: Paging,
    externalId: Codes = None,
    country: Codes = None,
    fuelCode: Codes = None,
    deviceTypeCode: Codes = None,
    offTaker: Codes = None,
    fromCapacity: Capacity = None,
    toCapacity: Capacity = None,
    fromCommissioningDate: Moment = None,
    toCommissioningDate: Moment = None,
    start_date: Moment = None,
    end_date: Moment = None,
    fromAmountread: Amount = None,
    toAmountread: Amount = None,
    SDGBenefits: Codes = None,
    oldcertificatelog: Annotated[
        bool | None, Query(description="D-REC's: true the old log (certificates issued before D-REC's issuance)")
    ] = None,
) -> dict[str, Any]:
    """`organizationId`: API users name one of their Developer or Buyer organizations (required); admins any
    (none: every certificate); others their own. Filters (D-REC's names where its FilterDTO has them), all applying
    together: `externalId` (the devices'), `country`, `fuelCode`, `deviceTypeCode`, `offTaker` (each repeated or
    comma-separated, any of the values), `fromCapacity`/`toCapacity` (kW), `fromCommissioningDate`/
    `toCommissioningDate`, `start_date`/`end_date` (generated in part in [start_date, end_date)), `fromAmountread`/
    `toAmountread` (the entry's Wh), `SDGBenefits` (any of the device's); a filter on the device leaves out devices
    not registered here (yet). `oldcertificatelog=true`: D-REC's old log (the legacy certificates) instead of the
    new one; the answer's `oldcertificatelog` says whether the view holds any."""
    query = services.OrganizationLogQuery(
        externalId or [],
        country or [],
        fuelCode or [],
        deviceTypeCode or [],
        offTaker or [],
        fromCapacity,
        toCapacity,
        _utc(fromCommissioningDate),
        _utc(toCommissioningDate),
        _utc(start_date),
        _utc(end_date),
        fromAmountread,
        toAmountread,
        SDGBenefits or [],
        oldcertificatelog,
    )
    return await services.organization_log(uow, acting.user, page, acting.organization_id, query)


@router.get(
    "/api/buyer-reservation/certificatelog/{id}",
    summary="A reservation's certificate issuance log (D-REC's device-group issue log)",
)
async def reservation_issue_log(
    id: Annotated[int, Path(ge=1, le=MAX_ID, description="The reservation (device group) id")],
    uow: UoW,
    acting: Reading,
    page: Paging,
    learning: Learning,
    response: Response,
) -> list[dict[str, Any]]:
    """A bare array, one entry per certificate (D-REC's CheckCertificateIssueDateLogForDeviceGroupEntity fields,
    with ours); the number over every page in the `X-Total-Count` header. Seen as the other reservation logs:
    `organizationId` names the buyer organization for API users (required); others: their own."""
    entries, total = await services.group_issue_log(uow, acting.user, page, acting.organization_id, learning, id)
    response.headers[TOTAL_COUNT] = str(total)
    return entries


@router.get(
    "/api/certificate-log", summary="Every certificate issue log entry the caller may see (D-REC's per-device log)"
)
async def all_issue_logs(uow: UoW, acting: Reading, page: Paging, response: Response) -> list[dict[str, Any]]:
    """D-REC answers every device's issue log, unpaged. Here a bare array of the entries the caller's organization
    may see (a Developer organization: its devices' certificate parts; a Buyer organization: its reservations';
    an admin naming none: all), one page (`pageNumber`, `limit`), the number over every page in `X-Total-Count`.
    `organizationId`: API users name one of their Developer or Buyer organizations (required); others: their own."""
    entries, total = await services.all_issue_logs(uow, acting.user, page, acting.organization_id)
    response.headers[TOTAL_COUNT] = str(total)
    return entries


@router.get(
    "/api/certificate-log/claim-amount-in-ethers-json",
    status_code=410,
    summary="Refused: an amount in a blockchain token's base unit (no blockchain here)",
    responses={410: {"description": services.CLAIM_AMOUNT_REFUSED}},
)
async def claim_amount_in_ethers(user: Annotated[Any, permission(MODULE, "Read")]) -> None:
    """D-REC formats `amount` in ethers' base unit for a blockchain claim. OpenDREC keeps no blockchain: always 410
    (after the caller's access is checked, as D-REC's), naming the registry's retirements; `amount` is not read."""
    raise ApiError(410, services.CLAIM_AMOUNT_REFUSED)


def _utc(moment: datetime | None) -> datetime | None:
    """A moment without a zone is UTC (D-REC reads it with `new Date`)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _device_filter(request: Request, text: str | None) -> dict[str, object]:
    """D-REC's deviceFilter object: sent as JSON (`deviceFilter={"countryCode":"IND"}`) or as a query-string
    object (`deviceFilter[countryCode]=IND`, `deviceFilter[offTakers][]=School` repeated: how an Express client
    sends it; a repeated field is a list)."""
    fields: dict[str, object] = {}
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            message = 'deviceFilter is a JSON object, e.g. {"countryCode": "IND"}'
            raise ApiError(400, message, [{"field": "deviceFilter", "message": message, "where": "query"}])
        fields.update(parsed)
    for key, value in request.query_params.multi_items():
        if key.startswith("deviceFilter["):
            name = key.removeprefix("deviceFilter[").split("]")[0]
            earlier = fields.get(name)
            if earlier is None:
                fields[name] = [value] if key.endswith("[]") else value
            else:
                fields[name] = [*(earlier if isinstance(earlier, list) else [earlier]), value]
    return fields


@router.get(
    "/api/certificate-log/certificateReadModule",
    summary="The organization's certificates, filtered by generation period, reservation volume and devices",
)
async def certificate_read_module(
    request: Request,
    uow: UoW,
    acting: Reading,
    page: ReadModulePaging,
    certificateStartDate: Moment = None,
    certiifcateEndDate: Moment = None,
    certificateEndDate: Annotated[
        datetime | None, Query(description="certiifcateEndDate (D-REC's spelling), spelled correctly")
    ] = None,
    targetVolumeCertificateGenerationRequestedInMegaWattHour: Annotated[
        Decimal | None,
        Query(ge=0, le=10**12, description="Only reservations whose target is at most this many MWh"),
    ] = None,
    deviceFilter: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="D-REC's deviceFilter as JSON or `deviceFilter[field]=`: `countryCode`, `fuelCode`, "
            "`deviceTypeCodes`, `offTakers`, `SDGBenefits` (lists: any of them), `fromCapacity`/`toCapacity` (kW), "
            "`fromCommissioningDate`/`toCommissioningDate`; gridInterconnection, aggregatedCapacity, yieldValue: 400",
        ),
    ] = None,
) -> dict[str, Any]:
    """D-REC's `{result, pageNumber, totalPages, totalCount}`: the issuer's certificates (`crm_` columns) with
    ours, 3 a page unless `limit` says otherwise; a page past the last one 404. A certificate is in when it was
    generated in part between `certificateStartDate` and `certiifcateEndDate` (either may be left open).
    `organizationId`: API users name one of their Developer or Buyer organizations (required); others: their own;
    a Developer organization sees the certificates of its devices, a Buyer organization those of its reservations."""
    end = _utc(certiifcateEndDate)
    correct = _utc(certificateEndDate)
    if end is not None and correct is not None and end != correct:
        raise ApiError(400, "certiifcateEndDate and certificateEndDate disagree: give one of them")
    query = services.ReadModuleQuery(
        _utc(certificateStartDate),
        end or correct,
        targetVolumeCertificateGenerationRequestedInMegaWattHour,
        _device_filter(request, deviceFilter),
    )
    return await services.certificate_read_module(uow, acting.user, page, acting.organization_id, query)


async def _export(
    groupUid: uuid.UUID, uow: UoW, acting: Reading, page: ExportPaging, learning: Learning
) -> StreamingResponse:
    """A reservation's per-device certificate log as CSV, streamed (D-REC's columns, then ours; cells that a
    spreadsheet would read as a formula start with an apostrophe). At most 100,000 parts an answer (`limit`; the
    next ones with `pageNumber`), the number over every page in `X-Total-Count`. Seen as the other reservation logs:
    the buyer organization, an API user one of whose Buyer organizations holds it (or naming it), a device owner
    (its own devices' parts), an admin; 404 otherwise."""
    export = await services.per_device_export(uow, acting.user, page, acting.organization_id, learning, groupUid)
    return StreamingResponse(
        export.chunks,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            TOTAL_COUNT: str(export.total),
        },
    )


CSV_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"description": "The CSV file", "content": {"text/csv": {"schema": {"type": "string"}}}}
}
router.get(
    "/api/certificate-log/expoert_perdevice/{groupUid}",
    summary="A reservation's per-device certificate log as CSV (D-REC's path, as spelled there)",
    response_class=StreamingResponse,
    responses=CSV_ANSWER,
)(_export)
router.get(
    "/api/certificate-log/export_perdevice/{groupUid}",
    summary="A reservation's per-device certificate log as CSV",
    response_class=StreamingResponse,
    responses=CSV_ANSWER,
)(_export)


# -- D-REC's issuer triggers (drec-issuer.controller.ts): unauthenticated cron hooks there, refused here ------------


def _refuse_issuer(method: str, path: str, summary: str) -> None:
    message = services.issuer_refused(method, path)

    async def refused() -> None:
        raise ApiError(410, message)

    refused.__name__ = "issuer_" + path.rsplit("/", 1)[-1].replace("-", "_")
    refused.__doc__ = (
        "Public, as D-REC's (no token): nothing is triggered, for anyone; always 410. " + summary + " " + message
    )
    router.add_api_route(
        path,
        refused,
        methods=[method],
        status_code=410,
        tags=["drec-issuer"],
        summary=f"Refused: {summary}",
        responses={410: {"description": message}},
    )


_refuse_issuer("GET", "/api/drec-issuer/ongoing", "D-REC's trigger of ongoing issuance")
_refuse_issuer("GET", "/api/drec-issuer/history", "D-REC's trigger of historical issuance")
_refuse_issuer("POST", "/api/drec-issuer", "D-REC's re-issue of certificates for failed data (the body is not read)")
_refuse_issuer("GET", "/api/drec-issuer/lateongoing", "D-REC's trigger of late ongoing issuance")
_refuse_issuer("POST", "/api/drec-issuer/missinglateongoing/onetimerun", "D-REC's one-time catch-up of late cycles")
