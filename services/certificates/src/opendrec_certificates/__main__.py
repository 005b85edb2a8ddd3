"""`python -m opendrec_certificates`: serve the service (with HTTP_WORKERS > 1, uvicorn starts `worker` in each process)."""

from opendrec_kit.runtime import entry_points

from .app import build
from .settings import Settings

worker, main = entry_points(build, Settings, "opendrec_certificates.__main__:worker")

if __name__ == "__main__":
    main()
