"""Users over HTTP: reading one user; the Admin's creation and changes of users.
Parse, authorize, call a use case (services/users.py), answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from opendrec_kit import ApiError, Principal, UoW, permission

from ..bodies import AdminNewUser, Done, UserChange, UserDetail, UserOut
from ..services import organizations, users
from .deps import ADMIN_ONLY, ADMIN_OR_API_USER, Ident
from .params import IdPath

router = APIRouter()


@router.get("/api/user/{id}", response_model=UserDetail, tags=["user"])
async def user(
    id: IdPath, uow: UoW, principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """Another user's data: the caller's own account, a member of the organization the caller administers
    (OrganizationAdmin, Buyer), anyone for an Admin. Another organization's user answers 404, as a missing one."""
    return await users.user(uow, principal, id)


@router.post("/api/admin/users", status_code=201, response_model=UserOut, tags=["admin"], dependencies=ADMIN_ONLY)
async def create_user(
    body: AdminNewUser, uow: UoW, identity: Ident, principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Write")
) -> dict[str, Any]:
    """Create a Developer or Buyer organization and its first user (OrganizationAdmin or Buyer) with the password
    given; the user is active and is mailed an e-mail confirmation. Admin only."""
    return await users.create_user(uow, identity, principal, body)


@router.put("/api/admin/users/{id}", response_model=UserOut, tags=["admin"], dependencies=ADMIN_OR_API_USER)
async def update_user(
    id: IdPath,
    body: UserChange,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Change a user's firstName, lastName, email or status (Pending, Active, Suspended, Deleted): an Admin any
    user, an API user those of the organizations registered under it. A new e-mail must be confirmed again;
    a new e-mail or status revokes the user's current tokens."""
    return await users.update_user(uow, identity, principal, id, body)


@router.delete("/api/admin/user/{id}", response_model=Done, tags=["admin"], dependencies=ADMIN_ONLY)
async def remove_user(
    id: IdPath, uow: UoW, identity: Ident, principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Delete")
) -> dict[str, Any]:
    """Remove any user (not oneself): marked Deleted (no login), current tokens revoked, as a member's removal.
    The organization stays, even when no one is left in it: DELETE /api/admin/organizations/{id} deletes it
    with its users. Identity does not know devices or reservations, so it does not refuse for them. Admin only."""
    return await organizations.remove_user(uow, identity, principal, id)


@router.post(
    "/api/admin/seed/users",
    status_code=410,
    tags=["admin"],
    dependencies=ADMIN_ONLY,
    responses={410: {"description": users.SEED_USERS_REFUSED}},
)
async def seed_users_refused(principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Write")) -> None:
    """D-REC's development seeding of users (any role and status, in any organization, unconfirmed e-mails).
    Refused: always 410, the body is not read; users come through the paths that keep the rules (see the answer)."""
    raise ApiError(410, users.SEED_USERS_REFUSED)


@router.post(
    "/api/admin/seed/organizations",
    status_code=410,
    tags=["admin"],
    dependencies=ADMIN_ONLY,
    responses={410: {"description": users.SEED_ORGANIZATIONS_REFUSED}},
)
async def seed_organizations_refused(
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Write"),
) -> None:
    """D-REC's development seeding of organizations without users. Refused: always 410, the body is not read;
    an organization comes with its first user (see the answer)."""
    raise ApiError(410, users.SEED_ORGANIZATIONS_REFUSED)
