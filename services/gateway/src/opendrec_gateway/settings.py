"""Gateway settings, read from the environment (same names as the rest of the platform)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: Literal["dev", "test", "production"] = "dev"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # uvicorn worker processes; each has its own connection pool and token cache
    gateway_workers: int = Field(default=1, ge=1)

    identity_url: str = "http://127.0.0.1:8101"
    devices_url: str = "http://127.0.0.1:8102"
    readings_url: str = "http://127.0.0.1:8103"
    reservations_url: str = "http://127.0.0.1:8104"
    certificates_url: str = "http://127.0.0.1:8105"
    charger_gateway_url: str = "http://127.0.0.1:8106"

    # Upstream connections: kept alive a bit less than uvicorn's 5 s server-side keep-alive,
    # so the gateway closes an idle connection before the service does.
    upstream_pool_per_service: int = Field(default=100, ge=1)
    upstream_keepalive_s: float = 4.0
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 30.0  # no byte from the service for this long -> 504
    # Responses with a known length up to this size are read whole and sent in one go;
    # larger or chunked ones are streamed through.
    buffer_limit_bytes: int = 1 << 20
    health_timeout_s: float = 2.0
    shutdown_timeout_s: float = 10.0  # in-flight requests get this long after SIGTERM

    # Tokens: the same audience/issuer the services check (JWT_AUDIENCE / JWT_ISSUER).
    jwt_audience: str | None = "opendrec"
    jwt_issuer: str | None = "opendrec-identity"
    jwt_leeway_s: float = 0.0
    token_cache_size: int = Field(default=10_000, ge=1)
    jwks_ttl_s: float = 300.0
    jwks_min_refresh_interval_s: float = 5.0  # refetch on an unknown kid at most this often

    # token.revoked is followed here when set, so logged-out tokens stop at the door
    kafka_bootstrap_servers: str | None = None

    traces_file: str | None = None
    otel_exporter_otlp_endpoint: str | None = None
    log_level: str = "INFO"
    access_log: bool = False  # one JSON line per forwarded request; spans already record each one

    def service_urls(self) -> dict[str, str]:
        from .routes import SERVICES

        return {name: getattr(self, field).rstrip("/") for name, field in SERVICES.items()}
