"""Invitations to join an organization.

An organization's administrator invites an e-mail address with a role; the mail carries the
invitation id and a one-time token. Someone without an account registers with the token
(POST /api/invitation/register/{token}: the mail proved the address, so it is confirmed);
an account holder logs in and accepts or rejects (PUT /api/invitation/{id}).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator

from opendrec_contracts import UserRegistered
from opendrec_kit import ApiError, CurrentPrincipal, Pool, Principal, Runtime, outbox, permission
from opendrec_kit.errors import field_rule

from . import domain, mail, store
from .api import Hasher, NewAccount, UserOut, _joined_user_out, revoke_here, revoke_sessions
from .organizations import Paging, own_organization
from .settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["invitation"])

BAD_TOKEN = "This invitation token is invalid, already used or expired; ask for a new invitation"


class Invite(BaseModel):
    email: str
    role: str = Field(
        description="a role of the organization's type: Developer OrganizationAdmin|DeviceOwner|User, Buyer Buyer|SubBuyer|User"
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return field_rule(domain.normalize_email, value)


class Answer(BaseModel):
    status: Literal["Accepted", "Rejected"]


class InvitedRegistration(NewAccount):
    """An invitee without an account registers with the mailed token (the email is the invitation's)."""


class InvitationOrganization(BaseModel):
    id: int
    name: str


class InvitationOut(BaseModel):
    id: int
    email: str
    role: str
    status: str
    sender: str
    organization: InvitationOrganization
    createdAt: datetime
    expiresAt: datetime


class InvitationsPage(BaseModel):
    invitations: list[InvitationOut]
    currentPage: int
    totalPages: int
    totalCount: int


def invitation_out(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "email": row["email"],
        "role": row["role"],
        "status": row["status"],
        "sender": row["sender_email"],
        "organization": {"id": row["organization_id"], "name": row["organization_name"]},
        "createdAt": row["created_at"],
        "expiresAt": row["expires_at"],
    }


def _open(invitation: asyncpg.Record, now: datetime) -> None:
    if invitation["status"] != "Pending":
        raise ApiError(409, f"This invitation is already {invitation['status'].lower()}")
    if invitation["expires_at"] <= now:
        raise ApiError(409, "This invitation has expired; ask for a new one")


@router.post("/api/invitation", status_code=201, response_model=InvitationOut)
async def invite(
    body: Invite,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    organizationId: int | None = Query(None, description="the inviting organization (default: the caller's)"),
    principal: Principal = permission("INVITATION_MANAGEMENT_CRUDL", "Write"),
) -> dict[str, Any]:
    """Invite an e-mail address to join an organization with a role; a mail is sent to it."""
    settings: Settings = runtime.settings  # type: ignore[assignment]
    organization_id = organizationId or principal.organization_id
    await own_organization(pool, principal, organization_id)
    token = secrets.token_urlsafe(32)
    try:
        async with pool.acquire() as conn, conn.transaction():
            organization = await store.organization_by_id(conn, organization_id)
            if organization is None:
                raise ApiError(404, f"Organization {organization_id} does not exist")
            try:
                role = domain.check_member_role(organization["organization_type"], body.role)
            except domain.Invalid as exc:
                raise ApiError(400, "Invalid request: check role", [{"field": "role", "message": str(exc)}]) from None
            existing = await store.user_by_email(conn, body.email)
            if (
                existing is not None
                and existing["organization_id"] == organization_id
                and existing["status"] != "Deleted"
            ):
                raise ApiError(409, f"{body.email} is already a member of this organization")
            invitation_id = await store.insert_invitation(
                conn,
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
            await mail.queue(conn, body.email, subject, text)
            invitation = await store.invitation_by_id(conn, invitation_id)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != store.INVITATION_PENDING_UNIQUE:
            raise
        raise ApiError(409, f"{body.email} already has an open invitation to this organization") from None
    request.app.state.mailer.wake()
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


@router.get("/api/invitation", response_model=InvitationsPage)
async def invitations(
    pool: Pool,
    page: domain.Page = Paging,
    organizationId: int | None = Query(None, description="default: the caller's organization"),
    principal: Principal = permission("INVITATION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """The invitations an organization sent, a page at a time."""
    organization_id = organizationId or principal.organization_id
    await own_organization(pool, principal, organization_id)
    async with pool.acquire() as conn:
        rows, total = await store.invitations_page(conn, organization_id, page)
    return {
        "invitations": [invitation_out(r) for r in rows],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }


@router.put("/api/invitation/{invitationId}", response_model=InvitationOut)
async def answer(
    invitationId: int, body: Answer, principal: CurrentPrincipal, request: Request, pool: Pool, runtime: Runtime
) -> dict[str, Any]:
    """Accept or reject an invitation sent to the caller's e-mail address. Accepting moves the caller
    into the inviting organization with the invited role; their current tokens are revoked (log in again)."""
    revoked: list[tuple[str, datetime]] = []
    async with pool.acquire() as conn, conn.transaction():
        invitation = await store.invitation_by_id(conn, invitationId, lock=True)
        # Someone else's invitation is answered as if it did not exist.
        if invitation is None or invitation["email"] != principal.email.lower():
            raise ApiError(404, f"Invitation {invitationId} does not exist")
        _open(invitation, await store.now(conn))
        if body.status == "Accepted":
            user = await store.user_by_id(conn, principal.user_id)
            if user is None:
                raise ApiError(401, "The account of this access token no longer exists")
            if user["organization_id"] == invitation["organization_id"]:
                raise ApiError(409, "You are already a member of this organization")
            if user["role"] not in ("DeviceOwner", "SubBuyer", "User"):
                raise ApiError(409, f"As {user['role']} of your organization you cannot move to another one")
            await store.move_user(conn, user["id"], invitation["organization_id"], invitation["role"])
            revoked = await revoke_sessions(conn, user["id"], runtime.settings.service_name)
        await store.answer_invitation(conn, invitationId, body.status)
        invitation = await store.invitation_by_id(conn, invitationId)
    revoke_here(request, revoked)
    log.info(
        "invitation answered",
        extra={"invitation_id": invitationId, "status": body.status, "user_id": principal.user_id},
    )
    return invitation_out(invitation)


@router.post("/api/invitation/register/{token}", status_code=201, response_model=UserOut)
async def register_invited(
    body: InvitedRegistration, pool: Pool, runtime: Runtime, passwords: Hasher, token: str
) -> dict[str, Any]:
    """Create the account of an invited e-mail address (no login: the mailed token is the proof) and
    join the organization. The e-mail counts as confirmed."""
    if len(token) > 200:
        raise ApiError(400, BAD_TOKEN)
    password_hash = await passwords.hash(body.password)
    async with pool.acquire() as conn, conn.transaction():
        invitation_id = await store.invitation_id_by_token(conn, domain.token_digest(token))
        invitation = await store.invitation_by_id(conn, invitation_id, lock=True) if invitation_id else None
        if invitation is None or invitation["status"] != "Pending" or invitation["expires_at"] <= await store.now(conn):
            raise ApiError(400, BAD_TOKEN)
        existing = await store.user_by_email(conn, invitation["email"])
        if existing is not None and existing["status"] != "Deleted":
            raise ApiError(409, f"An account with this e-mail exists: log in and accept invitation {invitation['id']}")
        common = {
            "organization_id": invitation["organization_id"],
            "role": invitation["role"],
            "first_name": body.firstName,
            "last_name": body.lastName,
        }
        if existing is not None:  # removed from an organization earlier: the account comes back
            await store.reactivate_user(conn, existing["id"], password_hash=password_hash, **common)
            user_id = existing["id"]
        else:
            created = await store.insert_user(
                conn, email=invitation["email"], password_hash=password_hash, email_confirmed=True, **common
            )
            user_id = created["id"]
            await outbox.add(
                conn,
                UserRegistered(
                    user_id=user_id,
                    organization_id=invitation["organization_id"],
                    email=invitation["email"],
                    role=invitation["role"],
                ),
                runtime.settings.service_name,
            )
        await store.answer_invitation(conn, invitation["id"], "Accepted")
        user = await store.user_by_id(conn, user_id)
    log.info("invited user registered", extra={"invitation_id": invitation["id"], "user_id": user_id})
    return _joined_user_out(user)
