"""Least privilege in `make run` (issue 12): on the embedded Postgres each service signs in with a role of its own,
with rights on its own database only; the gateway and the console get no database at all."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
import pytest

from opendrec_devstack.postgres import service_databases, start_postgres, stop_postgres
from opendrec_devstack.services import SERVICES
from opendrec_devstack.stack import Infra, service_env
from opendrec_kit import db

DATABASES = {"devices": "opendrec_devices", "readings": "opendrec_readings"}


@pytest.fixture(scope="module")
def server():
    # not under pytest's basetemp, which pytest keeps at mode 0700 (postgres runs as another user)
    base = tempfile.mkdtemp(prefix="opendrec-pg-roles-")
    path = Path(base) / "data"
    pg = start_postgres(path)
    try:
        yield pg
    finally:
        stop_postgres(path)
        shutil.rmtree(base, ignore_errors=True)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))


async def test_each_service_reaches_its_own_database_only(server):
    # a database from before roles (services signed in as the administrator): its tables become the role's
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE opendrec_devices")
    with psycopg.connect(server.url_for("opendrec_devices"), autocommit=True) as admin:
        admin.execute("CREATE TABLE earlier (id serial PRIMARY KEY, note text)")

    urls = service_databases(server.url, DATABASES)
    assert set(urls) == set(DATABASES) and urlsplit(urls["devices"]).username == "opendrec_devices"

    # the service as the kit starts it: its database is found, migrated and used, the earlier table included
    own = await db.ensure_database(urls["devices"], "opendrec_devices")
    assert await db.migrate(own, None)
    pool = await db.create_pool(own, 1, 2)
    try:
        await pool.execute("INSERT INTO earlier (note) VALUES ('still mine')")
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute("CREATE DATABASE opendrec_stolen")
    finally:
        await pool.close()

    # another service's database: refused, whatever the service tries
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(db.with_database(urls["devices"], "opendrec_readings"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(db.with_database(urls["readings"], "opendrec_devices"))
    # and its role is nothing without its password
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_without_password(own))


async def test_a_second_start_renews_the_passwords(server):
    first = service_databases(server.url, DATABASES)
    second = service_databases(server.url, DATABASES)
    conn = await asyncpg.connect(db.with_database(second["readings"], "opendrec_readings"))
    await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(db.with_database(first["readings"], "opendrec_readings"))


def test_each_service_process_gets_its_own_database_url_and_the_gateway_none(tmp_path):
    infra = Infra(
        "postgresql://postgres@127.0.0.1:5555/postgres",
        "127.0.0.1:9092",
        "smtp://127.0.0.1:8025",
        "http://127.0.0.1:8110",
        "tok",
        None,
        {"devices": "postgresql://opendrec_devices:pw@127.0.0.1:5555/postgres"},
    )
    ports = {s.name: s.port for s in SERVICES}
    env = {
        spec.name: service_env(
            spec,
            base={"DATABASE_URL": "postgresql://postgres@elsewhere/postgres"},
            ports=ports,
            services=SERVICES,
            infra=infra,
            state_dir=tmp_path,
            environment="dev",
        )
        for spec in SERVICES
    }
    assert env["devices"]["DATABASE_URL"] == "postgresql://opendrec_devices:pw@127.0.0.1:5555/postgres"
    assert env["readings"]["DATABASE_URL"] == infra.database_url  # no role of its own: the server as given
    assert "DATABASE_URL" not in env["gateway"] and "DATABASE_URL" not in env["console"]
