"""`python -m opendrec_identity`: serve the service (with HTTP_WORKERS > 1, uvicorn starts `worker` in each process)."""

import sys

from opendrec_kit import ServiceRuntime
from opendrec_kit.runtime import entry_points

from .app import build
from .settings import Settings
from .tokens import SigningKeyError


def checked(settings: Settings) -> ServiceRuntime[Settings]:
    """The service, or exit with the reason its signing key is unusable."""
    try:
        return build(settings)
    except SigningKeyError as exc:
        sys.exit(f"identity cannot start: {exc}")


worker, main = entry_points(checked, Settings, "opendrec_identity.__main__:worker")

if __name__ == "__main__":
    main()
