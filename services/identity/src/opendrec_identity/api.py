"""Identity's HTTP routes: registration, login, the caller's own profile, and the JWKS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import jwt
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from opendrec_contracts import AccessTokenRevoked, OrganizationRegistered, UserRegistered
from opendrec_kit import ApiError, CurrentPrincipal, Pool, Runtime, outbox
from opendrec_kit.errors import field_rule

from . import domain, mail, store
from .passwords import Passwords
from .settings import Settings
from .throttle import LoginThrottle
from .tokens import TokenService

log = logging.getLogger(__name__)

router = APIRouter()

INVALID_CREDENTIALS = "Invalid username or password"


def _passwords(request: Request) -> Passwords:
    return request.app.state.passwords


def _tokens(request: Request) -> TokenService:
    return request.app.state.tokens


Hasher = Annotated[Passwords, Depends(_passwords)]
Tokens = Annotated[TokenService, Depends(_tokens)]


# -- request and response bodies (D-REC field names) ------------------------------------


class NewAccount(BaseModel):
    """Who a new user is and the password they chose; shared by every way of creating an account.
    Every field is checked on its own, so one 400 lists every bad field."""

    model_config = ConfigDict(str_strip_whitespace=False, hide_input_in_errors=True)

    firstName: str
    lastName: str
    password: str = Field(description=domain.PASSWORD_RULE)
    confirmPassword: str

    @field_validator("firstName", "lastName")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        return field_rule(domain.required_text, value, info.field_name, 100)

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        return field_rule(domain.check_password, value)

    @field_validator("confirmPassword")
    @classmethod
    def _confirm(cls, value: str, info: ValidationInfo) -> str:
        # Only comparable when the password itself was valid (else its own error is reported).
        if "password" in info.data and value != info.data["password"]:
            raise PydanticCustomError("mismatch", "confirmPassword must match password")
        return value


class RegisterWithOrganization(NewAccount):
    email: str
    organizationType: str = Field(description="Developer or Buyer, in any letter case")
    orgName: str
    orgAddress: str | None = None
    secretKey: str = Field(description=domain.SECRET_KEY_RULE)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return field_rule(domain.normalize_email, value)

    @field_validator("organizationType")
    @classmethod
    def _organization_type(cls, value: str) -> str:
        return field_rule(domain.normalize_organization_type, value)

    @field_validator("orgName")
    @classmethod
    def _org_name(cls, value: str) -> str:
        return field_rule(domain.required_text, value, "orgName", 200)

    @field_validator("orgAddress")
    @classmethod
    def _org_address(cls, value: str | None) -> str | None:
        return field_rule(domain.optional_text, value, "orgAddress", 500)

    @field_validator("secretKey")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        return field_rule(domain.check_secret_key, value)


@contextlib.contextmanager
def refusing_duplicates() -> Iterator[None]:
    """Someone registered the same e-mail or organization name between our check and our insert: 409."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name not in (store.EMAIL_UNIQUE, store.ORGANIZATION_NAME_UNIQUE):
            raise
        raise _conflict(
            exc.constraint_name == store.EMAIL_UNIQUE, exc.constraint_name == store.ORGANIZATION_NAME_UNIQUE
        ) from None


