"""API users: registration (the private key is returned once), access tokens for signed client
assertions (RFC 7523 private_key_jwt), and module permissions an admin must approve.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs

import asyncpg
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from opendrec_contracts.access import ADMIN_MODULES
from opendrec_kit import ApiError, Pool, Principal, Runtime, permission
from opendrec_kit.auth import current_principal, only_roles

from . import domain, store
from .api import (
    Hasher,
    RegisterWithOrganization,
    Tokens,
    UserOut,
    _conflict,
    _joined_user_out,
    issue_access_token,
    refusing_duplicates,
    register_organization,
    revoke_here,
    revoke_sessions,
)
from .organizations import ADMIN_ONLY, OrganizationsPage, Paging, organization_out
from .settings import Settings

log = logging.getLogger(__name__)

router = APIRouter()

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
INVALID_CLIENT = "invalid_client: the client assertion is not valid for any API user"


class Register(RegisterWithOrganization):
    organizationType: str = Field(
        description="ApiUser; or Developer/Buyer together with api_user_id, called by that API user"
    )
    api_user_id: uuid.UUID | None = Field(
        default=None, description="the API user the Developer/Buyer organization is registered under"
    )

    @field_validator("organizationType")
    @classmethod
    def _organization_type(cls, value: str) -> str:
        found = {"apiuser": "ApiUser", "developer": "Developer", "buyer": "Buyer"}.get(value.strip().lower())
        if found is None:
            raise PydanticCustomError("invalid", "organizationType must be ApiUser, Developer or Buyer")
        return found

    @model_validator(mode="after")
    def _api_user(self) -> Register:
        if self.organizationType == "ApiUser" and self.api_user_id is not None:
            raise PydanticCustomError(
                "api_user_id", "api_user_id is only for Developer and Buyer organizations registered under an API user"
            )
        if self.organizationType != "ApiUser" and self.api_user_id is None:
            raise PydanticCustomError(
                "api_user_id",
                "api_user_id is required for a Developer or Buyer organization here (without an API user, use /api/user/registerWithOrganization)",
            )
        return self


class Registered(UserOut):
    apiUserId: str | None = Field(
        default=None,
        description="the API user: for ApiUser registrations its client_id (iss and sub of its assertions)",
    )
    privateKey: str | None = Field(
        default=None,
        description="ApiUser registrations only: the Ed25519 private key (PEM, PKCS#8), shown this once only; sign client assertions with it (EdDSA)",
    )


class ModuleRequest(BaseModel):
    aclmodulesId: int | None = None
    moduleName: str | None = None
    permissions: list[Literal["Read", "Write", "Update", "Delete"]] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_module(self) -> ModuleRequest:
        if (self.aclmodulesId is None) == (self.moduleName is None):
            raise PydanticCustomError("module", "give aclmodulesId or moduleName (one of them)")
        return self


class PermissionState(BaseModel):
    apiUserId: str
    status: str
    modules: dict[str, list[str]]


class Verdict(BaseModel):
    status: Literal["Active", "Deactive"]


PEM = "application/x-pem-file"
PEM_ANSWER = {
    "content": {PEM: {"schema": {"type": "string"}}},
    "description": "JSON (privateKey field); or, when asked for (Accept: application/x-pem-file or download=pem), the private key as a PEM file",
}
DownloadParam = Query(
    None, description="pem: answer the private key itself as a file download (as does Accept: application/x-pem-file)"
)


def _wants_pem(request: Request, download: str | None) -> bool:
    if download == "pem":
        return True
    return any(part.split(";")[0].strip().lower() == PEM for part in request.headers.get("accept", "").split(","))


def _pem_file(api_user_id: str, private_pem: str, status_code: int) -> Response:
    """The key as the manual's one-time file download; the JSON answer's other fields are not needed by then."""
    return Response(
        private_pem,
        status_code=status_code,
        media_type=PEM,
        headers={
            "Content-Disposition": f'attachment; filename="opendrec-apiuser-{api_user_id}.pem"',
            "X-Api-User-Id": api_user_id,
            "Cache-Control": "no-store",
        },
    )


def _new_key_pair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


async def _permission_state(conn: asyncpg.Connection, api_user_id: Any, status: str) -> dict[str, Any]:
    requested = await store.permission_request(conn, api_user_id)
    return {
        "apiUserId": str(api_user_id),
        "status": status,
        "modules": {m: domain.action_names(a) for m, a in requested.items()},
    }


# -- registration ----------------------------------------------------------------------------------------------


@router.post(
    "/api/user/register", status_code=201, response_model=Registered, tags=["user"], responses={201: PEM_ANSWER}
)
async def register(
    body: Register,
    request: Request,
    response: Response,
    pool: Pool,
    runtime: Runtime,
    passwords: Hasher,
    download: Literal["pem"] | None = DownloadParam,
) -> dict[str, Any] | Response:
    """Register an API user (no login; its own organization of type ApiUser): the answer holds the
    private key, which is not stored anywhere and cannot be shown again. With `Accept: application/x-pem-file`
    or `?download=pem` the answer is the key itself, as a file download (`X-Api-User-Id` header: the apiUserId).
    Or, called by an API user holding ORGANIZATION_MANAGEMENT_CRUDL Write (or by an Admin; a bearer token is
    then required), register a Developer or Buyer organization under that API user (api_user_id) with its first user."""
    settings: Settings = runtime.settings  # type: ignore[assignment]
    pem = _wants_pem(request, download)
    if pem and body.organizationType != "ApiUser":
        raise ApiError(
            400, "Only an ApiUser registration has a private key to download; ask for JSON (no download=pem)"
        )
    if body.organizationType != "ApiUser":
        await _may_register_under(request, pool, body.api_user_id)
    async with pool.acquire() as conn:
        email_taken = await store.email_taken(conn, body.email)
        name_taken = await store.organization_name_taken(conn, body.orgName)
    if email_taken or name_taken:
        raise _conflict(email_taken, name_taken)
    password_hash, secret_key_hash = await asyncio.gather(passwords.hash(body.password), passwords.hash(body.secretKey))
    if body.organizationType == "ApiUser":
        private_pem, public_pem = await asyncio.to_thread(_new_key_pair)
        api_user_id, role, owner = uuid.uuid4(), "ApiUser", None
    else:
        private_pem = public_pem = None
        api_user_id, role, owner = body.api_user_id, domain.first_user_role(body.organizationType), body.api_user_id
    with refusing_duplicates():
        async with pool.acquire() as conn, conn.transaction():
            org, user = await register_organization(
                conn,
                body,
                role=role,
                password_hash=password_hash,
                secret_key_hash=secret_key_hash,
                settings=settings,
                api_user_id=str(api_user_id),
                owner_api_user_id=owner,
            )
            if public_pem:
                await store.insert_api_user(conn, api_user_id, user["id"], public_pem)
            joined = await store.user_by_id(conn, user["id"])
    request.app.state.mailer.wake()
    response.headers["Cache-Control"] = "no-store"
    log.info(
        "registered with /api/user/register",
        extra={
            "organization_type": body.organizationType,
            "api_user_id": str(api_user_id),
            "user_id": user["id"],
            "organization_id": org["id"],
        },
    )
    if pem and private_pem:
        return _pem_file(str(api_user_id), private_pem, 201)
    return {**_joined_user_out(joined), "apiUserId": str(api_user_id), "privateKey": private_pem}


async def _may_register_under(request: Request, pool: Any, api_user_id: uuid.UUID | None) -> None:
    """Only that API user (with ORGANIZATION_MANAGEMENT_CRUDL Write approved) or an Admin."""
    principal = await current_principal(request)
    if principal.role == domain.ADMIN:
        async with pool.acquire() as conn:
            if await store.api_user_by_id(conn, api_user_id) is None:
                raise ApiError(404, f"API user {api_user_id} does not exist")
        return
    if principal.role != "ApiUser" or principal.api_user_id != str(api_user_id):
        raise ApiError(403, "Only that API user (or an Admin) registers organizations under an API user")
    if not principal.can("ORGANIZATION_MANAGEMENT_CRUDL", "Write"):
        raise ApiError(
            403,
            "Write permission on ORGANIZATION_MANAGEMENT_CRUDL is required (ask for it and wait for an admin's approval)",
        )


# -- client credentials --------------------------------------------------------------------------------------


class TokenRequest(BaseModel):
    grant_type: str
    client_assertion_type: str
    client_assertion: str = Field(max_length=8192)


class TokenAnswer(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    accessToken: str = Field(description="the same token, under the D-REC login answer's name")


async def _token_request(request: Request) -> TokenRequest:
    """RFC 6749 asks for a form body; JSON is taken too."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "invalid_request: the body is not valid JSON") from None
    else:
        data = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
    try:
        return TokenRequest.model_validate(data)
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        raise ApiError(
            400, f"invalid_request: check {', '.join(fields)}", [{"field": f, "message": "required"} for f in fields]
        ) from None


