"""What several of identity's use cases share: their collaborators, the answers' shapes, ending sessions,
registering an organization, the mail queue, and who may manage an organization."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from opendrec_contracts import AccessTokenRevoked, OrganizationRegistered, UserRegistered
from opendrec_kit import ApiError, Principal, UnitOfWork, Worker
from opendrec_kit.auth import TokenVerifier
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso

from .. import domain, mail, store
from ..bodies import NewOrganizationAccount, RegisterWithOrganization
from ..passwords import Passwords
from ..settings import Settings
from ..throttle import LoginThrottle
from ..tokens import TokenService

log = logging.getLogger(__name__)

NO_ACCOUNT = "The account of this access token no longer exists"
CONFIRM, RESET = "confirm_email", "reset_password"

Revoked = list[tuple[str, datetime]]


@dataclass(frozen=True)
class Identity:
    """What identity's use cases work with besides the unit of work (one per process, built in app.py)."""

    settings: Settings
    passwords: Passwords
    tokens: TokenService
    throttle: LoginThrottle
    verifier: TokenVerifier  # this instance's: revoked tokens are refused here at once
    mailer: Worker  # sends the queued mails; woken after a commit that queued one

    def refuse_here(self, revoked: Revoked) -> None:
        """Refuse revoked tokens in this instance at once (other instances follow token.revoked within moments).
        Call after the commit that revoked them."""
        for jti, expires_at in revoked:
            self.verifier.revoke(jti, expires_at.timestamp())

    def send_mail_now(self) -> None:
        """Call after committing a unit of work that queued mail: sent now rather than at the next poll."""
        self.mailer.wake()


# -- answers ------------------------------------------------------------------------------------------------


def organization_out(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "address": row["address"],
        "organizationType": row["organization_type"],
        "status": row["status"],
        "createdAt": iso(row["created_at"]),
    }


def user_out(user: Any, organization: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "firstName": user["first_name"],
        "lastName": user["last_name"],
        "email": user["email"],
        "role": user["role"],
        "status": user["status"],
        "emailConfirmed": user["email_confirmed"],
        "createdAt": iso(user["created_at"]),
        "organization": organization,
    }


def joined_user_out(row: Any) -> dict[str, Any]:
    """A user row of store's user-with-organization queries."""
    return user_out(
        row,
        {
            "id": row["organization_id"],
            "name": row["organization_name"],
            "address": row["organization_address"],
            "organizationType": row["organization_type"],
            "status": row["organization_status"],
            "createdAt": iso(row["organization_created_at"]),
        },
    )


def page_of(key: str, items: list[dict[str, Any]], page: Page, total: int) -> dict[str, Any]:
    """A listing's answer: the page's items under `key`, and the totals."""
    return {key: items, "currentPage": page.number, "totalPages": total_pages(total, page.limit), "totalCount": total}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, f"Invalid request: check {field}", [{"field": field, "message": message}])


# -- sessions -----------------------------------------------------------------------------------------------


async def revoke_sessions(uow: UnitOfWork, user_id: int, keep_jti: str | None = None) -> Revoked:
    """End the user's sessions (all but `keep_jti`): marked revoked here and announced to every service
    (token.revoked) when the unit of work commits."""
    rows = await store.revoke_user_tokens(uow.conn, user_id, keep_jti=keep_jti)
    revoked = [(r["jti"], r["expires_at"]) for r in rows]
    announce_revoked(uow, revoked, user_id)
    return revoked


def announce_revoked(uow: UnitOfWork, revoked: Revoked, user_id: int) -> None:
    uow.record_all(AccessTokenRevoked(token_id=jti, user_id=user_id, expires_at=exp) for jti, exp in revoked)


async def revoke_sessions_of_users(uow: UnitOfWork, user_ids: list[int]) -> Revoked:
    """End every session of these users (e.g. all holders of a role whose grant was reduced)."""
    if not user_ids:
        return []
    rows = await store.revoke_tokens_of_users(uow.conn, user_ids)
    uow.record_all(
        AccessTokenRevoked(token_id=r["jti"], user_id=r["user_id"], expires_at=r["expires_at"]) for r in rows
    )
    return [(r["jti"], r["expires_at"]) for r in rows]


