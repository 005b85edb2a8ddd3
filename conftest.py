"""Repo-wide test setup. The Postgres/broker/platform fixtures come from libs/devstack's pytest plugin."""

import pytest_asyncio

from opendrec_kit.testing import drop_test_databases


@pytest_asyncio.fixture(scope="session", autouse=True, loop_scope="session")
async def _drop_test_databases(postgres_url):
    # Depends on postgres_url so the server outlives this teardown.
    yield
    await drop_test_databases()
