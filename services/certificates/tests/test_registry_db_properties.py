"""Balances against the real database (Hypothesis): random sequences of the registry's operations (transfers
decided or not, direct transfers, retirements, locks released or exported, refused ones included) on the holdings
of issued certificates, through the use cases the routes call. After every operation, every holding satisfies
Available = Total - OnSale - OnRetirement - Retired - OnExporting - Exported - OnAuction and
Balance = Available + OnSale + OnRetirement + OnExporting + OnAuction, its columns equal what its serial ranges
say, and no Wh is made or lost."""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opendrec_certificates.registry import domain, services, store
from opendrec_certificates.registry.domain import IssuedCertificate
from opendrec_certificates.registry.settings import RegistrySettings
from opendrec_contracts import OrganizationRegistered
from opendrec_kit.auth import Principal
from opendrec_kit.errors import ApiError
from opendrec_kit.organizations import Acting, remember_organization
from opendrec_kit.uow import UnitOfWork

from .helpers import database_examples, migrated_database

START, END = datetime(2021, 11, 6, tzinfo=UTC), datetime(2021, 11, 10, tzinfo=UTC)
DIRECT = RegistrySettings(registry_direct_transfers=True)


@pytest.fixture(scope="module")
def database(postgres_url):
    return migrated_database(postgres_url, "registry_props")


operation = st.one_of(
    st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 1200), st.booleans()),
    st.tuples(st.sampled_from(["accept", "reject", "cancel"]), st.integers(0, 20)),
    st.tuples(st.just("retire"), st.integers(0, 2), st.integers(1, 1200)),
    st.tuples(st.just("lock"), st.integers(0, 2), st.integers(1, 1200), st.sampled_from(["sale", "export", "auction"])),
    st.tuples(st.just("release"), st.integers(0, 20), st.sampled_from(["released", "exported"])),
)


async def scenario(url: str, issued: list[int], operations: list[tuple]) -> None:
    base = 600_000_000 + uuid.uuid4().int % 10_000_000 * 10
    orgs, device = [base + 1, base + 2, base + 3], base + 4
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)

    def uow() -> UnitOfWork:
        return UnitOfWork(pool, "certificates")

    def acting(org: int) -> Acting:
        principal = Principal(org, org, "Buyer", "Buyer", f"{org}@x", {"CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RWU"})
        return Acting(principal, org)

    try:
        for org in orgs:
            async with uow() as u:
                await remember_organization(
                    OrganizationRegistered(organization_id=org, name=f"o{org}", organization_type="Buyer"), u
                )
        for energy_wh in issued:
            await services.issue_holdings(
                uow(), IssuedCertificate(uuid.uuid4(), orgs[0], "SG", START, END, ((device, energy_wh),))
            )
        transfers: list[tuple[uuid.UUID, int, int]] = []  # id, sender, receiver
        locks: list[tuple[uuid.UUID, int]] = []
        for op in operations:
            try:
                await apply(pool, uow, acting, orgs, device, op, transfers, locks)
            except ApiError as refused:
                assert refused.status in (400, 403, 404, 409), refused  # refused: nothing kept
            await check(pool, device, sum(issued))
    finally:
        await pool.close()


async def apply(pool, uow, acting, orgs, device, op, transfers, locks) -> None:
    async def holding_of(org: int, wh: int) -> uuid.UUID | None:
        """The organization's first holding of the device with energy (None: it holds none)."""
        return await pool.fetchval(
            """SELECT id FROM holdings WHERE device_id = $1 AND organization_id = $2 AND total_wh > 0
               ORDER BY created_at, id LIMIT 1""",
            device,
            org,
        )

    key = uuid.uuid4().hex
    kind = op[0]
    if kind == "transfer":
        _, frm, to, wh, direct = op
        held = await holding_of(orgs[frm], wh)
        if held is None:
            return
        request = services.TransferRequest(held, orgs[to], wh, direct)
        _status, body = await services.transfer(uow(), acting(orgs[frm]), key, request, DIRECT)
        transfers.append((uuid.UUID(body["id"]), orgs[frm], orgs[to]))
    elif kind in ("accept", "reject", "cancel"):
        if not transfers:
            return
        transfer_id, sender, receiver = transfers[op[1] % len(transfers)]
        who = sender if kind == "cancel" else receiver
        await services.decide_transfer(uow(), acting(who), key, transfer_id, kind, DIRECT)
    elif kind == "retire":
        _, org, wh = op
        held = await holding_of(orgs[org], wh)
        if held is None:
            return
        request = services.RetirementRequest(held, wh, "Acme", "Scope 2", START, END, "Singapore")
        await services.retire(uow(), acting(orgs[org]), key, request, DIRECT)
    elif kind == "lock":
        _, org, wh, purpose = op
        held = await holding_of(orgs[org], wh)
        if held is None:
            return
        _status, body = await services.lock(uow(), acting(orgs[org]), key, held, wh, purpose, DIRECT)
        locks.append((uuid.UUID(body["id"]), orgs[org]))
    elif kind == "release":
        if not locks:
            return
        lock_id, org = locks[op[1] % len(locks)]
        await services.release(uow(), acting(org), key, lock_id, op[2], DIRECT)


async def check(pool: asyncpg.Pool, device: int, issued_wh: int) -> None:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch("SELECT * FROM holdings WHERE device_id = $1", device)
        for row in rows:
            b = store.holding_of(row).balances
            assert b == domain.balances_of(await store.ranges_of(conn, row["id"])), row["id"]
            assert b.available == (
                b.total - b.on_sale - b.on_retirement - b.retired - b.on_exporting - b.exported - b.on_auction
            )
            assert b.balance == b.available + b.on_sale + b.on_retirement + b.on_exporting + b.on_auction
            assert min(b.available, b.on_sale, b.retired, b.on_exporting, b.exported, b.on_auction) >= 0
        transferring = await conn.fetchval(
            "SELECT coalesce(sum(energy_wh), 0) FROM registry_transfers WHERE device_id = $1 AND status = 'pending'",
            device,
        )
        total = sum(store.holding_of(row).balances.total for row in rows)
        assert total + transferring == issued_wh  # no Wh made or lost


@database_examples(25)
@given(issued=st.lists(st.integers(1, 3000), min_size=1, max_size=3), operations=st.lists(operation, max_size=12))
def test_balances_hold_after_any_sequence_of_operations(database, issued, operations):
    asyncio.run(scenario(database, issued, operations))
