"""D-REC certificate log over HTTP."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from opendrec_kit import ApiError, Pool, Principal, permission

from . import store

router = APIRouter(tags=["certificates"])
MODULE = "CERTIFICATE_LOG_MANAGEMENT_CRUDL"


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


async def _certificate_log(pool, user: Principal, reservation_id: int | None, uid: uuid.UUID | None, pagenumber: int, limit: int) -> dict:  # noqa: ANN001
    async with pool.acquire() as conn:
        res = await store.reservation(conn, reservation_id=reservation_id, uid=uid)
        if res is None:
            raise ApiError(404, f"No reservation {reservation_id or uid} is known to the certificate log (yet)")
        # The buyer sees every certificate of its reservation; a device owner only those of its own devices.
        if user.role == "Admin" or res["buyer_organization_id"] == user.organization_id:
            owner = None
        elif await store.owns_any_device(conn, list(res["device_ids"]), user.organization_id):
            owner = user.organization_id
        else:  # not theirs: answer as if it did not exist, so ids leak nothing
            raise ApiError(404, f"No reservation {reservation_id or uid} is known to the certificate log (yet)")
        rows = await store.certificates_of_reservation(conn, res["reservation_id"], owner, limit, (pagenumber - 1) * limit)
    total = rows[0]["total"] if rows else 0
    return {
        "groupId": res["reservation_id"],
        "devicegroup_uid": str(res["uid"]),
        "reservationName": res["name"],
        "certificates": [_certificate(r) for r in rows],
        "totalEnergyWh": int(rows[0]["total_wh"]) if rows else 0,
        "currentPage": pagenumber,
        "totalPages": -(-total // limit),
        "totalCount": total,
    }


@router.get("/api/certificate-log/by-reservation-groupId", summary="Certificates of a reservation (by group id)")
async def by_reservation_group_id(
    pool: Pool,
    groupId: Annotated[int, Query(ge=1, description="The reservation (device group) id")],
    user: Principal = permission(MODULE, "Read"),
    pagenumber: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    return await _certificate_log(pool, user, groupId, None, pagenumber, limit)


@router.get("/api/certificate-log/issuer/certified/{groupUid}", summary="Certificates of a reservation (by group uid)")
async def by_reservation_uid(
    groupUid: uuid.UUID,
    pool: Pool,
    user: Principal = permission(MODULE, "Read"),
    pagenumber: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    return await _certificate_log(pool, user, None, groupUid, pagenumber, limit)