async def issue_access_token(
    uow: UnitOfWork, tokens: TokenService, user: Any, new_password_hash: str | None = None
) -> str:
    """Sign a token with the user's current role and permissions, and record it (so that a password
    change or a removal from the organization can revoke it)."""
    async with uow:
        grants = await store.module_grants(uow.conn, user["role"], user["id"])
        api_user = await store.api_user_by_user(uow.conn, user["id"]) if user["role"] == domain.API_USER else None
        token, claims = tokens.issue_with_claims(
            user_id=user["id"],
            organization_id=user["organization_id"],
            organization_type=user["organization_type"],
            role=user["role"],
            email=user["email"],
            permissions=domain.effective_permissions(user["role"], grants),
            api_user_id=str(api_user["id"]) if api_user else None,
        )
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        await store.record_access_token(uow.conn, claims["jti"], user["id"], expires_at)
        if new_password_hash:
            await store.update_password_hash(uow.conn, user["id"], new_password_hash)
    return token


# -- registration -------------------------------------------------------------------------------------------


def conflict(email: bool, organization_name: bool) -> ApiError:
    details = []
    if email:
        details.append({"field": "email", "message": "an account with this email already exists"})
    if organization_name:
        details.append({"field": "orgName", "message": "an organization with this name already exists"})
    fields = " and ".join(d["field"] for d in details)
    return ApiError(409, f"Already registered: {fields}", details)


async def refuse_taken(uow: UnitOfWork, body: NewOrganizationAccount) -> None:
    """409 when the e-mail or the organization name is already registered (checked before hashing)."""
    async with uow.reading() as r:
        email_taken = await store.email_taken(r.conn, body.email)
        name_taken = await store.organization_name_taken(r.conn, body.orgName)
    if email_taken or name_taken:
        raise conflict(email_taken, name_taken)


async def answered_privately(
    uow: UnitOfWork, identity: Identity, body: RegisterWithOrganization, *, role: str
) -> dict[str, Any] | None:
    """A registration anyone may send, under REGISTRATION_DISCLOSURE=private, for an e-mail address that has an
    account: nothing is created, the address's owner is mailed, and the answer is what a fresh registration
    answers (ids from the same sequences, never used), after the same hashing time. A taken organization name is
    refused first, as it is for a new address, so no answer depends on the e-mail. None when the address has no
    account (then register as usual)."""
    if identity.settings.registration_disclosure != "private":
        return None
    async with uow.reading() as r:
        owner = await store.user_by_email(r.conn, body.email)
        name_taken = await store.organization_name_taken(r.conn, body.orgName)
    if name_taken:
        raise conflict(False, True)
    if owner is None:
        return None
    passwords = identity.passwords
    await asyncio.gather(passwords.hash(body.password), passwords.hash(body.secretKey))  # as slow as registering
    async with uow:
        fresh = await store.unused_registration(uow.conn)
        subject, text = mail.registration_attempt_mail(owner["first_name"], identity.settings.public_url)
        await store.queue_mail(uow.conn, owner["email"], subject, text)
    identity.send_mail_now()
    log.info("registration with a known e-mail answered privately", extra={"user_id": owner["id"]})
    organization = {
        "id": fresh["organization_id"],
        "name": body.orgName,
        "address": body.orgAddress,
        "organization_type": body.organizationType,
        "status": "Active",  # the columns' defaults (migration 0002)
        "created_at": fresh["created_at"],
    }
    user = {
        "id": fresh["user_id"],
        "first_name": body.firstName,
        "last_name": body.lastName,
        "email": body.email,
        "role": role,
        "status": "Active",
        "email_confirmed": False,
        "created_at": fresh["created_at"],
    }
    return user_out(user, organization_out(organization))


@contextlib.contextmanager
def refusing_taken(constraint: str, refusal: ApiError) -> Iterator[None]:
    """The unique index `constraint` refused a row (someone took the value between our check and our write,
    or there was no check): `refusal` instead; any other violation passes through."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != constraint:
            raise
        raise refusal from None


def already_registered(field: str, message: str) -> ApiError:
    return ApiError(409, f"Already registered: {field}", [{"field": field, "message": message}])


@contextlib.contextmanager
def refusing_duplicates() -> Iterator[None]:
    """Someone registered the same e-mail or organization name between our check and our insert: 409."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name not in (store.EMAIL_UNIQUE, store.ORGANIZATION_NAME_UNIQUE):
            raise
        raise conflict(
            exc.constraint_name == store.EMAIL_UNIQUE, exc.constraint_name == store.ORGANIZATION_NAME_UNIQUE
        ) from None


