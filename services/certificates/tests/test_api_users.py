"""API users read the certificate log for their own Buyer organizations (organizationId), as in the D-REC manual."""

import uuid

import pytest

from opendrec_kit.testing import announce_api_user_organizations, eventually, publish_events

from .helpers import PERMS, _equals, ids, reads, register, reservation, total_certified

pytestmark = pytest.mark.asyncio(loop_scope="session")
LOG = "/api/certificate-log/by-reservation-groupId"


@pytest.fixture(scope="module")
async def world(service, kafka_bootstrap):
    """API user A (buyer organizations a_buyer and a_buyer2, developer a_dev), API user B (b_buyer);
    a reservation of a_buyer with 3 hourly certificates."""
    runtime, client, issuer = service
    base = 820_000_000 + uuid.uuid4().int % 1_000_000 * 10
    a, b, orgs = await announce_api_user_organizations(
        kafka_bootstrap, runtime, base, ["a_buyer", "a_buyer2", "a_dev", "b_buyer"]
    )
    dev, res = ids()
    created = reservation(res, dev, orgs["a_buyer"])
    await register(runtime, dev, orgs["a_dev"])
    await publish_events(kafka_bootstrap, [created, reads(dev, orgs["a_dev"], [10_000, 20_000, 30_000])])
    await eventually(lambda: _equals(total_certified(client, issuer, res, orgs["a_buyer"]), 60_000))

    def api_user(who, own):
        return issuer.headers(
            role="ApiUser", organization_type="ApiUser", organization_id=own, permissions=PERMS, apiUserId=who
        )

    return {
        "client": client,
        "orgs": orgs,
        "res": res,
        "uid": str(created.reservation_uid),
        "runtime": runtime,
        "as_a": api_user(a, base + 5),
        "as_b": api_user(b, base + 6),
    }


async def test_an_api_user_reads_the_log_of_its_buyer_organizations_reservation(world):
    client, orgs = world["client"], world["orgs"]
    by_id = await client.get(
        LOG, params={"groupId": world["res"], "organizationId": orgs["a_buyer"]}, headers=world["as_a"]
    )
    assert by_id.status_code == 200, by_id.text
    assert sum(c["readvalue_watthour"] for c in by_id.json()) == 60_000 and by_id.headers["X-Total-Count"] == "3"
    assert [c["energyWh"] for c in by_id.json()] == [10_000, 20_000, 30_000]
    by_uid = await client.get(
        f"/api/certificate-log/issuer/certified/{world['uid']}",
        params={"organizationId": orgs["a_buyer"]},
        headers=world["as_a"],
    )
    assert by_uid.status_code == 200 and [c["energyWh"] for c in by_uid.json()["certificates"]] == [
        10_000,
        20_000,
        30_000,
    ]


async def test_an_api_user_must_name_its_buyer_organization(world):
    client, orgs = world["client"], world["orgs"]
    for path, params in (
        (LOG, {"groupId": world["res"]}),
        (f"/api/certificate-log/issuer/certified/{world['uid']}", {}),
    ):
        missing = await client.get(path, params=params, headers=world["as_a"])
        assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
        foreign = await client.get(path, params={**params, "organizationId": orgs["b_buyer"]}, headers=world["as_a"])
        assert foreign.status_code == 403 and "not one of your organizations" in foreign.json()["message"]
        developer = await client.get(path, params={**params, "organizationId": orgs["a_dev"]}, headers=world["as_a"])
        assert developer.status_code == 403 and "Developer organization" in developer.json()["message"]
        other_buyer = await client.get(
            path, params={**params, "organizationId": orgs["a_buyer2"]}, headers=world["as_a"]
        )
        assert other_buyer.status_code == 404  # its organization, but not this reservation's buyer
        b_own = await client.get(path, params={**params, "organizationId": orgs["b_buyer"]}, headers=world["as_b"])
        assert b_own.status_code == 404


async def test_the_log_is_paged_with_totals_and_bad_paging_is_refused(world):
    client, orgs = world["client"], world["orgs"]
    params = {"groupId": world["res"], "organizationId": orgs["a_buyer"], "limit": 2}
    first = await client.get(LOG, params=params, headers=world["as_a"])
    second = await client.get(LOG, params={**params, "pageNumber": 2}, headers=world["as_a"])
    assert [c["energyWh"] for c in first.json()] == [10_000, 20_000] and [c["energyWh"] for c in second.json()] == [
        30_000
    ]
    assert first.headers["X-Total-Count"] == second.headers["X-Total-Count"] == "3"  # over the whole log
    beyond = await client.get(LOG, params={**params, "pageNumber": 5}, headers=world["as_a"])
    assert beyond.json() == [] and beyond.headers["X-Total-Count"] == "3"
    # The same page by uid: an object with the totals over the whole log, not the page.
    by_uid = f"/api/certificate-log/issuer/certified/{world['uid']}"
    paged = (await client.get(by_uid, params={**params, "pageNumber": 2}, headers=world["as_a"])).json()
    assert [c["energyWh"] for c in paged["certificates"]] == [30_000] and paged["currentPage"] == 2
    assert [c["energyWh"] for c in paged["certificatelog"]] == [30_000]
    beyond = (await client.get(by_uid, params={**params, "pageNumber": 5}, headers=world["as_a"])).json()
    assert beyond["certificates"] == beyond["certificatelog"] == [] and beyond["currentPage"] == 5
    assert (beyond["totalCount"], beyond["totalItems"], beyond["totalEnergyWh"], beyond["totalPages"]) == (
        3,
        3,
        60_000,
        2,
    )  # over the whole log, not the page
    for bad in ({"pageNumber": 0}, {"pageNumber": "one"}, {"limit": 0}, {"limit": 1001}, {"organizationId": "x"}):
        r = await client.get(LOG, params={**params, **bad}, headers=world["as_a"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] in bad, (bad, r.text)


async def test_openapi_documents_the_certificate_log_access(world):
    op = world["runtime"].app.openapi()["paths"]["/api/certificate-log/by-reservation-groupId"]["get"]
    assert op["x-permissions"] == [{"module": "CERTIFICATE_LOG_MANAGEMENT_CRUDL", "action": "Read"}]
    assert "ApiUser" in op["x-roles"] and "Buyer" in op["x-roles"]
    assert {"groupId", "organizationId", "pageNumber", "limit"} <= {p["name"] for p in op["parameters"]}
