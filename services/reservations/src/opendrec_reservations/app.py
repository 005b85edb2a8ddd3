from pathlib import Path

from opendrec_kit import ServiceRuntime

from . import api, handlers
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="OpenDREC reservations", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    runtime.subscribe("device.registered", handlers.on_device_registered)
    return runtime