async def register_organization(
    conn: asyncpg.Connection,
    body: RegisterWithOrganization,
    *,
    role: str,
    password_hash: str,
    secret_key_hash: str,
    settings: Settings,
    api_user_id: str | None = None,
    owner_api_user_id: Any = None,
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """An organization and its first user, their events and the confirmation mail, in the caller's transaction."""
    org = await store.insert_organization(
        conn,
        name=body.orgName,
        address=body.orgAddress,
        organization_type=body.organizationType,
        secret_key_hash=secret_key_hash,
        api_user_id=owner_api_user_id,
    )
    user = await store.insert_user(
        conn,
        organization_id=org["id"],
        first_name=body.firstName,
        last_name=body.lastName,
        email=body.email,
        password_hash=password_hash,
        role=role,
    )
    producer = settings.service_name
    organization = OrganizationRegistered(
        organization_id=org["id"], name=org["name"], organization_type=org["organization_type"], api_user_id=api_user_id
    )
    await outbox.add(conn, organization, producer)
    await outbox.add(
        conn, UserRegistered(user_id=user["id"], organization_id=org["id"], email=user["email"], role=role), producer
    )
    await mail.queue_confirmation(
        conn,
        user["id"],
        user["email"],
        user["first_name"],
        settings.public_url,
        settings.email_confirmation_ttl_seconds,
    )
    return org, user


class Login(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    # Bounded so a huge body cannot buy a long hash computation.
    username: str = Field(min_length=1, max_length=1024, description="the account's e-mail address")
    password: str = Field(min_length=1, max_length=1024)


class AccessToken(BaseModel):
    accessToken: str


class OrganizationOut(BaseModel):
    id: int
    name: str
    address: str | None
    organizationType: str
    status: str
    createdAt: datetime


class UserOut(BaseModel):
    id: int
    firstName: str
    lastName: str
    email: str
    role: str
    status: str
    emailConfirmed: bool
    createdAt: datetime
    organization: OrganizationOut


class Me(UserOut):
    permissions: dict[str, list[str]] = Field(description="ACL module -> allowed actions (Read, Write, Update, Delete)")


def _user_out(user: asyncpg.Record, organization: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "firstName": user["first_name"],
        "lastName": user["last_name"],
        "email": user["email"],
        "role": user["role"],
        "status": user["status"],
        "emailConfirmed": user["email_confirmed"],
        "createdAt": user["created_at"],
        "organization": organization,
    }


def _joined_user_out(row: asyncpg.Record) -> dict[str, Any]:
    return _user_out(
        row,
        {
            "id": row["organization_id"],
            "name": row["organization_name"],
            "address": row["organization_address"],
            "organizationType": row["organization_type"],
            "status": row["organization_status"],
            "createdAt": row["organization_created_at"],
        },
    )


def _conflict(email: bool, organization_name: bool) -> ApiError:
    details = []
    if email:
        details.append({"field": "email", "message": "an account with this email already exists"})
    if organization_name:
        details.append({"field": "orgName", "message": "an organization with this name already exists"})
    fields = " and ".join(d["field"] for d in details)
    return ApiError(409, f"Already registered: {fields}", details)


# -- routes -----------------------------------------------------------------------------------


@router.post("/api/user/registerWithOrganization", status_code=201, response_model=UserOut, tags=["user"])
async def register_with_organization(
    body: RegisterWithOrganization, request: Request, pool: Pool, runtime: Runtime, passwords: Hasher
) -> dict[str, Any]:
    """Create an organization (Developer or Buyer) and its first user, who administers it."""
    async with pool.acquire() as conn:
        email_taken = await store.email_taken(conn, body.email)
        name_taken = await store.organization_name_taken(conn, body.orgName)
    if email_taken or name_taken:
        raise _conflict(email_taken, name_taken)

    # Hashed before the transaction opens, so no connection waits on argon2.
    password_hash, secret_key_hash = await asyncio.gather(passwords.hash(body.password), passwords.hash(body.secretKey))
    role = domain.first_user_role(body.organizationType)
    settings: Settings = runtime.settings  # type: ignore[assignment]
    with refusing_duplicates():
        async with pool.acquire() as conn, conn.transaction():
            org, user = await register_organization(
                conn, body, role=role, password_hash=password_hash, secret_key_hash=secret_key_hash, settings=settings
            )
    request.app.state.mailer.wake()
    log.info(
        "organization registered",
        extra={
            "organization_id": org["id"],
            "organization_type": org["organization_type"],
            "user_id": user["id"],
            "role": role,
        },
    )
    return _user_out(
        user,
        {
            "id": org["id"],
            "name": org["name"],
            "address": org["address"],
            "organizationType": org["organization_type"],
            "status": org["status"],
            "createdAt": org["created_at"],
        },
    )


@router.post(
    "/api/auth/login",
    response_model=AccessToken,
    tags=["auth"],
    responses={
        401: {"description": INVALID_CREDENTIALS + " (the same answer whether or not the e-mail exists)"},
        429: {
            "description": "Too many failed logins for this account or address; retry after the Retry-After header's seconds"
        },
    },
)
async def login(
    body: Login, request: Request, pool: Pool, runtime: Runtime, passwords: Hasher, tokens: Tokens
) -> dict[str, str]:
    """Exchange e-mail and password for a signed access token."""
    settings: Settings = runtime.settings  # type: ignore[assignment]
    throttle: LoginThrottle = request.app.state.login_throttle
    address = domain.client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trust_forwarded_for,
    )
    keys = throttle.keys(body.username, address)
    # Checked before the password, for known and unknown e-mails alike: a blocked key learns nothing.
    wait = await throttle.retry_after(pool, keys)
    if wait is not None:
        log.info("login throttled", extra={"retry_after_s": wait})
        raise HTTPException(
            429, f"Too many failed logins; try again in {wait} seconds", headers={"Retry-After": str(wait)}
        )

    try:
        email = domain.normalize_email(body.username)
    except domain.Invalid:
        email = None
    async with pool.acquire() as conn:
        user = await store.user_by_email(conn, email) if email else None
    if user is None:
        await passwords.spend_verify_time(body.password)  # as slow as a wrong password: no e-mail probing
        await throttle.failed(pool, keys)
        log.info("login refused", extra={"reason": "unknown account"})
        raise ApiError(401, INVALID_CREDENTIALS)
    if not await passwords.verify(user["password_hash"], body.password):
        await throttle.failed(pool, keys)
        log.info("login refused", extra={"reason": "wrong password", "user_id": user["id"]})
        raise ApiError(401, INVALID_CREDENTIALS)
    await throttle.succeeded(pool, keys)
    if user["status"] != "Active":
        # The password was right, so saying why tells a stranger nothing.
        raise ApiError(403, f"This account is {user['status'].lower()}; it cannot log in")
    if user["organization_api_user_id"] is not None:
        # D-REC: the users of an API user's organizations do not log in; the API user acts for them.
        raise ApiError(401, "This account belongs to an organization managed by an API user; that API user acts for it")

    # Hashes made under older argon2 parameters are upgraded while we know the password.
    new_hash = await passwords.hash(body.password) if passwords.needs_rehash(user["password_hash"]) else None
    token = await issue_access_token(pool, tokens, user, new_password_hash=new_hash)
    log.info("login", extra={"user_id": user["id"], "organization_id": user["organization_id"]})
    return {"accessToken": token}


async def issue_access_token(
    pool: asyncpg.Pool, tokens: TokenService, user: asyncpg.Record, new_password_hash: str | None = None
) -> str:
    """Sign a token with the user's current role and permissions, and record it (so that a password
    change or a removal from the organization can revoke it)."""
    async with pool.acquire() as conn:
        grants = await store.module_grants(conn, user["role"], user["id"])
        api_user = await store.api_user_by_user(conn, user["id"]) if user["role"] == "ApiUser" else None
    token, claims = tokens.issue_with_claims(
        user_id=user["id"],
        organization_id=user["organization_id"],
        organization_type=user["organization_type"],
        role=user["role"],
        email=user["email"],
        permissions=domain.effective_permissions(user["role"], grants),
        api_user_id=str(api_user["id"]) if api_user else None,
    )
    async with pool.acquire() as conn, conn.transaction():
        await store.record_access_token(conn, claims["jti"], user["id"], datetime.fromtimestamp(claims["exp"], UTC))
        if new_password_hash:
            await store.update_password_hash(conn, user["id"], new_password_hash)
    return token


class Done(BaseModel):
    success: bool = True
    message: str


async def revoke(conn: asyncpg.Connection, revoked: list[tuple[str, datetime]], user_id: int, producer: str) -> None:
    """Tell every service (token.revoked, through the outbox) to refuse these tokens."""
    for jti, expires_at in revoked:
        await outbox.add(conn, AccessTokenRevoked(token_id=jti, user_id=user_id, expires_at=expires_at), producer)


async def revoke_sessions(
    conn: asyncpg.Connection, user_id: int, producer: str, keep_jti: str | None = None
) -> list[tuple[str, datetime]]:
    """End the user's sessions (all but `keep_jti`): marked revoked here and announced to every service."""
    revoked = [(r["jti"], r["expires_at"]) for r in await store.revoke_user_tokens(conn, user_id, keep_jti=keep_jti)]
    await revoke(conn, revoked, user_id, producer)
    return revoked


async def revoke_sessions_of_users(
    conn: asyncpg.Connection, user_ids: list[int], producer: str
) -> list[tuple[str, datetime]]:
    """End every session of these users (e.g. all holders of a role whose grant was reduced)."""
    if not user_ids:
        return []
    rows = await store.revoke_tokens_of_users(conn, user_ids)
    for r in rows:
        await outbox.add(
            conn, AccessTokenRevoked(token_id=r["jti"], user_id=r["user_id"], expires_at=r["expires_at"]), producer
        )
    return [(r["jti"], r["expires_at"]) for r in rows]


def revoke_here(request: Request, revoked: list[tuple[str, datetime]]) -> None:
    """Refuse them in this instance at once (other instances follow token.revoked within moments)."""
    for jti, expires_at in revoked:
        request.app.state.token_verifier.revoke(jti, expires_at.timestamp())


def _caller_token_expiry(request: Request) -> datetime:
    # The token was verified by the CurrentPrincipal dependency; only its exp is read here.
    token = request.headers["authorization"].partition(" ")[2].strip()
    return datetime.fromtimestamp(jwt.decode(token, options={"verify_signature": False})["exp"], UTC)


@router.post("/api/auth/logout", response_model=Done, tags=["auth"])
async def logout(principal: CurrentPrincipal, request: Request, pool: Pool, runtime: Runtime) -> dict[str, Any]:
    """Revoke the caller's access token: every service refuses it from now on."""
    revoked = [(principal.token_id, _caller_token_expiry(request))]
    async with pool.acquire() as conn, conn.transaction():
        await store.revoke_access_token(conn, principal.token_id, principal.user_id, revoked[0][1])
        await revoke(conn, revoked, principal.user_id, runtime.settings.service_name)
    revoke_here(request, revoked)
    log.info("logout", extra={"user_id": principal.user_id})
    return {"success": True, "message": "Logged out; this access token is revoked"}


@router.get("/api/user/me", response_model=Me, tags=["user"])
async def me(principal: CurrentPrincipal, pool: Pool) -> dict[str, Any]:
    """The caller, with their organization, role and current permissions."""
    async with pool.acquire() as conn:
        user = await store.user_by_id(conn, principal.user_id)
        if user is None:
            raise ApiError(401, "The account of this access token no longer exists")
        grants = await store.module_grants(conn, user["role"], user["id"])
    permissions = domain.effective_permissions(user["role"], grants)
    return {
        **_joined_user_out(user),
        "permissions": {module: domain.action_names(letters) for module, letters in permissions.items()},
    }


@router.get("/.well-known/jwks.json", tags=["auth"])
async def jwks(tokens: Tokens, response: Response) -> dict[str, Any]:
    """Public keys that verify access tokens (select by the token header's `kid`)."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return tokens.jwks()
