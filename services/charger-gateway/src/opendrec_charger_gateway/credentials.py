"""Kazam tokens encrypted at rest: Fernet (AES-128-CBC + HMAC-SHA256) under keys from KAZAM_CREDENTIALS_KEYS.

The first key encrypts, every key decrypts: to rotate, put a new key first and keep the old ones until the
poller has re-encrypted every token with the new one (`key_id` in kazam_accounts names the key used).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class UnreadableToken(Exception):
    """A stored token no configured key decrypts (its key was removed before rotation finished)."""


def _fernet(secret: str) -> Fernet:
    # Any secret string becomes a Fernet key (32 bytes, url-safe base64) through SHA-256.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def key_id(secret: str) -> str:
    """A short public name of a key (not the key): which one encrypted a token."""
    return hashlib.sha256(b"kazam-credentials-key:" + secret.encode()).hexdigest()[:12]


class TokenCipher:
    def __init__(self, keys: str) -> None:
        secrets = [k.strip() for k in keys.split(",") if k.strip()]
        if not secrets:
            raise ValueError("KAZAM_CREDENTIALS_KEYS holds no key")
        self.current = key_id(secrets[0])
        self._fernet = MultiFernet([_fernet(s) for s in secrets])

    def encrypt(self, token: str) -> tuple[bytes, str]:
        """The token encrypted with the first key, and that key's id."""
        return self._fernet.encrypt(token.encode()), self.current

    def decrypt(self, encrypted: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(encrypted)).decode()
        except InvalidToken:
            raise UnreadableToken("no key in KAZAM_CREDENTIALS_KEYS decrypts this token") from None

    def rotate(self, encrypted: bytes) -> tuple[bytes, str]:
        """The same token encrypted with the first key."""
        try:
            return self._fernet.rotate(bytes(encrypted)), self.current
        except InvalidToken:
            raise UnreadableToken("no key in KAZAM_CREDENTIALS_KEYS decrypts this token") from None
