import gc

from fastapi import FastAPI

from opendrec_kit import ServiceRuntime

from .app import build
from .settings import Settings

# A batch of 10,000 reads makes ~100,000 short-lived objects. Collected every 700 new
# objects (the default), the collector walked them again and again: ~35% of the CPU spent on
# a batch. Every 50,000 it costs a few percent; cycles are rare on this path.
GC_THRESHOLDS = (50_000, 20, 10)


def prepared() -> ServiceRuntime:
    runtime = build(Settings())
    # Everything imported so far lives as long as the process: frozen, no collection walks it.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return runtime


def worker() -> FastAPI:
    """One of HTTP_WORKERS processes: uvicorn calls this in each."""
    return prepared().setup_process()


def main() -> None:
    prepared().run(worker_factory="opendrec_readings.__main__:worker")


if __name__ == "__main__":
    main()
