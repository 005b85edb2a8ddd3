"""Users as others see them: reading one user, and the Admin's creation and changes of users.

Who reads whom is domain.user_visibility (oneself, one's organization's administrator, an Admin); an Admin
changes any user, an API user the users of the organizations registered under it.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from opendrec_kit import ApiError, Principal, UnitOfWork

from .. import domain, store
from ..bodies import AdminNewUser, UserChange
from .common import (
    Identity,
    already_registered,
    check_own_organization,
    joined_user_out,
    organization_out,
    queue_confirmation,
    refuse_taken,
    refusing_taken,
    register_administered_organization,
    revoke_sessions,
    user_out,
    visible_user,
)

log = logging.getLogger(__name__)

SEED_USERS_REFUSED = (
    "POST /api/admin/seed/users is not available: D-REC's development seeding writes users of any role and status "
    "into any organization, unconfirmed and without checks, which OpenDREC's rules forbid. Create an organization "
    "with its first user (POST /api/admin/users), add members by invitation (POST /api/invitation?organizationId=), "
    "an API user's organizations with POST /api/user/register. Nothing was created."
)
SEED_ORGANIZATIONS_REFUSED = (
    "POST /api/admin/seed/organizations is not available: an organization here always comes with its first user, "
    "and D-REC's development seeding writes organizations without any. Create one with its first user: "
    "POST /api/admin/users (Admin), POST /api/user/registerWithOrganization, POST /api/user/register (an API "
    "user's). Nothing was created."
)


async def user(uow: UnitOfWork, principal: Principal, user_id: int) -> dict[str, Any]:
    """One user the caller may read; for an API user, its apiUserId and the state of its module request."""
    async with uow.reading() as r:
        row = await visible_user(r.conn, principal, user_id)
        api_user = await store.api_user_by_user(r.conn, user_id) if row["role"] == domain.API_USER else None
    return {
        **joined_user_out(row),
        "apiUserId": str(api_user["id"]) if api_user else None,
        "permission_status": api_user["permission_status"] if api_user else None,
    }


async def create_user(uow: UnitOfWork, identity: Identity, principal: Principal, body: AdminNewUser) -> dict[str, Any]:
    """An Admin creates a Developer or Buyer organization with its first user, who administers it, with the
    password the Admin chose; the user is active and gets the e-mail confirmation mail."""
    await refuse_taken(uow, body)
    password_hash = await identity.passwords.hash(body.password)
    role, org, created = await register_administered_organization(
        uow, identity, body, password_hash=password_hash, secret_key_hash=None
    )
    log.info(
        "user created by an admin",
        extra={"organization_id": org["id"], "user_id": created["id"], "role": role, "by": principal.user_id},
    )
    return user_out(created, organization_out(org))


async def _may_change(conn: asyncpg.Connection, principal: Principal, user_id: int) -> asyncpg.Record:
    """The user, if the caller may change them: an Admin any; an API user its own organization's and those of
    the organizations registered under it (others answer 404, as if there were none)."""
    target = await store.user_by_id(conn, user_id)
    if target is None:
        raise ApiError(404, f"User {user_id} does not exist")
    try:
        await check_own_organization(conn, principal, target["organization_id"])
    except ApiError:
        raise ApiError(404, f"User {user_id} does not exist") from None
    return target


async def update_user(
    uow: UnitOfWork, identity: Identity, principal: Principal, user_id: int, body: UserChange
) -> dict[str, Any]:
    """Change a user's names, e-mail or status. A new e-mail must be confirmed again (a mail goes to it); a new
    e-mail or status ends the user's sessions (their tokens carry the old ones)."""
    changes: dict[str, Any] = {}
    if body.firstName is not None:
        changes["first_name"] = body.firstName
    if body.lastName is not None:
        changes["last_name"] = body.lastName
    mailed = False
    with refusing_taken(store.EMAIL_UNIQUE, already_registered("email", "an account with this email already exists")):
        async with uow:
            target = await _may_change(uow.conn, principal, user_id)
            if body.empty():
                raise ApiError(
                    400,
                    "Invalid request: check body",
                    [{"field": "body", "message": "give firstName, lastName, email or status"}],
                )
            if body.status is not None and body.status != target["status"]:
                if user_id == principal.user_id:
                    raise ApiError(400, "You cannot change your own status; ask another administrator")
                changes["status"] = body.status
            if body.email is not None and body.email != target["email"]:
                changes["email"], changes["email_confirmed"] = body.email, False
            await store.update_user(uow.conn, user_id, changes)
            if "email" in changes:
                await queue_confirmation(uow, identity.settings, user_id, changes["email"], target["first_name"])
                mailed = True
            revoked = await revoke_sessions(uow, user_id) if {"email", "status"} & changes.keys() else []
            updated = await store.user_by_id(uow.conn, user_id)
    identity.refuse_here(revoked)
    if mailed:
        identity.send_mail_now()
    log.info(
        "user changed",
        extra={"user_id": user_id, "fields": sorted(changes), "tokens_revoked": len(revoked), "by": principal.user_id},
    )
    return joined_user_out(updated)
