"""The public API as the console calls it: through the gateway, with the signed-in user's token.

An answer is kept as it came (status, JSON or bytes); refusals in the platform's envelope are turned into a
`Refusal` with the message and the fields it names, so that pages can show each next to its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from . import domain


@dataclass
class Answer:
    status: int
    body: Any
    headers: httpx.Headers
    content: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def checked(self) -> Answer:
        """This answer if it is a success; else its refusal (the envelope's message and fields), raised."""
        if not self.ok:
            message, fields = domain.refusal_of(self.status, self.body)
            raise Refusal(self.status, message, fields)
        return self


@dataclass
class Refusal(Exception):
    """The API said no (4xx/5xx): its message and, per field it names, what is wrong."""

    status: int
    message: str
    fields: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class Api:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        headers = {"Accept": accept, **(headers or {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            resp = await self._http.request(method, path, json=json, params=clean, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise Refusal(503, f"The platform did not answer ({type(exc).__name__}); try again in a moment") from exc
        body: Any = None
        if resp.headers.get("content-type", "").startswith("application/json"):
            try:
                body = resp.json()
            except ValueError:
                body = None
        return Answer(resp.status_code, body, resp.headers, resp.content)

    async def ask(self, method: str, path: str, **kwargs: Any) -> Any:
        """`call`, raising a Refusal unless the answer is a success; the JSON body."""
        return (await self.call(method, path, **kwargs)).checked().body
