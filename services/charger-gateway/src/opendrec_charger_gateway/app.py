import time
from pathlib import Path
from typing import Any

import aiohttp

from opendrec_contracts import DeviceDeleted, DeviceRegistered, DeviceUpdated, ReadRejected
from opendrec_kit import ServiceRuntime, metrics
from opendrec_kit.addresses import networks

from . import api, handlers, ocpp_server, services
from .credentials import TokenCipher
from .domain import PasswordThrottle
from .kazam import KazamAccess
from .poller import KazamPoller
from .settings import Settings

POLL_LAG = "opendrec.charger.poll_lag"
metrics.gauge(POLL_LAG, unit="s", description="Seconds since the last complete poll round of a charger cloud")


def build(settings: Settings) -> ServiceRuntime[Settings]:
    runtime = ServiceRuntime(
        settings, title="OpenDREC charger gateway", migrations=Path(__file__).parent / "migrations"
    )
    runtime.include_router(api.router)
    runtime.include_router(ocpp_server.router)  # the OCPP 1.6J central system (WebSocket)
    # Wrong OCPP passwords are throttled per client address and charge point id, in this process's memory.
    runtime.app.state.ocpp_throttle = PasswordThrottle(
        settings.ocpp_auth_backoff_seconds, settings.ocpp_auth_backoff_max_seconds
    )
    runtime.app.state.ocpp_trusted_proxies = networks(settings.ocpp_trusted_proxies)
    runtime.on(DeviceRegistered, handlers.on_device_registered)
    runtime.on(DeviceUpdated, handlers.on_device_updated)
    runtime.on(DeviceDeleted, handlers.on_device_deleted)
    runtime.on(ReadRejected, handlers.on_read_rejected)
    # organization_directory: the Developer organizations an API user links chargers for
    runtime.follow_organizations()

    # The kazam-poller worker: one poll round a step; its client (one HTTP session for the life of the
    # process, for connection reuse; every request bounded in time) opens at startup, before workers start.
    cipher = TokenCipher(settings.kazam_credentials_keys)
    runtime.app.state.kazam_cipher = cipher
    poller = KazamPoller(
        runtime.uow,
        cipher,
        lookback_s=settings.kazam_lookback_seconds,
        chargers_per_request=settings.kazam_chargers_per_request,
    )
    runtime.app.state.kazam_poller = poller
    runtime.app.state.kazam_worker = runtime.worker("kazam-poller", poller.step, interval_s=settings.kazam_poll_seconds)

    async def open_kazam(rt: ServiceRuntime) -> None:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.kazam_timeout_seconds))
        rt.app.state.kazam_session = session
        # The platform token serves organizations without credentials of their own in dev and test only.
        platform_token = settings.kazam_token if settings.environment in ("dev", "test") else None
        poller.kazam = rt.app.state.kazam = KazamAccess(
            session,
            settings.kazam_url,
            platform_token=platform_token or None,
            page_size=settings.kazam_page_size,
            attempts=settings.kazam_attempts,
            breaker_failures=settings.kazam_breaker_failures,
            breaker_cooldown_s=settings.kazam_breaker_cooldown_seconds,
        )

    async def close_kazam(rt: ServiceRuntime) -> None:
        # after the workers stopped (the kit stops them before the shutdown hooks)
        session = getattr(rt.app.state, "kazam_session", None)
        if session is not None:
            await session.close()

    async def measure_poll_lag(rt: ServiceRuntime) -> None:
        access = getattr(rt.app.state, "kazam", None)
        lag = access.poll_lag_s(time.monotonic()) if access is not None else None
        metrics.set_gauge(POLL_LAG, [] if lag is None else [(lag, {"source": "kazam"})])

    runtime.measure_with(measure_poll_lag)

    async def kazam_details(rt: ServiceRuntime) -> dict[str, Any]:
        # /readyz details: how the Kazam polling goes (never makes the service unready)
        access = getattr(rt.app.state, "kazam", None)
        if access is None:
            return {"status": "starting"}
        return await services.kazam_details(rt.uow(), access, poller.last)

    runtime.report_with("kazam", kazam_details)
    runtime.on_startup(open_kazam)
    runtime.on_shutdown(close_kazam)
    return runtime
