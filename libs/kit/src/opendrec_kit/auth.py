"""Token verification and permission checks: every service verifies the caller itself, and the
gateway checks the same way at the door (the same `TokenVerifier`).

Access tokens are EdDSA (or RS256) JWTs signed by identity; public keys come from its JWKS.
Claims: sub (user id), org (organization id), orgType, role, perms {module: "RWUD"}.
A verified token is cached (bounded LRU) until it expires, so the hot path costs a dict lookup:
the signature is checked once per token and process, not once per request. Revocations
(token.revoked, followed by `RevocationFollower`) are checked on every call, cache hits
included, and forgotten once the token has expired anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp
import jwt
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import ValidationError

from opendrec_contracts import AccessTokenRevoked, Envelope, UnknownEvent, parse_event, topic_of
from opendrec_contracts.access import ADMIN_MODULES, ROLES, roles_granted

from .errors import ApiError
from .kafka_security import client_options
from .workers import Worker

if TYPE_CHECKING:
    from .settings import CoreSettings

log = logging.getLogger(__name__)

ACTIONS = {"Read": "R", "Write": "W", "Update": "U", "Delete": "D"}
ALGORITHMS = ["EdDSA", "RS256"]


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
    # The bearer token itself: forwarded when this service asks an owning service on the caller's behalf
    # (opendrec_kit.owners), so the owner applies its own access rules. Never logged or compared.
    token: str = field(default="", repr=False, compare=False)

    def can(self, module: str, action: str) -> bool:
        return self.role == "Admin" or ACTIONS[action] in self.permissions.get(module, "")

    @classmethod
    def of(cls, claims: dict[str, Any], token: str = "") -> Principal:
        return cls(
            user_id=int(claims["sub"]),
            organization_id=int(claims["org"]),
            organization_type=claims.get("orgType", ""),
            role=claims.get("role", ""),
            email=claims.get("email", ""),
            permissions=claims.get("perms", {}),
            token_id=claims["jti"],
            api_user_id=claims.get("apiUserId"),
            token=token,
        )


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or a 401 ApiError."""
    if not authorization:
        raise ApiError(401, "Missing bearer access token (Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Authorization must be 'Bearer <token>'")
    return token


class _Verified:
    """A cache entry: a token's claims, until when they hold, and its Principal once asked for."""

    __slots__ = ("claims", "kid", "principal", "until")

    def __init__(self, claims: dict[str, Any], until: float, kid: str) -> None:
        self.claims = claims
        self.until = until
        self.kid = kid  # the key it was verified with: a key removed from the JWKS stops vouching for it
        self.principal: Principal | None = None


