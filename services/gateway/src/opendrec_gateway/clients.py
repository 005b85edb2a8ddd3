"""Who a request comes from, and how often each client may call the public routes (issue 12).

The client is the TCP peer, unless the peer is one of TRUSTED_PROXIES (a load balancer in front of the gateway):
then it is the right-most X-Forwarded-For entry that is not a trusted proxy. Nothing a client writes in
X-Forwarded-For counts otherwise, so no client can pass itself off as another.

Public routes (no token: login, registration, password reset, the public documents) are limited per client with a
moving window (the `limits` library) held in this process's memory: each gateway replica counts on its own, so the
limit a client meets in front of N replicas is N times the setting (a bound, not a quota). Identity's login
throttle, per account and address, is shared by every replica through its database.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client of a request: the peer, or behind trusted proxies the right-most untrusted forwarded address."""
    address = peer or "unknown"
    if not trusted or not _trusted(address, trusted) or not forwarded_for:
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, trusted):
            return hop[:64]  # whatever it says, bounded: it becomes a limiter key
    return address


class PublicLimiter:
    """Calls of the public routes per client: `allow(client)` is None when within the limits, else the seconds
    until the client may call again."""

    def __init__(self, limits_text: str) -> None:
        self.items: list[RateLimitItem] = parse_many(limits_text) if limits_text else []
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def allow(self, client: str) -> int | None:
        for item in self.items:
            if not await self._limiter.hit(item, "public", client):
                stats = await self._limiter.get_window_stats(item, "public", client)
                return max(1, int(stats.reset_time - time.time() + 0.999))
        return None
