"""Accounts over HTTP: registration, login, logout, the caller's own account, the JWKS.
Parse, authorize, call a use case (services/accounts.py), answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
from fastapi import APIRouter, HTTPException, Request, Response

from opendrec_kit import CurrentPrincipal, Principal, UoW, permission

from ..bodies import (
    AccessToken,
    ChangePassword,
    Done,
    ForgetPassword,
    Login,
    Me,
    Profile,
    RegisterWithOrganization,
    ResetPassword,
    UserOut,
)
from ..passwords import PasswordWorkBusy
from ..services import accounts
from .deps import Ident, TokenParam

router = APIRouter()


@router.post("/api/user/registerWithOrganization", status_code=201, response_model=UserOut, tags=["user"])
async def register_with_organization(body: RegisterWithOrganization, uow: UoW, identity: Ident) -> dict[str, Any]:
    """Create an organization (Developer or Buyer) and its first user, who administers it."""
    return await accounts.register_with_organization(uow, identity, body)


@router.post(
    "/api/auth/login",
    response_model=AccessToken,
    tags=["auth"],
    responses={
        401: {"description": accounts.INVALID_CREDENTIALS + " (the same answer whether or not the e-mail exists)"},
        429: {
            "description": "Too many failed logins for this account or address; retry after the Retry-After header's seconds"
        },
        503: {"description": "Too many logins at once (the password checks' pool is full); retry after Retry-After"},
    },
)
async def login(body: Login, request: Request, uow: UoW, identity: Ident) -> dict[str, str]:
    """Exchange e-mail and password for a signed access token."""
    peer = request.client.host if request.client else None
    try:
        return await accounts.login(uow, identity, body, peer, request.headers.get("x-forwarded-for"))
    except accounts.LoginThrottled as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except PasswordWorkBusy as exc:
        raise HTTPException(503, exc.message, headers={"Retry-After": str(exc.retry_after)}) from None


def _caller_token_expiry(request: Request) -> datetime:
    # The token was verified by the CurrentPrincipal dependency; only its exp is read here.
    token = request.headers["authorization"].partition(" ")[2].strip()
    return datetime.fromtimestamp(jwt.decode(token, options={"verify_signature": False})["exp"], UTC)


@router.post("/api/auth/logout", response_model=Done, tags=["auth"])
async def logout(principal: CurrentPrincipal, request: Request, uow: UoW, identity: Ident) -> dict[str, Any]:
    """Revoke the caller's access token: every service refuses it from now on."""
    return await accounts.logout(uow, identity, principal, _caller_token_expiry(request))


@router.get("/api/user/me", response_model=Me, tags=["user"])
async def me(principal: CurrentPrincipal, uow: UoW) -> dict[str, Any]:
    """The caller, with their organization, role and current permissions."""
    return await accounts.me(uow, principal)


@router.get("/.well-known/jwks.json", tags=["auth"])
async def jwks(identity: Ident, response: Response) -> dict[str, Any]:
    """Public keys that verify access tokens (select by the token header's `kid`)."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return identity.tokens.jwks()


# -- the caller's own account ---------------------------------------------------------------------------------


@router.put("/api/user/confirm-email/{token}", response_model=Done, tags=["user"])
async def confirm_email(uow: UoW, token: str = TokenParam) -> dict[str, Any]:
    """Confirm the e-mail address with the token from the confirmation mail (no login needed)."""
    return await accounts.confirm_email(uow, token)


@router.put("/api/user/resend-confirm-email", response_model=Done, tags=["user"])
async def resend_confirm_email(principal: CurrentPrincipal, uow: UoW, identity: Ident) -> dict[str, Any]:
    """Mail a new confirmation token to the caller (earlier ones stop working)."""
    return await accounts.resend_confirmation(uow, identity, principal)


@router.post("/api/user/forget-password", response_model=Done, tags=["user"])
async def forget_password(body: ForgetPassword, uow: UoW, identity: Ident) -> dict[str, Any]:
    """Mail a password reset token. The answer is the same whether or not the e-mail is registered."""
    return await accounts.forget_password(uow, identity, body.email)


@router.put("/api/user/reset/password/{token}", response_model=Done, tags=["user"])
async def reset_password(body: ResetPassword, uow: UoW, identity: Ident, token: str = TokenParam) -> dict[str, Any]:
    """Set a new password with the token from the reset mail (no login needed). Every session of the account ends."""
    return await accounts.reset_password(uow, identity, token, body)


@router.put("/api/user/password", response_model=Done, tags=["user"])
async def change_password(
    body: ChangePassword,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("PASSWORD_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Change the caller's password (the old one is required). The caller's other sessions end."""
    return await accounts.change_password(uow, identity, principal, body)


@router.put("/api/user/profile", response_model=UserOut, tags=["user"])
async def update_profile(body: Profile, principal: CurrentPrincipal, uow: UoW) -> dict[str, Any]:
    """Change the caller's first and/or last name."""
    return await accounts.update_profile(uow, principal, body)
