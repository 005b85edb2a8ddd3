"""API users over HTTP: registration (the private key answered once, as JSON or a PEM download), tokens for
signed client assertions, key rotation, module permissions, their organizations.
Parse, authorize, call a use case (services/api_users.py), answer."""

from __future__ import annotations

import uuid
from typing import Any, Literal
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationError

from opendrec_kit import ApiError, CurrentPrincipal, Principal, UoW, permission
from opendrec_kit.auth import current_principal, only_roles
from opendrec_kit.paging import Page

from .. import domain
from ..bodies import (
    ApiUsersPage,
    ModuleRequest,
    OrganizationsPage,
    PermissionState,
    Register,
    Registered,
    RotatedKey,
    TokenAnswer,
    TokenRequest,
    Verdict,
)
from ..services import api_users as use_cases
from .deps import ADMIN_ONLY, ADMIN_OR_API_USER, Ident, Paging

router = APIRouter()

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


# -- registration ----------------------------------------------------------------------------------------------


@router.post(
    "/api/user/register", status_code=201, response_model=Registered, tags=["user"], responses={201: PEM_ANSWER}
)
async def register(
    body: Register,
    request: Request,
    response: Response,
    uow: UoW,
    identity: Ident,
    download: Literal["pem"] | None = DownloadParam,
) -> dict[str, Any] | Response:
    """Register an API user (no login; its own organization of type ApiUser): the answer holds the
    private key, which is not stored anywhere and cannot be shown again. With `Accept: application/x-pem-file`
    or `?download=pem` the answer is the key itself, as a file download (`X-Api-User-Id` header: the apiUserId).
    Or, called by an API user holding ORGANIZATION_MANAGEMENT_CRUDL Write (or by an Admin; a bearer token is
    then required), register a Developer or Buyer organization under that API user (api_user_id) with its first user."""
    pem = _wants_pem(request, download)
    if pem and body.organizationType != domain.API_USER:
        raise ApiError(
            400, "Only an ApiUser registration has a private key to download; ask for JSON (no download=pem)"
        )
    # Public for an ApiUser registration; decided by the body, so the token is read here, not by a dependency.
    principal = await current_principal(request) if body.organizationType != domain.API_USER else None
    registered = await use_cases.register(uow, identity, body, principal)
    response.headers["Cache-Control"] = "no-store"
    if pem and registered["privateKey"]:
        return _pem_file(registered["apiUserId"], registered["privateKey"], 201)
    return registered


# -- client credentials --------------------------------------------------------------------------------------


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
async def client_credentials_token(request: Request, response: Response, uow: UoW, identity: Ident) -> dict[str, Any]:
    """An access token for an API user, for a client assertion it signed with its private key
    (grant_type=client_credentials, client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer).
    The assertion: iss = sub = apiUserId, aud = opendrec-identity (or this endpoint's URL), a unique jti,
    exp at most a few minutes ahead. Each assertion works once."""
    answer = await use_cases.client_credentials_token(uow, identity, await _token_request(request))
    response.headers["Cache-Control"] = "no-store"
    return answer


@router.post(
    "/api/auth/getAccess",
    status_code=410,
    tags=["auth"],
    responses={410: {"description": use_cases.GET_ACCESS_RETIRED}},
)
async def get_access_retired() -> None:
    """D-REC's token for an API user that sends its private key (`?privateKey=`) with its username and password.
    Retired: a private key never travels over the network here, so this always answers 410 and neither reads,
    logs nor echoes the key (nor the body). Sign a client assertion with the key and send it to POST
    /api/auth/token instead (see the identity README, "API users: getting started")."""
    raise ApiError(410, use_cases.GET_ACCESS_RETIRED)


