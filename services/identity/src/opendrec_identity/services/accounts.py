"""Accounts: registration with an organization, login (throttled) and logout, the caller's own profile,
e-mail confirmation, password reset and change.

One-time tokens are 256 random bits, mailed to the user and stored only as a SHA-256; each is
spent by one atomic UPDATE, so it works once, and not after it expires (settings).
Passwords are hashed (argon2) before a unit of work opens, so no connection waits on a hash.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime
from typing import Any

from opendrec_kit import ApiError, Principal, UnitOfWork

from .. import domain, mail, store
from ..bodies import ChangePassword, Login, Profile, RegisterWithOrganization, ResetPassword
from ..throttle import account_key
from .common import (
    CONFIRM,
    NO_ACCOUNT,
    RESET,
    Identity,
    announce_revoked,
    answered_privately,
    issue_access_token,
    joined_user_out,
    organization_out,
    queue_confirmation,
    refuse_taken,
    register_administered_organization,
    revoke_sessions,
    user_out,
)

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid username or password"
BAD_CONFIRMATION = "This confirmation token is invalid, already used or expired; ask for a new one"
BAD_RESET = "This reset token is invalid, already used or expired; ask for a new one"
RESET_ANSWER = "If an account exists for this e-mail address, a mail with a reset token has been sent to it"

ThrottleKeys = dict[str, domain.ThrottlePolicy]


class LoginThrottled(Exception):
    """Too many failed logins for the account or the address: try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed logins; try again in {retry_after} seconds")
        self.retry_after = retry_after


# -- registration -------------------------------------------------------------------------------------------


async def register_with_organization(
    uow: UnitOfWork, identity: Identity, body: RegisterWithOrganization
) -> dict[str, Any]:
    """An organization (Developer or Buyer) and its first user, who administers it; a confirmation mail."""
    if answer := await answered_privately(uow, identity, body, role=domain.first_user_role(body.organizationType)):
        return answer
    await refuse_taken(uow, body)
    passwords = identity.passwords
    password_hash, secret_key_hash = await asyncio.gather(passwords.hash(body.password), passwords.hash(body.secretKey))
    role, org, user = await register_administered_organization(
        uow, identity, body, password_hash=password_hash, secret_key_hash=secret_key_hash
    )
    log.info(
        "organization registered",
        extra={
            "organization_id": org["id"],
            "organization_type": org["organization_type"],
            "user_id": user["id"],
            "role": role,
        },
    )
    return user_out(user, organization_out(org))


# -- login and logout ---------------------------------------------------------------------------------------


async def login(
    uow: UnitOfWork, identity: Identity, body: Login, peer: str | None, forwarded_for: str | None
) -> dict[str, str]:
    """E-mail and password for a signed access token; refused (LoginThrottled) while the account or the
    client address is throttled, checked before the password: a blocked key learns nothing."""
    address = domain.client_address(peer, forwarded_for, identity.settings.trust_forwarded_for)
    keys = identity.throttle.keys(body.username, address)
    try:
        email: str | None = domain.normalize_email(body.username)
    except domain.Invalid:
        email = None
    async with uow.reading() as r:  # the throttle and the account in one statement: a login costs few round trips
        found = await store.login_lookup(r.conn, list(keys), email)
    wait = domain.retry_after_seconds(found["blocked_until"], found["now"])
    if wait is not None:
        log.info("login throttled", extra={"retry_after_s": wait})
        raise LoginThrottled(wait)
    # Only the account's counts on record are cleared by a right password (none, mostly: no statement then).
    counted = [key for key in found["throttled"] if key.startswith("account:")]

    passwords = identity.passwords
    if found["id"] is None:
        await passwords.spend_verify_time(body.password)  # as slow as a wrong password: no e-mail probing
        await _failed(uow, keys)
        log.info("login refused", extra={"reason": "unknown account"})
        raise ApiError(401, INVALID_CREDENTIALS)
    user = found
    if not await passwords.verify(user["password_hash"], body.password):
        await _failed(uow, keys)
        log.info("login refused", extra={"reason": "wrong password", "user_id": user["id"]})
        raise ApiError(401, INVALID_CREDENTIALS)
    if user["status"] != "Active":
        await _succeeded(uow, counted)
        # The password was right, so saying why tells a stranger nothing.
        raise ApiError(403, f"This account is {user['status'].lower()}; it cannot log in")
    if user["organization_api_user_id"] is not None:
        await _succeeded(uow, counted)
        # D-REC: the users of an API user's organizations do not log in; the API user acts for them.
        raise ApiError(401, "This account belongs to an organization managed by an API user; that API user acts for it")

    # Hashes made under older argon2 parameters are upgraded while we know the password.
    new_hash = await passwords.hash(body.password) if passwords.needs_rehash(user["password_hash"]) else None
    async with uow:  # the throttle cleared and the token recorded in one transaction
        await _succeeded(uow, counted)
        token = await issue_access_token(uow, identity.tokens, user, new_password_hash=new_hash)
    log.info("login", extra={"user_id": user["id"], "organization_id": user["organization_id"]})
    return {"accessToken": token}


