"""The Ed25519 signing key, the JWKS that publishes it, and access tokens signed with it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Unpack

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from . import domain


class SigningKeyError(RuntimeError):
    """The signing key file is missing (where it may not be generated) or unusable."""


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an OKP key (RFC 8037): a stable `kid` that changes with the key."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    kid: str
    generated: bool = field(default=False, compare=False)  # created by this start (dev/test only)

    @classmethod
    def of(cls, private_key: Ed25519PrivateKey, *, generated: bool = False) -> SigningKey:
        jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        return cls(private_key, jwk_thumbprint(jwk), generated)

    def public_jwk(self) -> dict[str, Any]:
        jwk = OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="EdDSA", headers={"kid": self.kid})

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(kid={self.kid!r})"


def load_signing_key(path: Path, *, may_create: bool) -> SigningKey:
    """Read the PEM key at `path`; when it is missing, create one (0600) if `may_create`, else fail."""
    if not path.exists():
        if not may_create:
            raise SigningKeyError(
                f"JWT_PRIVATE_KEY_FILE {path} does not exist; provide an Ed25519 private key in PEM "
                "(e.g. `openssl genpkey -algorithm ed25519 -out key.pem`)"
            )
        created = _create(path)
        if created:
            return created
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"JWT_PRIVATE_KEY_FILE {path} is not an unencrypted PEM private key") from exc
    except OSError as exc:
        raise SigningKeyError(f"JWT_PRIVATE_KEY_FILE {path} cannot be read: {exc.strerror}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"JWT_PRIVATE_KEY_FILE {path} holds a {type(key).__name__}; an Ed25519 key is required")
    return SigningKey.of(key)


def _create(path: Path) -> SigningKey | None:
    """Write a new key readable by the owner only; None if another process wrote one first."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written whole under a temporary name, then linked into place: a reader never sees half a key,
    # and of two processes starting together exactly one key wins.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask says
            out.write(pem)
        os.link(tmp, path)
    except FileExistsError:
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return SigningKey.of(key, generated=True)


class TokenService:
    def __init__(self, key: SigningKey, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl = timedelta(seconds=ttl_seconds)

    def issue(self, **subject: Unpack[domain.TokenSubject]) -> str:
        return self.issue_with_claims(**subject)[0]

    def issue_with_claims(self, **subject: Unpack[domain.TokenSubject]) -> tuple[str, dict[str, Any]]:
        """The signed token and its claims (the caller records `jti` and `exp` to revoke it later)."""
        claims = domain.access_token_claims(
            issuer=self.issuer,
            audience=self.audience,
            ttl=self.ttl,
            now=datetime.now(UTC),
            jti=uuid.uuid4().hex,
            **subject,
        )
        return self.key.sign(claims), claims

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk()]}
