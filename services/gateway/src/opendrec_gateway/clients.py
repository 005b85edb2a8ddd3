"""Who a request comes from, and how often each client may call the public routes (issue 12).

The client is the TCP peer, or behind TRUSTED_PROXIES (a load balancer in front of the gateway) the right-most
X-Forwarded-For entry that is not one (`opendrec_kit.addresses`).

Public routes (no token: login, registration, password reset, the public documents) are limited per client with a
moving window (the `limits` library) held in this process's memory: each gateway replica counts on its own, so the
limit a client meets in front of N replicas is N times the setting (a bound, not a quota). Identity's login
throttle, per account and address, is shared by every replica through its database.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


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
