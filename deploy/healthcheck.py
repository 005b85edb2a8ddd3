"""Container health probe: exit 0 when this container's service answers 2xx.

Usage (inside the image): python /app/healthcheck.py [/readyz|/healthz]
Probes http://127.0.0.1:$HTTP_PORT<path>. The slim image has no curl or wget,
and Python's standard library is enough for one GET.
"""

import os
import sys
import urllib.request


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/readyz"
    url = f"http://127.0.0.1:{os.environ.get('HTTP_PORT', '8000')}{path}"
    try:
        # urlopen raises HTTPError for 4xx/5xx, so reaching the body means 2xx/3xx.
        with urllib.request.urlopen(url, timeout=float(os.environ.get("HEALTHCHECK_TIMEOUT", "4"))):
            return 0
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"; say why in the health log
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
