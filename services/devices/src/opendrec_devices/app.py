from pathlib import Path

from opendrec_kit import ServiceRuntime

from . import api
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="OpenDREC devices", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    return runtime