async def _failed(uow: UnitOfWork, keys: ThrottleKeys) -> None:
    async with uow:
        now = await store.now(uow.conn)
        for key in sorted(keys):  # one lock order for every instance: no deadlocks
            row = await store.lock_throttle_row(uow.conn, key)
            before = (
                domain.ThrottleState(row["failures"], row["window_start"], row["blocked_until"])
                if row["failures"]
                else None
            )
            after = domain.after_failure(keys[key], before, now)
            await store.save_throttle(uow.conn, key, after.failures, after.window_start, after.blocked_until)


async def _succeeded(uow: UnitOfWork, counted: list[str]) -> None:
    """A right password clears the account's counts, its own and from this address (not the address's: one good
    account must not let an address go on guessing others): `counted`, the account keys that had a row."""
    if counted:
        async with uow:
            await store.clear_throttle(uow.conn, counted)


async def logout(uow: UnitOfWork, identity: Identity, principal: Principal, expires_at: datetime) -> dict[str, Any]:
    """Revoke the caller's access token (expiring at `expires_at`): every service refuses it from now on."""
    revoked = [(principal.token_id, expires_at)]
    async with uow:
        await store.revoke_access_token(uow.conn, principal.token_id, principal.user_id, expires_at)
        announce_revoked(uow, revoked, principal.user_id)
    identity.refuse_here(revoked)
    log.info("logout", extra={"user_id": principal.user_id})
    return {"success": True, "message": "Logged out; this access token is revoked"}


# -- the caller's own account -------------------------------------------------------------------------------


async def me(uow: UnitOfWork, principal: Principal) -> dict[str, Any]:
    """The caller, with their organization, role and current permissions."""
    async with uow.reading() as r:
        user = await store.user_by_id(r.conn, principal.user_id)
        if user is None:
            raise ApiError(401, NO_ACCOUNT)
        grants = await store.module_grants(r.conn, user["role"], user["id"])
    permissions = domain.effective_permissions(user["role"], grants)
    return {
        **joined_user_out(user),
        "permissions": {module: domain.action_names(letters) for module, letters in permissions.items()},
    }


async def update_profile(uow: UnitOfWork, principal: Principal, body: Profile) -> dict[str, Any]:
    """Change the caller's first and/or last name."""
    async with uow:
        await store.update_profile(uow.conn, principal.user_id, body.firstName, body.lastName)
        user = await store.user_by_id(uow.conn, principal.user_id)
    if user is None:
        raise ApiError(401, NO_ACCOUNT)
    return joined_user_out(user)


async def confirm_email(uow: UnitOfWork, token: str) -> dict[str, Any]:
    """Confirm the e-mail address with the token from the confirmation mail."""
    async with uow:
        user_id = await store.use_user_token(uow.conn, CONFIRM, domain.token_digest(token))
        if user_id is None:
            raise ApiError(400, BAD_CONFIRMATION)
        await store.confirm_email(uow.conn, user_id)
    log.info("email confirmed", extra={"user_id": user_id})
    return {"success": True, "message": "Your e-mail address is confirmed"}


