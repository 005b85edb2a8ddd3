"""Organizations and their members; the admin's listings of every user and organization.

A member of an organization manages only that organization (Admin: any). Changing a member's
role or removing them revokes their access tokens (the tokens carry the old role's permissions).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.paging import Page

from .. import domain, store
from .common import Identity, check_own_organization, joined_user_out, organization_out, page_of, revoke_sessions

log = logging.getLogger(__name__)


async def my_organization(uow: UnitOfWork, principal: Principal) -> dict[str, Any]:
    async with uow.reading() as r:
        row = await store.organization_by_id(r.conn, principal.organization_id)
    if row is None:
        raise ApiError(404, "Your organization no longer exists")
    return organization_out(row)


async def organization(uow: UnitOfWork, principal: Principal, organization_id: int) -> dict[str, Any]:
    """One organization the caller may manage."""
    async with uow.reading() as r:
        await check_own_organization(r.conn, principal, organization_id)
        row = await store.organization_by_id(r.conn, organization_id)
    if row is None:
        raise ApiError(404, f"Organization {organization_id} does not exist")
    return organization_out(row)


async def members(uow: UnitOfWork, principal: Principal, organization_id: int, page: Page) -> dict[str, Any]:
    """The members of an organization the caller may manage (removed ones left out), a page at a time."""
    async with uow.reading() as r:
        await check_own_organization(r.conn, principal, organization_id)
        rows, total = await store.users_page(r.conn, page, organization_id, members_only=True)
    return page_of("users", [joined_user_out(row) for row in rows], page, total)


async def all_users(uow: UnitOfWork, page: Page, organization_id: int | None) -> dict[str, Any]:
    """Every user (of one organization, if given), removed ones included: the admin's listing."""
    async with uow.reading() as r:
        rows, total = await store.users_page(r.conn, page, organization_id, members_only=False)
    return page_of("users", [joined_user_out(row) for row in rows], page, total)


async def all_organizations(uow: UnitOfWork, page: Page, organization_type: str | None) -> dict[str, Any]:
    async with uow.reading() as r:
        rows, total = await store.organizations_page(r.conn, page, organization_type)
    return page_of("organizations", [organization_out(row) for row in rows], page, total)


async def _member(
    conn: asyncpg.Connection, organization_id: int, user_id: int, principal: Principal
) -> tuple[asyncpg.Record, asyncpg.Record]:
    organization = await store.organization_by_id(conn, organization_id)
    if organization is None:
        raise ApiError(404, f"Organization {organization_id} does not exist")
    user = await store.user_by_id(conn, user_id)
    if user is None or user["organization_id"] != organization_id or user["status"] == "Deleted":
        raise ApiError(404, f"User {user_id} is not a member of organization {organization_id}")
    if user_id == principal.user_id:
        raise ApiError(400, "You cannot change your own membership; ask another administrator of your organization")
    return organization, user


async def change_role(
    uow: UnitOfWork, identity: Identity, principal: Principal, organization_id: int, user_id: int, role: str
) -> dict[str, Any]:
    """Give a member another role of their organization's type; their current tokens are revoked."""
    async with uow:
        await check_own_organization(uow.conn, principal, organization_id)
        organization, _user = await _member(uow.conn, organization_id, user_id, principal)
        try:
            role = domain.check_member_role(organization["organization_type"], role)
        except domain.Invalid as exc:
            raise ApiError(400, "Invalid request: check role", [{"field": "role", "message": str(exc)}]) from None
        await store.set_role(uow.conn, user_id, role)
        revoked = await revoke_sessions(uow, user_id)
        updated = await store.user_by_id(uow.conn, user_id)
    identity.refuse_here(revoked)
    log.info(
        "member role changed",
        extra={"organization_id": organization_id, "user_id": user_id, "role": role, "by": principal.user_id},
    )
    return joined_user_out(updated)


async def remove_member(
    uow: UnitOfWork, identity: Identity, principal: Principal, organization_id: int, user_id: int
) -> dict[str, Any]:
    """The member can no longer log in and their tokens are revoked."""
    async with uow:
        await check_own_organization(uow.conn, principal, organization_id)
        await _member(uow.conn, organization_id, user_id, principal)
        await store.set_status(uow.conn, user_id, "Deleted")
        revoked = await revoke_sessions(uow, user_id)
    identity.refuse_here(revoked)
    log.info("member removed", extra={"organization_id": organization_id, "user_id": user_id, "by": principal.user_id})
    return {"success": True, "message": f"User {user_id} has been removed from organization {organization_id}"}
