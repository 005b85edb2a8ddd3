"""Identity settings (environment variables of the same name, upper-case)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator
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

    # The first admin, created at startup when no user has the Admin role.
    admin_email: str = "admin@opendrec.local"
    admin_password: str = "dev-only-Admin123"
    admin_organization_name: str = "OpenDREC Administration"

    # Ed25519 private key (PEM, PKCS#8). Generated on first start in dev/test; must exist in production.
    jwt_private_key_file: str = ".run/identity/jwt-private-key.pem"
    access_token_ttl_seconds: int = Field(default=3600, ge=60)

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
