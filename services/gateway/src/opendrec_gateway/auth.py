"""Bearer-token check at the door: EdDSA/RS256 JWTs signed by identity, keys from its JWKS.

A verified token is cached (bounded LRU) until it expires, so the hot path costs a dict
lookup; the signature is checked once per token, not once per request. Services verify the
token again themselves; the gateway forwards the Authorization header unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import aiohttp
import jwt

log = logging.getLogger(__name__)

ALGORITHMS = ["EdDSA", "RS256"]


class AuthError(Exception):
    """The request cannot go through; `status` is 401, or 503 when keys cannot be had."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Jwks:
    """identity's public keys, fetched with aiohttp, refreshed after `ttl_s` or on an unknown kid."""

    def __init__(self, url: str, session: aiohttp.ClientSession, ttl_s: float, min_refresh_interval_s: float) -> None:
        self.url = url
        self._session = session
        self._ttl_s = ttl_s
        self._min_interval_s = min_refresh_interval_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")  # last successful fetch (monotonic)
        self._tried_at = float("-inf")  # last attempt
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    async def refresh(self) -> None:
        """Fetch the key set now. Raises aiohttp.ClientError / TimeoutError / ValueError."""
        self._tried_at = time.monotonic()
        async with self._session.get(self.url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            resp.raise_for_status()
            data = await resp.json(content_type=None)
        keys = {}
        for jwk in jwt.PyJWKSet.from_dict(data).keys:
            if jwk.algorithm_name in ALGORITHMS:
                keys[jwk.key_id or ""] = jwk
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def ensure_loaded(self, kid: str | None = None) -> None:
        """Fetch keys when none are loaded, when `kid` is unknown, or when the set is older than
        the TTL; at most once per min_refresh_interval_s, so a down identity is not hammered."""
        now = time.monotonic()
        if now - self._tried_at <= self._min_interval_s:
            return
        if self._keys and (kid is None or kid in self._keys) and now - self._fetched_at <= self._ttl_s:
            return
        async with self._lock:  # one fetch for many concurrent requests
            if self._tried_at >= now:  # somebody fetched while we waited
                return
            try:
                await self.refresh()
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
                log.warning("JWKS fetch failed", extra={"url": self.url, "error": repr(exc)})

    async def get(self, kid: str) -> jwt.PyJWK | None:
        await self.ensure_loaded(kid)
        if not self._keys:
            raise AuthError("Cannot verify tokens right now: identity keys are unavailable", 503)
        return self._keys.get(kid)


class Authenticator:
    def __init__(
        self,
        jwks: Jwks,
        cache_size: int = 10_000,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 0.0,
    ) -> None:
        self.jwks = jwks
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size
        self._audience = audience or None
        self._issuer = issuer or None
        self._leeway_s = leeway_s
        # Revocation hook: jti values refused even when the token is otherwise valid.
        # Filled by the revocation issue (e.g. from identity's logout events).
        self.revoked_jti: set[str] = set()

    def revoke(self, jti: str) -> None:
        self.revoked_jti.add(jti)

    async def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, or AuthError."""
        if not authorization:
            raise AuthError("Missing bearer access token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Authorization must be 'Bearer <token>'")

        hit = self._cache.get(token)
        if hit is not None:
            exp, claims = hit
            if time.time() < exp + self._leeway_s:
                self._cache.move_to_end(token)
                self._check_revoked(claims)
                return claims
            del self._cache[token]

        claims = await self._verify(token)
        self._check_revoked(claims)
        self._cache[token] = (float(claims["exp"]), claims)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def _check_revoked(self, claims: dict[str, Any]) -> None:
        if self.revoked_jti and claims.get("jti") in self.revoked_jti:
            raise AuthError("Access token has been revoked; log in again")

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("Access token is malformed") from exc
        key = await self.jwks.get(str(header.get("kid") or ""))
        if key is None:
            raise AuthError("Access token is signed by an unknown key")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "sub", "jti"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("Access token has expired; log in again") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"Access token is invalid: {exc}") from exc
