"""The bulk onboarding worker: registers staged CSV rows, one batch per step (`services.process_batch`).

It picks up jobs left unfinished by a previous run, then new ones as uploads wake it (`.wake()`), or
every `bulk_poll_interval_s` for jobs it was not woken for (another instance's uploads). A failing
batch is retried with backoff by the kit's Worker.
"""

from __future__ import annotations

from opendrec_kit import ServiceRuntime, Worker

from . import services
from .settings import Settings

NAME = "bulk-onboarding"


def bulk_worker(runtime: ServiceRuntime, settings: Settings) -> Worker:
    async def step() -> bool:
        return await services.process_batch(runtime.uow(), settings.bulk_batch_size)

    return runtime.worker(
        NAME,
        step,
        interval_s=settings.bulk_poll_interval_s,
        backoff_max_s=5.0,
        enabled=settings.bulk_worker_enabled,
    )
