"""API users: registration (the private key is returned once, never stored), organizations registered
under an API user, access tokens for signed client assertions (RFC 7523 private_key_jwt), key rotation,
and the module permissions an admin must approve.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opendrec_contracts.access import ADMIN_MODULES
from opendrec_kit import ApiError, Principal, UnitOfWork
from opendrec_kit.paging import Page
from opendrec_kit.timestamps import iso

from .. import domain, store
from ..bodies import ModuleRequest, Register, TokenRequest
from .common import (
    Identity,
    answered_privately,
    issue_access_token,
    joined_user_out,
    organization_out,
    page_of,
    refuse_taken,
    refusing_duplicates,
    register_organization,
    revoke_sessions,
)

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
INVALID_CLIENT = "invalid_client: the client assertion is not valid for any API user"
NOT_AN_API_USER = "This account is not an API user"
GET_ACCESS_RETIRED = (
    "POST /api/auth/getAccess is retired: private keys are never sent over the network here. "
    "Sign a client assertion (a JWT: iss = sub = your apiUserId, aud = opendrec-identity, a unique jti, "
    "exp a few minutes ahead at most, EdDSA) with your private key and send it to POST /api/auth/token "
    "(grant_type=client_credentials, client_assertion_type=" + ASSERTION_TYPE + ", client_assertion=<JWT>). "
    "Do not reuse a private key you have sent anywhere: rotate it (POST /api/user/apiuser/rotate-key)."
)

EXPORT_ACCESS_KEY_RETIRED = (
    "GET /api/user/export-accesskey/{api_user_id} is retired: it handed out a new private key for an API user to "
    "anyone who named its id, without a token. Here a private key is shown once, when it is made, and never "
    "stored: save it from the answer of POST /api/user/register, or get a new one with POST "
    "/api/user/apiuser/rotate-key (signed in as the API user; Accept: application/x-pem-file for a file). "
    "Tokens come from a client assertion signed with the key: POST /api/auth/token."
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


async def register(uow: UnitOfWork, identity: Identity, body: Register, principal: Principal | None) -> dict[str, Any]:
    """An API user (its own organization of type ApiUser; the answer holds its private key, which is kept
    nowhere), or a Developer/Buyer organization registered under an API user by `principal` (that API user,
    or an Admin; required then) with its first user."""
    if body.organizationType != domain.API_USER:
        assert principal is not None, "a registration under an API user is made by a signed-in caller"
        await _may_register_under(uow, principal, body.api_user_id)
    elif answer := await answered_privately(uow, identity, body, role=domain.API_USER):
        # Anyone may register an API user, so a known e-mail is answered as a fresh registration: with a key pair
        # of its own, kept nowhere. (Under an API user the caller is that API user or an Admin, and gets the 409.)
        unused_key, _ = await asyncio.to_thread(_new_key_pair)
        return {**answer, "apiUserId": str(uuid.uuid4()), "privateKey": unused_key}
    await refuse_taken(uow, body)
    passwords = identity.passwords
    password_hash, secret_key_hash = await asyncio.gather(passwords.hash(body.password), passwords.hash(body.secretKey))
    private_pem: str | None = None
    public_pem: str | None = None
    api_user_id: uuid.UUID | None
    if body.organizationType == domain.API_USER:
        private_pem, public_pem = await asyncio.to_thread(_new_key_pair)
        api_user_id, role, owner = uuid.uuid4(), domain.API_USER, None
    else:
        api_user_id, role, owner = body.api_user_id, domain.first_user_role(body.organizationType), body.api_user_id
    with refusing_duplicates():
        async with uow:
            org, user = await register_organization(
                uow,
                identity.settings,
                body,
                role=role,
                password_hash=password_hash,
                secret_key_hash=secret_key_hash,
                api_user_id=str(api_user_id),
                owner_api_user_id=owner,
            )
            if public_pem:
                await store.insert_api_user(uow.conn, api_user_id, user["id"], public_pem)
            joined = await store.user_by_id(uow.conn, user["id"])
    identity.send_mail_now()
    log.info(
        "registered with /api/user/register",
        extra={
            "organization_type": body.organizationType,
            "api_user_id": str(api_user_id),
            "user_id": user["id"],
            "organization_id": org["id"],
        },
    )
    return {**joined_user_out(joined), "apiUserId": str(api_user_id), "privateKey": private_pem}


async def _may_register_under(uow: UnitOfWork, principal: Principal, api_user_id: uuid.UUID | None) -> None:
    """Only that API user (with ORGANIZATION_MANAGEMENT_CRUDL Write approved) or an Admin."""
    if principal.role == domain.ADMIN:
        async with uow.reading() as r:
            if await store.api_user_by_id(r.conn, api_user_id) is None:
                raise ApiError(404, f"API user {api_user_id} does not exist")
        return
    if principal.role != domain.API_USER or principal.api_user_id != str(api_user_id):
        raise ApiError(403, "Only that API user (or an Admin) registers organizations under an API user")
    if not principal.can("ORGANIZATION_MANAGEMENT_CRUDL", "Write"):
        raise ApiError(
            403,
            "Write permission on ORGANIZATION_MANAGEMENT_CRUDL is required (ask for it and wait for an admin's approval)",
        )


async def organizations(uow: UnitOfWork, principal: Principal, page: Page, name: str | None) -> dict[str, Any]:
    """The Developer and Buyer organizations registered under the calling API user (Admin: under every API user)."""
    if principal.role == domain.ADMIN:
        owner = None
    elif principal.api_user_id:
        owner = uuid.UUID(principal.api_user_id)
    else:  # an ApiUser token without its apiUserId claim: nothing to list
        raise ApiError(403, "This token names no API user; get one from POST /api/auth/token")
    async with uow.reading() as r:
        rows, total = await store.api_user_organizations_page(r.conn, owner, name or None, page)
    return page_of("organizations", [organization_out(row) for row in rows], page, total)


async def api_users(uow: UnitOfWork, page: Page, permission_status: str | None) -> dict[str, Any]:
    """Every API user with the modules it asked for and the state of that request: the admin's listing."""
    async with uow.reading() as r:
        rows, total = await store.api_users_page(r.conn, permission_status, page)
    items = [
        {
            "apiUserId": str(row["id"]),
            "userId": row["user_id"],
            "email": row["email"],
            "organizationId": row["organization_id"],
            "organizationName": row["organization_name"],
            "permissionStatus": row["permission_status"],
            "requestedModules": {m: domain.action_names(a) for m, a in sorted(orjson.loads(row["requested"]).items())},
            "createdAt": iso(row["created_at"]),
        }
        for row in rows
    ]
    return page_of("apiusers", items, page, total)


