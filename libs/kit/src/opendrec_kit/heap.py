"""The garbage collector of a service process, set once it has started (issue 16).

Python's cyclic collector walks every tracked object of the generations it collects; a full collection walks
them all: a service's modules, FastAPI routes, pydantic models and SDK objects, ~100,000+ objects, every few
hundred requests, stalling the event loop meanwhile. Frozen once the app is built (`gc.freeze`), they are never
walked again. The first generation is collected every 50,000 new objects instead of 700: a batch of 10,000 reads
makes ~100,000 short-lived objects, and collected every 700 the collector walked them again and again (~35% of the
CPU spent on a batch in readings); cycles are rare on the hot paths.

Measured with `bench/devices/bench_listing.py` (16 connections, devices alone, minutes apart): the devices
service's CPU a listing 0.609 -> 0.541 ms, p99 84.5 -> 19.5 ms (the stalls were full collections).
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)


def settle() -> None:
    """Collect what start-up left, then freeze the rest and raise the thresholds. Call once per process, when the
    app is built and before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
