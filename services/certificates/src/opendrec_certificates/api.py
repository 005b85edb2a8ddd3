"""D-REC certificate log over HTTP."""

from __future__ import annotations

import uuid
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query

from opendrec_kit import ApiError, Pool, Principal, permission
from opendrec_kit.organizations import acting_organization

from . import domain, store

router = APIRouter(tags=["certificates"])
MODULE = "CERTIFICATE_LOG_MANAGEMENT_CRUDL"
MAX_ID = 2**63 - 1
OrganizationId = Annotated[
    int | None,
    Query(ge=1, le=MAX_ID, description="API users: the buyer organization of the reservation (required); others: their own"),
]


def paging(
    pageNumber: Annotated[int | None, Query(ge=1, le=1_000_000, description="1-based page number (default 1)")] = None,  # noqa: N803 (D-REC names)
    pagenumber: Annotated[int | None, Query(ge=1, le=1_000_000, include_in_schema=False)] = None,  # older spelling
    limit: Annotated[int, Query(ge=1, le=1000, description="certificates per page")] = 100,
) -> domain.Page:
    if pageNumber is not None and pagenumber is not None and pageNumber != pagenumber:
        raise ApiError(400, "pageNumber and pagenumber disagree: give one of them")
    return domain.Page(pageNumber or pagenumber or 1, limit)


Paging = Annotated[domain.Page, Depends(paging)]


def _certificate(row) -> dict:  # noqa: ANN001
    return {
        "id": str(row["id"]),
        "groupId": row["reservation_id"],
        "deviceId": row["device_id"],
        "externalId": row["external_id"],
        "certificateStartDate": row["generation_start"].isoformat(),
        "certificateEndDate": row["generation_end"].isoformat(),
        "energyWh": row["energy_wh"],
        "ownerOrganizationId": row["owner_organization_id"],
        "buyerOrganizationId": row["buyer_organization_id"],
        "status": row["status"],
        "issuedAt": row["issued_at"].isoformat(),
    }


async def _viewer(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> int | None:
    """The organization whose view of the log this is (None: an admin naming none sees everything).
    An API user names one of its Buyer organizations: it sees the certificates of that organization's reservations."""
    if user.role == "Admin" and organization_id is None:
        return None
    kind = "Buyer" if user.role == "ApiUser" else None
    return await acting_organization(conn, user, organization_id, organization_type=kind)


async def _certificate_log(
    pool, user: Principal, reservation_id: int | None, uid: uuid.UUID | None, page: domain.Page, organization_id: int | None  # noqa: ANN001
) -> dict:
    absent = f"No reservation {reservation_id or uid} is known to the certificate log (yet)"
    async with pool.acquire() as conn:
        viewer = await _viewer(conn, user, organization_id)
        res = await store.reservation(conn, reservation_id=reservation_id, uid=uid)
        if res is None:
            raise ApiError(404, absent)
        # The buyer sees every certificate of its reservation; a device owner only those of its own devices.
        if viewer is None or res["buyer_organization_id"] == viewer:
            owner = None
        elif user.role != "ApiUser" and await store.owns_any_device(conn, list(res["device_ids"]), viewer):
            owner = viewer
        else:  # not theirs: answer as if it did not exist, so ids leak nothing
            raise ApiError(404, absent)
        rows = await store.certificates_of_reservation(conn, res["reservation_id"], owner, page.limit, page.offset)
    total = rows[0]["total"] if rows else 0
    ended_at = res["ended_at"]
    return {
        "groupId": res["reservation_id"],
        "devicegroup_uid": str(res["uid"]),
        "reservationName": res["name"],
        "reservationStartDate": res["reservation_start"].isoformat(),
        "reservationEndDate": res["reservation_end"].isoformat(),
        "reservationEndedAt": ended_at.isoformat() if ended_at else None,  # set once reservation.ended was received
        "certificates": [_certificate(r) for r in rows],
        "totalEnergyWh": int(rows[0]["total_wh"]) if rows else 0,
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }


@router.get("/api/certificate-log/by-reservation-groupId", summary="Certificates of a reservation (by group id)")
async def by_reservation_group_id(
    pool: Pool,
    page: Paging,
    groupId: Annotated[int, Query(ge=1, le=MAX_ID, description="The reservation (device group) id")],  # noqa: N803
    organizationId: OrganizationId = None,  # noqa: N803
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    return await _certificate_log(pool, user, groupId, None, page, organizationId)


@router.get("/api/certificate-log/issuer/certified/{groupUid}", summary="Certificates of a reservation (by group uid)")
async def by_reservation_uid(
    groupUid: uuid.UUID,  # noqa: N803
    pool: Pool,
    page: Paging,
    organizationId: OrganizationId = None,  # noqa: N803
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    return await _certificate_log(pool, user, None, groupUid, page, organizationId)
