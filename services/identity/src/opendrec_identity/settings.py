"""Identity settings (environment variables of the same name, upper-case)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from opendrec_kit import ServiceSettings

from . import domain


class Settings(ServiceSettings):
    # A rejected value (e.g. a too-weak ADMIN_PASSWORD) must not be echoed into the startup error.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    # Refused outside dev/test while it still holds its "dev-only-" default.
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("admin_password",)

    service_name: str = "identity"
    http_port: int = 8101

    # A registration anyone may send (POST /api/user/registerWithOrganization, and /api/user/register of an API
    # user) with an e-mail address that already has an account: "private" answers as a fresh registration does
    # (201, the same shape; nothing is created) and mails the address's owner instead, so no answer tells which
    # e-mails exist; "drec" answers D-REC's 409 naming the e-mail, for clients that rely on it.
    registration_disclosure: Literal["drec", "private"] = "private"

    # The first admin, created at startup when no user has the Admin role.
    admin_email: str = "admin@opendrec.local"
    admin_password: str = "dev-only-Admin123"
    admin_organization_name: str = "OpenDREC Administration"

    # Ed25519 private key (PEM, PKCS#8). Generated on first start in dev/test; must exist in production.
    jwt_private_key_file: str = ".run/identity/jwt-private-key.pem"
    access_token_ttl_seconds: int = Field(default=3600, ge=60)

    # API users' client assertions (RFC 7523) may live this long at most (exp - now).
    client_assertion_max_lifetime_seconds: int = Field(default=300, ge=10)

    # Outgoing mail: smtp://host:port (smtps:// for TLS; user:password@ if the server wants a login).
    smtp_url: str = "smtp://127.0.0.1:8025"
    mail_from: str = "OpenDREC <no-reply@opendrec.local>"
    mail_poll_interval_s: float = Field(default=1.0, gt=0)
    mail_max_attempts: int = Field(default=10, ge=1)
    # Where the links in mails point (the gateway, or a web front end serving the same paths).
    public_url: str = "http://127.0.0.1:8000"
    email_confirmation_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    password_reset_ttl_seconds: int = Field(default=3600, ge=60)
    invitation_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=60)

    # Login throttling, per account (e-mail as typed, known or not) and per client address, over a window:
    # from `*_slowdown_after` failures each further try must wait base * 2^n seconds (up to max);
    # at `*_lockout_after` failures the key is refused for lockout seconds. Answers are 429 with Retry-After.
    login_window_seconds: int = Field(default=900, ge=1)
    login_account_slowdown_after: int = Field(default=3, ge=1)
    login_address_slowdown_after: int = Field(default=20, ge=1)  # many people may share one address
    login_slowdown_base_seconds: float = Field(default=1.0, gt=0)
    login_slowdown_max_seconds: float = Field(default=60.0, gt=0)
    login_account_lockout_after: int = Field(default=10, ge=1)
    login_address_lockout_after: int = Field(default=50, ge=1)
    login_lockout_seconds: int = Field(default=900, ge=1)
    # Password checks (argon2id, OWASP's cost: passwords.py) run in this many threads at once (each holds 7 MiB
    # while it runs), with at most `password_queue` more waiting; beyond that a login is answered 503 at once.
    # More threads than the cores identity may use only add latency.
    password_threads: int = Field(default=2, ge=1, le=64)
    password_queue: int = Field(default=64, ge=0, le=10_000)
    # Identity sits behind the gateway, which appends the client address to X-Forwarded-For:
    # the last entry is the one to trust. Set false when clients reach identity directly.
    trust_forwarded_for: bool = True

    @field_validator("admin_email")
    @classmethod
    def _admin_email(cls, value: str) -> str:
        return domain.normalize_email(value)

    @field_validator("admin_password")
    @classmethod
    def _admin_password(cls, value: str) -> str:
        try:
            return domain.check_password(value)
        except domain.Invalid as exc:
            raise ValueError(f"ADMIN_PASSWORD: {exc}") from None

    @model_validator(mode="after")
    def _revocations_outlive_a_broker_loss(self) -> Settings:
        # token.revoked is published again after a broker lost its data only while its outbox row is retained: a
        # logged-out token must not work again before it expires anyway.
        if self.outbox_retention_s < self.access_token_ttl_seconds:
            raise ValueError(
                f"OUTBOX_RETENTION_S ({self.outbox_retention_s:g}) must be at least ACCESS_TOKEN_TTL_SECONDS "
                f"({self.access_token_ttl_seconds}): revocations are published again after a broker loss only while retained"
            )
        return self
