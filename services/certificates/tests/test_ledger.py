"""The ledger on the real Postgres: append chains entries, concurrent appends never fork the chain, a rolled back
append leaves no trace."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from opendrec_certificates.ledger import domain, services

from .test_ledger_support import fresh_pool, uow

pytestmark = pytest.mark.asyncio(loop_scope="session")

AT = datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pool(postgres_url):
    pool = await fresh_pool(postgres_url)
    yield pool
    await pool.close()


async def _chain(pool) -> list[domain.LedgerEntry]:
    from opendrec_certificates.ledger import store

    async with pool.acquire() as conn:
        return [store.row_entry(r) for r in await store.entries_after(conn, 0, 100_000)]


async def test_append_chains_entries_from_the_genesis(pool):
    certificate = uuid.uuid4()
    first = await services.append(uow(pool), "issuance", certificate, {"energy_wh": 5000}, recorded_at=AT)
    second = await services.append(uow(pool), "lock", certificate, {"purpose": "sale"}, recorded_at=AT)
    chain = await _chain(pool)
    assert chain[0].previous_hash == domain.GENESIS
    assert [e.sequence for e in chain] == list(range(1, len(chain) + 1))
    assert first in chain and second in chain
    assert second.previous_hash == first.hash and second.sequence == first.sequence + 1
    assert domain.first_break(chain) is None
    async with pool.acquire() as conn:
        head = await conn.fetchrow("SELECT sequence, hash FROM ledger_head")
    assert (head["sequence"], head["hash"]) == (chain[-1].sequence, chain[-1].hash)


async def test_an_append_rolled_back_with_its_caller_leaves_nothing(pool):
    before = await _chain(pool)
    unit = uow(pool)
    with pytest.raises(RuntimeError):
        async with unit:
            await services.append(unit, "issuance", uuid.uuid4(), {"energy_wh": 1}, recorded_at=AT)
            raise RuntimeError("the issuance failed after its ledger entry")
    assert await _chain(pool) == before


async def test_concurrent_appends_never_fork_the_chain(pool):
    certificate = uuid.uuid4()
    held = uow(pool)
    async with held:  # one transaction holds the head...
        mine = await services.append(held, "issuance", certificate, {"n": 0}, recorded_at=AT)
        others = [
            asyncio.create_task(services.append(uow(pool), "transfer", certificate, {"n": n}, recorded_at=AT))
            for n in range(1, 4)
        ]
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in others)  # ...the others wait for it
    appended = await asyncio.gather(*others)
    sequences = sorted(e.sequence for e in appended)
    assert sequences == [mine.sequence + 1, mine.sequence + 2, mine.sequence + 3]
    chain = await _chain(pool)
    assert domain.first_break(chain) is None
    assert len({e.previous_hash for e in chain}) == len(chain)


async def test_many_appends_at_once_make_one_chain(pool):
    certificate = uuid.uuid4()
    await asyncio.gather(
        *(services.append(uow(pool), "issuance", certificate, {"n": n}, recorded_at=AT) for n in range(20))
    )
    chain = await _chain(pool)
    assert domain.first_break(chain) is None
    assert sorted(e.body["n"] for e in chain if e.certificate_id == certificate) == list(range(20))
