"""Organizations and their members over HTTP; the admin's listings of every user and organization.
Parse, authorize, call a use case (services/organizations.py), answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from opendrec_kit import Principal, UoW, permission
from opendrec_kit.organizations import organization_query
from opendrec_kit.paging import Page

from ..bodies import ChangeRole, Done, OrganizationOut, OrganizationsPage, UserOut, UsersPage
from ..services import organizations
from .deps import ADMIN_ONLY, Ident, Paging

router = APIRouter()


# -- my organization -----------------------------------------------------------------------------------------


@router.get("/api/Organization/me", response_model=OrganizationOut, tags=["organization"])
async def my_organization(
    uow: UoW, principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """The caller's organization."""
    return await organizations.my_organization(uow, principal)


@router.get("/api/Organization/users", response_model=UsersPage, tags=["organization"])
async def my_organization_users(
    uow: UoW, page: Page = Paging, principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """The members of the caller's organization, a page at a time."""
    return await organizations.members(uow, principal, principal.organization_id, page)


@router.get("/api/Organization/{organizationId}", response_model=OrganizationOut, tags=["organization"])
async def organization(
    organizationId: int, uow: UoW, principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """One organization: the caller's own (Admin: any)."""
    return await organizations.organization(uow, principal, organizationId)


@router.get("/api/Organization/{organizationId}/users", response_model=UsersPage, tags=["organization"])
async def organization_users(
    organizationId: int,
    uow: UoW,
    page: Page = Paging,
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """The members of an organization: the caller's own (Admin: any)."""
    return await organizations.members(uow, principal, organizationId, page)


@router.put("/api/Organization/{organizationId}/change-role/{userId}", response_model=UserOut, tags=["organization"])
async def change_role(
    organizationId: int,
    userId: int,
    body: ChangeRole,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Give a member another role of their organization's type; their current tokens are revoked."""
    return await organizations.change_role(uow, identity, principal, organizationId, userId, body.role)


@router.post("/api/Organization/{organizationId}/remove-member/{userId}", response_model=Done, tags=["organization"])
async def remove_member(
    organizationId: int,
    userId: int,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Remove a member from the organization: they can no longer log in and their tokens are revoked."""
    return await organizations.remove_member(uow, identity, principal, organizationId, userId)


# -- admin listings -------------------------------------------------------------------------------------------


@router.get("/api/admin/users", response_model=UsersPage, tags=["admin"], dependencies=ADMIN_ONLY)
async def all_users(
    uow: UoW,
    page: Page = Paging,
    organizationId: Annotated[int | None, organization_query("only this organization's users")] = None,
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Every user of the platform (removed ones included, with status Deleted), a page at a time;
    `organizationId`: only that organization's users. Admin only."""
    return await organizations.all_users(uow, page, organizationId)


@router.get("/api/admin/organizations", response_model=OrganizationsPage, tags=["admin"], dependencies=ADMIN_ONLY)
async def all_organizations(
    uow: UoW,
    page: Page = Paging,
    organizationType: Literal["Developer", "Buyer", "ApiUser", "Admin"] | None = Query(None),
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Every organization, a page at a time. Admin only."""
    return await organizations.all_organizations(uow, page, organizationType)
