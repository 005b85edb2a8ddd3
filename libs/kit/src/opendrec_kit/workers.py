"""Background workers: one loop for every service's long-lived job (outbox relay, bulk jobs, mail, sweeps, pollers).

A worker runs its `step` again and again: at once while the step says more work is waiting, otherwise when
woken (`wake()`, e.g. on a NOTIFY or an upload) or after `interval_s`. A failing step is retried with
exponential backoff and jitter (tenacity), logged with its error, and reported unhealthy until a step
succeeds again; it never ends the loop. Stopping cancels the loop at its next await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

log = logging.getLogger(__name__)

# A step returns something truthy when more work is waiting (run again at once), else falsy.
Step = Callable[[], Awaitable[Any]]


class Worker:
    def __init__(
        self,
        name: str,
        step: Step,
        *,
        interval_s: float,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 30.0,
        affects_readiness: bool = False,
    ) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.affects_readiness = affects_readiness
        self.healthy = False  # until a first step succeeded
        self.last_error: str | None = None
        self.steps = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Run the step soon, without waiting for the interval."""
        self._wake.set()

    @property
    def status(self) -> str:
        if self._task is None:
            return "stopped"
        if self.healthy:
            return "ok"
        return f"failing: {self.last_error}" if self.last_error else "starting"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            # Cleared before the step: a wake-up arriving during the step runs the next one at once.
            self._wake.clear()
            more = await self._step_until_it_succeeds()
            if more:
                await asyncio.sleep(0)  # let requests in between two full batches
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def _step_until_it_succeeds(self) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),  # not CancelledError: stopping is not a failure
            wait=wait_exponential_jitter(multiplier=self.backoff_initial_s, max=self.backoff_max_s),
            before_sleep=self._failed,
            reraise=True,
        )
        more: Any = None
        async for attempt in retrying:
            with attempt:
                more = await self.step()
        self.steps += 1
        self.healthy, self.last_error = True, None
        return more

    def _failed(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.failures += 1
        self.healthy = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:300] if exc else "unknown"
        log.error(
            "worker step failed; retrying",
            exc_info=exc,
            extra={"worker": self.name, "attempt": state.attempt_number, "retry_in_s": round(state.upcoming_sleep, 3)},
        )