@router.post(
    "/api/auth/token",
    response_model=TokenAnswer,
    tags=["auth"],
    openapi_extra={
        "requestBody": {
            "content": {"application/x-www-form-urlencoded": {"schema": TokenRequest.model_json_schema()}},
            "required": True,
        }
    },
)
async def client_credentials_token(
    request: Request, response: Response, pool: Pool, runtime: Runtime, tokens: Tokens
) -> dict[str, Any]:
    """An access token for an API user, for a client assertion it signed with its private key
    (grant_type=client_credentials, client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer).
    The assertion: iss = sub = apiUserId, aud = opendrec-identity (or this endpoint's URL), a unique jti,
    exp at most a few minutes ahead. Each assertion works once."""
    settings: Settings = runtime.settings  # type: ignore[assignment]
    body = await _token_request(request)
    if body.grant_type != "client_credentials":
        raise ApiError(400, "unsupported_grant_type: only client_credentials is offered")
    if body.client_assertion_type != ASSERTION_TYPE:
        raise ApiError(400, f"invalid_request: client_assertion_type must be {ASSERTION_TYPE}")
    try:
        client_id = uuid.UUID(str(jwt.decode(body.client_assertion, options={"verify_signature": False}).get("iss")))
    except (jwt.InvalidTokenError, ValueError):
        raise ApiError(401, INVALID_CLIENT) from None
    async with pool.acquire() as conn:
        api_user = await store.api_user_by_id(conn, client_id)
    if api_user is None:
        raise ApiError(401, INVALID_CLIENT)
    try:
        claims = jwt.decode(
            body.client_assertion,
            serialization.load_pem_public_key(api_user["public_key_pem"].encode()),  # type: ignore[arg-type]
            algorithms=["EdDSA"],
            audience=[settings.jwt_issuer, f"{settings.public_url.rstrip('/')}/api/auth/token"],
            issuer=str(client_id),
            options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "invalid_client: the client assertion has expired") from None
    except jwt.InvalidTokenError:
        raise ApiError(401, INVALID_CLIENT) from None
    now = datetime.now(UTC).timestamp()
    if claims["sub"] != claims["iss"]:
        raise ApiError(401, "invalid_client: sub must equal iss (the apiUserId)")
    if claims["exp"] - now > settings.client_assertion_max_lifetime_seconds:
        raise ApiError(
            401,
            f"invalid_client: the assertion may live at most {settings.client_assertion_max_lifetime_seconds} seconds",
        )
    async with pool.acquire() as conn:
        if not await store.spend_assertion(
            conn, str(claims["jti"])[:200], client_id, datetime.fromtimestamp(claims["exp"], UTC)
        ):
            raise ApiError(401, "invalid_client: this client assertion was already used (jti)")
        user = await store.user_by_id(conn, api_user["user_id"])
    if user is None or user["status"] != "Active":
        raise ApiError(403, "This API user cannot get tokens (its account is not active)")
    token = await issue_access_token(pool, tokens, user)
    response.headers["Cache-Control"] = "no-store"
    log.info("api user token", extra={"api_user_id": str(client_id), "user_id": user["id"]})
    ttl = settings.access_token_ttl_seconds
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "accessToken": token}


