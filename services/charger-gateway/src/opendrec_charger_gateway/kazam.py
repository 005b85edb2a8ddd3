"""The Kazam platform API, as far as the gateway needs it: /getTransactions (paged), /getDeviceState,
/getDeviceUptime; one client per Kazam account (its base URL and bearer token), on one shared HTTP session.

Faults: transport errors, timeouts, 5xx (Kazam's `{"message": "device_timeout"}` is a 500) and 429 are retried
with exponential backoff and jitter, `attempts` tries in all (`KazamUnavailable` after); 401 is
`KazamUnauthorized` (the account's token no longer works: never retried); any other refusal `KazamRejected`.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from opendrec_kit import metrics

MAX_PAGES = 1000  # a misbehaving `count.total` must not keep one poll going forever


class KazamError(Exception):
    kind = "error"


class KazamUnavailable(KazamError):
    """Kazam could not be reached (or kept failing with 5xx, device_timeout or timeouts) after the retries."""

    kind = "unavailable"


class KazamRejected(KazamError):
    """Kazam answered, but refused the request (bad request) or sent something unreadable."""

    kind = "rejected"


class KazamUnauthorized(KazamRejected):
    """401: the account's token does not work (revoked, expired, wrong)."""

    kind = "unauthorized"


class KazamNotFound(KazamRejected):
    """404 device_not_found: this account does not see the charger."""

    kind = "not_found"


class _Transient(Exception):
    pass


class KazamClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        page_size: int = 100,
        attempts: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.page_size = page_size
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.requests = 0

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                # jitter: many accounts failing at once do not all come back at the same instant
                wait=wait_exponential_jitter(multiplier=self.backoff_s, max=2, jitter=self.backoff_s),
                retry=retry_if_exception_type(_Transient),
            ):
                with attempt:
                    return await self._post_once(path, body)
        except RetryError as exc:
            raise KazamUnavailable(f"POST {path}: {exc.last_attempt.exception()}") from exc
        raise AssertionError("unreachable")  # AsyncRetrying either returns or raises

    async def _post_once(self, path: str, body: dict[str, Any]) -> Any:
        self.requests += 1
        try:
            async with self.session.post(self.base_url + path, json=body, headers=self.headers) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                    if resp.status < 500 and resp.status != 429:
                        raise KazamRejected(
                            f"POST {path} answered {resp.status} with a body that is not JSON"
                        ) from None
                if resp.status >= 500 or resp.status == 429:
                    message = data.get("message") if isinstance(data, dict) else None
                    raise _Transient(f"HTTP {resp.status}" + (f" {message}" if message else ""))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Transient(repr(exc)) from exc
        message = data.get("message") if isinstance(data, dict) else None
        if resp.status == 401:
            raise KazamUnauthorized(f"POST {path} answered 401: {message}")
        if resp.status == 404 and message == "no_transaction_found":
            return {"count": {"total": 0}, "transactions": []}
        if resp.status == 404 and message == "device_not_found":
            raise KazamNotFound(f"POST {path} answered 404: {message}")
        if resp.status >= 400:
            raise KazamRejected(f"POST {path} answered {resp.status}: {message if message is not None else data}")
        return data

    async def transactions(self, device_ids: list[str], start_time: int, end_time: int) -> list[dict[str, Any]]:
        """Every transaction of these chargers whose start_time lies in [start_time, end_time], all pages."""
        found: list[dict[str, Any]] = []
        offset = 0
        for _ in range(MAX_PAGES):
            data = await self._post(
                "/getTransactions",
                {
                    "device_id": device_ids,
                    "start_time": start_time,
                    "end_time": end_time,
                    "limit": self.page_size,
                    "offset": offset,
                },
            )
            if not isinstance(data, dict):
                raise KazamRejected("POST /getTransactions answered something other than an object")
            page = data.get("transactions") or []
            found += [t for t in page if isinstance(t, dict)]
            offset += len(page)
            total = (data.get("count") or {}).get("total")
            if not page or not isinstance(total, int) or offset >= total:
                break
        return found

    async def device_state(self, device_id: str) -> dict[str, Any]:
        """The charger's state as Kazam has it; KazamNotFound when this account does not see it."""
        data = await self._post("/getDeviceState", {"device_id": device_id})
        if not isinstance(data, dict) or str(data.get("device_id")) != device_id:
            raise KazamNotFound(f"POST /getDeviceState did not answer for {device_id!r}")
        return data

    async def device_uptime(self, device_ids: list[str], start_time: int, end_time: int) -> dict[str, Any]:
        """{device_id: uptime} over [start_time, end_time] (start_time at 00:00 IST, as Kazam requires)."""
        data = await self._post(
            "/getDeviceUptime", {"device_id": device_ids, "start_time": start_time, "end_time": end_time}
        )
        if not isinstance(data, dict):
            raise KazamRejected("POST /getDeviceUptime answered something other than an object")
        return data


class KazamAccess:
    """How the gateway reaches Kazam: one HTTP session, a client per account (base URL, token), the settings of
    each account's circuit breaker (its state is in the database: `store.breaker_*`), the platform token (dev and
    test only, for organizations without credentials of their own), and this process's counters for /readyz and
    the logs."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        default_url: str,
        *,
        platform_token: str | None,
        page_size: int = 100,
        attempts: int = 3,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 60.0,
    ) -> None:
        self.session = session
        self.default_url = default_url
        self.platform_token = platform_token
        self.page_size = page_size
        self.attempts = attempts
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_s = breaker_cooldown_s
        self.errors: dict[str, int] = {}  # failures by kind since start
        self.last_poll_at: float | None = None  # end of the last complete poll round (monotonic clock)
        self.last_poll_unix: float | None = None

    def client(self, base_url: str | None, token: str) -> KazamClient:
        return KazamClient(
            self.session, base_url or self.default_url, token, page_size=self.page_size, attempts=self.attempts
        )

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        metrics.charger_error("kazam", kind)

    def poll_lag_s(self, now: float) -> float | None:
        """Seconds since the last complete poll round ended (None before the first)."""
        return None if self.last_poll_at is None else now - self.last_poll_at
