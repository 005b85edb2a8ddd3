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

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
from fastapi import Depends, Query

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

    async def acting(organizationId: OrganizationQuery = None, user: Principal = allowed) -> Acting:
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


# The service serving the request being handled (set by the runtime for each HTTP request; None in event handlers
# and workers): lets `known_organization` ask identity on a miss.
serving: ContextVar[ServiceRuntime[Any] | None] = ContextVar("opendrec_serving", default=None)


async def known_organization(
    conn: asyncpg.Connection | asyncpg.Pool, principal: Principal, organization_id: int
) -> KnownOrganization | None:
    """An organization named by an API user or an admin: from organization_directory, else (read-your-writes) from
    identity. Identity may have registered it a moment ago, before organization.registered reached this service;
    on a miss while serving a request identity is asked once on the caller's behalf (opendrec_kit.owners) and its
    answer used as the event will be stored. Nothing is written here (the caller's unit may be read-only, and a
    second connection could deadlock a busy pool): the event fills the directory a moment later."""
    known = await find_organization(conn, organization_id)
    runtime = serving.get()
    if known is not None or runtime is None:
        return known
    for learned in await runtime.owners.ask("identity", f"/organizations/{organization_id}", principal):
        if isinstance(learned.event, OrganizationRegistered) and learned.event.organization_id == organization_id:
            e = learned.event
            return KnownOrganization(e.organization_id, e.name, e.organization_type, e.api_user_id)
    return None


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
        known = await known_organization(conn, principal, organization_id)
        if known is None or not principal.api_user_id or known.api_user_id != principal.api_user_id:
            raise ApiError(403, f"Organization {organization_id} is not one of your organizations")
        _check_type(organization_id, known.organization_type, organization_type)
        return organization_id
    if principal.role == ADMIN:
        if organization_id is None or organization_id == principal.organization_id:
            return principal.organization_id
        known = await known_organization(conn, principal, organization_id)
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
