"""The devices service under cProfile (bench_listing.py --profile FILE), in CPU time.

The event loop's thread is profiled and the profile written when the service stops. uvicorn re-raises SIGTERM after
its graceful shutdown; a no-op handler installed first is the one it restores, so the process returns here and
writes the profile.
"""

import cProfile
import signal
import sys
import time

from opendrec_devices.app import build
from opendrec_devices.settings import Settings
from opendrec_kit import heap

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting on sockets is not counted
    runtime = build(Settings())
    heap.settle()  # as the kit's entry points do
    profiler.enable()
    try:
        runtime.run()
    finally:
        profiler.disable()
        profiler.dump_stats(sys.argv[1])
