"""The Kazam platform API, as far as the gateway needs it: POST /getTransactions, paged."""

from __future__ import annotations

from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

MAX_PAGES = 1000  # a misbehaving `count.total` must not keep one poll going forever


class KazamError(Exception):
    pass


class KazamUnavailable(KazamError):
    """Kazam could not be reached (or kept failing with 5xx) after the retries."""


class KazamRejected(KazamError):
    """Kazam answered, but refused the request (bad token, bad request) or sent something unreadable."""


class _Transient(Exception):
    pass


class KazamClient:
    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, token: str, *, page_size: int = 100, attempts: int = 3
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.page_size = page_size
        self.attempts = attempts
        self.requests = 0

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.2, max=2),
                retry=retry_if_exception_type(_Transient),
            ):
                with attempt:
                    return await self._post_once(path, body)
        except RetryError as exc:
            raise KazamUnavailable(f"POST {path}: {exc.last_attempt.exception()}") from exc
        raise AssertionError("unreachable")  # AsyncRetrying either returns or raises

    async def _post_once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        try:
            async with self.session.post(self.base_url + path, json=body, headers=self.headers) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise _Transient(f"HTTP {resp.status}")
                try:
                    data = await resp.json(content_type=None)
                except ValueError as exc:
                    raise KazamRejected(f"POST {path} answered {resp.status} with a body that is not JSON") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Transient(repr(exc)) from exc
        if resp.status == 404 and isinstance(data, dict) and data.get("message") == "no_transaction_found":
            return {"count": {"total": 0}, "transactions": []}
        if resp.status >= 400 or not isinstance(data, dict):
            message = data.get("message") if isinstance(data, dict) else data
            raise KazamRejected(f"POST {path} answered {resp.status}: {message}")
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
            page = data.get("transactions") or []
            found += [t for t in page if isinstance(t, dict)]
            offset += len(page)
            total = (data.get("count") or {}).get("total")
            if not page or not isinstance(total, int) or offset >= total:
                break
        return found
