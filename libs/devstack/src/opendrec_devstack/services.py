"""The one table of platform services, used by `python -m opendrec_devstack run` and the
pytest `platform` fixture. Each runs as `python -m <module>`, serves HTTP on HTTP_PORT and
answers GET /readyz; every service is told every other one's URL through `url_env`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # e.g. "charger-gateway"; also names its traces file and its honcho prefix
    module: str  # run as `python -m <module>`
    port: int  # dev port (`run --free-ports` picks others)
    url_env: str  # env var carrying its base URL to the other services
    database: bool = True  # it has a database of its own (the gateway and the console have none)


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("identity", "opendrec_identity", 8101, "IDENTITY_URL"),
    ServiceSpec("devices", "opendrec_devices", 8102, "DEVICES_URL"),
    ServiceSpec("readings", "opendrec_readings", 8103, "READINGS_URL"),
    ServiceSpec("reservations", "opendrec_reservations", 8104, "RESERVATIONS_URL"),
    ServiceSpec("certificates", "opendrec_certificates", 8105, "CERTIFICATES_URL"),
    ServiceSpec("charger-gateway", "opendrec_charger_gateway", 8106, "CHARGER_GATEWAY_URL"),
    ServiceSpec("console", "opendrec_console", 8107, "CONSOLE_URL", database=False),  # pages at <gateway>/console/
    ServiceSpec("gateway", "opendrec_gateway", 8000, "GATEWAY_URL", database=False),
)

GATEWAY = "gateway"  # the public door; its URL is the one printed when the platform is ready

# Ports of the embedded parts in `make run` (dev); Postgres takes a free port, see stack.json.
KAZAM_SIM_PORT = 8110
SMTP_SINK_PORT = 8025
BROKER_PORT = 9092


def load_services(path: str | os.PathLike) -> tuple[ServiceSpec, ...]:
    """A replacement table from a JSON list of {name, module, port, url_env} (for tests and demos)."""
    with open(path) as f:
        return tuple(ServiceSpec(**item) for item in json.load(f))


def dump_services(services, path: str | os.PathLike) -> None:
    with open(path, "w") as f:
        json.dump([asdict(s) for s in services], f, indent=1)
