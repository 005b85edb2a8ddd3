"""`python -m opendrec_readings`: serve the service (with HTTP_WORKERS > 1, uvicorn starts `worker` in each process).
The collector's settings for batches of many reads are the kit's (`opendrec_kit.heap`)."""

from opendrec_kit.runtime import entry_points

from .app import build
from .settings import Settings

worker, main = entry_points(build, Settings, "opendrec_readings.__main__:worker")

if __name__ == "__main__":
    main()