# -- client credentials --------------------------------------------------------------------------------------


async def client_credentials_token(uow: UnitOfWork, identity: Identity, body: TokenRequest) -> dict[str, Any]:
    """An access token for a client assertion an API user signed with its private key; each assertion works once."""
    settings = identity.settings
    if body.grant_type != "client_credentials":
        raise ApiError(400, "unsupported_grant_type: only client_credentials is offered")
    if body.client_assertion_type != ASSERTION_TYPE:
        raise ApiError(400, f"invalid_request: client_assertion_type must be {ASSERTION_TYPE}")
    try:
        client_id = uuid.UUID(str(jwt.decode(body.client_assertion, options={"verify_signature": False}).get("iss")))
    except (jwt.InvalidTokenError, ValueError):
        raise ApiError(401, INVALID_CLIENT) from None
    async with uow.reading() as r:
        api_user = await store.api_user_by_id(r.conn, client_id)
    if api_user is None:
        raise ApiError(401, INVALID_CLIENT)
    try:
        claims = jwt.decode(
            body.client_assertion,
            serialization.load_pem_public_key(api_user["public_key_pem"].encode()),  # type: ignore[arg-type]  # an Ed25519 key: api_users holds only those
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
    # Spent (committed) even when the account turns out inactive: an assertion works once, whatever the answer.
    async with uow:
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        fresh = await store.spend_assertion(uow.conn, str(claims["jti"])[:200], client_id, expires_at)
        user = await store.user_by_id(uow.conn, api_user["user_id"]) if fresh else None
    if not fresh:
        raise ApiError(401, "invalid_client: this client assertion was already used (jti)")
    if user is None or user["status"] != "Active":
        raise ApiError(403, "This API user cannot get tokens (its account is not active)")
    token = await issue_access_token(uow, identity.tokens, user)
    log.info("api user token", extra={"api_user_id": str(client_id), "user_id": user["id"]})
    ttl = settings.access_token_ttl_seconds
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "accessToken": token}


