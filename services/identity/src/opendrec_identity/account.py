"""The caller's own account: e-mail confirmation, password reset and change, profile.

One-time tokens are 256 random bits, mailed to the user and stored only as a SHA-256; each is
spent by one atomic UPDATE, so it works once, and not after it expires (settings).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import asyncpg
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from opendrec_kit import ApiError, CurrentPrincipal, Pool, Principal, Runtime, permission
from opendrec_kit.errors import field_rule

from . import domain, mail, store
from .api import Done, Hasher, UserOut, _joined_user_out, revoke_here, revoke_sessions
from .settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["user"])

CONFIRM, RESET = "confirm_email", "reset_password"
BAD_CONFIRMATION = "This confirmation token is invalid, already used or expired; ask for a new one"
BAD_RESET = "This reset token is invalid, already used or expired; ask for a new one"
RESET_ANSWER = "If an account exists for this e-mail address, a mail with a reset token has been sent to it"

TokenParam = Path(min_length=1, max_length=200, description="the token received by mail")


def _settings(runtime: Any) -> Settings:
    return runtime.settings


async def queue_confirmation(
    conn: asyncpg.Connection, settings: Settings, user_id: int, email: str, first_name: str
) -> None:
    await mail.queue_confirmation(
        conn, user_id, email, first_name, settings.public_url, settings.email_confirmation_ttl_seconds
    )


def mail_now(request: Request) -> None:
    request.app.state.mailer.wake()


# -- bodies ---------------------------------------------------------------------------------------------


class ForgetPassword(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)
    email: str

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return field_rule(domain.normalize_email, value)


def _new_password(value: str) -> str:
    return field_rule(domain.check_password, value)


def _confirmation(value: str, info: ValidationInfo) -> str:
    if "newPassword" in info.data and value != info.data["newPassword"]:
        raise PydanticCustomError("mismatch", "confirmPassword must match newPassword")
    return value


class ResetPassword(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)
    newPassword: str = Field(description=domain.PASSWORD_RULE)
    confirmPassword: str

    _check_new = field_validator("newPassword")(_new_password)
    _check_confirm = field_validator("confirmPassword")(_confirmation)


class ChangePassword(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)
    oldPassword: str = Field(min_length=1, max_length=1024)
    newPassword: str = Field(description=domain.PASSWORD_RULE)
    confirmPassword: str

    _check_new = field_validator("newPassword")(_new_password)
    _check_confirm = field_validator("confirmPassword")(_confirmation)


class Profile(BaseModel):
    firstName: str | None = None
    lastName: str | None = None

    @field_validator("firstName", "lastName")
    @classmethod
    def _name(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else field_rule(domain.required_text, value, info.field_name, 100)

    @model_validator(mode="after")
    def _something(self) -> Profile:
        if self.firstName is None and self.lastName is None:
            raise PydanticCustomError("empty", "give firstName, lastName or both")
        return self


# -- routes ------------------------------------------------------------------------------------------------


@router.put("/api/user/confirm-email/{token}", response_model=Done)
async def confirm_email(pool: Pool, token: str = TokenParam) -> dict[str, Any]:
    """Confirm the e-mail address with the token from the confirmation mail (no login needed)."""
    async with pool.acquire() as conn, conn.transaction():
        user_id = await store.use_user_token(conn, CONFIRM, domain.token_digest(token))
        if user_id is None:
            raise ApiError(400, BAD_CONFIRMATION)
        await store.confirm_email(conn, user_id)
    log.info("email confirmed", extra={"user_id": user_id})
    return {"success": True, "message": "Your e-mail address is confirmed"}


@router.put("/api/user/resend-confirm-email", response_model=Done)
async def resend_confirm_email(
    principal: CurrentPrincipal, request: Request, pool: Pool, runtime: Runtime
) -> dict[str, Any]:
    """Mail a new confirmation token to the caller (earlier ones stop working)."""
    async with pool.acquire() as conn, conn.transaction():
        user = await store.user_by_id(conn, principal.user_id)
        if user is None:
            raise ApiError(401, "The account of this access token no longer exists")
        if user["email_confirmed"]:
            raise ApiError(409, "Your e-mail address is already confirmed")
        await queue_confirmation(conn, _settings(runtime), user["id"], user["email"], user["first_name"])
    mail_now(request)
    return {"success": True, "message": f"A confirmation mail has been sent to {user['email']}"}


@router.post("/api/user/forget-password", response_model=Done)
async def forget_password(body: ForgetPassword, request: Request, pool: Pool, runtime: Runtime) -> dict[str, Any]:
    """Mail a password reset token. The answer is the same whether or not the e-mail is registered."""
    settings = _settings(runtime)
    async with pool.acquire() as conn, conn.transaction():
        user = await store.user_by_email(conn, body.email)
        if user is not None and user["status"] == "Active":
            token = secrets.token_urlsafe(32)
            await store.create_user_token(
                conn, user["id"], RESET, domain.token_digest(token), settings.password_reset_ttl_seconds
            )
            subject, text = mail.reset_mail(
                user["first_name"], settings.public_url, token, settings.password_reset_ttl_seconds // 60
            )
            await mail.queue(conn, user["email"], subject, text)
    if user is not None:
        mail_now(request)
        log.info("password reset asked", extra={"user_id": user["id"]})
    return {"success": True, "message": RESET_ANSWER}


@router.put("/api/user/reset/password/{token}", response_model=Done)
async def reset_password(
    body: ResetPassword, request: Request, pool: Pool, runtime: Runtime, passwords: Hasher, token: str = TokenParam
) -> dict[str, Any]:
    """Set a new password with the token from the reset mail (no login needed). Every session of the account ends."""
    password_hash = await passwords.hash(body.newPassword)
    async with pool.acquire() as conn, conn.transaction():
        user_id = await store.use_user_token(conn, RESET, domain.token_digest(token))
        if user_id is None:
            raise ApiError(400, BAD_RESET)
        await store.update_password_hash(conn, user_id, password_hash)
        # Whoever knew the old password is logged out everywhere.
        revoked = await revoke_sessions(conn, user_id, runtime.settings.service_name)
        user = await store.user_by_id(conn, user_id)
        await store.clear_throttle(conn, f"account:{user['email']}")
    revoke_here(request, revoked)
    log.info("password reset", extra={"user_id": user_id, "tokens_revoked": len(revoked)})
    return {"success": True, "message": "Your password has been changed; log in with the new one"}


@router.put("/api/user/password", response_model=Done)
async def change_password(
    body: ChangePassword,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    passwords: Hasher,
    principal: Principal = permission("PASSWORD_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Change the caller's password (the old one is required). The caller's other sessions end."""
    async with pool.acquire() as conn:
        user = await store.user_by_id(conn, principal.user_id)
    if user is None:
        raise ApiError(401, "The account of this access token no longer exists")
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
    async with pool.acquire() as conn, conn.transaction():
        await store.update_password_hash(conn, user["id"], password_hash)
        revoked = await revoke_sessions(conn, user["id"], runtime.settings.service_name, keep_jti=principal.token_id)
    revoke_here(request, revoked)
    log.info("password changed", extra={"user_id": user["id"], "tokens_revoked": len(revoked)})
    return {"success": True, "message": "Your password has been changed"}


@router.put("/api/user/profile", response_model=UserOut)
async def update_profile(body: Profile, principal: CurrentPrincipal, pool: Pool) -> dict[str, Any]:
    """Change the caller's first and/or last name."""
    async with pool.acquire() as conn:
        await store.update_profile(conn, principal.user_id, body.firstName, body.lastName)
        user = await store.user_by_id(conn, principal.user_id)
    if user is None:
        raise ApiError(401, "The account of this access token no longer exists")
    return _joined_user_out(user)
