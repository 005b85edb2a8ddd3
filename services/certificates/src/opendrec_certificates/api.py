"""D-REC certificate log over HTTP."""

from __future__ import annotations

import uuid
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Query

from opendrec_kit import ApiError, Pool, Principal, permission
from opendrec_kit.organizations import acting_organization, find_organization, visible_organizations
from opendrec_kit.paging import page_query

from . import domain, store

router = APIRouter(tags=["certificates"])
MODULE = "CERTIFICATE_LOG_MANAGEMENT_CRUDL"
MAX_ID = 2**63 - 1
OrganizationId = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="API users: the buyer organization of the reservation (required); others: their own",
    ),
]


Paging = Annotated[domain.Page, Depends(page_query(default_limit=100, max_limit=1000, what="certificates"))]


def _certificate(row) -> dict:
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
    pool,
    user: Principal,
    reservation_id: int | None,
    uid: uuid.UUID | None,
    page: domain.Page,
    organization_id: int | None,
    *,
    api_user_names_none: bool = False,
) -> dict:
    """`api_user_names_none`: an API user naming no organization sees the reservation if one of its Buyer
    organizations holds it (the D-REC .../certified/new/{groupUid} path has no organizationId)."""
    absent = f"No reservation {reservation_id or uid} is known to the certificate log (yet)"
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        if api_user_names_none and user.role == "ApiUser" and organization_id is None:
            own_buyers: list[int] | None = await visible_organizations(conn, user, None, organization_type="Buyer")
            viewer = None
        else:
            own_buyers, viewer = None, await _viewer(conn, user, organization_id)
        res = await store.reservation(conn, reservation_id=reservation_id, uid=uid)
        if res is None:
            raise ApiError(404, absent)
        # The buyer sees every certificate of its reservation; a device owner only those of its own devices.
        if own_buyers is not None:
            if res["buyer_organization_id"] not in own_buyers:
                raise ApiError(404, absent)
            owner = None
        elif viewer is None or res["buyer_organization_id"] == viewer:
            owner = None
        elif user.role != "ApiUser" and await store.owns_any_device(conn, list(res["device_ids"]), viewer):
            owner = viewer
        else:  # not theirs: answer as if it did not exist, so ids leak nothing
            raise ApiError(404, absent)
        totals = await store.reservation_totals(conn, res["reservation_id"], owner)
        rows = await store.certificates_of_reservation(conn, res["reservation_id"], owner, page.limit, page.offset)
    ended_at = res["ended_at"]
    return {
        "groupId": res["reservation_id"],
        "devicegroup_uid": str(res["uid"]),
        "reservationName": res["name"],
        "reservationStartDate": res["reservation_start"].isoformat(),
        "reservationEndDate": res["reservation_end"].isoformat(),
        "reservationEndedAt": ended_at.isoformat() if ended_at else None,  # set once reservation.ended was received
        "certificates": [_certificate(r) for r in rows],
        "totalEnergyWh": totals["energy_wh"],
        "currentPage": page.number,
        "totalPages": domain.total_pages(totals["count"], page.limit),
        "totalCount": totals["count"],
    }


@router.get("/api/certificate-log/by-reservation-groupId", summary="Certificates of a reservation (by group id)")
async def by_reservation_group_id(
    pool: Pool,
    page: Paging,
    groupId: Annotated[int, Query(ge=1, le=MAX_ID, description="The reservation (device group) id")],
    organizationId: OrganizationId = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    return await _certificate_log(pool, user, groupId, None, page, organizationId)


@router.get("/api/certificate-log/issuer/certified/{groupUid}", summary="Certificates of a reservation (by group uid)")
async def by_reservation_uid(
    groupUid: uuid.UUID,
    pool: Pool,
    page: Paging,
    organizationId: OrganizationId = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    return await _certificate_log(pool, user, None, groupUid, page, organizationId)


@router.get(
    "/api/certificate-log/issuer/certified/new/{groupUid}",
    summary="Certificates of a reservation (by group uid; D-REC API-user manual 8.2)",
)
async def by_reservation_uid_new(
    groupUid: uuid.UUID,
    pool: Pool,
    page: Paging,
    organizationId: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="The buyer organization of the reservation (optional: API users see their Buyer organizations')",
        ),
    ] = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    return await _certificate_log(pool, user, None, groupUid, page, organizationId, api_user_names_none=True)


async def _log_owner(
    conn: asyncpg.Connection, user: Principal, organization_id: int | None
) -> tuple[int | None, str | None]:
    """(organization, view) of an organization's certificate log: view "owner" (a Developer: its devices'
    certificates) or "buyer" (a Buyer: its reservations'); (None, None) for an admin naming none: all."""
    if user.role == "Admin" and organization_id is None:
        return None, None
    org = await acting_organization(conn, user, organization_id)
    if org == user.organization_id and user.role != "ApiUser":
        kind = user.organization_type
    else:
        known = await find_organization(
            conn, org
        )  # acting_organization found it: an API user's or an admin's named one
        kind = known.organization_type if known else ""
    view = domain.organization_view(kind)
    if view is None:
        raise ApiError(
            403,
            f"Organization {org} is a {kind or 'unknown'} organization; this log is of a Developer or Buyer organization",
        )
    return org, view


@router.get(
    "/api/certificate-log/issuer/certifiedlogOfdevices",
    summary="Certificates of an organization: a developer's devices or a buyer's reservations (D-REC API-user manual 8.1)",
)
async def certified_log_of_devices(
    pool: Pool,
    page: Paging,
    organizationId: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="API users: one of their Developer or Buyer organizations (required); admins: any; others: their own",
        ),
    ] = None,
    user: Principal = permission(MODULE, "Read"),
) -> dict:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        org, view = await _log_owner(conn, user, organizationId)
        owner, buyer = (org, None) if view == "owner" else (None, org)
        totals = await store.organization_totals(conn, owner, buyer)
        rows = await store.organization_certificates(conn, owner, buyer, page.limit, page.offset)
    return {
        "organizationId": org,
        "view": {"owner": "developer", "buyer": "buyer"}.get(view or "", "all"),
        "certificatelog": [
            {**_certificate(r), "devicegroup_uid": str(r["reservation_uid"]), "reservationName": r["reservation_name"]}
            for r in rows
        ],
        "totalEnergyWh": totals["energy_wh"],
        "currentPage": page.number,
        "totalPages": domain.total_pages(totals["count"], page.limit),
        "totalCount": totals["count"],
    }
