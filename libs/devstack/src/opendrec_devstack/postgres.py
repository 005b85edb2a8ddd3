"""Embedded PostgreSQL from the `pgserver` wheel, listening on TCP 127.0.0.1.

pgserver's own `PostgresServer` only listens on a unix socket on Linux (it passes `-h ""`),
and its socket URL (`postgresql://postgres:@/postgres?host=/dir`) is not one every client
takes. So we use the wheel's binaries and helpers (`pgserver.initdb`, `pgserver.pg_ctl`,
its root handling) and start the server ourselves on 127.0.0.1:PORT, which gives the plain
URL `postgresql://postgres@127.0.0.1:PORT/postgres` that asyncpg and psycopg 3 both accept.
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import stat
import subprocess
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psutil

with warnings.catch_warnings():
    # pgserver computes a runtime dir at import; platformdirs warns when XDG_RUNTIME_DIR is unset.
    warnings.simplefilter("ignore")
    import pgserver
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import PostmasterInfo, find_suitable_socket_dir

from .net import free_port, port_is_free, with_database

log = logging.getLogger(__name__)

PG_USER = "postgres"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60
# Every service's role is a member (least privilege, issue 12): pg_hba asks them for their password over TCP.
SERVICE_ROLES = "opendrec_services"
SERVICE_ROLES_HBA = f"host all +{SERVICE_ROLES} {HOST}/32 scram-sha-256\n"


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    port: int
    system_user: str | None

    @property
    def url(self) -> str:
        """libpq URL of the `postgres` database (trust auth, no password)."""
        return f"postgresql://{PG_USER}@{HOST}:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return with_database(self.url, database)

    @property
    def pid(self) -> int | None:
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info.pid if info is not None and info.is_running() else None

    def stop(self) -> None:
        """Fast shutdown (disconnects clients, no crash recovery needed on next start)."""
        _stop_cluster(self.pgdata, self.system_user)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _system_user() -> str | None:
    # postgres refuses to run as root; pgserver creates and uses an unprivileged user then.
    if platform.system() != "Windows" and os.geteuid() == 0:
        pgserver.utils.ensure_user_exists("pgserver")
        return "pgserver"
    return None


def _prepare_root_permissions(pgdata: Path, user: str) -> None:
    """What pgserver.PostgresServer does before initdb when run as root."""
    import pwd

    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read_perm = stat.S_IRGRP | stat.S_IROTH
    execute_perm = stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, execute_perm | read_perm)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read_perm)
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _postmaster_process(pgdata: Path) -> psutil.Process | None:
    """The live postmaster that owns this data dir, if any (checked by cmdline, not by pid only:
    after a reboot or a kill the pid in postmaster.pid may belong to an unrelated process)."""
    info = PostmasterInfo.read_from_pgdata(pgdata) if (pgdata / "postmaster.pid").exists() else None
    if info is None or info.process is None or not info.is_running():
        return None
    try:
        cmdline = info.process.cmdline()
    except psutil.Error:
        return None
    if info.process.name() == "postgres" and str(pgdata) in cmdline:
        return info.process
    return None


def _stop_cluster(pgdata: Path, user: str | None) -> None:
    proc = _postmaster_process(pgdata)
    if proc is None:
        return
    try:
        pgserver.pg_ctl(  # type: ignore[attr-defined]  # pgserver makes its command wrappers at import
            ["-w", "-t", "30", "-m", "fast", "stop"], pgdata=pgdata, user=user
        )
    except subprocess.CalledProcessError:
        log.warning("pg_ctl stop failed for %s; killing postmaster %s", pgdata, proc.pid)
        proc.kill()
    try:
        proc.wait(10)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def stop_postgres(pgdata: str | os.PathLike) -> None:
    """Stop whatever postmaster runs on this data dir (no-op if none)."""
    pgdata = Path(pgdata).expanduser().resolve()
    if pgdata.exists():
        _stop_cluster(pgdata, _system_user())


def start_postgres(pgdata: str | os.PathLike, port: int | None = None) -> EmbeddedPostgres:
    """Start (initdb-ing first if needed) a PostgreSQL server with its data in `pgdata`,
    listening on 127.0.0.1:`port` (a free port if None). Returns once it accepts connections.

    A server left running on the same data dir by a killed earlier run is stopped first, and a
    stale postmaster.pid is removed, so starting again after a crash always works.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    user = _system_user()
    if user is not None:
        _prepare_root_permissions(pgdata, user)

    if not (pgdata / "PG_VERSION").exists():
        log.info("initdb %s", pgdata)
        pgserver.initdb(  # type: ignore[attr-defined]  # pgserver makes its command wrappers at import
            ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "--locale=C", "-U", PG_USER],
            pgdata=pgdata,
            user=user,
        )

    _service_roles_need_passwords(pgdata)
    # An orphan from a killed run still holds the data dir: stop it, we want our own port.
    _stop_cluster(pgdata, user)
    # A postmaster.pid without a live postmaster is stale; postgres could mistake a reused pid
    # (owned by another user, so kill(pid, 0) fails with EPERM) for a live server.
    (pgdata / "postmaster.pid").unlink(missing_ok=True)

    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise RuntimeError(f"port {port} is in use; cannot start Postgres on it")

    socket_dir = find_suitable_socket_dir(pgdata, pgserver.PostgresServer.runtime_path)
    if user is not None and socket_dir != pgdata:
        socket_dir.chmod(0o777)
    log_file = pgdata / "log"
    try:
        pgserver.pg_ctl(  # type: ignore[attr-defined]  # pgserver makes its command wrappers at import
            [
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-o",
                f"-h {HOST} -p {port} -k {socket_dir}",
                "-l",
                str(log_file),
                "start",
            ],
            pgdata=pgdata,
            user=user,
            # own session: a Ctrl-C in the terminal must not reach postgres before the services
            # using it are stopped; the owner of this object stops it.
            start_new_session=True,
            timeout=START_TIMEOUT_S + 10,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
        raise RuntimeError(f"Postgres failed to start in {pgdata}; log tail:\n{tail}") from None

    _wait_accepting(port)
    return EmbeddedPostgres(pgdata=pgdata, port=port, system_user=user)


def _service_roles_need_passwords(pgdata: Path) -> None:
    """The services' roles sign in with a password (their first pg_hba line); the administrator keeps initdb's
    trust on this local development server."""
    hba = pgdata / "pg_hba.conf"
    lines = hba.read_text().splitlines(keepends=True)
    if SERVICE_ROLES_HBA not in lines:
        first_rule = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), len(lines))
        hba.write_text("".join([*lines[:first_rule], SERVICE_ROLES_HBA, *lines[first_rule:]]))


