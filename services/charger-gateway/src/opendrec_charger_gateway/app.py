from pathlib import Path

import aiohttp

from opendrec_contracts import DeviceDeleted, DeviceRegistered, DeviceUpdated
from opendrec_kit import ServiceRuntime

from . import api, handlers
from .kazam import KazamClient
from .poller import KazamPoller
from .settings import Settings


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime(
        settings, title="OpenDREC charger gateway", migrations=Path(__file__).parent / "migrations"
    )
    runtime.include_router(api.router)
    runtime.on(DeviceRegistered, handlers.on_device_registered)
    runtime.on(DeviceUpdated, handlers.on_device_updated)
    runtime.on(DeviceDeleted, handlers.on_device_deleted)
    # organization_directory: the Developer organizations an API user links chargers for
    runtime.follow_organizations()

    async def start_poller(rt: ServiceRuntime) -> None:
        # One HTTP session for the life of the process (connection reuse); every request bounded in time.
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.kazam_timeout_seconds))
        kazam = KazamClient(
            session,
            settings.kazam_url,
            settings.kazam_token,
            page_size=settings.kazam_page_size,
            attempts=settings.kazam_attempts,
        )
        poller = KazamPoller(
            rt.pool,
            kazam,
            rt.name,
            interval_s=settings.kazam_poll_seconds,
            lookback_s=settings.kazam_lookback_seconds,
            chargers_per_request=settings.kazam_chargers_per_request,
        )
        rt.app.state.kazam_session = session
        rt.app.state.kazam_poller = poller
        rt.background("kazam-poller", poller.run())

    async def close_session(rt: ServiceRuntime) -> None:
        session = getattr(rt.app.state, "kazam_session", None)
        if session is not None:
            await session.close()

    runtime.on_startup(start_poller)
    runtime.on_shutdown(close_session)
    return runtime
