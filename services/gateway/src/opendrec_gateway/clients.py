"""Who a request comes from, and how often each client may call the public routes (issue 12).

The client is the TCP peer, or behind TRUSTED_PROXIES (a load balancer in front of the gateway) the right-most
X-Forwarded-For entry that is not one (`opendrec_kit.addresses`).

Public routes (no token: login, registration, password reset, the public documents) are limited per client, in
the `limits` library's notation ("100/second;3000/minute"), with a moving window held in this process's memory:
each gateway replica counts on its own, so the limit a client meets in front of N replicas is N times the setting
(a bound, not a quota). Identity's login throttle, per account and address, is shared by every replica through
its database.

The window is the gateway's own, not the `limits` library's in-memory storage: that one swept every client's
entries after each call, in a task that moved each client's list to a worker thread and back (measured: ~0.3 ms of
gateway CPU a login). Here a call costs a few deque operations; a client holds the times of its calls still within
a window (at most the limit's amount), dropped as they leave it, and clients with none are forgotten once per
shortest window: memory follows the calls accepted within the longest window, whoever makes them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from limits import parse_many


@dataclass(frozen=True)
class Window:
    amount: int  # calls allowed
    seconds: float  # within any span of this many seconds


class PublicLimiter:
    """Calls of the public routes per client: `allow(client)` is None when within the limits (the call is counted),
    else the whole seconds until the client may call again (the refused call is not counted).

    A moving window, as the `limits` library's: a call is allowed when fewer than `amount` calls of the client were
    allowed in the last `seconds`; the wait is until the oldest of those leaves the window (never more than
    `seconds`)."""

    def __init__(self, limits_text: str, clock: Callable[[], float] = time.monotonic) -> None:
        items = parse_many(limits_text) if limits_text else []
        self.windows = [Window(item.amount, float(item.get_expiry())) for item in items]
        self._clock = clock
        self._clients: dict[str, list[deque[float]]] = {}
        self._sweep_every = min((w.seconds for w in self.windows), default=1.0)
        self._next_sweep = clock() + self._sweep_every

    def allow(self, client: str) -> int | None:
        if not self.windows:
            return None
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        calls = self._clients.get(client)
        if calls is None:
            calls = self._clients[client] = [deque(maxlen=w.amount) for w in self.windows]
        wait = 0.0
        for limit, times in zip(self.windows, calls, strict=True):
            since = now - limit.seconds
            while times and times[0] <= since:  # left the window
                times.popleft()
            if len(times) >= limit.amount:
                wait = max(wait, times[0] - since) if times else limit.seconds
        if wait:
            return max(1, math.ceil(wait))
        for times in calls:
            times.append(now)  # fewer than the amount were within (checked above): the deque's bound never bites
        return None

    def _sweep(self, now: float) -> None:
        """Forget the clients none of whose calls is within its window any more."""
        self._next_sweep = now + self._sweep_every
        stale = [
            client
            for client, calls in self._clients.items()
            if all(
                not times or times[-1] <= now - limit.seconds for limit, times in zip(self.windows, calls, strict=True)
            )
        ]
        for client in stale:
            del self._clients[client]

    def __len__(self) -> int:
        """Clients counted now (for tests and metrics)."""
        return len(self._clients)
