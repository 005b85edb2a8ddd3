"""The Postgres server the certificates benches use: DATABASE_URL when set, else an embedded one for the run."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from opendrec_devstack.postgres import start_postgres


@contextmanager
def postgres_server() -> Iterator[str]:
    """The server's URL (each bench makes its databases on it); an embedded server is stopped after."""
    if given := os.environ.get("DATABASE_URL"):
        yield given
        return
    with tempfile.TemporaryDirectory() as pgdata:
        pg = start_postgres(pgdata)
        try:
            yield pg.url
        finally:
            pg.stop()
