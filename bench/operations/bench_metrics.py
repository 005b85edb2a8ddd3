"""What the kit's metrics cost on the hot paths (issue 18): a request through HttpMetricsMiddleware, an event
handler through `metrics.timed`, a domain counter, and a scrape.

    python bench/operations/bench_metrics.py

The baseline is measured in the same run: the same trivial FastAPI route called in process (ASGI, no socket, so
the figure is the framework's cost alone and the middleware's share is as large as it can be), without and with
the middleware. Goals, as shares of that trivial request (a real one, with a database round trip, is several times
dearer, and so is an event's unit of work with its inbox claim): the middleware adds at most 15 %, `metrics.timed`
at most 10 % an event; a scrape of a service's families takes under 20 ms. Exit status 1 when a goal is missed.
Absolute microseconds are printed too; they follow the machine's load (two cores shared here).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from fastapi import FastAPI

from opendrec_kit import metrics

N = 20_000
ROUNDS = 5


def app(with_metrics: bool) -> FastAPI:
    api = FastAPI()

    @api.get("/api/devices/{device_id}")
    async def device(device_id: int) -> dict[str, int]:
        return {"id": device_id}

    if with_metrics:
        api.add_middleware(metrics.HttpMetricsMiddleware)
    return api


async def requests_per_s(asgi, n: int) -> float:
    """n GET requests straight into the ASGI app; requests per second."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    started = time.perf_counter()
    for i in range(n):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": f"/api/devices/{i}", "raw_path": f"/api/devices/{i}".encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("bench", 80),
        }  # fmt: skip
        await asgi(scope, receive, send)
    elapsed = time.perf_counter() - started
    assert sent[0]["status"] == 200
    return n / elapsed


async def timed_us(n: int) -> tuple[float, float]:
    async def handler(event: object, uow: object) -> None:
        return None

    wrapped = metrics.timed("device.registered", handler)
    started = time.perf_counter()
    for _ in range(n):
        await handler(None, None)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(n):
        await wrapped(None, None)
    return (time.perf_counter() - started) / n * 1e6, bare / n * 1e6


def counter_us(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        metrics.reads_accepted(100, 5000, source="api")
    return (time.perf_counter() - started) / n * 1e6


def scrape_ms() -> float:
    started = time.perf_counter()
    body = metrics.render()
    assert b"http_server_request_duration_seconds_bucket" in body
    return (time.perf_counter() - started) * 1000


async def main() -> int:
    plain, measured = app(False), app(True)
    # warm both (route compilation, first series)
    await requests_per_s(plain, 500)
    await requests_per_s(measured, 500)
    without, with_ = [], []
    for _ in range(ROUNDS):  # interleaved, so a noisy neighbour on the machine hits both alike
        without.append(await requests_per_s(plain, N))
        with_.append(await requests_per_s(measured, N))
    base, mid = statistics.median(without), statistics.median(with_)
    added_us = (1 / mid - 1 / base) * 1e6
    share = base / mid - 1
    timed, bare = await timed_us(N * 5)
    counter = counter_us(N * 5)
    scrape = statistics.median(scrape_ms() for _ in range(20))

    print(
        f"trivial FastAPI request, in process: {base:,.0f} req/s without metrics, {mid:,.0f} with (median of {ROUNDS})"
    )
    trivial_us = 1e6 / base
    timed_share = (timed - bare) / trivial_us
    print(f"  middleware: +{added_us:.1f} us a request, {share:.1%} of the trivial request (goal <= 15 %)")
    print(
        f"event handler through metrics.timed: +{timed - bare:.2f} us a call, {timed_share:.1%} of the trivial request (goal <= 10 %)"
    )
    print(f"domain counter (reads_accepted): {counter:.2f} us a call")
    print(f"scrape (render every family): {scrape:.2f} ms (goal < 20 ms)")
    missed = []
    if share > 0.15:
        missed.append("middleware")
    if timed_share > 0.10:
        missed.append("timed")
    if scrape >= 20:
        missed.append("scrape")
    if missed:
        print(f"MISSED: {', '.join(missed)}")
        return 1
    print("all goals met")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
