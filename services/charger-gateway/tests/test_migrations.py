"""Migrations over data made by earlier versions of the service (real Postgres)."""

import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from opendrec_charger_gateway import app
from opendrec_kit import db

pytestmark = pytest.mark.asyncio(loop_scope="session")

MIGRATIONS = Path(app.__file__).parent / "migrations"


async def test_links_made_before_ownership_was_proven_become_unverified_and_new_ones_are_verified(
    postgres_url, tmp_path
):
    # The database as the service left it before 0007, with a Kazam link and an OCPP charge point.
    before = tmp_path / "migrations"
    before.mkdir()
    for script in sorted(MIGRATIONS.glob("*.sql")):
        if script.name < "0007":
            shutil.copy(script, before)
    name = f"charger_gateway_migrations_{uuid.uuid4().hex[:8]}"
    url = await db.ensure_database(postgres_url, name)
    try:
        await db.migrate(url, before)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO devices (device_id, external_id, organization_id, onboarded_at, state_at) "
                "VALUES (1, 'EV-1', 10, now(), now())"
            )
            await conn.execute(
                "INSERT INTO charger_links (charger_id, device_id, organization_id, poll_cursor, kind) "
                "VALUES ('old-kazam', 1, 10, 0, 'kazam'), ('old-ocpp', 1, 10, 0, 'ocpp')"
            )
            assert "0007-ownership-and-breakers" in await db.migrate(url, MIGRATIONS)
            rows = await conn.fetch("SELECT charger_id, ownership FROM charger_links ORDER BY charger_id")
            assert [tuple(r) for r in rows] == [("old-kazam", "unverified"), ("old-ocpp", "verified")]
            # A link made from now on proved ownership when it was made.
            await conn.execute(
                "INSERT INTO charger_links (charger_id, device_id, organization_id, poll_cursor) VALUES ('new', 1, 10, 0)"
            )
            assert await conn.fetchval("SELECT ownership FROM charger_links WHERE charger_id = 'new'") == "verified"
        finally:
            await conn.close()
    finally:
        server = await asyncpg.connect(postgres_url)
        try:
            await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await server.close()
