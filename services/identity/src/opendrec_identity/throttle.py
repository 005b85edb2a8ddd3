"""Login throttling over the `login_throttle` table (shared by every identity instance).

Two keys per login attempt: the account (the e-mail as typed, whether or not it exists, so the
answers say nothing about which e-mails are registered) and the client address. The policies are
here; the reads and writes of a login are use cases (services/accounts.py).
"""

from __future__ import annotations

from datetime import timedelta

from . import domain
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

        # An account, whoever tries it: slowed down, never locked, so nobody can lock another out of their account
        # (an admin's, say) by failing on purpose from addresses of their own.
        self.account_policy = policy(settings.login_account_slowdown_after, NEVER)
        # An account tried from one address: slowed down, then locked for that address only.
        self.guess_policy = policy(settings.login_account_slowdown_after, settings.login_account_lockout_after)
        self.address_policy = policy(settings.login_address_slowdown_after, settings.login_address_lockout_after)

    def keys(self, username: str, address: str) -> dict[str, domain.ThrottlePolicy]:
        account = account_key(username)
        return {
            account: self.account_policy,
            f"{account}|address:{address}": self.guess_policy,
            f"address:{address}": self.address_policy,
        }


NEVER = 2**31 - 1  # failures: a policy that slows down only


def account_key(username: str) -> str:
    """The account's throttle key (the e-mail as typed, known or not); its per-address keys start with it."""
    return f"account:{username.strip().lower()[:320]}"
