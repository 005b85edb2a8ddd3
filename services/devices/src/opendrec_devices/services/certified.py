"""Use cases reading certified energy, as the certificates service announces it (certificate.issued):
certified totals per device, and the certified period of a reservation's devices.

Devices holds no meter reads (the readings service does): what it knows of a device's energy is what was
certified, in which reservation and over which period."""

from __future__ import annotations

import uuid
from typing import Any

from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso_or_none

from .. import domain, store
from . import access


async def certified_totals(uow: UnitOfWork, user: Principal, organization_id: int | None) -> list[dict[str, Any]]:
    """Every device of the caller's organization (an API user's: its Developer organizations') with its
    certified Wh (`totalcertifiedReadValue`). `totalReadValue`, D-REC's sum of all reads, is null: the
    reads are the readings service's."""
    async with uow.reading() as r:
        scope = await access.listing_scope(r.conn, user, organization_id, admin_default="own")
        rows = await store.certified_totals(r.conn, scope)
    return [
        {
            "externalId": row["external_id"],
            "totalcertifiedReadValue": row["certified_wh"],
            "totalReadValue": None,
            "id": row["id"],
        }
        for row in rows
    ]


def _reservation_uid(value: str | None) -> uuid.UUID:
    if not value or not value.strip():
        raise ApiError(400, "groupUid is required: the uid of the reservation (device group)")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise ApiError(
            400, f"groupUid {value!r} is not a reservation uid (a UUID)", [{"field": "groupUid", "where": "query"}]
        ) from None


async def certified_log(
    uow: UnitOfWork,
    user: Principal,
    organization_id: int | None,
    group_uid: str | None,
    device_id: int | None,
    page: Page,
) -> dict[str, Any]:
    """First and last certified instants of a reservation's devices: of one device (`device_id`), or a page
    of every device with certificates in it. For the reservation's buyer (and admins)."""
    async with uow.reading() as r:
        scope = await access.buyer_scope(r.conn, user, organization_id)
        uid = _reservation_uid(group_uid)
        buyer = await store.reservation_buyer(r.conn, uid)
        if buyer is None or not domain.within(scope, buyer):
            raise ApiError(404, f"No reservation {uid} of your organization")
        if device_id is not None:
            if not await store.reservation_holds(r.conn, uid, device_id):
                raise ApiError(404, f"Device {device_id} is not in reservation {uid}")
            span = await store.certified_range(r.conn, uid, device_id)
            device = await store.get_device(r.conn, device_id)
            external_id = device["external_id"] if device else None
            return {
                "firstcertifiedstartdate": iso_or_none(span["first"]),
                "lastcertifiedenddate": iso_or_none(span["last"]),
                "extenalId": external_id,  # sic: D-REC's spelling
                "externalId": external_id,
                "deviceId": device_id,
            }
        total, rows = await store.certified_ranges(r.conn, uid, page.limit, page.offset)
    return {
        "certifieddevices_startToend": [
            {
                "externalId": row["external_id"],
                "firstcertifiedstartdate": iso_or_none(row["first"]),
                "lastcertifiedenddate": iso_or_none(row["last"]),
                "deviceId": row["device_id"],
            }
            for row in rows
        ],
        "totalItems": total,
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
    }
