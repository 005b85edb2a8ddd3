"""`python -m opendrec_readings`: serve the service (with HTTP_WORKERS > 1, uvicorn starts `worker` in each process)."""

import gc

from opendrec_kit import ServiceRuntime
from opendrec_kit.runtime import entry_points

from .app import build
from .settings import Settings

# A batch of 10,000 reads makes ~100,000 short-lived objects. Collected every 700 new
# objects (the default), the collector walked them again and again: ~35% of the CPU spent on
# a batch. Every 50,000 it costs a few percent; cycles are rare on this path.
GC_THRESHOLDS = (50_000, 20, 10)


def prepared(settings: Settings) -> ServiceRuntime[Settings]:
    runtime = build(settings)
    # Everything imported so far lives as long as the process: frozen, no collection walks it.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return runtime


worker, main = entry_points(prepared, Settings, "opendrec_readings.__main__:worker")

if __name__ == "__main__":
    main()
