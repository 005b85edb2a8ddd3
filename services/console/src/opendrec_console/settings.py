"""Console settings: the kit's core settings plus where the public API is and how sessions are kept."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from opendrec_kit.settings import CoreSettings


class Settings(CoreSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("session_key",)

    service_name: str = "console"
    http_port: int = 8107

    # The console is a client of the public API like any other: every call goes through the gateway.
    gateway_url: str = "http://127.0.0.1:8000"
    api_timeout_s: float = Field(default=30.0, gt=0)

    # Sessions live in an encrypted, authenticated cookie (Fernet: AES-128-CBC + HMAC-SHA256) holding the access
    # token: no token ever reaches the page's scripts. SESSION_KEY is a Fernet key (32 url-safe base64 bytes);
    # unset in dev/test, a fresh one is made at start (sessions end with the process). Replicas share one key.
    session_key: str | None = None
    session_max_age_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    # Secure cookies unless the console is reached on the local machine over plain HTTP (dev, tests).
    cookie_secure: bool | None = None

    # Uploads (reads and device CSVs) read into memory before they are passed on.
    upload_limit_bytes: int = Field(default=16 << 20, ge=1024)

    @model_validator(mode="after")
    def _session_key_in_production(self) -> Settings:
        # replicas (and restarts) must open each other's cookies: one key, given
        if self.environment == "production" and not self.session_key:
            raise ValueError("SESSION_KEY must be set in production (a Fernet key: 32 url-safe base64 bytes)")
        return self

    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else self.environment == "production"
