"""Which organization a request acts for.

A user acts for their own organization. An API user acts for the Developer and Buyer
organizations registered under it and names one with `organizationId` (as in the D-REC API
user manual); never for another API user's. Services learn organizations from
organization.registered into `organization_directory` (call `runtime.follow_organizations()`).

A route takes the caller and the organization they name in one dependency,
`acting: Acting = acting_for(MODULE, "Read")`, and hands both to its use case, which resolves
the organization with `acting_organization` / `visible_organizations` on its unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
from fastapi import Depends, Query, Request

from opendrec_contracts import OrganizationRegistered

from .auth import Principal, permission
from .errors import ApiError
from .uow import UnitOfWork

if TYPE_CHECKING:
    from .runtime import ServiceRuntime

ADMIN = "Admin"
API_USER = "ApiUser"
MAX_ID = 2**63 - 1  # ids are Postgres bigints

ACTING_FOR = "The organization acted for: required for API users, else your own"


def organization_query(description: str = ACTING_FOR) -> Any:
    """The `organizationId` query parameter with another description (e.g. a filter):
    `organizationId: Annotated[int | None, organization_query("only this organization's users")] = None`."""
    return Query(ge=1, le=MAX_ID, description=description)


# The one `organizationId` query parameter: which organization a request acts for (or lists).
OrganizationQuery = Annotated[int | None, organization_query()]


@dataclass(frozen=True)
class Acting:
    """The caller and the organization they named with `organizationId` (None: none named), not yet
    resolved: the use case does that (`acting_organization` / `visible_organizations`)."""

    user: Principal
    organization_id: int | None


def acting_for(module: str, action: str) -> Any:
    """Route dependency: `acting: Acting = acting_for(MODULE, "Read")` declares the `organizationId`
    query parameter (`OrganizationQuery`) and requires `permission(module, action)` (so `access_of`
    reads the same access rule)."""
    allowed = permission(module, action)

    async def acting(request: Request, organizationId: OrganizationQuery = None, user: Principal = allowed) -> Acting:
        # Only these two roles name other organizations (others are refused by the use case anyway).
        if organizationId not in (None, user.organization_id) and user.role in (API_USER, ADMIN):
            await learn_organization(request.app.state.runtime, user, organizationId)
        return Acting(user, organizationId)

    return Depends(acting)


@dataclass(frozen=True)
class KnownOrganization:
    organization_id: int
    name: str
    organization_type: str
    api_user_id: str | None


async def remember_organization(event: OrganizationRegistered, uow: UnitOfWork) -> None:
    await uow.conn.execute(
        "INSERT INTO organization_directory (organization_id, name, organization_type, api_user_id) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id) DO UPDATE "
        "SET name = EXCLUDED.name, organization_type = EXCLUDED.organization_type, api_user_id = EXCLUDED.api_user_id",
        event.organization_id,
        event.name,
        event.organization_type,
        event.api_user_id,
    )


async def learn_organization(runtime: ServiceRuntime[Any], principal: Principal, organization_id: int) -> None:
    """Read-your-writes for organizations: an API user (or an admin) may name an organization identity registered
    a moment ago, before organization.registered reached this service. On a miss, identity is asked once on the
    caller's behalf (opendrec_kit.owners) and its answer kept as the event would be. Only those two roles name
    other organizations; ids known here are remembered in the process, so the hot path costs a set lookup."""
    known = runtime.known_organizations
    if (
        principal.role not in (API_USER, ADMIN)
        or organization_id == principal.organization_id
        or organization_id in known
    ):
        return
    async with runtime.uow().reading() as r:
        found = await find_organization(r.conn, organization_id)
    if found is None:
        for learned in await runtime.owners.ask("identity", f"/organizations/{organization_id}", principal):
            if isinstance(learned.event, OrganizationRegistered):
                async with runtime.uow() as uow:
                    await remember_organization(learned.event, uow)
                    found = await find_organization(uow.conn, organization_id)
    if found is not None:
        if len(known) >= 100_000:  # bounded: forget and learn again from the table
            known.clear()
        known.add(organization_id)


async def find_organization(conn: asyncpg.Connection | asyncpg.Pool, organization_id: int) -> KnownOrganization | None:
    row = await conn.fetchrow(
        "SELECT organization_id, name, organization_type, api_user_id FROM organization_directory WHERE organization_id = $1",
        organization_id,
    )
    return KnownOrganization(**dict(row)) if row else None


async def api_user_organizations(
    conn: asyncpg.Connection | asyncpg.Pool, api_user_id: str, organization_type: str | None = None
) -> list[int]:
    """The organizations registered under this API user (of one type, if given), oldest first."""
    rows = await conn.fetch(
        "SELECT organization_id FROM organization_directory "
        "WHERE api_user_id = $1 AND ($2::text IS NULL OR organization_type = $2) ORDER BY organization_id",
        api_user_id,
        organization_type,
    )
    return [r["organization_id"] for r in rows]


def _check_type(organization_id: int, actual: str, required: str | None) -> None:
    if required and actual != required:
        raise ApiError(
            403, f"Organization {organization_id} is a {actual} organization; this needs a {required} organization"
        )


async def acting_organization(
    conn: asyncpg.Connection | asyncpg.Pool,
    principal: Principal,
    organization_id: int | None,
    *,
    organization_type: str | None = None,
) -> int:
    """The organization this request acts for, or a 400/403/404 saying why not.

    - API user: `organizationId` is required and must be one of its organizations (of the required type).
    - Admin: any known organization (its own when none is named).
    - Anyone else: their own organization; naming another one is refused.
    """
    if principal.role == API_USER:
        if organization_id is None:
            kind = f"{organization_type} " if organization_type else ""
            raise ApiError(400, f"organizationId is required: an API user acts for one of its {kind}organizations")
        known = await find_organization(conn, organization_id)
        if known is None or not principal.api_user_id or known.api_user_id != principal.api_user_id:
            raise ApiError(403, f"Organization {organization_id} is not one of your organizations")
        _check_type(organization_id, known.organization_type, organization_type)
        return organization_id
    if principal.role == ADMIN:
        if organization_id is None or organization_id == principal.organization_id:
            return principal.organization_id
        known = await find_organization(conn, organization_id)
        if known is None:
            raise ApiError(404, f"Organization {organization_id} does not exist")
        _check_type(organization_id, known.organization_type, organization_type)
        return organization_id
    if organization_id is not None and organization_id != principal.organization_id:
        raise ApiError(403, f"You act for your own organization ({principal.organization_id}) only")
    _check_type(principal.organization_id, principal.organization_type, organization_type)
    return principal.organization_id


async def visible_organizations(
    conn: asyncpg.Connection | asyncpg.Pool,
    principal: Principal,
    organization_id: int | None,
    *,
    organization_type: str | None = None,
) -> list[int] | None:
    """For listings: the organizations whose data the caller may list (None: all, for an admin naming none).

    An API user naming none sees all its organizations (of the type), as `GET /api/device/my` does in the manual.
    """
    if principal.role == API_USER and organization_id is None:
        if not principal.api_user_id:
            return []
        return await api_user_organizations(conn, principal.api_user_id, organization_type)
    if principal.role == ADMIN and organization_id is None:
        return None
    return [await acting_organization(conn, principal, organization_id, organization_type=organization_type)]
