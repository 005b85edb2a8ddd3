import sys

from fastapi import FastAPI

from .app import build
from .settings import Settings
from .tokens import SigningKeyError


def worker() -> FastAPI:
    """One of HTTP_WORKERS processes: uvicorn calls this in each."""
    return build(Settings()).setup_process()


def main() -> None:
    try:
        runtime = build(Settings())
    except SigningKeyError as exc:
        sys.exit(f"identity cannot start: {exc}")
    runtime.run(worker_factory="opendrec_identity.__main__:worker")


if __name__ == "__main__":
    main()
