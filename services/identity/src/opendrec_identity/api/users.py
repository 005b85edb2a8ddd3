"""Users over HTTP: reading one user; the Admin's creation and changes of users.
Parse, authorize, call a use case (services/users.py), answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from opendrec_kit import Principal, UoW, permission

from ..bodies import AdminNewUser, UserChange, UserDetail, UserOut
from ..services import users
from .deps import ADMIN_ONLY, ADMIN_OR_API_USER, Ident

router = APIRouter()


@router.get("/api/user/{id}", response_model=UserDetail, tags=["user"])
async def user(id: int, uow: UoW, principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read")) -> dict[str, Any]:
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
    id: int,
    body: UserChange,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Change a user's firstName, lastName, email or status (Pending, Active, Suspended, Deleted): an Admin any
    user, an API user those of the organizations registered under it. A new e-mail must be confirmed again;
    a new e-mail or status revokes the user's current tokens."""
    return await users.update_user(uow, identity, principal, id, body)
