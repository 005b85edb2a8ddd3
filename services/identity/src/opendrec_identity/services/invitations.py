"""Invitations to join an organization.

An organization's administrator invites an e-mail address with a role; the mail carries the
invitation id and a one-time token. Someone without an account registers with the token
(the mail proved the address, so it is confirmed); an account holder logs in and accepts or rejects.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

import asyncpg

from opendrec_contracts import UserRegistered
from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.paging import Page
from opendrec_kit.timestamps import iso

from .. import domain, mail, store
from ..bodies import Invite, InvitedRegistration
from .common import (
    NO_ACCOUNT,
    Identity,
    Revoked,
    check_own_organization,
    joined_user_out,
    page_of,
    refusing_taken,
    revoke_sessions,
)

log = logging.getLogger(__name__)

BAD_TOKEN = "This invitation token is invalid, already used or expired; ask for a new invitation"
TOKEN_MAX_LENGTH = 200


def invitation_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "role": row["role"],
        "status": row["status"],
        "sender": row["sender_email"],
        "organization": {"id": row["organization_id"], "name": row["organization_name"]},
        "createdAt": iso(row["created_at"]),
        "expiresAt": iso(row["expires_at"]),
    }


def _open(invitation: asyncpg.Record, now: datetime) -> None:
    if invitation["organization_status"] == domain.DELETED:
        raise ApiError(409, "The inviting organization has been deleted")
    if invitation["status"] != "Pending":
        raise ApiError(409, f"This invitation is already {invitation['status'].lower()}")
    if invitation["expires_at"] <= now:
        raise ApiError(409, "This invitation has expired; ask for a new one")


async def invite(
    uow: UnitOfWork, identity: Identity, principal: Principal, organization_id: int, body: Invite
) -> dict[str, Any]:
    """Invite an e-mail address to join an organization the caller manages, with a role; a mail is sent to it."""
    settings = identity.settings
    token = secrets.token_urlsafe(32)
    with refusing_taken(
        store.INVITATION_PENDING_UNIQUE,
        ApiError(409, f"{body.email} already has an open invitation to this organization"),
    ):
        async with uow:
            await check_own_organization(uow.conn, principal, organization_id)
            organization = await store.organization_by_id(uow.conn, organization_id)
            if organization is None:
                raise ApiError(404, f"Organization {organization_id} does not exist")
            if organization["status"] == domain.DELETED:
                raise ApiError(409, f"Organization {organization_id} has been deleted")
            try:
                role = domain.check_member_role(organization["organization_type"], body.role)
            except domain.Invalid as exc:
                raise ApiError(400, "Invalid request: check role", [{"field": "role", "message": str(exc)}]) from None
            existing = await store.user_by_email(uow.conn, body.email)
            if (
                existing is not None
                and existing["organization_id"] == organization_id
                and existing["status"] != "Deleted"
            ):
                raise ApiError(409, f"{body.email} is already a member of this organization")
            invitation_id = await store.insert_invitation(
                uow.conn,
                organization_id=organization_id,
                email=body.email,
                role=role,
                sender_id=principal.user_id,
                token_hash=domain.token_digest(token),
                ttl_seconds=settings.invitation_ttl_seconds,
            )
            subject, text = mail.invitation_mail(
                organization["name"], role, principal.email, settings.public_url, invitation_id, token
            )
            await store.queue_mail(uow.conn, body.email, subject, text)
            invitation = await store.invitation_by_id(uow.conn, invitation_id)
    identity.send_mail_now()
    log.info(
        "invitation sent",
        extra={
            "invitation_id": invitation_id,
            "organization_id": organization_id,
            "role": role,
            "by": principal.user_id,
        },
    )
    return invitation_out(invitation)


async def invitations(uow: UnitOfWork, principal: Principal, organization_id: int, page: Page) -> dict[str, Any]:
    """The invitations an organization the caller manages sent, a page at a time."""
    async with uow.reading() as r:
        await check_own_organization(r.conn, principal, organization_id)
        rows, total = await store.invitations_page(r.conn, organization_id, page)
    return page_of("invitations", [invitation_out(row) for row in rows], page, total)


ORGANIZATION_INVITATIONS_MAX = 1000


async def organization_invitations(uow: UnitOfWork, principal: Principal, organization_id: int) -> list[dict[str, Any]]:
    """D-REC's invitations of an organization, as one list: newest first, at most ORGANIZATION_INVITATIONS_MAX
    (GET /api/invitation pages through all). For a member of the organization (any role), an Admin any, an API
    user those registered under it; 404 for an organization that does not exist."""
    async with uow.reading() as r:
        await check_own_organization(r.conn, principal, organization_id)
        if await store.organization_by_id(r.conn, organization_id) is None:
            raise ApiError(404, f"Organization {organization_id} does not exist")
        rows = await store.invitations_of(r.conn, organization_id, ORGANIZATION_INVITATIONS_MAX)
    return [invitation_out(row) for row in rows]


MY_INVITATIONS_MAX = 100


async def my_invitations(uow: UnitOfWork, principal: Principal) -> list[dict[str, Any]]:
    """The invitations sent to the caller's e-mail address (every organization's, answered ones too),
    newest first, at most MY_INVITATIONS_MAX."""
    async with uow.reading() as r:
        rows = await store.invitations_to(r.conn, principal.email.lower(), MY_INVITATIONS_MAX)
    return [invitation_out(row) for row in rows]


async def answer(
    uow: UnitOfWork, identity: Identity, principal: Principal, invitation_id: int, status: str
) -> dict[str, Any]:
    """Accept or reject an invitation sent to the caller's e-mail address. Accepting moves the caller
    into the inviting organization with the invited role; their current tokens are revoked (log in again)."""
    revoked: Revoked = []
    async with uow:
        invitation = await store.invitation_by_id(uow.conn, invitation_id, lock=True)
        # Someone else's invitation is answered as if it did not exist.
        if invitation is None or invitation["email"] != principal.email.lower():
            raise ApiError(404, f"Invitation {invitation_id} does not exist")
        _open(invitation, await store.now(uow.conn))
        if status == "Accepted":
            user = await store.user_by_id(uow.conn, principal.user_id)
            if user is None:
                raise ApiError(401, NO_ACCOUNT)
            if user["organization_id"] == invitation["organization_id"]:
                raise ApiError(409, "You are already a member of this organization")
            if user["role"] not in ("DeviceOwner", "SubBuyer", "User"):
                raise ApiError(409, f"As {user['role']} of your organization you cannot move to another one")
            await store.move_user(uow.conn, user["id"], invitation["organization_id"], invitation["role"])
            revoked = await revoke_sessions(uow, user["id"])
        await store.answer_invitation(uow.conn, invitation_id, status)
        invitation = await store.invitation_by_id(uow.conn, invitation_id)
    identity.refuse_here(revoked)
    log.info(
        "invitation answered",
        extra={"invitation_id": invitation_id, "status": status, "user_id": principal.user_id},
    )
    return invitation_out(invitation)


async def register_invited(
    uow: UnitOfWork, identity: Identity, token: str, body: InvitedRegistration
) -> dict[str, Any]:
    """The account of an invited e-mail address (the mailed token is the proof), in the inviting organization.
    The e-mail counts as confirmed. An account removed from an organization earlier comes back."""
    if len(token) > TOKEN_MAX_LENGTH:
        raise ApiError(400, BAD_TOKEN)
    password_hash = await identity.passwords.hash(body.password)
    squatted: Revoked = []
    async with uow:
        conn = uow.conn
        invitation_id = await store.invitation_id_by_token(conn, domain.token_digest(token))
        invitation = await store.invitation_by_id(conn, invitation_id, lock=True) if invitation_id else None
        if (
            invitation is None
            or invitation["status"] != "Pending"
            or invitation["expires_at"] <= await store.now(conn)
            or invitation["organization_status"] == domain.DELETED
        ):
            raise ApiError(400, BAD_TOKEN)
        existing = await store.user_by_email(conn, invitation["email"])
        if existing is not None and existing["status"] != "Deleted":
            if existing["email_confirmed"]:
                message = f"An account with this e-mail exists: log in and accept invitation {invitation['id']}"
                raise ApiError(409, message)
            # An account nobody proved this address for (registered by whoever typed it, maybe to squat the invitee's
            # address): the mailed token proves it now, so the address goes to the invitee and that account's
            # sessions end (issue 12).
            squatted = await revoke_sessions(uow, existing["id"])
            log.warning(
                "an unconfirmed account's address was claimed by its invitee",
                extra={"invitation_id": invitation["id"], "user_id": existing["id"]},
            )
        common = {
            "organization_id": invitation["organization_id"],
            "role": invitation["role"],
            "first_name": body.firstName,
            "last_name": body.lastName,
        }
        if existing is not None:
            await store.reactivate_user(conn, existing["id"], password_hash=password_hash, **common)
            user_id = existing["id"]
        else:
            created = await store.insert_user(
                conn, email=invitation["email"], password_hash=password_hash, email_confirmed=True, **common
            )
            user_id = created["id"]
            uow.record(
                UserRegistered(
                    user_id=user_id,
                    organization_id=invitation["organization_id"],
                    email=invitation["email"],
                    role=invitation["role"],
                )
            )
        await store.answer_invitation(conn, invitation["id"], "Accepted")
        user = await store.user_by_id(conn, user_id)
    identity.refuse_here(squatted)  # committed: this process refuses them at once, the others on token.revoked
    log.info("invited user registered", extra={"invitation_id": invitation["id"], "user_id": user_id})
    return joined_user_out(user)
