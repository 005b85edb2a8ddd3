"""Which organization's devices and jobs a caller reaches: each rule stated once, for every use case.

Roles are checked by the routes' dependencies (they show in OpenAPI); which organization a caller acts
for, or sees, is settled here, against the organization directory (organization.registered), only
through the kit's `acting_organization` / `visible_organizations`.
"""

from __future__ import annotations

import asyncpg

from opendrec_kit import ApiError, Principal
from opendrec_kit.organizations import ADMIN, API_USER, acting_organization, visible_organizations

DEVELOPER = "Developer"
BUYER = "Buyer"


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
