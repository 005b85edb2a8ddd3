"""Token verification and permission checks: every service verifies the caller itself.

Access tokens are EdDSA JWTs signed by identity; public keys come from its JWKS.
Claims: sub (user id), org (organization id), orgType, role, perms {module: "RWUD"}.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import aiohttp
import jwt
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from opendrec_contracts.access import ADMIN_MODULES, ROLES, roles_granted

from .errors import ApiError

ACTIONS = {"Read": "R", "Write": "W", "Update": "U", "Delete": "D"}


@dataclass(frozen=True)
class Principal:
    user_id: int
    organization_id: int
    organization_type: str
    role: str
    email: str
    permissions: dict[str, str] = field(default_factory=dict)
    token_id: str = ""
    api_user_id: str | None = None

    def can(self, module: str, action: str) -> bool:
        return self.role == "Admin" or ACTIONS[action] in self.permissions.get(module, "")


class TokenVerifier:
    """Verifies access tokens against identity's JWKS, refreshing keys on an unknown `kid`."""

    def __init__(self, jwks_url: str, audience: str, issuer: str, refresh_interval_s: float = 300) -> None:
        self.jwks_url = jwks_url
        self.audience = audience
        self.issuer = issuer
        self.refresh_interval_s = refresh_interval_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self._revoked: dict[str, float] = {}  # jti -> expiry (unix s), fed by token.revoked events

    def revoke(self, token_id: str, expires_at: float) -> None:
        """Refuse this token from now on; forgotten once it would have expired anyway."""
        now = time.time()
        if expires_at > now:
            self._revoked[token_id] = expires_at
        if len(self._revoked) > 10_000:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    def add_key(self, jwk: dict[str, Any]) -> None:
        """Trust one more public key (identity uses this for its own keys; tests for theirs)."""
        self._keys[jwk["kid"]] = jwt.PyJWK(jwk)

    async def _refresh(self, force: bool = False) -> None:
        async with self._lock:
            if not force and time.monotonic() - self._fetched_at < self.refresh_interval_s and self._keys:
                return
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self.jwks_url) as resp:
                resp.raise_for_status()
                data = await resp.json()
            self._keys.update({k["kid"]: jwt.PyJWK(k) for k in data.get("keys", [])})
            self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise ApiError(401, "Access token is malformed") from exc
        kid = header.get("kid", "")
        if kid not in self._keys:
            try:
                await self._refresh(force=kid not in self._keys and bool(self._keys))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(503, "Cannot verify tokens right now: identity keys unavailable") from exc
        key = self._keys.get(kid)
        if key is None:
            raise ApiError(401, "Access token signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["EdDSA", "RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ApiError(401, "Access token has expired; log in again") from exc
        except jwt.InvalidTokenError as exc:
            raise ApiError(401, f"Access token is invalid: {exc}") from exc
        if self.is_revoked(claims["jti"]):
            raise ApiError(401, "Access token has been revoked; log in again")
        return Principal(
            user_id=int(claims["sub"]),
            organization_id=int(claims["org"]),
            organization_type=claims.get("orgType", ""),
            role=claims.get("role", ""),
            email=claims.get("email", ""),
            permissions=claims.get("perms", {}),
            token_id=claims["jti"],
            api_user_id=claims.get("apiUserId"),
        )


async def current_principal(request: Request) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Missing bearer access token (Authorization: Bearer <token>)")
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(token.strip())


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
current_principal.any_signed_in = True  # type: ignore[attr-defined]


def permission(module: str, action: str) -> Any:
    """Route dependency: `user: Principal = permission("DEVICE_MANAGEMENT_CRUDL", "Write")`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action}")

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(module, action):
            raise ApiError(403, f"{action} permission on {module} is required")
        return principal

    check.required_permission = (module, action)  # type: ignore[attr-defined]
    return Depends(check)


def only_roles(*roles: str) -> Any:
    """Route dependency for endpoints that belong to some roles whatever the module grants
    (e.g. admin listings): `user: Principal = only_roles("Admin")`."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise ApiError(403, f"Only {' or '.join(roles)} may do this")
        return principal

    check.required_roles = tuple(roles)  # type: ignore[attr-defined]
    return Depends(check)


def _calls(dependant: Dependant) -> list[Any]:
    found = []
    for sub in dependant.dependencies:
        found.append(sub.call)
        found.extend(_calls(sub))
    return found


def access_of(route: APIRoute) -> dict[str, Any]:
    """What a caller needs to reach this route, read from its dependencies (so it cannot drift from the checks)."""
    calls = _calls(route.dependant)
    # dict.fromkeys: the same check may be reached twice (route and router dependencies)
    permissions = list(dict.fromkeys(c.required_permission for c in calls if hasattr(c, "required_permission")))
    role_sets = list(dict.fromkeys(c.required_roles for c in calls if hasattr(c, "required_roles")))
    signed_in = any(getattr(c, "any_signed_in", False) for c in calls)
    if not (permissions or role_sets or signed_in):
        return {"x-access": "public"}
    roles: set[str] = set(ROLES)
    for module, action in permissions:
        # an API user holds what an admin approved, never the modules that administer access
        roles &= set(roles_granted(module, action)) | (set() if module in ADMIN_MODULES else {"ApiUser"})
    for allowed in role_sets:
        roles &= set(allowed)
    access: dict[str, Any] = {"x-access": "signed-in", "x-roles": [r for r in ROLES if r in roles]}
    if permissions:
        access["x-permissions"] = [{"module": m, "action": a} for m, a in permissions]
    return access


def describe_access(route: APIRoute) -> None:
    """Put the route's access rule into its OpenAPI operation: x-access, x-permissions, x-roles, and a sentence."""
    access = access_of(route)
    if access["x-access"] == "public":
        sentence = "Access: public (no token)."
    else:
        needs = "; ".join(f"{p['action']} on {p['module']}" for p in access.get("x-permissions", []))
        sentence = f"Access: {needs or 'any signed-in user'}. Roles by default: {', '.join(access['x-roles'])}."
        if "ApiUser" in access["x-roles"] and access.get("x-permissions"):
            sentence += " ApiUser: once an admin approved its request for the module."
    route.openapi_extra = {**(route.openapi_extra or {}), **access}
    route.description = f"{route.description}\n\n{sentence}".strip()
