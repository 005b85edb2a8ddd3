"""The registry over HTTP (real Postgres, the service in-process): transfer, accept/reject/cancel, retirement,
locks, balances after every operation, idempotency, concurrency, every refusal, the REC inventory, the redemption
report, events and ledger entries."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from opendrec_certificates.registry import domain, services
from opendrec_certificates.registry.domain import IssuedCertificate
from opendrec_certificates.registry.settings import RegistrySettings, registry_settings
from opendrec_contracts import OrganizationRegistered
from opendrec_kit.auth import Principal
from opendrec_kit.organizations import Acting, remember_organization

pytestmark = pytest.mark.asyncio(loop_scope="session")

START = datetime(2021, 11, 6, tzinfo=UTC)
END = datetime(2021, 11, 10, tzinfo=UTC)
W = {"CERTIFICATE_LOG_MANAGEMENT_CRUDL": "RWU"}
R = {"CERTIFICATE_LOG_MANAGEMENT_CRUDL": "R"}
CLAIM = {
    "beneficiary": "Acme Ltd",
    "location": "Singapore",
    "purpose": "Scope 2",
    "reportingStart": "2021-01-01T00:00:00Z",
    "reportingEnd": "2022-01-01T00:00:00Z",
}


class World:
    def __init__(self, runtime, client, issuer):
        self.runtime, self.client, self.issuer = runtime, client, issuer
        base = 700_000_000 + uuid.uuid4().int % 10_000_000 * 10
        self.a, self.b, self.c = base + 1, base + 2, base + 3
        self.device = base + 4
        self.device_uuid = uuid.uuid4()  # from device.registered

    def as_(self, org, perms=W, role="Buyer", **kw):
        return self.issuer.headers(organization_id=org, organization_type="Buyer", role=role, permissions=perms, **kw)

    def post(self, path, org, json=None, key=None, **kw):
        headers = {**self.as_(org, **kw), "Idempotency-Key": key or uuid.uuid4().hex}
        return self.client.post(path, json=json, headers=headers)

    async def holding(self, org, path_id):
        r = await self.client.get("/api/certificate/holdings", headers=self.as_(org, R), params={"limit": 1000})
        assert r.status_code == 200, r.text
        return next((h for h in r.json()["holdings"] if h["id"] == str(path_id)), None)

    async def check_balances(self):
        """Every holding of the device: its columns equal what its ranges say, and the two formulas hold."""
        async with self.runtime.uow().reading() as u:
            rows = await u.conn.fetch("SELECT * FROM holdings WHERE device_id = $1", self.device)
            for row in rows:
                ranges = await services.store.ranges_of(u.conn, row["id"])
                held = domain.balances_of(ranges)
                b = services.store.holding_of(row).balances
                assert b == held, (row["id"], b, held)
                assert b.available == (
                    b.total - b.on_sale - b.on_retirement - b.retired - b.on_exporting - b.exported - b.on_auction
                )
                assert b.balance == b.available + b.on_sale + b.on_retirement + b.on_exporting + b.on_auction
                assert b.available >= 0
            transferring = await u.conn.fetchval(
                "SELECT coalesce(sum(energy_wh), 0) FROM registry_transfers WHERE device_id = $1 AND status = 'pending'",
                self.device,
            )
            total = sum(services.store.holding_of(row).balances.total for row in rows)
            issued = await u.conn.fetchval(
                "SELECT coalesce(sum(serial_end - serial_start + 1), 0) FROM serial_ranges WHERE device_id = $1",
                self.device,
            )
            assert total + transferring == issued  # no Wh made or lost


@pytest.fixture
async def world(service):
    runtime, client, issuer = service
    w = World(runtime, client, issuer)
    for org in (w.a, w.b, w.c):
        async with runtime.uow() as u:
            await remember_organization(
                OrganizationRegistered(organization_id=org, name=f"o{org}", organization_type="Buyer"), u
            )
    async with runtime.uow() as u:
        await u.conn.execute(
            """INSERT INTO devices (device_id, external_id, organization_id, country_code, device_uuid, fuel_code,
                                   fuel_name, project_name)
               VALUES ($1, $2, $3, 'SG', $4, 'ES100', 'Solar', 'Sentosa Fun Pass Singapore')""",
            w.device,
            f"SG-SOLAR-{w.device}",
            w.b,
            w.device_uuid,
        )
    return w


async def issue(w, org, energy_wh):
    [held] = await services.issue_holdings(
        w.runtime.uow(), IssuedCertificate(uuid.uuid4(), org, "SG", START, END, ((w.device, energy_wh),))
    )
    return held


async def test_a_pending_transfer_is_the_receivers_once_accepted_with_the_first_serials(world):
    w = world
    held = await issue(w, w.a, 1_000_000)
    r = await w.post(
        "/api/certificate/transfers", w.a, {"holdingId": str(held.id), "toOrganizationId": w.b, "energyWh": 250_000}
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["status"] == "pending" and t["ranges"] == [{"serialStart": 1, "serialEnd": 250_000, "energyWh": 250_000}]
    assert t["serialNumber"] == f"DREC-DEV{w.device:08d}-SG-2021-1106-1110-0.000001 to 0.250000"
    mine = await w.holding(w.a, held.id)
    assert (mine["totalWh"], mine["availableWh"], mine["balanceWh"]) == (750_000, 750_000, 750_000)
    await w.check_balances()
    r = await w.post(f"/api/certificate/transfers/{t['id']}/accept", w.b)
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    await w.check_balances()
    r = await w.client.get("/api/certificate/holdings", headers=w.as_(w.b, R), params={"limit": 1000})
    theirs = [h for h in r.json()["holdings"] if h["deviceId"] == w.device]
    assert [(h["totalWh"], h["tradingCount"], h["ranges"]) for h in theirs] == [
        (250_000, 1, [{"serialStart": 1, "serialEnd": 250_000, "state": "available"}])
    ]
    assert (await w.holding(w.a, held.id))["tradingCount"] == 1
    # accepted once: a second decision is a 409, whoever asks
    for decision, org in (("accept", w.b), ("reject", w.b), ("cancel", w.a)):
        r = await w.post(f"/api/certificate/transfers/{t['id']}/{decision}", org)
        assert r.status_code == 409, r.text


async def test_reject_and_cancel_give_the_energy_back_to_the_sender(world):
    w = world
    held = await issue(w, w.a, 100)
    for decision, org in (("reject", w.b), ("cancel", w.a)):
        r = await w.post(
            "/api/certificate/transfers", w.a, {"holdingId": str(held.id), "toOrganizationId": w.b, "energyWh": 40}
        )
        assert r.status_code == 201
        assert (await w.holding(w.a, held.id))["totalWh"] == 60
        r = await w.post(f"/api/certificate/transfers/{r.json()['id']}/{decision}", org)
        assert r.status_code == 200 and r.json()["status"] == DECISIONS[decision], r.text
        assert (await w.holding(w.a, held.id))["totalWh"] == 100
        await w.check_balances()
    r = await w.client.get("/api/certificate/transfers", headers=w.as_(w.a, R), params={"status": "cancelled"})
    assert r.json()["totalCount"] >= 1 and all(t["status"] == "cancelled" for t in r.json()["transfers"])


DECISIONS = {"accept": "accepted", "reject": "rejected", "cancel": "cancelled"}


async def test_only_the_receiver_decides_and_only_the_sender_cancels(world):
    w = world
    held = await issue(w, w.a, 100)
    t = (
        await w.post(
            "/api/certificate/transfers", w.a, {"holdingId": str(held.id), "toOrganizationId": w.b, "energyWh": 1}
        )
    ).json()
    assert (await w.post(f"/api/certificate/transfers/{t['id']}/accept", w.a)).status_code == 403
    assert (await w.post(f"/api/certificate/transfers/{t['id']}/reject", w.a)).status_code == 403
    assert (await w.post(f"/api/certificate/transfers/{t['id']}/cancel", w.b)).status_code == 403
    assert (await w.post(f"/api/certificate/transfers/{t['id']}/accept", w.c)).status_code == 404  # a stranger
    assert (await w.post(f"/api/certificate/transfers/{uuid.uuid4()}/accept", w.b)).status_code == 404


async def test_partial_operations_split_the_range_first_serials_first(world):
    w = world
    held = await issue(w, w.a, 1000)
    r = await w.post("/api/certificate/retirements", w.a, {"holdingId": str(held.id), "energyWh": 100, **CLAIM})
    assert r.status_code == 201, r.text
    assert r.json()["ranges"] == [{"serialStart": 1, "serialEnd": 100, "energyWh": 100}]
    r = await w.post("/api/certificate/locks", w.a, {"holdingId": str(held.id), "energyWh": 50, "purpose": "sale"})
    assert r.status_code == 201 and r.json()["ranges"][0] == {"serialStart": 101, "serialEnd": 150, "energyWh": 50}
    lock_id = r.json()["id"]
    for purpose, wh in (("export", 10), ("auction", 20)):
        assert (
            await w.post("/api/certificate/locks", w.a, {"holdingId": str(held.id), "energyWh": wh, "purpose": purpose})
        ).status_code == 201
    await w.check_balances()
    h = await w.holding(w.a, held.id)
    assert (h["totalWh"], h["retiredWh"], h["onSaleWh"], h["onExportingWh"], h["onAuctionWh"]) == (
        1000,
        100,
        50,
        10,
        20,
    )
    assert (h["availableWh"], h["balanceWh"]) == (820, 900)
    r = await w.post(f"/api/certificate/locks/{lock_id}/release", w.a, {"outcome": "released"})
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert (await w.post(f"/api/certificate/locks/{lock_id}/release", w.a)).status_code == 409
    h = await w.holding(w.a, held.id)
    assert (h["availableWh"], h["onSaleWh"]) == (870, 0)
    # the released serials 101..150 are available again: the next operation takes them first
    r = await w.post(
        "/api/certificate/transfers", w.a, {"holdingId": str(held.id), "toOrganizationId": w.b, "energyWh": 60}
    )
    assert r.json()["ranges"] == [
        {"serialStart": 101, "serialEnd": 150, "energyWh": 50},
        {"serialStart": 181, "serialEnd": 190, "energyWh": 10},
    ]
    await w.check_balances()


async def test_an_export_lock_released_as_exported_counts_in_exported(world):
    w = world
    held = await issue(w, w.a, 100)
    lock_id = (
        await w.post("/api/certificate/locks", w.a, {"holdingId": str(held.id), "energyWh": 30, "purpose": "export"})
    ).json()["id"]
    r = await w.post(f"/api/certificate/locks/{lock_id}/release", w.a, {"outcome": "exported"})
    assert r.status_code == 200 and r.json()["status"] == "exported"
    h = await w.holding(w.a, held.id)
    assert (h["totalWh"], h["exportedWh"], h["onExportingWh"], h["availableWh"], h["balanceWh"]) == (100, 30, 0, 70, 70)
    await w.check_balances()


async def test_more_than_available_is_a_409_and_changes_nothing(world):
    w = world
    held = await issue(w, w.a, 100)
    r = await w.post("/api/certificate/retirements", w.a, {"holdingId": str(held.id), "energyWh": 101, **CLAIM})
    assert r.status_code == 409 and "100 Wh available" in r.json()["message"]
    assert (await w.holding(w.a, held.id))["availableWh"] == 100


async def test_concurrent_transfers_of_one_holding_never_oversell(world):
    w = world
    held = await issue(w, w.a, 100)
    body = {"holdingId": str(held.id), "toOrganizationId": w.b, "energyWh": 60}
    answers = await asyncio.gather(*(w.post("/api/certificate/transfers", w.a, body) for _ in range(2)))
    assert sorted(r.status_code for r in answers) == [201, 409]
    assert (await w.holding(w.a, held.id))["totalWh"] == 40
    await w.check_balances()


async def test_concurrent_accepts_and_transfers_keep_the_balances(world):
    w = world
    held = await issue(w, w.a, 1000)
    body = {"holdingId": str(held.id), "toOrganizationId": w.b, "energyWh": 10}
    firsts = [(await w.post("/api/certificate/transfers", w.a, body)).json()["id"] for _ in range(5)]
    await asyncio.gather(
        *(w.post(f"/api/certificate/transfers/{t}/accept", w.b) for t in firsts),
        *(w.post("/api/certificate/transfers", w.a, body) for _ in range(5)),
        *(
            w.post("/api/certificate/retirements", w.a, {"holdingId": str(held.id), "energyWh": 7, **CLAIM})
            for _ in range(3)
        ),
    )
    await w.check_balances()
    assert (await w.holding(w.a, held.id))["totalWh"] == 1000 - 100


async def test_the_same_key_answers_the_same_and_another_body_is_a_409(world):
    w = world
    held = await issue(w, w.a, 100)
    body = {"holdingId": str(held.id), "energyWh": 10, "purpose": "auction"}
    first = await w.post("/api/certificate/locks", w.a, body, key="k1")
    again = await w.post("/api/certificate/locks", w.a, body, key="k1")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert (await w.holding(w.a, held.id))["onAuctionWh"] == 10  # once
    other = await w.post("/api/certificate/locks", w.a, {**body, "energyWh": 11}, key="k1")
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["message"]
    # concurrent requests under one key: one operation
    both = await asyncio.gather(*(w.post("/api/certificate/locks", w.a, body, key="k2") for _ in range(2)))
    assert [r.status_code for r in both] == [201, 201] and both[0].json() == both[1].json()
    assert (await w.holding(w.a, held.id))["onAuctionWh"] == 20
    # a refused request keeps nothing: the key works for a valid one afterwards
    assert (await w.post("/api/certificate/locks", w.a, {**body, "energyWh": 1000}, key="k3")).status_code == 409
    assert (await w.post("/api/certificate/locks", w.a, body, key="k3")).status_code == 201


async def test_refusals(world):
    w = world
    held = await issue(w, w.a, 100)
    hid = str(held.id)
    transfer = {"holdingId": hid, "toOrganizationId": w.b, "energyWh": 1}
    # no token, no permission, an admin (acts for no one), read-only holders
    assert (
        await w.client.post("/api/certificate/transfers", json=transfer, headers={"Idempotency-Key": "x"})
    ).status_code == 401
    assert (await w.post("/api/certificate/transfers", w.a, transfer, perms=R)).status_code == 403
    assert (await w.post("/api/certificate/transfers", w.a, transfer, role="Admin")).status_code == 403
    assert (
        await w.post("/api/certificate/locks", w.a, {"holdingId": hid, "energyWh": 1, "purpose": "sale"}, perms=R)
    ).status_code == 403
    assert (
        await w.post("/api/certificate/retirements", w.a, {"holdingId": hid, "energyWh": 1, **CLAIM}, perms=R)
    ).status_code == 403
    # another organization's holding: 404 (not disclosed); naming another organization: 403
    assert (await w.post("/api/certificate/transfers", w.b, {**transfer, "toOrganizationId": w.c})).status_code == 404
    r = await w.client.post(
        "/api/certificate/transfers",
        params={"organizationId": w.a},
        json=transfer,
        headers={**w.as_(w.b), "Idempotency-Key": "y"},
    )
    assert r.status_code == 403
    # an API user names one of its organizations
    r = await w.client.post(
        "/api/certificate/transfers",
        json=transfer,
        headers={**w.as_(w.a, role="ApiUser", apiUserId="nobody"), "Idempotency-Key": "z"},
    )
    assert r.status_code == 400
    # validation: to itself, unknown receiver, direct not allowed, no key, bad bodies
    assert (await w.post("/api/certificate/transfers", w.a, {**transfer, "toOrganizationId": w.a})).status_code == 400
    assert (await w.post("/api/certificate/transfers", w.a, {**transfer, "toOrganizationId": 2**40})).status_code == 404
    assert (await w.post("/api/certificate/transfers", w.a, {**transfer, "direct": True})).status_code == 400
    r = await w.client.post("/api/certificate/transfers", json=transfer, headers=w.as_(w.a))
    assert r.status_code == 400 and "Idempotency-Key" in r.text
    assert (await w.post("/api/certificate/transfers", w.a, {**transfer, "energyWh": 0})).status_code == 400
    assert (
        await w.post("/api/certificate/locks", w.a, {"holdingId": hid, "energyWh": 1, "purpose": "gift"})
    ).status_code == 400
    bad_period = {**CLAIM, "reportingEnd": CLAIM["reportingStart"]}
    assert (
        await w.post("/api/certificate/retirements", w.a, {"holdingId": hid, "energyWh": 1, **bad_period})
    ).status_code == 400
    assert (
        await w.post(
            "/api/certificate/retirements", w.a, {"holdingId": hid, "energyWh": 1, **CLAIM, "beneficiary": " "}
        )
    ).status_code == 400
    assert (await w.post(f"/api/certificate/locks/{uuid.uuid4()}/release", w.a)).status_code == 404
    lock_id = (
        await w.post("/api/certificate/locks", w.a, {"holdingId": hid, "energyWh": 1, "purpose": "sale"})
    ).json()["id"]
    assert (await w.post(f"/api/certificate/locks/{lock_id}/release", w.b)).status_code == 404
    assert (await w.post(f"/api/certificate/locks/{lock_id}/release", w.a, {"outcome": "sold"})).status_code == 400
    # reading: no token 401, another organization's holdings are not listed
    assert (await w.client.get("/api/certificate/holdings")).status_code == 401
    assert await w.holding(w.b, held.id) is None


async def test_direct_transfers_where_the_setting_allows_them(world):
    w = world
    w.runtime.app.dependency_overrides[registry_settings] = lambda: RegistrySettings(registry_direct_transfers=True)
    try:
        held = await issue(w, w.a, 100)
        r = await w.post(
            "/api/certificate/transfers",
            w.a,
            {"holdingId": str(held.id), "toOrganizationId": w.c, "energyWh": 100, "direct": True},
        )
        assert r.status_code == 201 and r.json()["status"] == "direct"
    finally:
        w.runtime.app.dependency_overrides.pop(registry_settings)
    assert (await w.holding(w.a, held.id)) is None  # nothing left: not listed
    r = await w.client.get("/api/certificate/holdings", headers=w.as_(w.c, R), params={"limit": 1000})
    assert [h["totalWh"] for h in r.json()["holdings"] if h["certificateId"] == str(held.certificate_id)] == [100]
    await w.check_balances()


async def test_every_operation_is_an_event_and_a_ledger_entry(world):
    """The use cases directly, to see the events each unit of work committed (the outbox is drained at once)."""
    w = world
    held = await issue(w, w.a, 100)
    settings = RegistrySettings()

    def acting(org):
        user = Principal(
            user_id=1, organization_id=org, organization_type="Buyer", role="Buyer", email="", permissions=W
        )
        return Acting(user, None)

    async def run(call, *args):
        uow = w.runtime.uow()
        status, answer = await call(uow, *args)
        assert status in (200, 201), answer
        return answer, [type(e).__name__ for e in uow.committed], uow.committed

    t, events, [sent] = await run(
        services.transfer, acting(w.a), "e1", services.TransferRequest(held.id, w.b, 5), settings
    )
    assert events == ["CertificateTransferred"]
    assert (sent.status, sent.serial_start, sent.serial_end, sent.organization_id, sent.to_organization_id) == (
        "pending",
        1,
        5,
        w.a,
        w.b,
    )
    _, events, [sent] = await run(services.decide_transfer, acting(w.b), "e2", uuid.UUID(t["id"]), "accept", settings)
    assert events == ["CertificateTransferred"] and sent.status == "accepted" and sent.organization_id == w.b
    claim = services.RetirementRequest(held.id, 5, "Acme", "Scope 2", START, END, None)
    _, events, [sent] = await run(services.retire, acting(w.a), "e3", claim, settings)
    assert events == ["CertificateRetired"] and (sent.serial_start, sent.beneficiary) == (6, "Acme")
    lock, events, _ = await run(services.lock, acting(w.a), "e4", held.id, 5, "sale", settings)
    assert events == ["CertificateLocked"]
    _, events, [sent] = await run(services.release, acting(w.a), "e5", uuid.UUID(lock["id"]), "released", settings)
    assert events == ["CertificateReleased"] and sent.outcome == "released"
    async with w.runtime.uow().reading() as u:
        entries = await u.conn.fetch(
            "SELECT kind, body FROM ledger_entries WHERE certificate_id = $1 ORDER BY sequence", held.certificate_id
        )
    assert [e["kind"] for e in entries] == ["transfer", "transfer", "retirement", "lock", "release"]


async def test_the_inventory_answers_the_seeds_shape_field_for_field(world):
    w = world
    held = await issue(w, w.a, 1_000_000)
    await w.post("/api/certificate/retirements", w.a, {"holdingId": str(held.id), "energyWh": 250_000, **CLAIM})
    r = await w.client.get(
        "/public/v2/inventories/recs",
        params=[
            ("CurrentPage", 1),
            ("ItemsPerPage", 1),
            ("Registries", "DREC"),
            ("Registries", "TIGR"),
            ("DeviceIds", str(w.device_uuid)),
        ],
        headers=w.as_(w.a, R),
    )
    assert r.status_code == 200, r.text
    page = r.json()
    assert list(page) == ["Data", "Meta", "Errors", "StatusCode", "Message"]
    assert page["Meta"] == {"CurrentPage": 1, "TotalPage": 1, "ItemsPerPage": 1, "TotalItems": 1}
    assert (page["Errors"], page["StatusCode"], page["Message"]) == (None, 200, "Success")
    [item] = page["Data"]
    assert list(item) == [
        "Id",
        "DeviceId",
        "DeviceName",
        "DeviceUniqueId",
        "RegistryId",
        "SerialNumber",
        "Total",
        "Balance",
        "Available",
        "OnSale",
        "OnRetirement",
        "OnExporting",
        "OnAuction",
        "Retired",
        "Exported",
        "VintageFrom",
        "VintageTo",
        "CountryCode",
        "FuelType",
        "EnergyValue",
        "VintageYear",
        "TradingCount",
        "RecItemType",
        "Registry",
    ]
    assert item == {
        **item,
        "Id": str(held.id),
        "DeviceId": str(w.device_uuid),
        "DeviceName": "Sentosa Fun Pass Singapore",
        "DeviceUniqueId": f"SG-SOLAR-{w.device}",
        "RegistryId": f"DEV{w.device:08d}",
        "SerialNumber": f"DREC-DEV{w.device:08d}-SG-2021-1106-1110-0.000001 to 1.000000",
        "Total": 1,
        "Balance": 0.75,
        "Available": 0.75,
        "OnSale": 0,
        "Retired": 0.25,
        "VintageFrom": "2021-11-06T00:00:00",
        "VintageTo": "2021-11-10T00:00:00",
        "CountryCode": "SG",
        "FuelType": "Solar",
        "EnergyValue": "Solar",
        "VintageYear": 2021,
        "TradingCount": 0,
        "RecItemType": "Issued",
        "Registry": {"Value": "DREC", "Description": "D-REC"},
    }
    assert '"Balance":0.75' in r.text.replace(" ", "")
    # another registry, another device: nothing; past the last page: the seed's 404
    for params in ({"Registries": "IREC"}, {"DeviceIds": str(uuid.uuid4())}):
        r = await w.client.get("/public/v2/inventories/recs", params=params, headers=w.as_(w.a, R))
        assert r.status_code == 200 and r.json()["Data"] == [] and r.json()["Meta"]["TotalItems"] == 0
    r = await w.client.get("/public/v2/inventories/recs", params={"CurrentPage": 99}, headers=w.as_(w.a, R))
    assert (r.status_code, r.json()) == (
        404,
        {"Data": None, "Errors": None, "Meta": None, "StatusCode": 404, "Message": "Not found"},
    )


async def test_the_inventory_of_a_device_registered_before_its_uuid_and_fuel_were_kept(world):
    """A device known only by what device.registered carried before (owner, external id, country): DeviceId and
    FuelType null, its holdings still listed; a DeviceIds filter matches devices by their uuid only."""
    w = world
    await issue(w, w.a, 1_000_000)
    await w.runtime.pool.execute(
        "UPDATE devices SET device_uuid = NULL, fuel_code = NULL, fuel_name = NULL, project_name = NULL"
        " WHERE device_id = $1",
        w.device,
    )
    r = await w.client.get("/public/v2/inventories/recs", headers=w.as_(w.a, R))
    [item] = r.json()["Data"]
    assert (item["DeviceId"], item["FuelType"], item["DeviceName"]) == (None, None, f"SG-SOLAR-{w.device}")
    r = await w.client.get(
        "/public/v2/inventories/recs", params={"DeviceIds": str(w.device_uuid)}, headers=w.as_(w.a, R)
    )
    assert r.status_code == 200 and r.json()["Data"] == []


async def test_the_inventory_refuses_in_the_seeds_envelopes(world):
    w = world
    r = await w.client.get("/public/v2/inventories/recs")
    assert (r.status_code, r.json()) == (
        401,
        {"Data": None, "Errors": None, "Meta": None, "StatusCode": 401, "Message": "Unauthorized"},
    )
    r = await w.client.get("/public/v2/inventories/recs", headers=w.as_(w.a, {}))
    assert (r.status_code, r.json()) == (
        403,
        {"Data": None, "Errors": None, "Meta": None, "StatusCode": 403, "Message": "Forbidden"},
    )
    r = await w.client.get("/public/v2/inventories/recs", params={"DeviceIds": "nope"}, headers=w.as_(w.a, R))
    assert r.status_code == 400 and r.json()["StatusCode"] == 400 and r.json()["Errors"]


async def test_the_redemption_report_lists_the_organizations_claims(world):
    w = world
    held = await issue(w, w.a, 2_000_000)
    await w.post("/api/certificate/retirements", w.a, {"holdingId": str(held.id), "energyWh": 1_500_000, **CLAIM})
    r = await w.client.get("/api/certificate-log/redemption-report", headers=w.as_(w.a, R))
    assert r.status_code == 200
    mine = [e for e in r.json() if e["certificateId"] == str(held.certificate_id)]
    assert len(mine) == 1
    e = mine[0]
    assert {
        k: e[k]
        for k in (
            "compliance",
            "country",
            "certifiedEnergy",
            "beneficiary",
            "beneficiary_address",
            "claimCoiuntryCode",
            "purpose",
            "redemptionDate",
        )
    } == {
        "compliance": "D-REC",
        "country": ["SG"],
        "certifiedEnergy": 1.5,
        "beneficiary": "Acme Ltd",
        "beneficiary_address": "Singapore",
        "claimCoiuntryCode": "SG",
        "purpose": "Scope 2",
        "redemptionDate": "2021-01-01T00:00:00.000Z",
    }
    assert e["retirement"]["serialNumber"].endswith("-0.000001 to 1.500000")
    r = await w.client.get("/api/certificate-log/redemption-report", headers=w.as_(w.b, R))
    assert all(x["certificateId"] != str(held.certificate_id) for x in r.json())
    assert (await w.client.get("/api/certificate-log/redemption-report")).status_code == 401
    assert (await w.client.get("/api/certificate-log/redemption-report", headers=w.as_(w.a, {}))).status_code == 403
