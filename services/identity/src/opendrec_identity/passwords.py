"""Argon2id hashing of passwords and secret keys, off the event loop (it is CPU-bound by design)."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """argon2-cffi's defaults (RFC 9106 low-memory profile); hashes carry their parameters."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        # Checked against when an e-mail is unknown, so that answer costs what a wrong password costs.
        self._nobody = self._hasher.hash(secrets.token_urlsafe(32))

    async def hash(self, secret: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, secret)

    async def verify(self, hashed: str, secret: str) -> bool:
        return await asyncio.to_thread(self._verify, hashed, secret)

    async def spend_verify_time(self, secret: str) -> None:
        """Do the work of a failed check for an account that does not exist."""
        await self.verify(self._nobody, secret)

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)

    def _verify(self, hashed: str, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            return False
