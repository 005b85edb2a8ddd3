from typing import ClassVar

from pydantic import Field

from opendrec_kit import ServiceSettings


class Settings(ServiceSettings):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("kazam_token", "kazam_credentials_keys")

    service_name: str = "charger-gateway"
    http_port: int = 8106

    kazam_url: str = "http://127.0.0.1:8110"
    # The platform token: only a dev default, used in dev and test for organizations that registered no Kazam
    # credentials of their own; never in production (refused there as a dev secret, and not consulted).
    kazam_token: str = "dev-only-kazam-token"
    # Keys encrypting the organizations' Kazam tokens at rest, comma-separated: the first encrypts, every one
    # decrypts (rotation: put the new key first; tokens are re-encrypted with it on the next poll round).
    kazam_credentials_keys: str = "dev-only-kazam-credentials-key"
    kazam_poll_seconds: float = Field(default=60.0, gt=0)
    # Each poll also looks this far behind its cursor: transactions that reach Kazam late (chargers that
    # sync after the fact) or that a page shifted past are still found; txn_id dedup makes re-reading free.
    kazam_lookback_seconds: int = Field(default=86_400, ge=0)
    kazam_timeout_seconds: float = Field(default=10.0, gt=0)
    kazam_page_size: int = Field(default=100, ge=1, le=1000)
    kazam_chargers_per_request: int = Field(default=100, ge=1)
    kazam_attempts: int = Field(default=3, ge=1)  # per request, on transport errors, 5xx and device_timeout
    # Circuit breaker per Kazam account: after this many failed requests in a row the account is left alone
    # for the cool-down, then one request tries it again.
    kazam_breaker_failures: int = Field(default=5, ge=1)
    kazam_breaker_cooldown_seconds: float = Field(default=60.0, gt=0)
    # Wrong OCPP passwords at the WebSocket upgrade: the failing client address waits this long, doubling with the
    # wrong passwords in a row of that address or of the charge point id it named, at most the maximum.
    ocpp_auth_backoff_seconds: float = Field(default=1.0, gt=0, le=60)
    ocpp_auth_backoff_max_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Proxies in front of the OCPP endpoint (the gateway relays /ocpp/...), CIDRs, JSON list: a charge point's
    # address is the right-most X-Forwarded-For entry only when the connection comes from one of them.
    ocpp_trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"], max_length=100)
