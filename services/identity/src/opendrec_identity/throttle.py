"""Login throttling over the `login_throttle` table (shared by every identity instance).

Two keys per login attempt: the account (the e-mail as typed, whether or not it exists, so the
answers say nothing about which e-mails are registered) and the client address.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from . import domain, store
from .settings import Settings


class LoginThrottle:
    def __init__(self, settings: Settings) -> None:
        def policy(slowdown_after: int, lockout_after: int) -> domain.ThrottlePolicy:
            return domain.ThrottlePolicy(
                window=timedelta(seconds=settings.login_window_seconds),
                slowdown_after=slowdown_after,
                slowdown_base_s=settings.login_slowdown_base_seconds,
                slowdown_max_s=settings.login_slowdown_max_seconds,
                lockout_after=lockout_after,
                lockout=timedelta(seconds=settings.login_lockout_seconds),
            )

        self.account_policy = policy(settings.login_account_slowdown_after, settings.login_account_lockout_after)
        self.address_policy = policy(settings.login_address_slowdown_after, settings.login_address_lockout_after)

    def keys(self, username: str, address: str) -> dict[str, domain.ThrottlePolicy]:
        account = username.strip().lower()[:320]
        return {f"account:{account}": self.account_policy, f"address:{address}": self.address_policy}

    async def retry_after(self, pool: asyncpg.Pool, keys: dict[str, domain.ThrottlePolicy]) -> int | None:
        """Seconds the caller must wait before trying again, or None if it may try now."""
        async with pool.acquire() as conn:
            rows = await store.throttle_states(conn, list(keys))
            now = await store.now(conn)
        waits = [w for r in rows if (w := domain.retry_after_seconds(r["blocked_until"], now)) is not None]
        return max(waits) if waits else None

    async def failed(self, pool: asyncpg.Pool, keys: dict[str, domain.ThrottlePolicy]) -> None:
        async with pool.acquire() as conn, conn.transaction():
            now = await store.now(conn)
            for key in sorted(keys):  # one lock order for every instance: no deadlocks
                row = await store.lock_throttle_row(conn, key)
                before = (
                    domain.ThrottleState(row["failures"], row["window_start"], row["blocked_until"])
                    if row["failures"]
                    else None
                )
                after = domain.after_failure(keys[key], before, now)
                await store.save_throttle(conn, key, after.failures, after.window_start, after.blocked_until)

    async def succeeded(self, pool: asyncpg.Pool, keys: dict[str, domain.ThrottlePolicy]) -> None:
        """A right password clears the account's count (not the address's: one good account must not
        let an address go on guessing others)."""
        async with pool.acquire() as conn:
            for key in keys:
                if key.startswith("account:"):
                    await store.clear_throttle(conn, key)