async def rotate_key(uow: UnitOfWork, identity: Identity, principal: Principal) -> dict[str, Any]:
    """A new key pair: assertions signed with the old key are refused from now on, and every current token
    of the API user (the caller's included) is revoked. The answer holds the new private key, kept nowhere."""
    private_pem, public_pem = await asyncio.to_thread(_new_key_pair)
    async with uow:
        api_user = await store.api_user_by_user(uow.conn, principal.user_id)
        if api_user is None:
            raise ApiError(403, NOT_AN_API_USER)
        await store.replace_api_user_key(uow.conn, api_user["id"], public_pem)
        revoked = await revoke_sessions(uow, principal.user_id)
    identity.refuse_here(revoked)
    log.info("api user key rotated", extra={"api_user_id": str(api_user["id"])})
    return {"apiUserId": str(api_user["id"]), "privateKey": private_pem}


# -- module permissions --------------------------------------------------------------------------------------


def requested_modules(body: list[ModuleRequest], modules: dict[int, tuple[str, str]]) -> dict[str, str]:
    """What an API user asks for, module -> action letters; 400 naming the first item that cannot be asked for."""
    by_name = dict(modules.values())
    requested: dict[str, str] = {}
    for i, item in enumerate(body):
        name = modules.get(item.aclmodulesId, (None, ""))[0] if item.aclmodulesId is not None else item.moduleName
        if name is None or name not in by_name:
            raise ApiError(
                400, f"Invalid request: check {i}", [{"field": str(i), "message": "no such enabled ACL module"}]
            )
        if name in ADMIN_MODULES:
            allowed = ", ".join(m for m in by_name if m not in ADMIN_MODULES)
            message = f"{name} is for administrators only; an API user may ask for {allowed}"
            raise ApiError(400, f"Invalid request: check {i}", [{"field": str(i), "message": message}])
        letters = domain.merge_actions(requested.get(name, ""), "".join(a[0] for a in item.permissions))
        if set(letters) - set(by_name[name]):
            message = f"{name} offers only {', '.join(domain.action_names(by_name[name]))}"
            raise ApiError(400, f"Invalid request: check {i}", [{"field": f"{i}.permissions", "message": message}])
        requested[name] = letters
    return requested


async def request_permissions(
    uow: UnitOfWork, identity: Identity, principal: Principal, body: list[ModuleRequest]
) -> dict[str, Any]:
    """An API user asks for modules. Until an admin approves, it holds none of them; a new request
    replaces the previous one and withdraws what was granted until it is approved again (the caller's
    other sessions end)."""
    if not body:
        raise ApiError(
            400, "Invalid request: ask for at least one module", [{"field": "body", "message": "empty list"}]
        )
    async with uow:
        api_user = await store.api_user_by_user(uow.conn, principal.user_id)
        if api_user is None:
            raise ApiError(403, NOT_AN_API_USER)
        requested = requested_modules(body, await store.module_names_by_id(uow.conn))
        await store.replace_permission_request(uow.conn, api_user["id"], requested)
        revoked = await revoke_sessions(uow, principal.user_id, keep_jti=principal.token_id)
        state = await _permission_state(uow.conn, api_user["id"], "Request")
    identity.refuse_here(revoked)
    log.info("api user permissions requested", extra={"api_user_id": state["apiUserId"], "modules": sorted(requested)})
    return state


async def verify_permissions(
    uow: UnitOfWork, identity: Identity, principal: Principal, api_user_id: uuid.UUID, status: str
) -> dict[str, Any]:
    """Approve (Active) or withdraw (Deactive) what an API user asked for. Its current tokens are revoked:
    the next token carries the new permissions."""
    async with uow:
        api_user = await store.api_user_by_id(uow.conn, api_user_id)
        if api_user is None:
            raise ApiError(404, f"API user {api_user_id} does not exist")
        if status == "Active" and not await store.permission_request(uow.conn, api_user_id):
            raise ApiError(409, "This API user has not asked for any module")
        await store.set_api_user_permissions(uow.conn, api_user_id, api_user["user_id"], status)
        revoked = await revoke_sessions(uow, api_user["user_id"])
        state = await _permission_state(uow.conn, api_user_id, status)
    identity.refuse_here(revoked)
    log.info(
        "api user permissions verified",
        extra={"api_user_id": str(api_user_id), "status": status, "by": principal.user_id},
    )
    return state
