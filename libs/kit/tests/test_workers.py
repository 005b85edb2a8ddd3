"""The background worker: runs on wake-up and interval, drains while work waits, backs off on failure, stops cleanly."""

from __future__ import annotations

import asyncio

from opendrec_kit.testing import eventually
from opendrec_kit.workers import Worker


async def test_a_step_saying_more_work_waits_runs_again_at_once_then_waits_for_a_wake_up():
    batches = [True, True, False]  # two full batches, then the queue is empty
    ran: list[bool] = []

    async def step() -> bool:
        ran.append(batches.pop(0) if batches else False)
        return ran[-1]

    worker = Worker("drain", step, interval_s=3600)  # the interval never elapses in this test
    worker.start()
    try:
        await eventually(lambda: _value(len(ran) == 3))
        await asyncio.sleep(0.05)
        assert len(ran) == 3  # idle now: no wake-up, and the interval is an hour
        worker.wake()
        await eventually(lambda: _value(len(ran) == 4))
        assert worker.status == "ok" and worker.steps == 4
    finally:
        await worker.stop()
    assert worker.status == "stopped"


async def test_a_failing_step_is_retried_reported_and_recovers():
    failures = 3
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise ConnectionError(f"database gone ({calls})")
        return False

    seen_failing: list[str] = []

    worker = Worker("flaky", step, interval_s=3600, backoff_initial_s=0.01, backoff_max_s=0.02)
    worker.start()
    try:

        async def failing_then_ok() -> bool:
            if worker.status.startswith("failing"):
                seen_failing.append(worker.status)
            return worker.status == "ok"

        await eventually(failing_then_ok, interval=0.001)
    finally:
        await worker.stop()
    assert calls == failures + 1 and worker.failures == failures
    assert seen_failing and "ConnectionError: database gone" in seen_failing[0]


async def test_stop_cancels_a_step_in_progress():
    started = asyncio.Event()

    async def step() -> bool:
        started.set()
        await asyncio.Event().wait()  # never finishes by itself
        return False

    worker = Worker("slow", step, interval_s=1)
    worker.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(worker.stop(), 5)
    assert worker.status == "stopped" and worker.failures == 0


async def _value(v: bool) -> bool:
    return v
