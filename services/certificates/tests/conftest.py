"""The certificates service in-process, one for all its test modules (every test uses its own ids): its own databases, the real broker."""

import pytest

from opendrec_certificates.app import build
from opendrec_certificates.settings import Settings
from opendrec_kit.testing import OwnerStandIn, TokenIssuer, settings_for_test, started


@pytest.fixture(scope="package")
def reservations_owner():
    """Stands in for the reservations service, asked on a missing reservation (read-your-writes): 404 unless a
    test says what it knows (`reservations_owner.knows(path, [(event, since)])`)."""
    owner = OwnerStandIn().start()
    yield owner
    owner.stop()


@pytest.fixture(scope="package")
async def service(postgres_url, kafka_bootstrap, reservations_owner):
    """(runtime, client, issuer)."""
    # Energy of the last second waits for it to pass (the tests' reads are older, but for the settling ones).
    runtime = build(
        settings_for_test(
            Settings,
            postgres_url,
            kafka_bootstrap,
            certify_settle_s=1.0,
            certify_sweep_interval_s=0.1,
            reservations_url=reservations_owner.url,
            wait_for_reservation_watermarks=False,  # no reservations service here to publish them
        )
    )
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        yield runtime, client, issuer
