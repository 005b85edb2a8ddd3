"""Gateway settings: the kit's core settings (environment, HTTP, HTTP_WORKERS, identity and token
checks, tracing, logs; no database, no broker) plus where the services are and how to reach them."""

from __future__ import annotations

import ipaddress

from limits import parse_many
from pydantic import Field, field_validator

from opendrec_kit.settings import CoreSettings


class Settings(CoreSettings):
    service_name: str = "gateway"
    http_port: int = 8000

    devices_url: str = "http://127.0.0.1:8102"
    readings_url: str = "http://127.0.0.1:8103"
    reservations_url: str = "http://127.0.0.1:8104"
    certificates_url: str = "http://127.0.0.1:8105"
    charger_gateway_url: str = "http://127.0.0.1:8106"
    console_url: str = "http://127.0.0.1:8107"  # the web console (routes.CONSOLE)

    # Upstream connections: kept alive a bit less than uvicorn's 5 s server-side keep-alive,
    # so the gateway closes an idle connection before the service does.
    upstream_pool_per_service: int = Field(default=100, ge=1)
    upstream_keepalive_s: float = 4.0
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 30.0  # no byte from the service for this long -> 504
    # Responses with a known length up to this size are read whole and sent in one go;
    # larger or chunked ones are streamed through.
    buffer_limit_bytes: int = 1 << 20
    # Bounded requests (413/414/431/408 in the envelope), so that no client can exhaust or stall the gateway for
    # others: a JSON body is read whole before an upstream connection is taken, within BODY_TIMEOUT_S; a large
    # body (routes.LARGE_BODIES) streams, each part within BODY_IDLE_TIMEOUT_S; bytes are counted as they come.
    body_limit_bytes: int = Field(default=1 << 20, ge=1024)
    upload_body_limit_bytes: int = Field(default=64 << 20, ge=1024)
    body_timeout_s: float = Field(default=15.0, gt=0)
    body_idle_timeout_s: float = Field(default=15.0, gt=0)
    url_limit_bytes: int = Field(default=8192, ge=256)
    header_limit_bytes: int = Field(default=16384, ge=1024)  # all request headers together
    # Calls of the public routes (no token) per client, in the `limits` notation ("100/second;3000/minute"; empty:
    # no limit), counted by each replica (opendrec_gateway.clients); 429 with Retry-After past it.
    public_rate_limit: str = "100/second;3000/minute"
    # Load balancers in front of the gateway (CIDRs, JSON list): only behind them is X-Forwarded-For believed.
    trusted_proxies: list[str] = Field(default_factory=list, max_length=100)
    health_timeout_s: float = 2.0
    shutdown_timeout_s: float = 10.0  # in-flight requests get this long after SIGTERM

    # token.revoked is followed here when set, so logged-out tokens stop at the door
    kafka_bootstrap_servers: str | None = None

    access_log: bool = False  # one JSON line per forwarded request; spans already record each one

    @field_validator("public_rate_limit")
    @classmethod
    def _limits(cls, value: str) -> str:
        if value:
            parse_many(value)  # ValueError names what it can't read
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names a bad one
        return value

    def service_urls(self) -> dict[str, str]:
        from .routes import SERVICES

        return {name: getattr(self, field).rstrip("/") for name, field in SERVICES.items()}
