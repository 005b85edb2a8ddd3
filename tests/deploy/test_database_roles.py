"""deploy/postgres/roles.sql on a real Postgres (issue 12, least privilege): each service's role migrates and uses its
own database as the compose and Kubernetes files configure it, and can neither connect to another service's database
nor create databases or roles."""

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from opendrec_kit import db

pytestmark = pytest.mark.asyncio(loop_scope="session")

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "deploy" / "postgres" / "roles.sql"
SERVICES = ["identity", "devices", "readings", "reservations", "certificates", "charger_gateway"]
READINGS_MIGRATIONS = REPO / "services" / "readings" / "src" / "opendrec_readings" / "migrations"


def as_role(server_url: str, role: str, password: str, database: str) -> str:
    parts = urlsplit(server_url)
    host = parts.hostname or ""
    netloc = f"{role}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}"))


@pytest.fixture(scope="module")
async def roles(postgres_url: str, tmp_path_factory: pytest.TempPathFactory):
    """roles.sql applied with psql as the operator would, its names prefixed for this test (the server is shared)."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is needed to apply deploy/postgres/roles.sql as the README says")
    prefix = f"lp{uuid.uuid4().hex[:8]}_"
    script = tmp_path_factory.mktemp("roles") / "roles.sql"
    script.write_text(ROLES.read_text().replace("opendrec_", prefix))
    passwords = {s: uuid.uuid4().hex for s in SERVICES}
    variables = [arg for s in SERVICES for arg in ("-v", f"{s}_password={passwords[s]}")]
    argv = [psql, postgres_url, "-v", "ON_ERROR_STOP=1", *variables, "-f", str(script)]
    await asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True)
    yield prefix, passwords
    admin = await asyncpg.connect(postgres_url)
    try:
        for s in SERVICES:
            await admin.execute(f'DROP DATABASE IF EXISTS "{prefix}{s}" WITH (FORCE)')
            await admin.execute(f'DROP ROLE IF EXISTS "{prefix}{s}"')
    finally:
        await admin.close()


async def test_a_service_role_migrates_and_uses_its_own_database(postgres_url, roles):
    prefix, passwords = roles
    url = as_role(postgres_url, f"{prefix}readings", passwords["readings"], f"{prefix}readings")
    # what the runtime does at start, with DATABASE_URL naming the service's own role and database
    database_url = await db.ensure_database(url, f"{prefix}readings")
    assert await db.migrate(database_url, READINGS_MIGRATIONS)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0  # the kit's tables, owned by the role
        assert await conn.fetchval("SELECT current_user") == f"{prefix}readings"
    finally:
        await conn.close()


async def test_a_service_role_cannot_reach_another_services_database(postgres_url, roles):
    prefix, passwords = roles
    stranger = as_role(postgres_url, f"{prefix}readings", passwords["readings"], f"{prefix}certificates")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(stranger)


async def test_a_service_role_cannot_create_databases_or_roles(postgres_url, roles):
    prefix, passwords = roles
    conn = await asyncpg.connect(as_role(postgres_url, f"{prefix}devices", passwords["devices"], f"{prefix}devices"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f'CREATE DATABASE "{prefix}devices_2"')
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f'CREATE ROLE "{prefix}intruder"')
        is_super = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert is_super is False
    finally:
        await conn.close()
