"""Organizations and their members; the admin's listings of every user and organization.

A member of an organization manages only that organization (Admin: any). Changing a member's
role or removing them revokes their access tokens (the tokens carry the old role's permissions).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from opendrec_contracts import OrganizationRegistered
from opendrec_kit import ApiError, Principal, UnitOfWork, owners
from opendrec_kit.paging import Page

from .. import domain, store
from ..bodies import NewOrganization, OrganizationChange
from .common import (
    NO_ACCOUNT,
    Identity,
    Revoked,
    already_registered,
    check_own_organization,
    invalid,
    joined_user_out,
    organization_out,
    page_of,
    refusing_taken,
    revoke_sessions,
    revoke_sessions_of_users,
)

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


async def organization_state(uow: UnitOfWork, principal: Principal, organization_id: int) -> dict[str, Any]:
    """Read-your-writes for other services (opendrec_kit.owners): the organization as organization.registered
    announced it, for a caller who may manage it; 404 otherwise, so nothing is told about others'."""
    async with uow.reading() as r:
        row = await store.organization_by_id(r.conn, organization_id)
        if row is not None:
            try:
                await check_own_organization(r.conn, principal, organization_id)
            except ApiError:
                row = None
    if row is None:
        raise ApiError(404, f"Organization {organization_id} does not exist")
    api_user_id = str(row["api_user_id"]) if row["api_user_id"] is not None else None
    registered = OrganizationRegistered(
        organization_id=row["id"], name=row["name"], organization_type=row["organization_type"], api_user_id=api_user_id
    )
    return owners.answer([(registered, row["created_at"])], "identity")


async def members(uow: UnitOfWork, principal: Principal, organization_id: int, page: Page) -> dict[str, Any]:
    """The members of an organization the caller may manage (removed ones left out), a page at a time."""
    async with uow.reading() as r:
        await check_own_organization(r.conn, principal, organization_id)
        rows, total = await store.users_page(r.conn, page, organization_id, members_only=True)
    return page_of("users", [joined_user_out(row) for row in rows], page, total)


async def all_members(uow: UnitOfWork, principal: Principal, organization_id: int, page: Page) -> dict[str, Any]:
    """Every user of an organization the caller manages (an Admin: any; an API user: those registered under it),
    removed ones included (status Deleted), a page at a time."""
    async with uow.reading() as r:
        await check_own_organization(r.conn, principal, organization_id)
        if await store.organization_by_id(r.conn, organization_id) is None:
            raise ApiError(404, f"Organization {organization_id} does not exist")
        rows, total = await store.users_page(r.conn, page, organization_id, members_only=False)
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


async def _remove(uow: UnitOfWork, principal: Principal, organization_id: int, user_id: int) -> Revoked:
    """The one rule of removing a user (inside the caller's unit of work): a member of the organization, not the
    caller; marked Deleted (kept, so that what points at them still does; no login) and their sessions ended."""
    await _member(uow.conn, organization_id, user_id, principal)
    await store.set_status(uow.conn, user_id, domain.DELETED)
    return await revoke_sessions(uow, user_id)


def _removed(
    identity: Identity, principal: Principal, organization_id: int, user_id: int, revoked: Revoked
) -> dict[str, Any]:
    identity.refuse_here(revoked)
    log.info("member removed", extra={"organization_id": organization_id, "user_id": user_id, "by": principal.user_id})
    return {"success": True, "message": f"User {user_id} has been removed from organization {organization_id}"}


async def remove_member(
    uow: UnitOfWork, identity: Identity, principal: Principal, organization_id: int, user_id: int
) -> dict[str, Any]:
    """The member can no longer log in and their tokens are revoked."""
    async with uow:
        await check_own_organization(uow.conn, principal, organization_id)
        revoked = await _remove(uow, principal, organization_id, user_id)
    return _removed(identity, principal, organization_id, user_id, revoked)


async def remove_user(uow: UnitOfWork, identity: Identity, principal: Principal, user_id: int) -> dict[str, Any]:
    """D-REC's removal of a user by id alone (DELETE /api/Organization/user/{id}, DELETE /api/admin/user/{id}):
    the user's organization is one the caller manages (an Admin: any; an API user: those registered under it;
    anyone else: their own), else the user is answered as missing (404, so that other organizations' user ids
    reveal nothing); then as remove_member. The organization stays, whoever is left in it."""
    async with uow:
        target = await store.user_by_id(uow.conn, user_id, lock=True)
        missing = ApiError(404, f"User {user_id} does not exist in your organization")
        if target is None or target["status"] == domain.DELETED:
            raise missing
        organization_id = target["organization_id"]
        try:
            await check_own_organization(uow.conn, principal, organization_id)
        except ApiError:
            raise missing from None
        revoked = await _remove(uow, principal, organization_id, user_id)
    return _removed(identity, principal, organization_id, user_id, revoked)


