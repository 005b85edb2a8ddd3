"""The devices service in-process for each test module: its own databases, the real broker."""

import uuid

import pytest

from opendrec_devices.app import build
from opendrec_devices.settings import Settings
from opendrec_kit.testing import OwnerStandIn, TokenIssuer, settings_for_test, started


@pytest.fixture(scope="module")
def settings_overrides() -> dict:
    """A module overrides this to run the service with other settings."""
    return {}


@pytest.fixture(scope="module")
def identity_owner():
    """Stands in for identity, asked for an organization an API user or admin names that organization.registered
    has not brought yet (opendrec_kit.organizations): knows nothing (404: "does not exist") unless told."""
    owner = OwnerStandIn().start()
    yield owner
    owner.stop()


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap, settings_overrides, identity_owner):
    """(client, issuer): an HTTP client on the running service (client.runtime is the service) and a token issuer it trusts."""
    settings = {"identity_url": identity_owner.url, **settings_overrides}
    runtime = build(settings_for_test(Settings, postgres_url, kafka_bootstrap, **settings))
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        # Device ids apart from other modules': every module's service reads the shared reservation and
        # certificate topics from their start, so another module's reservation of its device 3 must not
        # hold this module's device 3.
        await runtime.pool.execute("SELECT setval('devices_id_seq', $1)", 10**10 + uuid.uuid4().int % 10**14)
        client.runtime = runtime
        yield client, issuer
