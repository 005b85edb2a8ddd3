"""The readings service under cProfile (bench_readings.py --profile FILE), in CPU time.

The event loop's thread is profiled and the profile written when the service stops.

uvicorn re-raises SIGTERM after its graceful shutdown; a no-op handler installed first is the one
it restores, so the process returns here and writes the profile.
"""

import cProfile
import gc
import signal
import sys
import time

from opendrec_readings.__main__ import GC_THRESHOLDS
from opendrec_readings.app import build
from opendrec_readings.settings import Settings

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting on sockets is not counted
    runtime = build(Settings())
    gc.freeze()  # as opendrec_readings.__main__ does
    gc.set_threshold(*GC_THRESHOLDS)
    profiler.enable()
    try:
        runtime.run()
    finally:
        profiler.disable()
        profiler.dump_stats(sys.argv[1])
