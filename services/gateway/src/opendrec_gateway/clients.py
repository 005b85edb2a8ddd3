"""Who a request comes from, and how often each client may call the public routes (issue 12).

The client is the TCP peer, or behind TRUSTED_PROXIES (a load balancer in front of the gateway) the right-most
X-Forwarded-For entry that is not one (`opendrec_kit.addresses`).

Public routes (no token: login, registration, password reset, the public documents) are limited per client, in
the `limits` library's notation ("100/second;3000/minute"), with a sliding window counter held in this process's
memory: each gateway replica counts on its own, so the limit a client meets in front of N replicas is N times the
setting (a bound, not a quota). Identity's login throttle, per account and address, is shared by every replica
through its database.

The counter is the gateway's own, not the `limits` library's in-memory storage: that one swept every client's
entries after each call, in a task that moved each client's list to a worker thread and back (measured: most of
the ~0.6 ms of gateway CPU a login cost beyond other forwarded requests), and kept one entry per call (3,000 a
client for a minute's limit). Here a call costs a few dict operations, a client two counters per limit, and the
clients whose windows have passed are dropped once per shortest window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import parse_many

_ROUNDING = 1e-6  # 3 * (1 - 20/60) is 2.0000000000000004 in floats: no call refused, no second added for that


@dataclass(frozen=True)
class Window:
    amount: int  # calls allowed
    seconds: float  # per this many seconds


class _Counts:
    """A client's calls in each limit's current and previous window (windows numbered from the clock's zero)."""

    __slots__ = ("current", "previous", "window")

    def __init__(self, limits: int) -> None:
        self.window = [0] * limits
        self.current = [0] * limits
        self.previous = [0] * limits


class PublicLimiter:
    """Calls of the public routes per client: `allow(client)` is None when within the limits (the call is counted),
    else the whole seconds until the client may call again (the refused call is not counted).

    A sliding window counter: the calls of the window now running plus those of the previous one weighted by how
    much of it still overlaps the last `seconds` (the estimate Redis-backed limiters use; exact when calls are spread
    evenly, and never more than the limit within one window)."""

    def __init__(self, limits_text: str, clock: Callable[[], float] = time.monotonic) -> None:
        items = parse_many(limits_text) if limits_text else []
        self.windows = [Window(item.amount, float(item.get_expiry())) for item in items]
        self._clock = clock
        self._clients: dict[str, _Counts] = {}
        self._sweep_every = min((w.seconds for w in self.windows), default=1.0)
        self._next_sweep = clock() + self._sweep_every

    def allow(self, client: str) -> int | None:
        if not self.windows:
            return None
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        counts = self._clients.get(client)
        if counts is None:
            counts = self._clients[client] = _Counts(len(self.windows))
        wait = 0.0
        for i, limit in enumerate(self.windows):
            index, into = divmod(now, limit.seconds)
            window = int(index)
            if counts.window[i] != window:  # roll the counts forward to the window now running
                counts.previous[i] = counts.current[i] if counts.window[i] == window - 1 else 0
                counts.current[i] = 0
                counts.window[i] = window
            overlap = 1.0 - into / limit.seconds  # of the previous window, still within the last `seconds`
            if counts.previous[i] * overlap + counts.current[i] + 1 > limit.amount + _ROUNDING:
                wait = max(wait, _wait(limit, counts.current[i], counts.previous[i], into))
        if wait:
            return max(1, math.ceil(wait - _ROUNDING))
        for i in range(len(self.windows)):
            counts.current[i] += 1
        return None

    def _sweep(self, now: float) -> None:
        """Forget the clients whose calls are all before every limit's previous window."""
        self._next_sweep = now + self._sweep_every
        current = [int(now // limit.seconds) for limit in self.windows]
        stale = [
            client
            for client, counts in self._clients.items()
            if all(window < running - 1 for window, running in zip(counts.window, current, strict=True))
        ]
        for client in stale:
            del self._clients[client]

    def __len__(self) -> int:
        """Clients counted now (for tests and metrics)."""
        return len(self._clients)


def _wait(limit: Window, current: int, previous: int, into: float) -> float:
    """Seconds from now until one more call fits `limit`, given this window's and the previous window's calls and
    how far (seconds) into this window now is."""
    room = limit.amount - current - 1  # calls the previous window may still weigh for
    if room >= 0 and previous:
        # previous * (1 - t / seconds) <= room once t >= seconds * (1 - room / previous)
        return limit.seconds * (1.0 - room / previous) - into
    # This window is full by itself: in the next one it weighs as the previous, current * (1 - t / seconds) <=
    # amount - 1 once t >= seconds * (1 - (amount - 1) / current).
    return (limit.seconds - into) + limit.seconds * max(0.0, 1.0 - (limit.amount - 1) / max(current, 1))
