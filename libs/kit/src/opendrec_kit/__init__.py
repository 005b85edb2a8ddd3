"""The OpenDREC service kit: what every service needs, written once."""

from .auth import CurrentPrincipal, Principal, permission
from .errors import ApiError
from .messaging import EventContext
from .runtime import Pool, Runtime, ServiceRuntime
from .settings import ServiceSettings

__all__ = [
    "ApiError",
    "CurrentPrincipal",
    "EventContext",
    "Pool",
    "Principal",
    "Runtime",
    "ServiceRuntime",
    "ServiceSettings",
    "permission",
]
