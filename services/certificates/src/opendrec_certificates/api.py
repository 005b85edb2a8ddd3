"""D-REC certificate log over HTTP: parse, authorize, call a use case (services.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from opendrec_kit import UoW
from opendrec_kit.organizations import MAX_ID, Acting, acting_for
from opendrec_kit.paging import Page, page_query
from opendrec_kit.runtime import Owners

from . import services

router = APIRouter(tags=["certificates"])
MODULE = "CERTIFICATE_LOG_MANAGEMENT_CRUDL"
Paging = Annotated[Page, Depends(page_query(default_limit=100, max_limit=1000, what="certificates"))]
Reading = Annotated[Acting, acting_for(MODULE, "Read")]


def _learning(request: Request, owners: Owners) -> services.Learning:
    """Read-your-writes: a reservation missing here is asked of its owner and certified as its event would be
    (the settlement the handlers use, app.state.settlement)."""
    settlement = request.app.state.settlement
    return services.Learning(owners, settlement.settle, settlement.clock())


Learning = Annotated[services.Learning, Depends(_learning)]


TOTAL_COUNT = "X-Total-Count"  # a bare array's total over every page


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
) -> dict[str, Any]:
    """`organizationId`: API users name one of their Developer or Buyer organizations (required); admins any
    (none: every certificate); others their own."""
    return await services.organization_log(uow, acting.user, page, acting.organization_id)


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