class TokenVerifier:
    """Verifies access tokens against identity's JWKS.

    Keys are fetched when none are loaded, on an unknown `kid`, or when older than
    `refresh_interval_s`; at most once per `min_refresh_interval_s`, so neither a down identity
    nor a flood of tokens with made-up kids hammers it. A failed fetch keeps the keys there are:
    503 only when there are none. Keys given with `add_key` are always trusted.
    """

    def __init__(
        self,
        jwks_url: str,
        audience: str | None = None,
        issuer: str | None = None,
        refresh_interval_s: float = 300,
        *,
        min_refresh_interval_s: float = 5.0,
        leeway_s: float = 0.0,
        cache_size: int = 10_000,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.jwks_url = jwks_url
        self.audience = audience or None
        self.issuer = issuer or None
        self.refresh_interval_s = refresh_interval_s
        self.min_refresh_interval_s = min_refresh_interval_s
        self.leeway_s = leeway_s
        self.cache_size = cache_size
        self._session = session  # None: a short-lived session per fetch
        self._pinned: dict[str, jwt.PyJWK] = {}  # add_key
        self._fetched: dict[str, jwt.PyJWK] = {}  # the last JWKS fetched
        self._fetched_at = float("-inf")  # last successful fetch (monotonic)
        self._tried_at = float("-inf")  # last attempt
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._revoked: dict[str, float] = {}  # jti -> until when to refuse it (unix s), fed by token.revoked
        self._prune_revoked_at = 10_000

    @classmethod
    def from_settings(cls, settings: CoreSettings, session: aiohttp.ClientSession | None = None) -> TokenVerifier:
        return cls(
            settings.jwks_url,
            settings.jwt_audience,
            settings.jwt_issuer,
            settings.jwks_ttl_s,
            min_refresh_interval_s=settings.jwks_min_refresh_interval_s,
            leeway_s=settings.jwt_leeway_s,
            cache_size=settings.token_cache_size,
            session=session,
        )

    # -- revocations ------------------------------------------------------------
    def revoke(self, token_id: str, expires_at: float) -> None:
        """Refuse this token from now on; forgotten once it would have expired anyway."""
        now = time.time()
        until = expires_at + self.leeway_s
        if until > now:
            self._revoked[token_id] = until
        if len(self._revoked) > self._prune_revoked_at:
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            self._prune_revoked_at = max(10_000, 2 * len(self._revoked))

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    # -- keys -------------------------------------------------------------------
    def add_key(self, jwk: dict[str, Any]) -> None:
        """Trust one more public key (identity uses this for its own keys; tests for theirs)."""
        self._pinned[jwk["kid"]] = jwt.PyJWK(jwk)

    @property
    def loaded(self) -> bool:
        return bool(self._pinned) or self._fetched_at > float("-inf")  # a key set fetched, even an empty one

    async def refresh(self) -> None:
        """Fetch the key set now. Raises aiohttp.ClientError / TimeoutError / ValueError / jwt.PyJWTError."""
        self._tried_at = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=5)
        if self._session is not None:
            data = await self._fetch(self._session, timeout)
        else:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                data = await self._fetch(session, timeout)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWK set")
        keys = {}
        for entry in data["keys"]:  # an empty set is a set: identity withdrew every key
            try:
                jwk = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key of a kind we don't verify with
            if jwk.algorithm_name in ALGORITHMS:
                keys[jwk.key_id or ""] = jwk
        self._fetched = keys
        self._fetched_at = time.monotonic()

    async def _fetch(self, session: aiohttp.ClientSession, timeout: aiohttp.ClientTimeout) -> Any:
        async with session.get(self.jwks_url, timeout=timeout) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def ensure_loaded(self, kid: str | None = None) -> None:
        """Fetch keys when none are loaded, when `kid` is unknown, or when the set is older than
        the TTL; at most once per min_refresh_interval_s. A failure is logged, not raised."""
        now = time.monotonic()
        if kid is not None and kid in self._pinned:
            return  # always trusted: nothing to fetch for it
        fresh = now - self._fetched_at <= self.refresh_interval_s
        if self._fetched and fresh and (kid is None or kid in self._fetched):
            return
        if self._lock.locked():
            async with self._lock:  # a fetch is under way: its outcome answers this request too
                return
        if now - self._tried_at <= self.min_refresh_interval_s:
            return
        async with self._lock:  # one fetch for many concurrent requests
            if self._tried_at >= now:  # somebody fetched while we waited
                return
            try:
                await self.refresh()
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
                log.warning("JWKS fetch failed", extra={"url": self.jwks_url, "error": repr(exc)})

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        await self.ensure_loaded(kid)
        if not self.loaded:
            raise ApiError(503, "Cannot verify tokens right now: identity keys are unavailable")
        return self._pinned.get(kid) or self._fetched.get(kid)

    # -- tokens -----------------------------------------------------------------
    async def claims(self, token: str) -> dict[str, Any]:
        """The token's verified claims (cached until it expires), or a 401/503 ApiError."""
        return (await self._verified(token)).claims

    async def verify(self, token: str) -> Principal:
        """The caller a token stands for, or a 401/503 ApiError."""
        entry = await self._verified(token)
        if entry.principal is None:
            entry.principal = Principal.of(entry.claims, token)
        return entry.principal

    async def _verified(self, token: str) -> _Verified:
        entry = self._cache.get(token)
        if entry is not None:
            if entry.kid not in self._pinned and time.monotonic() - self._fetched_at > self.refresh_interval_s:
                await self.ensure_loaded()  # keys past their TTL: fetched again (at most once per interval)
            if time.time() < entry.until and (entry.kid in self._pinned or entry.kid in self._fetched):
                self._cache.move_to_end(token)
                if self._revoked and entry.claims["jti"] in self._revoked:
                    raise ApiError(401, "Access token has been revoked; log in again")
                return entry
            del self._cache[token]
        claims, kid = await self._decode(token)
        if self._revoked and claims["jti"] in self._revoked:
            raise ApiError(401, "Access token has been revoked; log in again")
        entry = _Verified(claims, float(claims["exp"]) + self.leeway_s, kid)
        self._cache[token] = entry
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry

    async def _decode(self, token: str) -> tuple[dict[str, Any], str]:
        """The verified claims and the id of the key that signed them."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise ApiError(401, "Access token is malformed") from exc
        kid = str(header.get("kid") or "")
        key = await self._key(kid)
        if key is None:
            raise ApiError(401, "Access token is signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],  # the key's own algorithm only: no algorithm confusion
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "jti"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ApiError(401, "Access token has expired; log in again") from exc
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"Access token is invalid: {exc}") from exc
        return claims, kid


class RevocationFollower:
    """Follows token.revoked into a TokenVerifier, so a logged-out token is refused within moments.

    Every process reads the whole topic without a consumer group (each must see every
    revocation); the effect is in memory and idempotent, so no offsets or inbox are kept.
    Run it as a kit worker (`worker()`): one `step` is one poll; a failing step closes the
    consumer and the worker retries it with backoff (it then reads the topic from the start).
    """

    def __init__(self, bootstrap: str, verifier: TokenVerifier, *, poll_ms: int = 1000) -> None:
        self.bootstrap = bootstrap
        self.verifier = verifier
        self.poll_ms = poll_ms
        self._consumer: AIOKafkaConsumer | None = None

    def worker(self, name: str = "token-revocations") -> Worker:
        return Worker(name, self.step, interval_s=0)

    async def step(self) -> bool:
        try:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(
                    topic_of(AccessTokenRevoked.TYPE),
                    bootstrap_servers=self.bootstrap,
                    auto_offset_reset="earliest",
                    enable_auto_commit=False,
                    metadata_max_age_ms=5000,  # the topic may be created after this process starts
                    **client_options(),
                )
                self._consumer = consumer
                await consumer.start()
            batches = await self._consumer.getmany(timeout_ms=self.poll_ms)
        except BaseException:  # failed, or stopped (cancelled): the next step starts afresh
            await self.close()
            raise
        for records in batches.values():
            for record in records:
                self.apply(record.value, record.offset)
        return bool(batches)

    async def catch_up(self, timeout_s: float = 30.0) -> int:
        """Read every revocation already on the topic, before the process serves: a process started after a logout
        must refuse that token from its first request. Returns how many messages were read; raises TimeoutError
        (the process does not start) when the broker doesn't deliver them in time."""
        topic = topic_of(AccessTokenRevoked.TYPE)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, **client_options())
        await consumer.start()
        try:
            await consumer.topics()  # metadata, so the partitions are known
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not parts:
                return 0
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            read = 0
            async with asyncio.timeout(timeout_s):
                while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                    for records in (await consumer.getmany(timeout_ms=200)).values():
                        for record in records:
                            self.apply(record.value, record.offset)
                            read += 1
            return read
        finally:
            await consumer.stop()

    def apply(self, raw: bytes | None, offset: int | None = None) -> None:
        try:
            event = parse_event(Envelope.model_validate_json(raw or b""))
        except (ValidationError, UnknownEvent, ValueError):
            log.warning("unreadable token.revoked message ignored", extra={"offset": offset})
            return
        if isinstance(event, AccessTokenRevoked):
            self.verifier.revoke(event.token_id, event.expires_at.timestamp())

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