async def resend_confirmation(uow: UnitOfWork, identity: Identity, principal: Principal) -> dict[str, Any]:
    """Mail a new confirmation token to the caller (earlier ones stop working)."""
    async with uow:
        user = await store.user_by_id(uow.conn, principal.user_id)
        if user is None:
            raise ApiError(401, NO_ACCOUNT)
        if user["email_confirmed"]:
            raise ApiError(409, "Your e-mail address is already confirmed")
        await queue_confirmation(uow, identity.settings, user["id"], user["email"], user["first_name"])
    identity.send_mail_now()
    return {"success": True, "message": f"A confirmation mail has been sent to {user['email']}"}


async def forget_password(uow: UnitOfWork, identity: Identity, email: str) -> dict[str, Any]:
    """Mail a password reset token to an active account. The answer is the same whether or not it exists."""
    settings = identity.settings
    async with uow:
        user = await store.user_by_email(uow.conn, email)
        if user is not None and user["status"] == "Active":
            token = secrets.token_urlsafe(32)
            await store.create_user_token(
                uow.conn, user["id"], RESET, domain.token_digest(token), settings.password_reset_ttl_seconds
            )
            subject, text = mail.reset_mail(
                user["first_name"], settings.public_url, token, settings.password_reset_ttl_seconds // 60
            )
            await store.queue_mail(uow.conn, user["email"], subject, text)
    if user is not None:
        identity.send_mail_now()
        log.info("password reset asked", extra={"user_id": user["id"]})
    return {"success": True, "message": RESET_ANSWER}


async def reset_password(uow: UnitOfWork, identity: Identity, token: str, body: ResetPassword) -> dict[str, Any]:
    """A new password with the token from the reset mail. Every session of the account ends."""
    password_hash = await identity.passwords.hash(body.newPassword)
    async with uow:
        user_id = await store.use_user_token(uow.conn, RESET, domain.token_digest(token))
        if user_id is None:
            raise ApiError(400, BAD_RESET)
        await store.update_password_hash(uow.conn, user_id, password_hash)
        # Whoever knew the old password is logged out everywhere.
        revoked = await revoke_sessions(uow, user_id)
        user = await store.user_by_id(uow.conn, user_id)
        assert user is not None  # the token's user: users are never deleted (only marked Deleted)
        await store.clear_account_throttle(uow.conn, account_key(user["email"]))
    identity.refuse_here(revoked)
    log.info("password reset", extra={"user_id": user_id, "tokens_revoked": len(revoked)})
    return {"success": True, "message": "Your password has been changed; log in with the new one"}


async def change_password(
    uow: UnitOfWork, identity: Identity, principal: Principal, body: ChangePassword
) -> dict[str, Any]:
    """Change the caller's password (the old one is required). The caller's other sessions end."""
    async with uow.reading() as r:
        user = await store.user_by_id(r.conn, principal.user_id)
    if user is None:
        raise ApiError(401, NO_ACCOUNT)
    passwords = identity.passwords
    if not await passwords.verify(user["password_hash"], body.oldPassword):
        raise ApiError(
            400,
            "Invalid request: check oldPassword",
            [{"field": "oldPassword", "message": "oldPassword is not your current password"}],
        )
    if body.newPassword == body.oldPassword:
        raise ApiError(
            400,
            "Invalid request: check newPassword",
            [{"field": "newPassword", "message": "newPassword must differ from oldPassword"}],
        )
    password_hash = await passwords.hash(body.newPassword)
    async with uow:
        await store.update_password_hash(uow.conn, user["id"], password_hash)
        revoked = await revoke_sessions(uow, user["id"], keep_jti=principal.token_id)
    identity.refuse_here(revoked)
    log.info("password changed", extra={"user_id": user["id"], "tokens_revoked": len(revoked)})
    return {"success": True, "message": "Your password has been changed"}
