"""Read-your-writes across services: on a read-model miss, ask the service that owns the entity.

A service learns other services' entities from their events, a moment after they happen (0.1 s on a quiet
machine, seconds under load). A client that got 201 for a device may post its reads at once: the read model
may not know the device yet. On such a miss a use case asks the owner once, over HTTP, on the caller's behalf
(the caller's bearer token travels, so the owner applies its own access rules), and applies the answer exactly
as it applies the owner's events:

    owner:     GET /internal/<entity>/...  ->  {"events": [envelope, ...]}   (`answer(...)` builds it)
    consumer:  for known in await owners.ask("devices", path, principal): <the handler's use case>(known.event,
               known.occurred_at)

The owner answers with the events that make the entity's current state, each stamped with when that state
began, so a read model orders them against the real events (arriving before or after) as it orders any
delivery; applying both is harmless because every read model takes a state, not a delta. 404 (unknown, or not
the caller's to see) is an empty answer.

Bounded, so one client cannot use it against others: a question waits at most OWNER_TIMEOUT_S (slot included),
at most OWNER_CONCURRENCY are open per process, and an owner that does not answer is a 503 saying so, never a
404 that would tell the client its entity does not exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from opendrec_contracts import Envelope, Event, parse_event

from .auth import Principal
from .errors import ApiError

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

INTERNAL = "/internal"  # owners' routes for other services: never routed by the gateway, not in the public docs


@dataclass(frozen=True)
class Known:
    """One event of an owner's answer, and when the state it carries began."""

    event: Event
    occurred_at: datetime


class OwnerServices:
    """The owning services this process asks on a miss (one pooled HTTP session, bounded)."""

    def __init__(
        self, urls: Mapping[str, str], *, timeout_s: float = 10.0, concurrency: int = 16, service: str = ""
    ) -> None:
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self.timeout_s = timeout_s
        self.service = service
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.asked = 0  # questions sent (for tests and metrics)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    async def ask(
        self, owner: str, path: str, principal: Principal, params: Mapping[str, str | int] | None = None
    ) -> list[Known]:
        """The events making the entity's current state as `owner` knows it and the caller may see it ([] when
        it does not, or when there is no caller token to ask with); a 503 ApiError when the owner does not answer
        in time."""
        if not principal.token:
            return []
        url = f"{self.urls[owner]}{INTERNAL}{path}"
        headers = {"authorization": f"Bearer {principal.token}"}
        with tracer.start_as_current_span(f"GET {owner}{INTERNAL}", kind=SpanKind.CLIENT) as span:
            span.set_attribute("opendrec.owner", owner)
            span.set_attribute("url.path", f"{INTERNAL}{path}")
            inject(headers)
            try:
                body = await self._get(owner, url, headers, params)
            except ApiError as exc:
                span.set_status(Status(StatusCode.ERROR, exc.message))
                raise
            known = _known(owner, body)
            span.set_attribute("opendrec.owner.events", len(known))
            return known

    async def _get(self, owner: str, url: str, headers: dict[str, str], params: Mapping[str, str | int] | None) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                self.asked += 1
                async with self._client().get(url, headers=headers, params=params) as resp:
                    if resp.status == 404:
                        return {"events": []}
                    if resp.status != 200:
                        text = (await resp.text())[:300]
                        log.warning("owner answered an error", extra={"url": url, "status": resp.status, "body": text})
                        raise ApiError(503, f"{owner} could not be asked just now ({resp.status}); try again")
                    return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("owner did not answer", extra={"url": url, "error": repr(exc)})
            raise ApiError(503, f"{owner} did not answer in time; try again") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _known(owner: str, body: Any) -> list[Known]:
    try:
        envelopes = [Envelope.model_validate(item) for item in body["events"]]
        return [Known(parse_event(e), e.occurred_at) for e in envelopes]
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        log.warning("owner answered something unreadable", extra={"owner": owner, "error": repr(exc)})
        raise ApiError(503, f"{owner} answered something this service cannot read; try again") from exc


def answer(states: Iterable[tuple[Event, datetime]], producer: str) -> dict[str, Any]:
    """An owner's answer: the events making an entity's current state, each stamped with when it began."""
    return {
        "events": [
            Envelope(
                type=event.TYPE,
                version=event.VERSION,
                occurred_at=at,
                producer=producer,
                payload=event.model_dump(mode="json"),
            ).model_dump(mode="json")
            for event, at in states
        ]
    }