# -- module permissions --------------------------------------------------------------------------------------


@router.post("/api/permission/module/apiuser/request", response_model=PermissionState, tags=["permission"])
async def request_permissions(
    body: list[ModuleRequest],
    request: Request,
    pool: Pool,
    runtime: Runtime,
    principal: Principal = only_roles("ApiUser"),
) -> dict[str, Any]:
    """An API user asks for modules. Until an admin approves, it holds none of them; a new request
    replaces the previous one and withdraws what was granted until it is approved again."""
    if not body:
        raise ApiError(
            400, "Invalid request: ask for at least one module", [{"field": "body", "message": "empty list"}]
        )
    async with pool.acquire() as conn, conn.transaction():
        api_user = await store.api_user_by_user(conn, principal.user_id)
        if api_user is None:
            raise ApiError(403, "This account is not an API user")
        modules = await store.module_names_by_id(conn)
        by_name = dict(modules.values())
        requested: dict[str, str] = {}
        for i, item in enumerate(body):
            name = modules.get(item.aclmodulesId, (None, ""))[0] if item.aclmodulesId is not None else item.moduleName
            if name not in by_name:
                raise ApiError(
                    400, f"Invalid request: check {i}", [{"field": str(i), "message": "no such enabled ACL module"}]
                )
            if name in ADMIN_MODULES:
                allowed = ", ".join(m for m in by_name if m not in ADMIN_MODULES)
                raise ApiError(
                    400,
                    f"Invalid request: check {i}",
                    [
                        {
                            "field": str(i),
                            "message": f"{name} is for administrators only; an API user may ask for {allowed}",
                        }
                    ],
                )
            letters = domain.merge_actions(requested.get(name, ""), "".join(a[0] for a in item.permissions))
            if set(letters) - set(by_name[name]):
                raise ApiError(
                    400,
                    f"Invalid request: check {i}",
                    [
                        {
                            "field": f"{i}.permissions",
                            "message": f"{name} offers only {', '.join(domain.action_names(by_name[name]))}",
                        }
                    ],
                )
            requested[name] = letters
        await store.replace_permission_request(conn, api_user["id"], requested)
        revoked = await revoke_sessions(
            conn, principal.user_id, runtime.settings.service_name, keep_jti=principal.token_id
        )
        state = await _permission_state(conn, api_user["id"], "Request")
    revoke_here(request, revoked)
    log.info("api user permissions requested", extra={"api_user_id": state["apiUserId"], "modules": sorted(requested)})
    return state


