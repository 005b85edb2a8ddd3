"""Wiring of the readings service: HTTP routes, event subscribers, the CSV import worker, migrations."""

from __future__ import annotations

from pathlib import Path

from opendrec_kit import ServiceRuntime, metrics

from . import api, api_yield, services
from .handlers import Handlers
from .settings import Settings


def build(settings: Settings | None = None) -> ServiceRuntime[Settings]:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings, title="OpenDREC readings", migrations=Path(__file__).parent / "migrations")
    runtime.include_router(api.router)
    runtime.include_router(api_yield.router)
    runtime.follow_organizations()
    runtime.measure_with(metrics.job_counts("reads_import", "import_jobs"))
    Handlers(settings).subscribe(runtime)
    if settings.read_groups:
        runtime.app.state.read_groups = services.ReadGroups(
            runtime.uow,
            settings,
            runtime.owners,
            window_s=settings.read_group_window_ms / 1000,
            max_size=settings.read_group_max_size,
            concurrent=settings.read_groups_concurrent,
        )

    async def import_step() -> bool:
        """One queued (or interrupted) CSV import job, worked through; True: look for the next at once."""
        return await services.import_next_job(runtime.uow(), settings)

    # Woken by an upload; every IMPORT_POLL_INTERVAL_S it also looks for jobs uploaded to another
    # replica or left by a restart. IMPORT_WORKER=false: this process takes no jobs.
    runtime.app.state.import_worker = runtime.worker(
        "bulk-read-import", import_step, interval_s=settings.import_poll_interval_s, enabled=settings.import_worker
    )
    return runtime
