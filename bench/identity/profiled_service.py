"""Identity under cProfile (bench_login.py --profile FILE), in its event loop thread's CPU time.

The loop's thread is profiled (HTTP, SQL, token signing; not the password hashing threads, whose work is one C
call each) and the profile written when the service stops. uvicorn re-raises SIGTERM after its graceful
shutdown; a no-op handler installed first is the one it restores, so the process returns here and writes it.
"""

import cProfile
import signal
import sys
import time

from opendrec_identity.__main__ import checked
from opendrec_identity.settings import Settings
from opendrec_kit import heap

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile(time.thread_time)  # this thread's CPU: waiting on sockets is not counted
    runtime = checked(Settings())
    heap.settle()  # as the kit's entry points do
    profiler.enable()
    try:
        runtime.run()
    finally:
        profiler.disable()
        profiler.dump_stats(sys.argv[1])
