"""An organization's certificate log (D-REC API-user manual 8.1) and certified/new/{groupUid} (8.2):
a developer sees its devices' certificates, a buyer its reservations', never another organization's."""

import uuid

import pytest

from opendrec_kit.testing import announce_api_user_organizations, eventually, publish_events

from .helpers import PERMS, _equals, ids, reads, register, reservation, total_certified

pytestmark = pytest.mark.asyncio(loop_scope="session")
LOG = "/api/certificate-log/issuer/certifiedlogOfdevices"


@pytest.fixture(scope="module")
async def world(service, kafka_bootstrap):
    """API user A (a_buyer, a_dev), API user B (b_buyer, b_dev). Certificates:
    r1 of a_buyer on a_dev's device: 10, 20, 30 kWh; r2 of b_buyer on b_dev's device: 5; r3 of b_buyer on a_dev's device: 7."""
    runtime, client, issuer = service
    base = 830_000_000 + uuid.uuid4().int % 1_000_000 * 10
    a, b, orgs = await announce_api_user_organizations(
        kafka_bootstrap, runtime, base, ["a_buyer", "a_dev", "b_buyer", "b_dev"]
    )
    made = {}
    for name, buyer, owner, values in (
        ("r1", "a_buyer", "a_dev", [10_000, 20_000, 30_000]),
        ("r2", "b_buyer", "b_dev", [5000]),
        ("r3", "b_buyer", "a_dev", [7000]),
    ):
        dev, res = ids()
        created = reservation(res, dev, orgs[buyer])
        await register(runtime, dev, orgs[owner])
        await publish_events(kafka_bootstrap, [created, reads(dev, orgs[owner], values)])
        await eventually(
            lambda res=res, buyer=buyer, values=values: _equals(
                total_certified(client, issuer, res, orgs[buyer]), sum(values)
            )
        )
        made[name] = {"id": res, "uid": str(created.reservation_uid)}

    def api_user(who, own):
        return issuer.headers(
            role="ApiUser", organization_type="ApiUser", organization_id=own, permissions=PERMS, apiUserId=who
        )

    def member(org, kind):
        return issuer.headers(
            organization_id=orgs[org],
            organization_type=kind,
            role="OrganizationAdmin" if kind == "Developer" else "Buyer",
            permissions=PERMS,
        )

    return {
        "client": client,
        "orgs": orgs,
        "res": made,
        "as_a": api_user(a, base + 5),
        "as_b": api_user(b, base + 6),
        "a_dev": member("a_dev", "Developer"),
        "b_buyer": member("b_buyer", "Buyer"),
        "a_buyer": member("a_buyer", "Buyer"),
        "admin": issuer.headers(role="Admin", organization_type="Admin", organization_id=1, permissions=PERMS),
        "runtime": runtime,
    }


