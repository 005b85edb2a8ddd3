from datetime import timedelta
from functools import partial
from pathlib import Path

from opendrec_contracts import (
    DeviceRegistered,
    DeviceUpdated,
    ReadIngested,
    ReservationCreated,
    ReservationEnded,
    ReservationUpdated,
)
from opendrec_kit import ServiceRuntime

from . import api, handlers, services
from .ledger import api as ledger_api
from .registry import api as registry_api
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime[Settings]:
    runtime = ServiceRuntime(settings, title="OpenDREC certificates", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    runtime.include_router(ledger_api.router)
    runtime.include_router(registry_api.router)
    settlement = handlers.Settlement(timedelta(seconds=settings.certify_settle_s))
    runtime.app.state.settlement = settlement  # tests move its clock
    runtime.on(DeviceRegistered, handlers.on_device_registered)
    runtime.on(DeviceUpdated, handlers.on_device_updated)
    runtime.on(ReadIngested, partial(handlers.on_read_ingested, settlement=settlement))
    runtime.on(ReservationCreated, partial(handlers.on_reservation_created, settlement=settlement))
    runtime.on(ReservationUpdated, partial(handlers.on_reservation_updated, settlement=settlement))
    runtime.on(ReservationEnded, handlers.on_reservation_ended)
    runtime.follow_organizations()

    async def certify_settled() -> bool:
        """The certification worker's step: certify one batch of devices whose energy has settled; run again
        at once while a full batch made progress."""
        sweep = await services.certify_due(runtime.uow(), settlement.settle, settlement.clock())
        return sweep.due == services.DUE_BATCH and sweep.certified > 0

    runtime.worker("certification-sweep", certify_settled, interval_s=settings.certify_sweep_interval_s)
    return runtime
