"""Organizations and their members over HTTP; the admin's listings of every user and organization.
Parse, authorize, call a use case (services/organizations.py), answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from opendrec_kit import ApiError, Principal, UoW, permission
from opendrec_kit.auth import only_roles
from opendrec_kit.organizations import organization_query
from opendrec_kit.paging import Page

from ..bodies import (
    ChangeRole,
    Done,
    InvitationOut,
    NewOrganization,
    OrganizationChange,
    OrganizationOut,
    OrganizationsPage,
    UserOut,
    UsersPage,
)
from ..services import invitations, organizations
from .deps import ADMIN_ONLY, ADMIN_OR_API_USER, Ident, Paging
from .params import IdPath

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


@router.post(
    "/api/Organization",
    status_code=201,
    response_model=OrganizationOut,
    tags=["organization"],
    dependencies=[only_roles("OrganizationAdmin")],
    responses={400: {"description": organizations.ALREADY_IN_AN_ORGANIZATION + " (every account here has one)"}},
)
async def create_organization(
    body: NewOrganization, uow: UoW, principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Write")
) -> dict[str, Any]:
    """D-REC's organization registration by an account without an organization. Every account here belongs to
    one from its creation, so, as D-REC answers such an account, it is refused (400) once the body is valid.
    New organizations come with their first user: POST /api/user/registerWithOrganization, POST /api/admin/users
    (Admin), POST /api/user/register (an API user's)."""
    return await organizations.create_organization(uow, principal, body)


@router.get("/api/Organization/{organizationId}", response_model=OrganizationOut, tags=["organization"])
async def organization(
    organizationId: IdPath, uow: UoW, principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """One organization: the caller's own (Admin: any)."""
    return await organizations.organization(uow, principal, organizationId)


@router.get("/api/Organization/{organizationId}/users", response_model=UsersPage, tags=["organization"])
async def organization_users(
    organizationId: IdPath,
    uow: UoW,
    page: Page = Paging,
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """The members of an organization: the caller's own (Admin: any)."""
    return await organizations.members(uow, principal, organizationId, page)


@router.put("/api/Organization/{organizationId}/change-role/{userId}", response_model=UserOut, tags=["organization"])
async def change_role(
    organizationId: IdPath,
    userId: IdPath,
    body: ChangeRole,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Give a member another role of their organization's type; their current tokens are revoked."""
    return await organizations.change_role(uow, identity, principal, organizationId, userId, body.role)


@router.post("/api/Organization/{organizationId}/remove-member/{userId}", response_model=Done, tags=["organization"])
async def remove_member(
    organizationId: IdPath,
    userId: IdPath,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Remove a member from the organization: they can no longer log in and their tokens are revoked."""
    return await organizations.remove_member(uow, identity, principal, organizationId, userId)


@router.get("/api/Organization/{organizationId}/invitations", response_model=list[InvitationOut], tags=["organization"])
async def organization_invitations(
    organizationId: IdPath, uow: UoW, principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read")
) -> list[dict[str, Any]]:
    """The invitations an organization sent, newest first, as one list (at most 1000; GET /api/invitation pages
    through all): for any member of the organization, as D-REC, an Admin for any, an API user for those registered
    under it."""
    return await invitations.organization_invitations(uow, principal, organizationId)


@router.delete("/api/Organization/user/{id}", response_model=Done, tags=["organization"])
async def remove_user(
    id: IdPath,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """D-REC's removal of a member by user id: as POST /api/Organization/{organizationId}/remove-member/{userId}
    (the member can no longer log in, their tokens are revoked; not oneself). A user of an organization the
    caller does not manage answers 404, as a missing one."""
    return await organizations.remove_user(uow, identity, principal, id)


@router.post(
    "/api/Organization/chain-address",
    status_code=410,
    tags=["organization"],
    responses={410: {"description": organizations.CHAIN_ADDRESS_REFUSED}},
)
async def chain_address_refused(principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Write")) -> None:
    """D-REC binds a blockchain account to the caller's organization from a signed message. OpenDREC keeps no
    blockchain, so this always answers 410 (after the caller's access is checked, as D-REC's); the body is not
    read and nothing is stored."""
    raise ApiError(410, organizations.CHAIN_ADDRESS_REFUSED)


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


@router.get(
    "/api/admin/organizations/{organizationId}", response_model=OrganizationOut, tags=["admin"], dependencies=ADMIN_ONLY
)
async def admin_organization(
    organizationId: IdPath, uow: UoW, principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read")
) -> dict[str, Any]:
    """One organization, any (deleted ones too, with status Deleted); 404 if there is none. Admin only."""
    return await organizations.organization(uow, principal, organizationId)


@router.get(
    "/api/admin/organizations/user/{organizationId}",
    response_model=UsersPage,
    tags=["admin"],
    dependencies=ADMIN_OR_API_USER,
)
async def organization_all_users(
    organizationId: IdPath,
    uow: UoW,
    page: Page = Paging,
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Every user of an organization (removed ones included, with status Deleted), a page at a time:
    an Admin any organization, an API user those registered under it."""
    return await organizations.all_members(uow, principal, organizationId, page)


@router.patch("/api/admin/organizations/{id}", response_model=OrganizationOut, tags=["admin"], dependencies=ADMIN_ONLY)
async def update_organization(
    id: IdPath,
    body: OrganizationChange,
    uow: UoW,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Change an organization's name, address or status (Submitted, Denied, Active). organizationType may only
    repeat the current one; D-REC's other fields (zipCode, city, country, signatory..., documentIds) are not
    kept here and are refused if given. Admin only."""
    return await organizations.update_organization(uow, principal, id, body)


@router.delete("/api/admin/organizations/{id}", response_model=Done, tags=["admin"], dependencies=ADMIN_ONLY)
async def delete_organization(
    id: IdPath,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Delete"),
) -> dict[str, Any]:
    """Delete an organization, at once and entirely: it and every one of its users are marked Deleted (no one
    logs in, current tokens are revoked), its open invitations expire. Refused (409) for the caller's own
    organization, the administrators', and an API user's while organizations registered under it remain.
    Identity does not know the organization's devices or reservations: it does not look at them. Admin only."""
    return await organizations.delete_organization(uow, identity, principal, id)
