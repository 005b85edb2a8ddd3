"""The OpenDREC service kit: what every service needs, written once.

Names are imported on first use (PEP 562), so the gateway, which needs only the core (settings, errors,
tokens, telemetry), does not load the database and broker parts at start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import CurrentPrincipal, Principal, permission
    from .errors import ApiError
    from .runtime import Pool, Runtime, ServiceRuntime, UoW
    from .settings import CoreSettings, ServiceSettings
    from .timestamps import iso
    from .uow import EventContext, UnitOfWork
    from .workers import Worker

_WHERE = {
    "CurrentPrincipal": "auth",
    "Principal": "auth",
    "permission": "auth",
    "ApiError": "errors",
    "Pool": "runtime",
    "Runtime": "runtime",
    "ServiceRuntime": "runtime",
    "UoW": "runtime",
    "CoreSettings": "settings",
    "ServiceSettings": "settings",
    "iso": "timestamps",
    "EventContext": "uow",
    "UnitOfWork": "uow",
    "Worker": "workers",
}

__all__ = [
    "ApiError",
    "CoreSettings",
    "CurrentPrincipal",
    "EventContext",
    "Pool",
    "Principal",
    "Runtime",
    "ServiceRuntime",
    "ServiceSettings",
    "UnitOfWork",
    "UoW",
    "Worker",
    "iso",
    "permission",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'opendrec_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once
    return value
