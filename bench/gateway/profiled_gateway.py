"""The gateway under cProfile (bench/identity/bench_login.py --profile-gateway FILE), in its event loop thread's
CPU time, written when it stops (uvicorn re-raises SIGTERM after its graceful shutdown; a no-op handler installed
first is the one it restores, so the process returns here and writes the profile)."""

import cProfile
import signal
import sys
import time

from opendrec_gateway.__main__ import main

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile(time.thread_time)  # this thread's CPU: waiting on sockets is not counted
    profiler.enable()
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(sys.argv[1])
