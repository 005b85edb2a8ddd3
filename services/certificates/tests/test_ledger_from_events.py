"""The ledger rebuilt from the events equals the live one (issue 14): issuance by the real engine and a transfer, a
retirement, a lock and its release by the registry's use cases; then the certificate.* events the service
published (in its outbox order) appended to the ledger of a fresh database give the very same chain, hash for hash.
Each event carries its entry's time (issued_at, recorded_at) and its entry body is the event itself."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_certificates.app import build
from opendrec_certificates.ledger import domain as ledger_domain
from opendrec_certificates.ledger import services as ledger
from opendrec_certificates.registry import services as registry
from opendrec_certificates.registry.settings import RegistrySettings
from opendrec_certificates.settings import Settings
from opendrec_contracts import (
    CertificateIssued,
    CertificateLocked,
    CertificateReleased,
    CertificateRetired,
    CertificateTransferred,
    Envelope,
    OrganizationRegistered,
    parse_event,
)
from opendrec_kit.auth import Principal
from opendrec_kit.organizations import Acting, remember_organization
from opendrec_kit.testing import settings_for_test, started

from .helpers import T0, H, ids, register, reservation
from .test_issuance import deliver, interval_reads
from .test_ledger_support import fresh_pool, uow

pytestmark = pytest.mark.asyncio(loop_scope="session")

KINDS = {
    CertificateIssued: "issuance",
    CertificateTransferred: "transfer",
    CertificateRetired: "retirement",
    CertificateLocked: "lock",
    CertificateReleased: "release",
}


def entry_of(event):
    """(kind, certificate id, body, recorded_at) of the ledger entry an event stands for."""
    if isinstance(event, CertificateIssued):
        return "issuance", event.certificate_id, event.model_dump(mode="json", exclude={"issued_at"}), event.issued_at
    return KINDS[type(event)], event.certificate_id, registry.ledger_body(event), event.recorded_at


@pytest.fixture(scope="module")
async def own_service(postgres_url, kafka_bootstrap):
    """A certificates service with a database of its own: its ledger holds only what this module does."""
    runtime = build(
        settings_for_test(
            Settings, postgres_url, kafka_bootstrap, certify_settle_s=1.0, wait_for_reservation_watermarks=False
        )
    )
    async with started(runtime) as client:
        yield runtime, client


async def test_the_ledger_rebuilt_from_the_published_events_is_the_live_one(own_service, postgres_url):
    runtime, _client = own_service
    dev, res = ids()
    buyer, receiver, owner = 960011, 960012, 960013
    await register(runtime, dev, owner)  # certified only once known here
    async with runtime.uow() as u:
        for org, kind in ((buyer, "Buyer"), (receiver, "Buyer")):
            event = OrganizationRegistered(organization_id=org, name=f"org {org}", organization_type=kind)
            await remember_organization(event, u)
    # Three past hours of reads: certificates issued at once (closed and settled long ago).
    assert await deliver(runtime, reservation(res, dev, buyer))
    assert await deliver(runtime, interval_reads(dev, owner, [(T0 + n * H, T0 + (n + 1) * H, 1500) for n in range(3)]))
    holding = await runtime.pool.fetchrow("SELECT id FROM holdings WHERE organization_id = $1 LIMIT 1", buyer)
    assert holding is not None, "no certificate was issued"

    settings = RegistrySettings()
    acting = Acting(
        Principal(
            user_id=1, organization_id=buyer, organization_type="Buyer", role="Buyer", email="",
            permissions={"CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RWU"},
        ),
        None,
    )  # fmt: skip
    now = datetime.now(UTC)
    steps = [
        (registry.transfer, "t1", registry.TransferRequest(holding["id"], receiver, 100)),
        (registry.retire, "r1", registry.RetirementRequest(holding["id"], 50, "Acme", "Scope 2", now - 30 * H, now, None)),
    ]  # fmt: skip
    for call, key, request in steps:
        status, answer = await call(runtime.uow(), acting, key, request, settings)
        assert status in (200, 201), answer
    status, lock = await registry.lock(runtime.uow(), acting, "l1", holding["id"], 20, "sale", settings)
    assert status in (200, 201), lock
    status, answer = await registry.release(runtime.uow(), acting, "l2", uuid.UUID(lock["id"]), "released", settings)
    assert status in (200, 201), answer

    async with runtime.uow().reading() as r:
        live = await r.conn.fetch("SELECT sequence, hash FROM ledger_entries ORDER BY sequence")
        published = await r.conn.fetch("SELECT envelope FROM outbox WHERE topic LIKE 'certificate.%' ORDER BY id")
    events = [parse_event(Envelope.model_validate_json(row["envelope"])) for row in published]
    assert {type(e) for e in events} == set(KINDS) and len(events) == len(live)

    pool = await fresh_pool(postgres_url)
    try:
        rebuilt = []
        for event in events:
            kind, certificate_id, body, recorded_at = entry_of(event)
            assert recorded_at is not None
            entry = await ledger.append(uow(pool), kind, certificate_id, body, recorded_at=recorded_at)
            rebuilt.append(ledger_domain.entry_document(entry))
    finally:
        await pool.close()
    assert [(e["sequence"], e["hash"]) for e in rebuilt] == [(r["sequence"], r["hash"]) for r in live]
    assert timedelta(0) <= datetime.now(UTC) - now  # (the clock of the rebuild played no part)