async def register_organization(
    uow: UnitOfWork,
    settings: Settings,
    body: NewOrganizationAccount,
    *,
    role: str,
    password_hash: str,
    secret_key_hash: str | None,
    api_user_id: str | None = None,
    owner_api_user_id: Any = None,
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """An organization and its first user, their events and the confirmation mail, in the open unit of work."""
    org = await store.insert_organization(
        uow.conn,
        name=body.orgName,
        address=body.orgAddress,
        organization_type=body.organizationType,
        secret_key_hash=secret_key_hash,
        api_user_id=owner_api_user_id,
    )
    user = await store.insert_user(
        uow.conn,
        organization_id=org["id"],
        first_name=body.firstName,
        last_name=body.lastName,
        email=body.email,
        password_hash=password_hash,
        role=role,
    )
    uow.record(
        OrganizationRegistered(
            organization_id=org["id"],
            name=org["name"],
            organization_type=org["organization_type"],
            api_user_id=api_user_id,
        )
    )
    uow.record(UserRegistered(user_id=user["id"], organization_id=org["id"], email=user["email"], role=role))
    await queue_confirmation(uow, settings, user["id"], user["email"], user["first_name"])
    return org, user


async def register_administered_organization(
    uow: UnitOfWork,
    identity: Identity,
    body: NewOrganizationAccount,
    *,
    password_hash: str,
    secret_key_hash: str | None,
) -> tuple[str, asyncpg.Record, asyncpg.Record]:
    """A Developer or Buyer organization and its first user, who administers it, in a unit of work of their own
    (409 if the e-mail or name was taken meanwhile); the confirmation mail leaves at once. (role, org, user)."""
    role = domain.first_user_role(body.organizationType)
    with refusing_duplicates():
        async with uow:
            org, user = await register_organization(
                uow, identity.settings, body, role=role, password_hash=password_hash, secret_key_hash=secret_key_hash
            )
    identity.send_mail_now()
    return role, org, user


async def queue_confirmation(uow: UnitOfWork, settings: Settings, user_id: int, email: str, first_name: str) -> None:
    """A new e-mail confirmation token (replacing older ones) and its mail, in the open unit of work."""
    token = secrets.token_urlsafe(32)
    await store.create_user_token(
        uow.conn, user_id, CONFIRM, domain.token_digest(token), settings.email_confirmation_ttl_seconds
    )
    subject, text = mail.confirmation_mail(first_name, settings.public_url, token)
    await store.queue_mail(uow.conn, email, subject, text)


# -- organizations ------------------------------------------------------------------------------------------


async def check_own_organization(conn: asyncpg.Connection, principal: Principal, organization_id: int) -> None:
    """The caller may manage this organization: its own, an API user's Developer and Buyer
    organizations (registered under it), any for an Admin."""
    if principal.role == domain.ADMIN or principal.organization_id == organization_id:
        return
    if principal.role == domain.API_USER and principal.api_user_id:
        row = await store.organization_by_id(conn, organization_id)
        if row is not None and row["api_user_id"] is not None and str(row["api_user_id"]) == principal.api_user_id:
            return
    raise ApiError(403, "You can manage only your own organization")


# -- users ----------------------------------------------------------------------------------------------------


async def visible_user(conn: asyncpg.Connection, principal: Principal, user_id: int) -> asyncpg.Record:
    """The user, if the caller may read them (domain.user_visibility): 404 for one that does not exist or
    belongs to another organization (the same answer), 403 for a colleague the caller may not read."""
    user = await store.user_by_id(conn, user_id)
    seen = (
        domain.user_visibility(
            viewer_id=principal.user_id,
            viewer_role=principal.role,
            viewer_organization_id=principal.organization_id,
            user_id=user["id"],
            user_organization_id=user["organization_id"],
        )
        if user is not None
        else domain.HIDDEN
    )
    if seen == domain.HIDDEN:
        raise ApiError(404, f"User {user_id} does not exist")
    if seen == domain.FORBIDDEN:
        raise ApiError(403, "You may read your own account; your organization's administrator reads its members")
    assert user is not None
    return user
