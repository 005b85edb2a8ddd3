"""Wiring of the readings service: HTTP routes, event subscribers, migrations."""

from __future__ import annotations

from pathlib import Path

from opendrec_contracts import (
    DeviceDeleted,
    DeviceRegistered,
    DeviceUpdated,
    ReadSubmitted,
    ReservationCreated,
    ReservationEnded,
)
from opendrec_kit import ServiceRuntime

from . import api
from .handlers import Handlers
from .imports import ImportWorker
from .settings import Settings


def build(settings: Settings | None = None) -> ServiceRuntime:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings, title="OpenDREC readings", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    runtime.follow_organizations()
    handlers = Handlers(settings)
    runtime.on(DeviceRegistered, handlers.on_device_registered)
    runtime.on(DeviceUpdated, handlers.on_device_updated)
    runtime.on(DeviceDeleted, handlers.on_device_deleted)
    runtime.on(ReadSubmitted, handlers.on_read_submitted)
    runtime.on(ReservationCreated, handlers.on_reservation_created)
    runtime.on(ReservationEnded, handlers.on_reservation_ended)
    worker = ImportWorker(settings)
    runtime.app.state.import_worker = worker
    if settings.import_worker:

        async def start_worker(rt: ServiceRuntime) -> None:
            assert rt.pool is not None
            rt.background("bulk-read-import", worker.run(rt.pool))

        runtime.on_startup(start_worker)
    return runtime
