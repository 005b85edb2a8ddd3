"""A fresh certificates database for the ledger's tests (the service's migrations, no consumers): the chain in it
is the test's alone."""

import uuid
from pathlib import Path

import asyncpg

import opendrec_certificates
from opendrec_kit import UnitOfWork, db
from opendrec_kit.testing import CREATED_PREFIXES

MIGRATIONS = Path(opendrec_certificates.__file__).parent / "migrations"


async def fresh_pool(postgres_url: str) -> asyncpg.Pool:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    CREATED_PREFIXES.append((postgres_url, prefix))  # dropped at session end
    url = await db.ensure_database(postgres_url, f"{prefix}ledger")
    await db.migrate(url, MIGRATIONS)
    return await db.create_pool(url, max_size=4)


def uow(pool: asyncpg.Pool) -> UnitOfWork:
    return UnitOfWork(pool, "certificates")