CHAIN_ADDRESS_REFUSED = (
    "POST /api/Organization/chain-address is not available: OpenDREC keeps no blockchain. Certificates are issued "
    "and held by its certificates service (GET /api/certificate-log/...), so an organization has no blockchain "
    "account to bind and nothing would read one. Nothing was stored."
)


# -- creating, changing, deleting organizations -----------------------------------------------------------------

ALREADY_IN_AN_ORGANIZATION = "There is already an organization assigned to this account"


async def create_organization(uow: UnitOfWork, principal: Principal, body: NewOrganization) -> dict[str, Any]:
    """D-REC's POST /api/Organization: an account without an organization creates one. Every account here
    belongs to an organization from its creation (registration, invitation, an admin), so, as D-REC answers
    such an account, this is refused; the body was checked first."""
    async with uow.reading() as r:
        user = await store.user_by_id(r.conn, principal.user_id)
    if user is None:
        raise ApiError(401, NO_ACCOUNT)
    raise ApiError(400, ALREADY_IN_AN_ORGANIZATION)


async def update_organization(
    uow: UnitOfWork, principal: Principal, organization_id: int, body: OrganizationChange
) -> dict[str, Any]:
    """An Admin changes an organization's name, address or status (Submitted, Denied, Active)."""
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if "address" in body.model_fields_set:
        changes["address"] = body.address
    if body.status is not None:
        changes["status"] = body.status
    with refusing_taken(
        store.ORGANIZATION_NAME_UNIQUE, already_registered("name", "an organization with this name already exists")
    ):
        async with uow:
            organization = await store.organization_by_id(uow.conn, organization_id, lock=True)
            if organization is None:
                raise ApiError(404, f"Organization {organization_id} does not exist")
            if organization["status"] == domain.DELETED:
                raise ApiError(409, f"Organization {organization_id} has been deleted")
            if body.organizationType is not None:
                try:
                    domain.same_organization_type(organization["organization_type"], body.organizationType)
                except domain.Invalid as exc:
                    raise invalid("organizationType", str(exc)) from None
            row = await store.update_organization(uow.conn, organization_id, changes) if changes else organization
    log.info(
        "organization changed",
        extra={"organization_id": organization_id, "fields": sorted(changes), "by": principal.user_id},
    )
    return organization_out(row)


async def delete_organization(
    uow: UnitOfWork, identity: Identity, principal: Principal, organization_id: int
) -> dict[str, Any]:
    """An Admin deletes an organization, all at once or not at all: the organization and every one of its users
    are marked Deleted (kept, as removed members are), their sessions revoked, its open invitations expired.
    Refused (409) for the caller's own organization, the administrators', one already deleted, and an API user's
    while organizations registered under it are not deleted."""
    async with uow:
        organization = await store.organization_by_id(uow.conn, organization_id, lock=True)
        if organization is None:
            raise ApiError(404, f"Organization {organization_id} does not exist")
        under_it = (
            await store.organizations_under_api_user_of(uow.conn, organization_id)
            if organization["organization_type"] == domain.API_USER
            else 0
        )
        try:
            domain.check_deletable(
                organization["organization_type"],
                organization["status"],
                own=organization_id == principal.organization_id,
                organizations_under_it=under_it,
            )
        except domain.Invalid as exc:
            raise ApiError(409, f"Organization {organization_id} cannot be deleted: {exc}") from None
        # Invitations first: an invitee accepting right now holds its invitation's lock, and is then moved in
        # before the users are marked (so they are marked too).
        expired = await store.expire_pending_invitations(uow.conn, organization_id)
        removed = await store.remove_organization_users(uow.conn, organization_id)
        await store.update_organization(uow.conn, organization_id, {"status": domain.DELETED})
        revoked = await revoke_sessions_of_users(uow, removed)
    identity.refuse_here(revoked)
    log.info(
        "organization deleted",
        extra={
            "organization_id": organization_id,
            "users_removed": len(removed),
            "invitations_expired": expired,
            "by": principal.user_id,
        },
    )
    return {
        "success": True,
        "message": f"Organization {organization_id} has been deleted; {len(removed)} user(s) removed",
    }