def energies(body):
    """The entries' energy in kWh."""
    return sorted(c["energyWh"] // 1000 for c in body["certificatelog"])


async def test_a_developer_sees_the_certificates_of_its_devices_in_every_reservation(world):
    r = await world["client"].get(LOG, params={"pageNumber": 1}, headers=world["a_dev"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert energies(body) == [7, 10, 20, 30] and body["totalCount"] == 4 and body["totalEnergyWh"] == 67_000
    assert body["view"] == "developer" and body["organizationId"] == world["orgs"]["a_dev"]
    assert {c["devicegroup_uid"] for c in body["certificatelog"]} == {
        world["res"]["r1"]["uid"],
        world["res"]["r3"]["uid"],
    }
    assert {c["ownerOrganizationId"] for c in body["certificatelog"]} == {world["orgs"]["a_dev"]}


async def test_a_buyer_sees_the_certificates_of_its_reservations_only(world):
    body = (await world["client"].get(LOG, headers=world["b_buyer"])).json()
    assert energies(body) == [5, 7] and body["totalEnergyWh"] == 12_000 and body["view"] == "buyer"
    other = await world["client"].get(
        LOG, params={"organizationId": world["orgs"]["a_buyer"]}, headers=world["b_buyer"]
    )
    assert other.status_code == 403


async def test_an_api_user_names_one_of_its_developer_or_buyer_organizations(world):
    client, orgs = world["client"], world["orgs"]
    dev = (await client.get(LOG, params={"organizationId": orgs["a_dev"]}, headers=world["as_a"])).json()
    assert energies(dev) == [7, 10, 20, 30] and dev["view"] == "developer"
    buy = (await client.get(LOG, params={"organizationId": orgs["a_buyer"]}, headers=world["as_a"])).json()
    assert energies(buy) == [10, 20, 30] and buy["view"] == "buyer"
    missing = await client.get(LOG, headers=world["as_a"])
    assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
    for org in ("b_dev", "b_buyer"):
        foreign = await client.get(LOG, params={"organizationId": orgs[org]}, headers=world["as_a"])
        assert foreign.status_code == 403 and "not one of your organizations" in foreign.json()["message"]
    b_dev = (await client.get(LOG, params={"organizationId": orgs["b_dev"]}, headers=world["as_b"])).json()
    assert energies(b_dev) == [5]


async def test_an_admin_sees_all_or_the_organization_it_names(world):
    client, orgs = world["client"], world["orgs"]
    everything = (await client.get(LOG, params={"limit": 1000}, headers=world["admin"])).json()
    assert everything["view"] == "all" and everything["totalCount"] >= 5
    named = (await client.get(LOG, params={"organizationId": orgs["b_dev"]}, headers=world["admin"])).json()
    assert energies(named) == [5] and named["view"] == "developer"
    own = await client.get(LOG, params={"organizationId": 1}, headers=world["admin"])
    assert own.status_code == 403 and "Developer or Buyer" in own.json()["message"]


async def test_the_organization_log_is_paged_with_totals_over_every_page(world):
    client = world["client"]
    first = (await client.get(LOG, params={"limit": 3}, headers=world["a_dev"])).json()
    second = (await client.get(LOG, params={"limit": 3, "pageNumber": 2}, headers=world["a_dev"])).json()
    assert len(first["certificatelog"]) == 3 and len(second["certificatelog"]) == 1
    assert sorted(c["energyWh"] // 1000 for c in first["certificatelog"] + second["certificatelog"]) == [7, 10, 20, 30]
    beyond = (await client.get(LOG, params={"limit": 3, "pageNumber": 9}, headers=world["a_dev"])).json()
    assert beyond["certificatelog"] == [] and (beyond["totalCount"], beyond["totalEnergyWh"], beyond["totalPages"]) == (
        4,
        67_000,
        2,
    )
    for bad in (
        {"pageNumber": 0},
        {"pageNumber": "x"},
        {"limit": 0},
        {"limit": 1001},
        {"organizationId": "x"},
        {"organizationId": 0},
    ):
        r = await client.get(LOG, params=bad, headers=world["a_dev"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] in bad, (bad, r.text)
    assert (await client.get(LOG)).status_code == 401


async def test_certified_new_by_uid_for_the_buyer_and_its_api_user(world):
    client, orgs, res = world["client"], world["orgs"], world["res"]
    path = f"/api/certificate-log/issuer/certified/new/{res['r1']['uid']}"
    mine = await client.get(path, params={"pageNumber": 1}, headers=world["as_a"])  # the manual names no organization
    assert mine.status_code == 200, mine.text
    assert [c["energyWh"] for c in mine.json()["certificates"]] == [10_000, 20_000, 30_000]
    assert mine.json()["totalEnergyWh"] == 60_000
    paged = (await client.get(path, params={"limit": 2, "pageNumber": 2}, headers=world["as_a"])).json()
    assert (
        [c["energyWh"] for c in paged["certificates"]] == [30_000]
        and paged["totalCount"] == 3
        and paged["totalPages"] == 2
    )
    assert (await client.get(path, headers=world["a_buyer"])).status_code == 200
    assert (await client.get(path, headers=world["as_b"])).status_code == 404  # another API user's reservation
    assert (await client.get(path, headers=world["b_buyer"])).status_code == 404
    named = await client.get(path, params={"organizationId": orgs["b_buyer"]}, headers=world["as_a"])
    assert named.status_code == 403
    r2 = f"/api/certificate-log/issuer/certified/new/{res['r2']['uid']}"
    assert (await client.get(r2, headers=world["as_a"])).status_code == 404
    assert (
        await client.get("/api/certificate-log/issuer/certified/new/not-a-uuid", headers=world["as_a"])
    ).status_code == 400


async def test_openapi_documents_the_new_paths(world):
    spec = world["runtime"].app.openapi()["paths"]
    for path in (LOG, "/api/certificate-log/issuer/certified/new/{groupUid}"):
        op = spec[path]["get"]
        assert op["x-permissions"] == [{"module": "CERTIFICATE_LOG_MANAGEMENT_CRUDL", "action": "Read"}]
        assert "ApiUser" in op["x-roles"]
