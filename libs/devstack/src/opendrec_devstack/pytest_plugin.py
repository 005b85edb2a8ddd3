"""pytest plugin (entry point `pytest11: opendrec_devstack`): real Postgres, a real
Kafka-protocol broker and the whole platform as processes, for every test suite in the repo.

Session fixtures:
  postgres_url      libpq URL of a Postgres server (database `postgres`): $DATABASE_URL, else a
                    testcontainers PostgresContainer when a Docker engine answers, else the
                    embedded pgserver one in a temp dir.
  kafka_bootstrap   "host:port": $KAFKA_BOOTSTRAP_SERVERS, else a testcontainers KafkaContainer
                    (KRaft, topic auto-creation off like Tansu), else embedded Tansu.
  fresh_database    factory: fresh_database(prefix="test") -> URL of a new, uniquely named
                    database on that server; all are dropped at session end.
  platform          the whole platform started by `python -m opendrec_devstack run` (same code path
                    as `make run`) on the test Postgres and broker, free ports, a temp state dir and
                    a unique DATABASE_NAME_PREFIX; yields a `Platform`, stops it after the session.

Set OPENDREC_TESTCONTAINERS=never to skip the Docker probe (embedded parts only).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .net import with_database

PLATFORM_START_TIMEOUT_S = float(os.environ.get("OPENDREC_PLATFORM_TIMEOUT", "180"))
PLATFORM_STOP_TIMEOUT_S = 60.0


# ---------------------------------------------------------------- docker probe

_docker_answer: bool | None = None


def docker_available() -> bool:
    """True when a Docker engine answers a ping within 2 s (asked once per process)."""
    global _docker_answer
    if _docker_answer is None:
        if os.environ.get("OPENDREC_TESTCONTAINERS", "auto") == "never":
            _docker_answer = False
        else:
            try:
                import docker

                client = docker.from_env(timeout=2)
                try:
                    _docker_answer = bool(client.ping())
                finally:
                    client.close()
            except Exception:  # noqa: BLE001 - any failure means no Docker engine
                _docker_answer = False
    return _docker_answer


# ---------------------------------------------------------------- databases


def create_database(server_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_databases(server_url: str, names) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names:
            # FORCE: a leftover connection (a service that died uncleanly) must not block cleanup
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def databases_with_prefix(server_url: str, prefix: str) -> list[str]:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------- platform


@dataclass
class Platform:
    """A running platform (see <state_dir>/stack.json for the same data)."""

    gateway_url: str
    service_urls: dict[str, str]
    mail_dir: Path
    kazam_url: str
    kazam_token: str
    traces_dir: Path
    kafka_bootstrap: str
    database_url: str  # the server URL the services got as DATABASE_URL
    database_name_prefix: str
    admin_email: str
    admin_password: str
    state_dir: Path
    process: subprocess.Popen

    @property
    def log_path(self) -> Path:
        return self.state_dir / "run.log"

    def log_tail(self, chars: int = 5000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = PLATFORM_STOP_TIMEOUT_S) -> int | None:
        """Ctrl-C the supervisor and wait until it has stopped everything it started."""
        return _interrupt(self.process, timeout)


def _interrupt(proc: subprocess.Popen, timeout: float = PLATFORM_STOP_TIMEOUT_S) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def _readiness_report(info: dict | None) -> str:
    """Each service's /readyz answer, to say which one held the platform back."""
    import urllib.error
    import urllib.request

    lines = []
    for name, url in ((info or {}).get("service_urls") or {}).items():
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                lines.append(f"  {name}: {resp.status}")
        except urllib.error.HTTPError as exc:
            lines.append(f"  {name}: {exc.code} {exc.read()[:300]!r}")
        except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the original failure
            lines.append(f"  {name}: {exc!r}")
    return "\n".join(lines) or "  (no service URLs known yet)"


