"""Organizations and their members; the admin's listings of every user and organization.

A member of an organization manages only that organization (Admin: any). Changing a member's
role or removing them revokes their access tokens (the tokens carry the old role's permissions).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from opendrec_kit import ApiError, Pool, Principal, Runtime, permission
from opendrec_kit.auth import only_roles
from opendrec_kit.paging import page_query

from . import domain, store
from .api import Done, OrganizationOut, UserOut, _joined_user_out, revoke_here, revoke_sessions

log = logging.getLogger(__name__)

router = APIRouter()


def organization_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "address": row["address"],
        "organizationType": row["organization_type"],
        "status": row["status"],
        "createdAt": row["created_at"],
    }


Paging = Depends(page_query(default_limit=10, max_limit=100))


class UsersPage(BaseModel):
    users: list[UserOut]
    currentPage: int
    totalPages: int
    totalCount: int


class OrganizationsPage(BaseModel):
    organizations: list[OrganizationOut]
    currentPage: int
    totalPages: int
    totalCount: int


class ChangeRole(BaseModel):
    role: str


async def own_organization(pool: Any, principal: Principal, organization_id: int) -> None:
    """The caller may manage this organization: its own, an API user's Developer and Buyer
    organizations (registered under it), any for an Admin."""
    if principal.role == domain.ADMIN or principal.organization_id == organization_id:
        return
    if principal.role == "ApiUser" and principal.api_user_id:
        async with pool.acquire() as conn:
            row = await store.organization_by_id(conn, organization_id)
        if row is not None and row["api_user_id"] is not None and str(row["api_user_id"]) == principal.api_user_id:
            return
    raise ApiError(403, "You can manage only your own organization")


async def _users_page(pool: Any, page: domain.Page, organization_id: int | None, members_only: bool) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows, total = await store.users_page(conn, page, organization_id, members_only)
    return {
        "users": [_joined_user_out(r) for r in rows],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }


async def _member(conn: Any, organization_id: int, user_id: int, principal: Principal) -> Any:
    organization = await store.organization_by_id(conn, organization_id)
    if organization is None:
        raise ApiError(404, f"Organization {organization_id} does not exist")
    user = await store.user_by_id(conn, user_id)
    if user is None or user["organization_id"] != organization_id or user["status"] == "Deleted":
        raise ApiError(404, f"User {user_id} is not a member of organization {organization_id}")
    if user_id == principal.user_id:
        raise ApiError(400, "You cannot change your own membership; ask another administrator of your organization")
    return organization, user


# -- my organization -----------------------------------------------------------------------------------------


@router.get("/api/Organization/me", response_model=OrganizationOut, tags=["organization"])
async def my_organization(
    pool: Pool, principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """The caller's organization."""
    async with pool.acquire() as conn:
        row = await store.organization_by_id(conn, principal.organization_id)
    if row is None:
        raise ApiError(404, "Your organization no longer exists")
    return organization_out(row)


@router.get("/api/Organization/users", response_model=UsersPage, tags=["organization"])
async def my_organization_users(
    pool: Pool, page: domain.Page = Paging, principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """The members of the caller's organization, a page at a time."""
    return await _users_page(pool, page, principal.organization_id, members_only=True)


@router.get("/api/Organization/{organizationId}", response_model=OrganizationOut, tags=["organization"])
async def organization(
    organizationId: int,
    pool: Pool,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """One organization: the caller's own (Admin: any)."""
    await own_organization(pool, principal, organizationId)
    async with pool.acquire() as conn:
        row = await store.organization_by_id(conn, organizationId)
    if row is None:
        raise ApiError(404, f"Organization {organizationId} does not exist")
    return organization_out(row)


@router.get("/api/Organization/{organizationId}/users", response_model=UsersPage, tags=["organization"])
async def organization_users(
    organizationId: int,
    pool: Pool,
    page: domain.Page = Paging,
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """The members of an organization: the caller's own (Admin: any)."""
    await own_organization(pool, principal, organizationId)
    return await _users_page(pool, page, organizationId, members_only=True)


@router.put("/api/Organization/{organizationId}/change-role/{userId}", response_model=UserOut, tags=["organization"])
async def change_role(
    organizationId: int,
    userId: int,
    body: ChangeRole,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Give a member another role of their organization's type; their current tokens are revoked."""
    await own_organization(pool, principal, organizationId)
    async with pool.acquire() as conn, conn.transaction():
        organization, _user = await _member(conn, organizationId, userId, principal)
        try:
            role = domain.check_member_role(organization["organization_type"], body.role)
        except domain.Invalid as exc:
            raise ApiError(400, "Invalid request: check role", [{"field": "role", "message": str(exc)}]) from None
        await store.set_role(conn, userId, role)
        revoked = await revoke_sessions(conn, userId, runtime.settings.service_name)
        updated = await store.user_by_id(conn, userId)
    revoke_here(request, revoked)
    log.info(
        "member role changed",
        extra={"organization_id": organizationId, "user_id": userId, "role": role, "by": principal.user_id},
    )
    return _joined_user_out(updated)


@router.post("/api/Organization/{organizationId}/remove-member/{userId}", response_model=Done, tags=["organization"])
async def remove_member(
    organizationId: int,
    userId: int,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Remove a member from the organization: they can no longer log in and their tokens are revoked."""
    await own_organization(pool, principal, organizationId)
    async with pool.acquire() as conn, conn.transaction():
        await _member(conn, organizationId, userId, principal)
        await store.set_status(conn, userId, "Deleted")
        revoked = await revoke_sessions(conn, userId, runtime.settings.service_name)
    revoke_here(request, revoked)
    log.info("member removed", extra={"organization_id": organizationId, "user_id": userId, "by": principal.user_id})
    return {"success": True, "message": f"User {userId} has been removed from organization {organizationId}"}


# -- admin listings -------------------------------------------------------------------------------------------


# Admin listings cross every organization: the Admin role, whatever a module grant says.
ADMIN_ONLY = [only_roles(domain.ADMIN)]


@router.get("/api/admin/users", response_model=UsersPage, tags=["admin"], dependencies=ADMIN_ONLY)
async def all_users(
    pool: Pool,
    page: domain.Page = Paging,
    organizationId: int | None = Query(None, description="only this organization's users"),
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Every user of the platform (removed ones included, with status Deleted), a page at a time. Admin only."""
    return await _users_page(pool, page, organizationId, members_only=False)


@router.get("/api/admin/organizations", response_model=OrganizationsPage, tags=["admin"], dependencies=ADMIN_ONLY)
async def all_organizations(
    pool: Pool,
    page: domain.Page = Paging,
    organizationType: Literal["Developer", "Buyer", "ApiUser", "Admin"] | None = Query(None),
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Every organization, a page at a time. Admin only."""
    async with pool.acquire() as conn:
        rows, total = await store.organizations_page(conn, page, organizationType)
    return {
        "organizations": [organization_out(r) for r in rows],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }
