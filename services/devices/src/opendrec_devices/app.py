from pathlib import Path

from opendrec_contracts import CertificateIssued, ReservationCreated, ReservationEnded, ReservationUpdated
from opendrec_kit import ServiceRuntime, metrics

from . import api, bulk_api, files_api, handlers, internal
from .settings import Settings
from .worker import bulk_worker


def build(settings: Settings) -> ServiceRuntime[Settings]:
    runtime = ServiceRuntime(settings, title="OpenDREC devices", migrations=Path(__file__).parent / "migrations")
    # bulk routes first: /api/device/bulk-jobs must not be taken for /api/device/{id}
    runtime.include_router(bulk_api.router)
    runtime.include_router(api.router)
    runtime.include_router(files_api.router)
    runtime.include_router(internal.router)  # read-your-writes: other services ask here (opendrec_kit.owners)
    runtime.on(ReservationCreated, handlers.on_reservation_created)
    runtime.on(ReservationUpdated, handlers.on_reservation_updated)
    runtime.on(ReservationEnded, handlers.on_reservation_ended)
    runtime.on(CertificateIssued, handlers.on_certificate_issued)
    # organization_directory: which organizations an API user acts for, and their types
    runtime.follow_organizations()
    runtime.measure_with(metrics.job_counts("devices", "bulk_jobs"))
    # registers staged bulk rows; uploads wake it (bulk_api), BULK_WORKER_ENABLED=false leaves it stopped
    runtime.app.state.bulk_worker = bulk_worker(runtime, settings)
    return runtime