def start_platform(
    state_dir: str | os.PathLike,
    *,
    database_url: str,
    kafka_bootstrap: str,
    database_name_prefix: str | None = None,
    services_file: str | os.PathLike | None = None,
    environment: str = "test",
    extra_env: dict[str, str] | None = None,
    timeout: float = PLATFORM_START_TIMEOUT_S,
) -> Platform:
    """Run `python -m opendrec_devstack run --free-ports` on the given Postgres server and broker,
    with the SMTP sink and Kazam simulator embedded, and wait until every service's /readyz
    answers 200 (raises with the log tail if it exits or the deadline passes)."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    prefix = database_name_prefix if database_name_prefix is not None else f"t{uuid.uuid4().hex[:8]}_"
    env = {k: v for k, v in os.environ.items() if k not in ("SMTP_URL", "KAZAM_URL", "KAZAM_TOKEN")}
    env.update(
        DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        DATABASE_NAME_PREFIX=prefix,
        KAFKA_GROUP_PREFIX=prefix,
        PYTHONUNBUFFERED="1",
        **(extra_env or {}),
    )
    argv = [
        sys.executable,
        "-m",
        "opendrec_devstack",
        "run",
        "--state-dir",
        str(state_dir),
        "--free-ports",
        "--environment",
        environment,
    ]
    if services_file is not None:
        argv += ["--services", str(services_file)]
    stack_file = state_dir / "stack.json"
    stack_file.unlink(missing_ok=True)
    with open(state_dir / "run.log", "wb") as log:
        # same process group as pytest: a Ctrl-C on the test run reaches the supervisor too
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    info = None
    while True:
        try:
            info = json.loads(stack_file.read_text())
        except (FileNotFoundError, ValueError):  # not written yet, half-written, or removed as the stack stops
            info = None
        if info and info.get("ready"):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready after {timeout}s"
            report = _readiness_report(info)
            _interrupt(proc)
            tail = (state_dir / "run.log").read_text(errors="replace")[-5000:]
            raise RuntimeError(f"platform {why}; readiness:\n{report}\nlog tail:\n{tail}")
        time.sleep(0.1)
    return Platform(
        gateway_url=info["gateway_url"],
        service_urls=info["service_urls"],
        mail_dir=Path(info["mail_dir"]),
        kazam_url=info["kazam_url"],
        kazam_token=info["kazam_token"],
        traces_dir=Path(info["traces_dir"]),
        kafka_bootstrap=info["kafka_bootstrap"],
        database_url=info["database_url"],
        database_name_prefix=prefix,
        admin_email=info["admin_email"],
        admin_password=info["admin_password"],
        state_dir=state_dir,
        process=proc,
    )


# ---------------------------------------------------------------- fixtures


@contextlib.contextmanager
def _server(
    env: str, in_docker: Callable[[], ContextManager[str]], embedded: Callable[[], ContextManager[str]]
) -> Iterator[str]:
    """The address of a server: `$env` when set (one already running), else one started in Docker when a Docker
    engine answers, else an embedded one; a started one is stopped on exit."""
    if given := os.environ.get(env):
        yield given
        return
    with (in_docker if docker_available() else embedded)() as address:
        yield address


@contextlib.contextmanager
def _postgres_in_docker() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@contextlib.contextmanager
def _embedded_postgres() -> Iterator[str]:
    from .postgres import start_postgres

    # Not under pytest's basetemp: every pytest session resets that tree to mode 0700, which would
    # lock out the unprivileged user postgres runs as when we are root.
    base = tempfile.mkdtemp(prefix="opendrec-pg-")
    pg = start_postgres(Path(base) / "data")
    try:
        yield pg.url
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _kafka_in_docker() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    # explicit topic creation, as on Tansu and in production
    with KafkaContainer().with_kraft().with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false") as kafka:
        yield kafka.get_bootstrap_server()


@contextlib.contextmanager
def _embedded_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from .broker import start_broker

    with start_broker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    with _server("DATABASE_URL", _postgres_in_docker, _embedded_postgres) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    embedded = functools.partial(_embedded_kafka, tmp_path_factory)
    with _server("KAFKA_BOOTSTRAP_SERVERS", _kafka_in_docker, embedded) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def fresh_database(postgres_url):
    """Factory: `url = fresh_database("readings")` creates database `readings_<8 hex>`."""
    created: list[str] = []

    def make(prefix: str = "test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}".lower()
        url = create_database(postgres_url, name)
        created.append(name)
        return url

    yield make
    if created:
        drop_databases(postgres_url, created)


@pytest.fixture(scope="session")
def platform(postgres_url, kafka_bootstrap, tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("platform")
    with contextlib.ExitStack() as stack:
        bootstrap = kafka_bootstrap
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not docker_available():
            # A broker of its own: the session broker holds every other test's events (ids from
            # other databases included), which a fresh platform would otherwise consume as history.
            from .broker import start_broker

            bootstrap = stack.enter_context(start_broker(log_path=state_dir.parent / "platform-tansu.log")).bootstrap
        # Certificates wait CERTIFY_SETTLE_S (30 s) after energy is generated before certifying it; the journeys
        # post reads of the last moments and look for their certificates: a second is enough here.
        running = start_platform(
            state_dir, database_url=postgres_url, kafka_bootstrap=bootstrap, extra_env={"CERTIFY_SETTLE_S": "1"}
        )
        try:
            yield running
        finally:
            running.stop()
            drop_databases(postgres_url, databases_with_prefix(postgres_url, running.database_name_prefix))
