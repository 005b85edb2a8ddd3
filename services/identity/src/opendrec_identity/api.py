"""Identity's HTTP routes: registration, login, the caller's own profile, and the JWKS."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from opendrec_contracts import OrganizationRegistered, UserRegistered
from opendrec_kit import ApiError, CurrentPrincipal, Pool, Runtime, outbox
from opendrec_kit.errors import field_rule

from . import domain, store
from .passwords import Passwords
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


class RegisterWithOrganization(BaseModel):
    """Every field is checked on its own, so one 400 lists every bad field."""

    model_config = ConfigDict(str_strip_whitespace=False, hide_input_in_errors=True)

    firstName: str
    lastName: str
    email: str
    organizationType: str = Field(description="Developer or Buyer, in any letter case")
    password: str = Field(description=domain.PASSWORD_RULE)
    confirmPassword: str
    orgName: str
    orgAddress: str | None = None
    secretKey: str = Field(description=domain.SECRET_KEY_RULE)

    @field_validator("firstName", "lastName")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        return field_rule(domain.required_text, value, info.field_name, 100)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return field_rule(domain.normalize_email, value)

    @field_validator("organizationType")
    @classmethod
    def _organization_type(cls, value: str) -> str:
        return field_rule(domain.normalize_organization_type, value)

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
async def register_with_organization(body: RegisterWithOrganization, pool: Pool, runtime: Runtime, passwords: Hasher) -> dict[str, Any]:
    """Create an organization (Developer or Buyer) and its first user, who administers it."""
    async with pool.acquire() as conn:
        email_taken = await store.email_taken(conn, body.email)
        name_taken = await store.organization_name_taken(conn, body.orgName)
    if email_taken or name_taken:
        raise _conflict(email_taken, name_taken)

    # Hashed before the transaction opens, so no connection waits on argon2.
    password_hash, secret_key_hash = await asyncio.gather(passwords.hash(body.password), passwords.hash(body.secretKey))
    role = domain.first_user_role(body.organizationType)
    producer = runtime.settings.service_name
    try:
        async with pool.acquire() as conn, conn.transaction():
            org = await store.insert_organization(
                conn, name=body.orgName, address=body.orgAddress, organization_type=body.organizationType, secret_key_hash=secret_key_hash
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
            await outbox.add(
                conn,
                OrganizationRegistered(organization_id=org["id"], name=org["name"], organization_type=org["organization_type"]),
                producer,
            )
            await outbox.add(conn, UserRegistered(user_id=user["id"], organization_id=org["id"], email=user["email"], role=role), producer)
    except asyncpg.UniqueViolationError as exc:
        # Someone registered the same e-mail or name between our check and our insert.
        if exc.constraint_name not in (store.EMAIL_UNIQUE, store.ORGANIZATION_NAME_UNIQUE):
            raise
        raise _conflict(exc.constraint_name == store.EMAIL_UNIQUE, exc.constraint_name == store.ORGANIZATION_NAME_UNIQUE) from None
    log.info(
        "organization registered",
        extra={"organization_id": org["id"], "organization_type": org["organization_type"], "user_id": user["id"], "role": role},
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
    responses={401: {"description": INVALID_CREDENTIALS + " (the same answer whether or not the e-mail exists)"}},
)
async def login(body: Login, pool: Pool, passwords: Hasher, tokens: Tokens) -> dict[str, str]:
    """Exchange e-mail and password for a signed access token."""
    try:
        email = domain.normalize_email(body.username)
    except domain.Invalid:
        email = None
    async with pool.acquire() as conn:
        user = await store.user_by_email(conn, email) if email else None
    if user is None:
        await passwords.spend_verify_time(body.password)  # as slow as a wrong password: no e-mail probing
        log.info("login refused", extra={"reason": "unknown account"})
        raise ApiError(401, INVALID_CREDENTIALS)
    if not await passwords.verify(user["password_hash"], body.password):
        log.info("login refused", extra={"reason": "wrong password", "user_id": user["id"]})
        raise ApiError(401, INVALID_CREDENTIALS)
    if user["status"] != "Active":
        # The password was right, so saying why tells a stranger nothing.
        raise ApiError(403, f"This account is {user['status'].lower()}; it cannot log in")

    # Hashes made under older argon2 parameters are upgraded while we know the password.
    new_hash = await passwords.hash(body.password) if passwords.needs_rehash(user["password_hash"]) else None
    async with pool.acquire() as conn:
        grants = await store.module_grants(conn, user["role"], user["id"])
        if new_hash:
            await store.update_password_hash(conn, user["id"], new_hash)
    token = tokens.issue(
        user_id=user["id"],
        organization_id=user["organization_id"],
        organization_type=user["organization_type"],
        role=user["role"],
        email=user["email"],
        permissions=domain.effective_permissions(user["role"], grants),
    )
    log.info("login", extra={"user_id": user["id"], "organization_id": user["organization_id"]})
    return {"accessToken": token}


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