@router.get(
    "/api/user/export-accesskey/{apiuserId}",
    status_code=410,
    tags=["user"],
    responses={410: {"description": use_cases.EXPORT_ACCESS_KEY_RETIRED}},
)
async def export_access_key_retired(
    principal: CurrentPrincipal,
    apiuserId: str = Path(max_length=100, description="not read: the answer is always 410"),
) -> None:
    """D-REC's key file for an API user, asked without a token: it makes a new key pair, keeps the public key as
    the API user's credential and sends the private key. Retired: always 410, no key is made or changed; the
    answer names POST /api/user/apiuser/rotate-key (signed in) and POST /api/auth/token. Any signed-in caller
    (the gateway asks a token of this path; anonymous callers get 401 there)."""
    raise ApiError(410, use_cases.EXPORT_ACCESS_KEY_RETIRED)


# -- module permissions --------------------------------------------------------------------------------------


@router.post("/api/permission/module/apiuser/request", response_model=PermissionState, tags=["permission"])
async def request_permissions(
    body: list[ModuleRequest], uow: UoW, identity: Ident, principal: Principal = only_roles(domain.API_USER)
) -> dict[str, Any]:
    """An API user asks for modules. Until an admin approves, it holds none of them; a new request
    replaces the previous one and withdraws what was granted until it is approved again."""
    return await use_cases.request_permissions(uow, identity, principal, body)


@router.put(
    "/api/permission/module/verify/ByAdmin/{apiuserId}",
    response_model=PermissionState,
    tags=["permission"],
    dependencies=ADMIN_ONLY,
)
async def verify_permissions(
    apiuserId: uuid.UUID,
    body: Verdict,
    uow: UoW,
    identity: Ident,
    principal: Principal = permission("PERMISSION_MANAGEMENT_CRUDL", "Update"),
) -> dict[str, Any]:
    """Approve (Active) or withdraw (Deactive) what an API user asked for. Admin only. Its current
    tokens are revoked: the next token carries the new permissions."""
    return await use_cases.verify_permissions(uow, identity, principal, apiuserId, body.status)


@router.post("/api/user/apiuser/rotate-key", response_model=RotatedKey, tags=["user"], responses={200: PEM_ANSWER})
async def rotate_key(
    request: Request,
    response: Response,
    uow: UoW,
    identity: Ident,
    download: Literal["pem"] | None = DownloadParam,
    principal: Principal = only_roles(domain.API_USER),
) -> dict[str, Any] | Response:
    """Replace the API user's key pair: assertions signed with the old key are refused from now on, and
    every current token of the API user (this one included) is revoked. The new private key is shown once
    (as a PEM file download with `Accept: application/x-pem-file` or `?download=pem`)."""
    rotated = await use_cases.rotate_key(uow, identity, principal)
    response.headers["Cache-Control"] = "no-store"
    if _wants_pem(request, download):
        return _pem_file(rotated["apiUserId"], rotated["privateKey"], 200)
    return rotated


# -- listings ------------------------------------------------------------------------------------------------


@router.get(
    "/api/Organization/apiuser/all_organization",
    response_model=OrganizationsPage,
    tags=["organization"],
    dependencies=ADMIN_OR_API_USER,
)
async def api_user_organizations(
    uow: UoW,
    page: Page = Paging,
    organizationName: str | None = Query(
        None, max_length=200, description="only names containing this (any letter case)"
    ),
    principal: Principal = permission("ORGANIZATION_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """The Developer and Buyer organizations registered under the calling API user (Admin: under every API user)."""
    return await use_cases.organizations(uow, principal, page, organizationName)


@router.get("/api/admin/apiusers", response_model=ApiUsersPage, tags=["admin"], dependencies=ADMIN_ONLY)
async def all_api_users(
    uow: UoW,
    page: Page = Paging,
    permissionStatus: Literal["Request", "Active", "Deactive"] | None = Query(
        None, description="e.g. Request: waiting for approval"
    ),
    principal: Principal = permission("USER_MANAGEMENT_CRUDL", "Read"),
) -> dict[str, Any]:
    """Every API user with the modules it asked for and the state of that request, a page at a time. Admin only."""
    return await use_cases.api_users(uow, page, permissionStatus)
