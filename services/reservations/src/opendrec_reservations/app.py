from datetime import UTC, datetime
from pathlib import Path

from opendrec_contracts import CertificateIssued, DeviceDeleted, DeviceRegistered, ReservationEnded, ReservationUpdated
from opendrec_kit import ServiceRuntime

from . import api, handlers, internal, services
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime[Settings]:
    runtime = ServiceRuntime(settings, title="OpenDREC reservations", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    runtime.include_router(internal.router)
    runtime.on(DeviceRegistered, handlers.on_device_registered)
    runtime.on(DeviceDeleted, handlers.on_device_deleted)
    runtime.on(CertificateIssued, handlers.on_certificate_issued)
    runtime.follow_organizations()
    # An early end or a shorter end date takes effect at its decision time: certificates issue a period only once
    # these watermarks passed its end, so however late the event arrives, nothing is certified outside a window.
    runtime.watermarks(ReservationEnded, ReservationUpdated)

    batch_size = settings.expiry_sweep_batch_size

    async def end_expired() -> bool:
        """The expiry sweep's step: end one batch of reservations whose end date passed; more wait if it was full."""
        return await services.end_expired(runtime.uow(), datetime.now(UTC), batch_size) == batch_size

    runtime.worker("reservation-expiry", end_expired, interval_s=settings.expiry_sweep_interval_s)
    return runtime