async def current_principal(request: Request) -> Principal:
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(bearer_token(request.headers.get("authorization")))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
current_principal.any_signed_in = True  # type: ignore[attr-defined]  # a marker access_of() reads


def permission(module: str, action: str) -> Any:
    """Route dependency: `user: Principal = permission("DEVICE_MANAGEMENT_CRUDL", "Write")`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action}")

    # The token is read here, not through a CurrentPrincipal dependency: each dependency is a node FastAPI solves
    # on every request (a route asking for both verifies twice: a cache lookup).
    async def check(request: Request) -> Principal:
        principal = await current_principal(request)
        if not principal.can(module, action):
            raise ApiError(403, f"{action} permission on {module} is required")
        return principal

    check.required_permission = (module, action)  # type: ignore[attr-defined]  # a marker access_of() reads
    return Depends(check)


def only_roles(*roles: str) -> Any:
    """Route dependency for endpoints that belong to some roles whatever the module grants
    (e.g. admin listings): `user: Principal = only_roles("Admin")`."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    async def check(request: Request) -> Principal:
        principal = await current_principal(request)
        if principal.role not in roles:
            raise ApiError(403, f"Only {' or '.join(roles)} may do this")
        return principal

    check.required_roles = tuple(roles)  # type: ignore[attr-defined]  # a marker access_of() reads
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
