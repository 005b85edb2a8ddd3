from pathlib import Path

from opendrec_contracts import DeviceRegistered, ReadIngested, ReservationCreated, ReservationEnded
from opendrec_kit import ServiceRuntime

from . import api
from .handlers import Handlers
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="OpenDREC certificates", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    handlers = Handlers(settings)
    runtime.on(DeviceRegistered, handlers.on_device_registered)
    runtime.on(ReadIngested, handlers.on_read_ingested)
    runtime.on(ReservationCreated, handlers.on_reservation_created)
    runtime.on(ReservationEnded, handlers.on_reservation_ended)
    runtime.follow_organizations()
    runtime.app.state.handlers = handlers

    async def start_sweep(rt: ServiceRuntime) -> None:
        assert rt.pool is not None
        rt.background("certification-sweep", handlers.sweep(rt.pool))

    runtime.on_startup(start_sweep)
    return runtime
