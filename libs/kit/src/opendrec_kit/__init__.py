"""The OpenDREC service kit: what every service needs, written once."""

from .auth import CurrentPrincipal, Principal, permission
from .errors import ApiError
from .runtime import Pool, Runtime, ServiceRuntime, UoW
from .settings import ServiceSettings
from .timestamps import iso
from .uow import EventContext, UnitOfWork
from .workers import Worker

__all__ = [
    "ApiError",
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
