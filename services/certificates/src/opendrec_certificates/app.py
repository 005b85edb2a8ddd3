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
    settlement = handlers.Settlement(
        timedelta(seconds=settings.certify_settle_s), watermarked=settings.wait_for_reservation_watermarks
    )
    runtime.app.state.settlement = settlement  # tests move its clock
    runtime.on(DeviceRegistered, partial(handlers.on_device_registered, settlement=settlement))
    runtime.on(DeviceUpdated, partial(handlers.on_device_updated, settlement=settlement))
    # Many events a transaction: under D-REC clients' load each read comes in an event of its own (issue 16).
    runtime.on(ReadIngested, partial(handlers.on_reads_ingested, settlement=settlement), batch=settings.read_batch_max)
    runtime.on(ReservationCreated, partial(handlers.on_reservation_created, settlement=settlement))
    # their producer's watermarks tell until when every end is known (services.known_until)
    runtime.on(ReservationUpdated, partial(handlers.on_reservation_updated, settlement=settlement), watermarks=True)
    runtime.on(ReservationEnded, handlers.on_reservation_ended, watermarks=True)
    runtime.follow_organizations()

    async def certify_settled() -> bool:
        """The certification worker's step: certify one batch of devices whose energy has settled; run again
        at once while a full batch made progress."""
        now = await services.known_until(runtime.uow(), settlement.settle, settlement.clock(), settlement.watermarked)
        sweep = await services.certify_due(runtime.uow(), settlement.settle, now)
        return sweep.due == services.DUE_BATCH and sweep.certified > 0

    runtime.worker("certification-sweep", certify_settled, interval_s=settings.certify_sweep_interval_s)
    return runtime