def service_databases(admin_url: str, databases: Mapping[str, str]) -> dict[str, str]:
    """Least privilege (issue 12), for `databases` (service -> its database's name): each service gets a login role
    named as its database, owning that database (created if missing) and what is in it, with no right to create
    databases or roles, and CONNECT to the database is refused to every other role but the administrator. A new
    password each time. Returns each service's DATABASE_URL (the server, as its role)."""
    import psycopg
    from psycopg import sql

    urls = {}
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SERVICE_ROLES,)).fetchone():
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(SERVICE_ROLES)))
        for service, database in databases.items():
            role, password = sql.Identifier(database), secrets.token_urlsafe(24)
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (database,)).fetchone()
            make = "ALTER ROLE {} LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}"
            admin.execute(sql.SQL(make).format(role, sql.Literal(password)))
            admin.execute(
                sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS").format(role)
            )
            admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(SERVICE_ROLES), role))
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
                admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), role))
                _give_objects(with_database(admin_url, database), database)
            else:
                admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), role))
            admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
            parts = urlsplit(admin_url)
            netloc = f"{quote(database)}:{quote(password)}@{parts.hostname}:{parts.port}"
            urls[service] = urlunsplit(parts._replace(netloc=netloc))
    return urls


def _give_objects(database_url: str, role: str) -> None:
    """What the administrator created in the database's public schema before it had a role of its own (a
    `.run/pg` from before, when services signed in as the administrator) becomes the role's."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
        relations = conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
            " AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> %s::regrole"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))",
            (role,),
        ).fetchall()
        for (name,) in relations:  # sequences owned by a column follow their table
            conn.execute(
                sql.SQL("ALTER TABLE public.{} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(role))
            )
        functions = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
            " AND p.proowner <> %s::regrole",
            (role,),
        ).fetchall()
        for (signature,) in functions:
            conn.execute(sql.SQL("ALTER ROUTINE {} OWNER TO {}").format(sql.SQL(signature), sql.Identifier(role)))
        types = conn.execute(
            "SELECT t.typname FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd')"
            " AND t.typowner <> %s::regrole",
            (role,),
        ).fetchall()
        for (name,) in types:
            conn.execute(sql.SQL("ALTER TYPE public.{} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(role)))


def _wait_accepting(port: int, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(f"postgresql://{PG_USER}@{HOST}:{port}/postgres", connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    """`python -m opendrec_devstack.postgres DIR [PORT]`: run a server until Ctrl-C (for poking)."""
    import sys

    from .procs import serve_until_signalled

    logging.basicConfig(level=logging.INFO)
    port = int(sys.argv[2]) if len(sys.argv) > 2 else None
    serve_until_signalled(lambda: start_postgres(sys.argv[1], port), lambda pg: pg.url)


if __name__ == "__main__":
    main()