@router.put(
    "/api/permission/module/verify/ByAdmin/{apiuserId}",
    response_model=PermissionState,
    tags=["permission"],
    dependencies=ADMIN_ONLY,
)
async def verify_permissions(
    apiuserId: uuid.UUID,
    body: Verdict,
    request: Request,
    pool: Pool,
    runtime: Runtime,
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Approve (Active) or withdraw (Deactive) what an API user asked for. Admin only. Its current
    tokens are revoked: the next token carries the new permissions."""
    async with pool.acquire() as conn, conn.transaction():
        api_user = await store.api_user_by_id(conn, apiuserId)
        if api_user is None:
            raise ApiError(404, f"API user {apiuserId} does not exist")
        if body.status == "Active" and not await store.permission_request(conn, apiuserId):
            raise ApiError(409, "This API user has not asked for any module")
        await store.set_api_user_permissions(conn, apiuserId, api_user["user_id"], body.status)
        revoked = await revoke_sessions(conn, api_user["user_id"], runtime.settings.service_name)
        state = await _permission_state(conn, apiuserId, body.status)
    revoke_here(request, revoked)
    log.info(
        "api user permissions verified",
        extra={"api_user_id": str(apiuserId), "status": body.status, "by": principal.user_id},
    )
    return state


class RotatedKey(BaseModel):
    apiUserId: str
    privateKey: str = Field(description="the new Ed25519 private key (PEM), shown this once only")


@router.post("/api/user/apiuser/rotate-key", response_model=RotatedKey, tags=["user"], responses={200: PEM_ANSWER})
async def rotate_key(
    request: Request,
    response: Response,
    pool: Pool,
    runtime: Runtime,
    download: Literal["pem"] | None = DownloadParam,
    principal: Principal = only_roles("ApiUser"),
) -> dict[str, Any] | Response:
    """Replace the API user's key pair: assertions signed with the old key are refused from now on, and
    every current token of the API user (this one included) is revoked. The new private key is shown once
    (as a PEM file download with `Accept: application/x-pem-file` or `?download=pem`)."""
    private_pem, public_pem = await asyncio.to_thread(_new_key_pair)
    async with pool.acquire() as conn, conn.transaction():
        api_user = await store.api_user_by_user(conn, principal.user_id)
        if api_user is None:
            raise ApiError(403, "This account is not an API user")
        await store.replace_api_user_key(conn, api_user["id"], public_pem)
        revoked = await revoke_sessions(conn, principal.user_id, runtime.settings.service_name)
    revoke_here(request, revoked)
    response.headers["Cache-Control"] = "no-store"
    log.info("api user key rotated", extra={"api_user_id": str(api_user["id"])})
    if _wants_pem(request, download):
        return _pem_file(str(api_user["id"]), private_pem, 200)
    return {"apiUserId": str(api_user["id"]), "privateKey": private_pem}


@router.get(
    "/api/Organization/apiuser/all_organization",
    response_model=OrganizationsPage,
    tags=["organization"],
    dependencies=[only_roles(domain.ADMIN, domain.API_USER)],
)
async def api_user_organizations(
    pool: Pool,
    page: domain.Page = Paging,
    organizationName: str | None = Query(
        None, max_length=200, description="only names containing this (any letter case)"
    ),
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """The Developer and Buyer organizations registered under the calling API user (Admin: under every API user)."""
    if principal.role == domain.ADMIN:
        owner = None
    elif principal.api_user_id:
        owner = uuid.UUID(principal.api_user_id)
    else:  # an ApiUser token without its apiUserId claim: nothing to list
        raise ApiError(403, "This token names no API user; get one from POST /api/auth/token")
    async with pool.acquire() as conn:
        rows, total = await store.api_user_organizations_page(conn, owner, organizationName or None, page)
    return {
        "organizations": [organization_out(r) for r in rows],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }


class ApiUserOut(BaseModel):
    apiUserId: str
    userId: int
    email: str
    organizationId: int
    organizationName: str
    permissionStatus: str
    requestedModules: dict[str, list[str]]
    createdAt: datetime


class ApiUsersPage(BaseModel):
    apiusers: list[ApiUserOut]
    currentPage: int
    totalPages: int
    totalCount: int


@router.get("/api/admin/apiusers", response_model=ApiUsersPage, tags=["admin"], dependencies=ADMIN_ONLY)
async def all_api_users(
    pool: Pool,
    page: domain.Page = Paging,
    permissionStatus: Literal["Request", "Active", "Deactive"] | None = Query(
        None, description="e.g. Request: waiting for approval"
    ),
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Every API user with the modules it asked for and the state of that request, a page at a time. Admin only."""
    async with pool.acquire() as conn:
        rows, total = await store.api_users_page(conn, permissionStatus, page)
    return {
        "apiusers": [
            {
                "apiUserId": str(r["id"]),
                "userId": r["user_id"],
                "email": r["email"],
                "organizationId": r["organization_id"],
                "organizationName": r["organization_name"],
                "permissionStatus": r["permission_status"],
                "requestedModules": {
                    m: domain.action_names(a) for m, a in sorted(orjson.loads(r["requested"]).items())
                },
                "createdAt": r["created_at"],
            }
            for r in rows
        ],
        "currentPage": page.number,
        "totalPages": domain.total_pages(total, page.limit),
        "totalCount": total,
    }
