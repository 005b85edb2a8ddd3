"""Which organization's devices and jobs a caller reaches: each rule stated once, for every use case.

Roles are checked by the routes' dependencies (they show in OpenAPI); which organization a caller acts
for, or sees, is settled here, against the organization directory (organization.registered), only
through the kit's `acting_organization` / `visible_organizations`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from opendrec_kit import ApiError, Principal
from opendrec_kit.organizations import (
    ADMIN,
    API_USER,
    acting_organization,
    api_user_organizations,
    visible_organizations,
)

DEVICE_MODULE = "DEVICE_MANAGEMENT_CRUDL"  # the module every device read needs Read on
DEVELOPER = "Developer"
BUYER = "Buyer"
BUYER_ROLES = ("Buyer", "SubBuyer")  # with Admin and ApiUser: who lists the devices a buyer may reserve


async def developer_organization(
    conn: asyncpg.Connection, user: Principal, organization_id: int | None, doing: str
) -> int:
    """The Developer organization a write (registration, bulk onboarding) is for: an API user's
    named one, an admin's named one, anyone else's own."""
    if user.role == ADMIN and organization_id in (None, user.organization_id):
        raise ApiError(400, f"organizationId is required: an admin {doing} for the Developer organization it names")
    if user.role not in (ADMIN, API_USER) and user.organization_type != DEVELOPER:
        raise ApiError(
            403,
            f"Only Developer organizations {doing}; your organization is of type {user.organization_type or 'unknown'}",
        )
    return await acting_organization(conn, user, organization_id, organization_type=DEVELOPER)


async def device_scope(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> int | None:
    """The organization a single-device request looks in (None: any, for an admin naming none).
    An admin looks in the one it names; an API user names one of its Developer organizations; others
    get their own."""
    if user.role == ADMIN:
        return organization_id
    kind = DEVELOPER if user.role == API_USER else None
    return await acting_organization(conn, user, organization_id, organization_type=kind)


async def listing_scope(
    conn: asyncpg.Connection, user: Principal, organization_id: int | None, *, admin_default: str
) -> list[int] | None:
    """Organizations a listing shows (None: all). An API user naming none sees all its Developer
    organizations; an admin naming none sees its own ("own") or every one ("all")."""
    if user.role == ADMIN:
        if organization_id is not None:
            return [organization_id]
        return None if admin_default == "all" else [user.organization_id]
    kind = DEVELOPER if user.role == API_USER else None
    return await visible_organizations(conn, user, organization_id, organization_type=kind)


async def check_buyer(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> None:
    """The buyer a reservation listing is for: an API user's named Buyer organization, a buyer's own
    (an admin naming none needs none)."""
    if user.role != ADMIN or organization_id is not None:
        await acting_organization(conn, user, organization_id, organization_type=BUYER)


async def buyer_scope(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> list[int] | None:
    """Buyer organizations whose reservations a caller reads (None: all, for an admin naming none): a
    buyer's own, an API user's named one (or all its Buyer organizations)."""
    return await visible_organizations(conn, user, organization_id, organization_type=BUYER)


@dataclass(frozen=True)
class DeviceSight:
    """Which devices a caller sees through the public API, whatever organization it names: those of
    `organizations` (None: every one), and, for a caller who may reserve (`reservable`), every device no active
    reservation holds (what GET /api/device/ungrouped/buyerreservation shows it)."""

    organizations: list[int] | None
    reservable: bool = False

    def sees(self, organization_id: int, available: bool) -> bool:
        if self.organizations is None or organization_id in self.organizations:
            return True
        return self.reservable and available


async def device_sight(conn: asyncpg.Connection, user: Principal) -> DeviceSight:
    """What `device_scope` (GET /api/device/{id}) and the buyer listing let the caller see, over every
    organization it may name: an admin every device; an API user its Developer organizations' devices, and the
    reservable ones when it has a Buyer organization; a buyer (Buyer, SubBuyer of a Buyer organization) its own
    organization's and the reservable ones; anyone else its own organization's. Nothing without Read on
    DEVICE_MANAGEMENT_CRUDL. (An API user's organizations are those of the directory; see `devices_seen`.)"""
    if not user.can(DEVICE_MODULE, "Read"):
        return DeviceSight([])
    if user.role == ADMIN:
        return DeviceSight(None)
    if user.role == API_USER:
        if not user.api_user_id:
            return DeviceSight([])
        return DeviceSight(
            await api_user_organizations(conn, user.api_user_id, DEVELOPER),
            reservable=bool(await api_user_organizations(conn, user.api_user_id, BUYER)),
        )
    reservable = user.role in BUYER_ROLES and user.organization_type == BUYER
    return DeviceSight([user.organization_id], reservable=reservable)


async def may_read_devices_of(conn: asyncpg.Connection, user: Principal, organization_id: int) -> bool:
    """Whether the caller may read the devices of `organization_id` naming it (as `device_scope` allows:
    an admin any, an API user its Developer organizations, anyone else its own). An organization identity
    registered a moment ago is asked of identity (the kit's `acting_organization`); identity not answering
    stays a 503."""
    if not user.can(DEVICE_MODULE, "Read"):
        return False
    try:
        scope = await device_scope(conn, user, organization_id)
    except ApiError as refused:
        if refused.status >= 500:
            raise
        return False
    return scope in (None, organization_id)


async def devices_seen(
    conn: asyncpg.Connection, user: Principal, rows: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The devices among `rows` (each with `available`) the caller sees (`device_sight`). An API user's
    organization the directory does not hold yet (identity registered it a moment ago) is checked by name, as
    GET /api/device/{id}?organizationId= would (once per organization)."""
    if not rows:
        return []
    sight = await device_sight(conn, user)
    named: dict[int, bool] = {}
    seen = []
    for row in rows:
        organization_id = row["organization_id"]
        if sight.sees(organization_id, row["available"]):
            seen.append(row)
        elif user.role == API_USER:
            if organization_id not in named:
                named[organization_id] = await may_read_devices_of(conn, user, organization_id)
            if named[organization_id]:
                seen.append(row)
    return seen
