"""Which platform the CLI speaks to: a `make run` stack file, or the deployment's own settings from the environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("identity", "devices", "readings", "reservations", "certificates", "charger-gateway")
DEFAULT_STACK = Path(".run/stack.json")  # what `make run` writes
_URL_ENV = {name: f"{name.upper().replace('-', '_')}_URL" for name in SERVICES}
_DEV_PORTS = {"identity": 8101, "devices": 8102, "readings": 8103, "reservations": 8104, "certificates": 8105}
_DEV_PORTS["charger-gateway"] = 8106


@dataclass(frozen=True)
class Target:
    gateway_url: str
    service_urls: dict[str, str]
    kafka_bootstrap: str
    database_url: str | None  # the Postgres server (database `postgres`): each service's database is on it
    database_name_prefix: str = "opendrec_"
    group_prefix: str = ""
    admin: dict[str, str] = field(default_factory=dict)

    def gateway_metrics_url(self) -> str:
        """The gateway's /metrics: its host, on METRICS_PORT (its public port routes no /metrics)."""
        from urllib.parse import urlsplit

        from opendrec_kit.metrics import SETTINGS

        host = urlsplit(self.gateway_url).hostname or "127.0.0.1"
        return f"http://{host}:{SETTINGS.metrics_port}/metrics"

    def database(self, service: str) -> str:
        """The URL of `service`'s own database (as the kit names it)."""
        if not self.database_url:
            raise SystemExit("no database: set DATABASE_URL (the Postgres server) or pass --stack")
        from opendrec_kit.db import with_database

        return with_database(self.database_url, f"{self.database_name_prefix}{service.replace('-', '_')}")


def load(stack: str | None, group_prefix: str | None) -> Target:
    """From `stack` (a stack.json; default .run/stack.json when it exists), else from the environment (the names the
    services themselves read: KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, DATABASE_NAME_PREFIX, KAFKA_GROUP_PREFIX,
    IDENTITY_URL ... CHARGER_GATEWAY_URL, and GATEWAY_URL)."""
    path = Path(stack) if stack else DEFAULT_STACK
    env = os.environ
    if stack or path.exists():
        info = json.loads(path.read_text())
        urls = {name: url for name, url in info["service_urls"].items() if name in SERVICES}
        return Target(
            gateway_url=info["gateway_url"],
            service_urls=urls,
            kafka_bootstrap=info["kafka_bootstrap"],
            database_url=info.get("database_url"),
            database_name_prefix=info.get("database_name_prefix") or "opendrec_",
            group_prefix=group_prefix if group_prefix is not None else env.get("KAFKA_GROUP_PREFIX", ""),
            admin={k: info[k] for k in ("admin_email", "admin_password") if k in info},
        )
    return Target(
        gateway_url=env.get("GATEWAY_URL", "http://127.0.0.1:8000"),
        service_urls={name: env.get(_URL_ENV[name], f"http://127.0.0.1:{_DEV_PORTS[name]}") for name in SERVICES},
        kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        database_url=env.get("DATABASE_URL"),
        database_name_prefix=env.get("DATABASE_NAME_PREFIX", "opendrec_"),
        group_prefix=group_prefix if group_prefix is not None else env.get("KAFKA_GROUP_PREFIX", ""),
    )
