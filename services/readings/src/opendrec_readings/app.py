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
    # One consumer group per topic: a rebalance or a slow batch on one topic doesn't pause the other.
    for topic, handler in ((DeviceRegistered.TYPE, handlers.on_device_registered), (ReadSubmitted.TYPE, handlers.on_read_submitted)):
        runtime.subscribe(topic, handler, group=f"{settings.service_name}.{topic}")
    return runtime
