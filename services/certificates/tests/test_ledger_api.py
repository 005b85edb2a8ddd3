"""The ledger over HTTP on the running service: the export is public and canonical, pages follow each other, the
proof of a certificate; each validation error; and the ledger rebuilt from its entries in a fresh database through
`append` is the same chain (recorded_at comes from the entry, not the clock)."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_certificates.ledger import domain, services, verify

from .helpers import PERMS
from .test_ledger_support import fresh_pool, uow

pytestmark = pytest.mark.asyncio(loop_scope="session")

T = datetime(2025, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)
READS = [(11, T - timedelta(hours=1), T, 1500), (12, T - timedelta(hours=1), T, 2500)]


async def issue(runtime, certificate_id, energy_wh=4000):
    """What the issuance use case appends for a certificate (its fields, parts and reads_hash)."""
    body = {
        "energy_wh": energy_wh,
        "period_start": T - timedelta(hours=1),
        "period_end": T,
        "parts": [[11, 1500], [12, 2500]],
        "reads_hash": domain.reads_hash(READS),
    }
    return await services.append(runtime.uow(), "issuance", certificate_id, body, recorded_at=T)


async def full_export(client, limit=1000):
    pages, after = [], 0
    while True:
        resp = await client.get("/api/certificate/ledger", params={"after": after, "limit": limit})
        assert resp.status_code == 200, resp.text
        pages.append(resp.content)
        page = json.loads(resp.content)
        if page["until"] >= page["head"]["sequence"]:
            return pages
        after = page["until"]


async def test_the_export_is_public_canonical_and_verifies(service):
    runtime, client, issuer = service
    certificate = uuid.uuid4()
    entry = await issue(runtime, certificate)
    resp = await client.get("/api/certificate/ledger")  # no token
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert resp.content == domain.canonical(json.loads(resp.content))
    page = json.loads(resp.content)
    assert page["format"] == "opendrec-ledger/1" and page["after"] == 0
    assert domain.entry_document(entry) in page["entries"]
    assert page["until"] == len(page["entries"]) and page["head"]["sequence"] >= entry.sequence
    assert verify.check([verify.load(p) for p in await full_export(client)])["from_genesis"]
    signed_in = await client.get("/api/certificate/ledger", headers=issuer.headers(permissions=PERMS))
    assert signed_in.status_code == 200


async def test_pages_of_the_export_verify_together(service):
    runtime, client, _ = service
    for _ in range(3):
        await issue(runtime, uuid.uuid4())
    pages = await full_export(client, limit=2)
    assert len(pages) >= 2
    result = verify.check([verify.load(p) for p in pages])
    assert result["from_genesis"] and result["reached_head"]
    head = json.loads(pages[-1])["head"]
    tail = await client.get("/api/certificate/ledger", params={"after": head["sequence"]})
    assert json.loads(tail.content)["entries"] == []


@pytest.mark.parametrize(
    "params",
    [{"after": -1}, {"after": "x"}, {"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"after": 2**63}],
)
async def test_a_bad_page_is_a_400(service, params):
    _, client, _ = service
    resp = await client.get("/api/certificate/ledger", params=params)
    assert resp.status_code == 400
    assert resp.json()["details"][0]["field"] in params


async def test_after_beyond_the_head_is_a_400(service):
    _, client, _ = service
    resp = await client.get("/api/certificate/ledger", params={"after": 2**62})
    assert resp.status_code == 400 and "beyond the chain's head" in resp.json()["message"]


async def test_the_proof_of_a_certificate(service):
    runtime, client, _ = service
    certificate = uuid.uuid4()
    issued = await issue(runtime, certificate)
    locked = await services.append(runtime.uow(), "lock", certificate, {"purpose": "sale", "energy_wh": 1000})
    resp = await client.get(f"/api/certificate/ledger/proof/{certificate}")  # no token
    assert resp.status_code == 200, resp.text
    proof = resp.json()
    assert proof["certificate_id"] == str(certificate)
    assert proof["entries"] == [domain.entry_document(issued), domain.entry_document(locked)]
    assert proof["reads_hash"] == domain.reads_hash(READS)
    for entry in proof["entries"]:
        assert verify.entry_hash(entry) == entry["hash"]
    assert proof["head"]["sequence"] >= locked.sequence
    assert f"after={issued.sequence - 1}" in proof["how_to_verify"]["chain"]
    # the chain from the certificate's first entry to the head verifies, anchored there
    first = await client.get("/api/certificate/ledger", params={"after": issued.sequence - 1})
    assert verify.check([verify.load(first.content)])["first"] == issued.sequence


async def test_the_proof_of_an_unknown_certificate_is_a_404(service):
    _, client, _ = service
    resp = await client.get(f"/api/certificate/ledger/proof/{uuid.uuid4()}")
    assert resp.status_code == 404 and "No ledger entry" in resp.json()["message"]


async def test_the_proof_of_a_malformed_id_is_a_400(service):
    _, client, _ = service
    resp = await client.get("/api/certificate/ledger/proof/not-a-uuid")
    assert resp.status_code == 400 and resp.json()["details"][0]["field"] == "certificateId"


async def test_the_ledger_rebuilt_from_its_entries_is_the_same_chain(service, postgres_url):
    """Every entry's facts (kind, certificate, body, recorded_at) appended in order in a fresh database give the
    same hashes: nothing in a hash comes from the database or the clock of the rebuild."""
    runtime, client, _ = service
    await issue(runtime, uuid.uuid4())
    await services.append(runtime.uow(), "transfer", uuid.uuid4(), {"to_organization_id": 7, "energy_wh": 3})
    pages = [json.loads(p) for p in await full_export(client)]
    live = [e for p in pages for e in p["entries"]]
    pool = await fresh_pool(postgres_url)
    try:
        rebuilt = [
            domain.entry_document(
                await services.append(
                    uow(pool),
                    e["kind"],
                    uuid.UUID(e["certificate_id"]),
                    e["body"],
                    recorded_at=domain.parse_instant(e["recorded_at"]),
                )
            )
            for e in live
        ]
    finally:
        await pool.close()
    assert rebuilt == live
