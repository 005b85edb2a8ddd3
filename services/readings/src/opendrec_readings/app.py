"""Wiring of the readings service: HTTP routes, event subscribers, migrations."""

from __future__ import annotations

from pathlib import Path

from opendrec_contracts import DeviceRegistered, ReadSubmitted
from opendrec_kit import ServiceRuntime

from . import api
from .handlers import Handlers
from .settings import Settings


def build(settings: Settings | None = None) -> ServiceRuntime:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings, title="OpenDREC readings", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    handlers = Handlers(settings)
    runtime.subscribe(DeviceRegistered.TYPE, handlers.on_device_registered)
    runtime.subscribe(ReadSubmitted.TYPE, handlers.on_read_submitted)
    return runtime
