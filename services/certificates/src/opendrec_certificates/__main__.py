from fastapi import FastAPI

from .app import build
from .settings import Settings


def worker() -> FastAPI:
    """One of HTTP_WORKERS processes: uvicorn calls this in each."""
    return build(Settings()).setup_process()


def main() -> None:
    build(Settings()).run(worker_factory="opendrec_certificates.__main__:worker")


if __name__ == "__main__":
    main()
