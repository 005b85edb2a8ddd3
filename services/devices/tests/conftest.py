"""The devices service in-process for each test module: its own databases, the real broker."""

import uuid

import pytest

from opendrec_devices.app import build
from opendrec_devices.settings import Settings
from opendrec_kit.testing import TokenIssuer, settings_for_test, started


@pytest.fixture(scope="module")
def settings_overrides() -> dict:
    """A module overrides this to run the service with other settings."""
    return {}


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap, settings_overrides):
    """(client, issuer): an HTTP client on the running service (client.runtime is the service) and a token issuer it trusts."""
    runtime = build(settings_for_test(Settings, postgres_url, kafka_bootstrap, **settings_overrides))
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        # Device ids apart from other modules': every module's service reads the shared reservation and
        # certificate topics from their start, so another module's reservation of its device 3 must not
        # hold this module's device 3.
        await runtime.pool.execute("SELECT setval('devices_id_seq', $1)", 10**10 + uuid.uuid4().int % 10**14)
        client.runtime = runtime
        yield client, issuer
