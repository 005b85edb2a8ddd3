"""The reservations service in-process for each test module: its own databases, the real broker."""

import pytest

from opendrec_kit.testing import OwnerStandIn, TokenIssuer, settings_for_test, started
from opendrec_reservations.app import build
from opendrec_reservations.settings import Settings


@pytest.fixture(scope="module")
def devices_owner():
    """Stands in for the devices service (asked for devices not heard of yet): knows nothing unless told."""
    owner = OwnerStandIn().start()
    yield owner
    owner.stop()


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap, devices_owner):
    """(runtime, client, issuer); the expiry sweep runs every 0.2 s."""
    settings = settings_for_test(
        Settings,
        postgres_url,
        kafka_bootstrap,
        expiry_sweep_interval_s=0.2,
        expiry_sweep_batch_size=50,
        devices_url=devices_owner.url,
    )
    runtime = build(settings)
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        yield runtime, client, issuer
