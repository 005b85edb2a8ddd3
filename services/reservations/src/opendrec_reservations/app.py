from pathlib import Path

from opendrec_contracts import DeviceDeleted, DeviceRegistered
from opendrec_kit import ServiceRuntime

from . import api, handlers, lifecycle
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="OpenDREC reservations", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    runtime.on(DeviceRegistered, handlers.on_device_registered)
    runtime.on(DeviceDeleted, handlers.on_device_deleted)
    runtime.follow_organizations()

    async def start_expiry_sweep(rt: ServiceRuntime) -> None:
        assert rt.pool is not None
        rt.background(
            "reservation-expiry",
            lifecycle.sweep_forever(rt.pool, settings.expiry_sweep_interval_s, settings.expiry_sweep_batch_size),
        )

    runtime.on_startup(start_expiry_sweep)
    return runtime
