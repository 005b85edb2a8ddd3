import asyncio
from pathlib import Path

from opendrec_contracts import CertificateIssued, ReservationCreated, ReservationEnded
from opendrec_kit import ServiceRuntime

from . import api, bulk_api, handlers, worker
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, title="OpenDREC devices", migrations=Path(__file__).parent / "migrations")
    # bulk routes first: /api/device/bulk-jobs must not be taken for /api/device/{id}
    runtime.include_router(bulk_api.router)
    runtime.include_router(api.router)
    runtime.on(ReservationCreated, handlers.on_reservation_created)
    runtime.on(ReservationEnded, handlers.on_reservation_ended)
    runtime.on(CertificateIssued, handlers.on_certificate_issued)
    # organization_directory: which organizations an API user acts for, and their types
    runtime.follow_organizations()
    wake = asyncio.Event()
    runtime.app.state.bulk_wake = wake

    async def start_worker(rt: ServiceRuntime) -> None:
        # picks up jobs left unfinished by a previous run, then new ones as uploads wake it
        if settings.bulk_worker_enabled:
            rt.background("bulk-onboarding", worker.run(rt, wake))

    runtime.on_startup(start_worker)
    return runtime
