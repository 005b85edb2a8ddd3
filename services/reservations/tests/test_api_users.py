"""API users act for their own Buyer organizations (D-REC API-user manual, section 7); admins for any."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_kit.testing import announce_api_user_organizations

from .helpers import PERMS, buyer, devices, payload, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def world(service, kafka_bootstrap):
    """Two API users: A with two buyer organizations and a developer one, B with one buyer organization;
    A's two reservations and B's one."""
    runtime, client, issuer = service
    base = 800_000_000 + uuid.uuid4().int % 1_000_000 * 10
    a, b, orgs = await announce_api_user_organizations(
        kafka_bootstrap, runtime, base, ["a_buyer", "a_buyer2", "a_dev", "b_buyer"]
    )
    as_a = issuer.headers(
        role="ApiUser", organization_type="ApiUser", organization_id=base + 5, permissions=PERMS, apiUserId=a
    )
    as_b = issuer.headers(
        role="ApiUser", organization_type="ApiUser", organization_id=base + 6, permissions=PERMS, apiUserId=b
    )
    admin = issuer.headers(role="Admin", organization_type="Admin", organization_id=1)
    ids = await devices(runtime, kafka_bootstrap, n=3)
    now = datetime.now(UTC)
    window = {"start": now, "end": now + timedelta(days=30)}
    r1 = await reserve(client, as_a, ids[:1], path=f"/api/buyer-reservation?orgId={orgs['a_buyer']}", **window)
    r2 = await reserve(client, as_a, ids[1:2], organizationId=orgs["a_buyer2"], **window)
    r3 = await reserve(client, as_b, ids[2:], path=f"/api/buyer-reservation?orgId={orgs['b_buyer']}", **window)
    return {
        "client": client,
        "a": a,
        "b": b,
        "orgs": orgs,
        "as_a": as_a,
        "as_b": as_b,
        "admin": admin,
        "r1": r1,
        "r2": r2,
        "r3": r3,
        "devices": ids,
        "issuer": issuer,
        "runtime": runtime,
    }


def ids_of(page):
    return sorted(g["id"] for g in page["deviceGroups"])


async def a_buyers_reservation(world, kafka_bootstrap) -> dict:
    """API user A reserves one new device for its buyer organization, from now for three days."""
    [device] = await devices(world["runtime"], kafka_bootstrap, n=1)
    now = datetime.now(UTC)
    return await reserve(
        world["client"],
        world["as_a"],
        [device],
        organizationId=world["orgs"]["a_buyer"],
        start=now,
        end=now + timedelta(days=3),
    )


async def test_an_api_user_reserves_for_its_buyer_organization(world):
    assert world["r1"]["organizationId"] == world["orgs"]["a_buyer"]
    assert world["r2"]["organizationId"] == world["orgs"]["a_buyer2"]  # organizationId in the body of /api/device-group
    assert world["r3"]["organizationId"] == world["orgs"]["b_buyer"]


async def test_an_api_user_must_name_one_of_its_buyer_organizations_to_reserve(world, kafka_bootstrap):
    client, orgs = world["client"], world["orgs"]
    [device] = await devices(world["runtime"], kafka_bootstrap, n=1)
    body = payload([device])
    missing = await client.post("/api/buyer-reservation", json=body, headers=world["as_a"])
    assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
    foreign = await client.post(f"/api/buyer-reservation?orgId={orgs['b_buyer']}", json=body, headers=world["as_a"])
    assert foreign.status_code == 403 and "not one of your organizations" in foreign.json()["message"]
    developer = await client.post(f"/api/buyer-reservation?orgId={orgs['a_dev']}", json=body, headers=world["as_a"])
    assert developer.status_code == 403 and "Developer organization" in developer.json()["message"]
    via_body = await client.post(
        "/api/device-group", json={**body, "organizationId": orgs["a_dev"]}, headers=world["as_a"]
    )
    assert via_body.status_code == 403
    clash = await client.post(
        f"/api/buyer-reservation?orgId={orgs['a_buyer']}",
        json={**body, "organizationId": orgs["a_buyer2"]},
        headers=world["as_a"],
    )
    assert clash.status_code == 400 and "different organizations" in clash.json()["message"]
    bad = await client.post("/api/buyer-reservation?orgId=abc", json=body, headers=world["as_a"])
    assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "orgId"
    # Nothing was reserved by the refused calls: the device is still free.
    ok = await client.post(f"/api/buyer-reservation?orgId={orgs['a_buyer']}", json=body, headers=world["as_a"])
    assert ok.status_code == 201 and ok.json()["deviceIds"] == [device]


async def test_an_api_user_lists_the_reservations_of_its_buyer_organizations(world):
    client, orgs, r1, r2 = world["client"], world["orgs"], world["r1"], world["r2"]
    listed = await client.get("/api/buyer-reservation", params={"pageNumber": 1, "limit": 100}, headers=world["as_a"])
    assert listed.status_code == 200, listed.text
    mine = ids_of(listed.json())
    assert {r1["id"], r2["id"]} <= set(mine) and world["r3"]["id"] not in mine
    filtered = (
        await client.get("/api/buyer-reservation", params={"organizationId": orgs["a_buyer2"]}, headers=world["as_a"])
    ).json()
    assert ids_of(filtered) == [r2["id"]] and filtered["totalCount"] == 1 and filtered["totalPages"] == 1
    itself = await client.get(
        "/api/buyer-reservation",
        params={"apiuserId": world["a"], "organizationId": orgs["a_buyer2"]},
        headers=world["as_a"],
    )
    assert itself.status_code == 200 and ids_of(itself.json()) == [r2["id"]]


async def test_pages_of_reservations_carry_totals(world):
    client, orgs = world["client"], world["orgs"]
    params = {"organizationId": orgs["a_buyer2"]}
    first = (await client.get("/api/buyer-reservation", params={**params, "limit": 1}, headers=world["as_a"])).json()
    assert first["currentPage"] == 1 and first["totalCount"] == 1 and len(first["deviceGroups"]) == 1
    beyond = (
        await client.get(
            "/api/buyer-reservation", params={**params, "limit": 1, "pageNumber": 5}, headers=world["as_a"]
        )
    ).json()
    assert beyond["deviceGroups"] == [] and beyond["totalCount"] == 1 and beyond["currentPage"] == 5
    everything = (await client.get("/api/buyer-reservation", params={"limit": 1}, headers=world["as_a"])).json()
    assert everything["totalCount"] >= 2 and everything["totalPages"] == everything["totalCount"]
    second = (
        await client.get("/api/buyer-reservation", params={"limit": 1, "pageNumber": 2}, headers=world["as_a"])
    ).json()
    assert ids_of(second) != ids_of(everything)
    for bad in (
        {"pageNumber": 0},
        {"pageNumber": "x"},
        {"limit": 0},
        {"limit": 101},
        {"organizationId": "x"},
        {"apiuserId": "nope"},
    ):
        r = await client.get("/api/buyer-reservation", params=bad, headers=world["as_a"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] in bad, (bad, r.text)
    disagree = await client.get(
        "/api/device-group/my", params={"pageNumber": 1, "pagenumber": 2}, headers=world["as_a"]
    )
    assert disagree.status_code == 400 and "disagree" in disagree.json()["message"]


async def test_an_api_user_cannot_list_another_api_users_or_developer_organizations(world):
    client, orgs = world["client"], world["orgs"]
    foreign = await client.get(
        "/api/buyer-reservation", params={"organizationId": orgs["b_buyer"]}, headers=world["as_a"]
    )
    assert foreign.status_code == 403 and "not one of your organizations" in foreign.json()["message"]
    developer = await client.get(
        "/api/buyer-reservation", params={"organizationId": orgs["a_dev"]}, headers=world["as_a"]
    )
    assert developer.status_code == 403 and "Developer organization" in developer.json()["message"]
    other_user = await client.get("/api/buyer-reservation", params={"apiuserId": world["b"]}, headers=world["as_a"])
    assert other_user.status_code == 403 and "only an admin" in other_user.json()["message"]
    a_buyer = buyer(world["issuer"], org=orgs["a_buyer"])  # a plain buyer user may not list by API user either
    assert (
        await client.get("/api/buyer-reservation", params={"apiuserId": world["a"]}, headers=a_buyer)
    ).status_code == 403


async def test_an_admin_lists_by_api_user(world):
    client, orgs = world["client"], world["orgs"]
    of_a = (await client.get("/api/buyer-reservation", params={"apiuserId": world["a"]}, headers=world["admin"])).json()
    assert {world["r1"]["id"], world["r2"]["id"]} <= set(ids_of(of_a)) and world["r3"]["id"] not in ids_of(of_a)
    of_b = (await client.get("/api/buyer-reservation", params={"apiuserId": world["b"]}, headers=world["admin"])).json()
    assert ids_of(of_b) == [world["r3"]["id"]]
    narrowed = await client.get(
        "/api/buyer-reservation",
        params={"apiuserId": world["a"], "organizationId": orgs["a_buyer"]},
        headers=world["admin"],
    )
    assert world["r2"]["id"] not in ids_of(narrowed.json())
    everyone = (await client.get("/api/buyer-reservation", params={"limit": 100}, headers=world["admin"])).json()
    assert {world["r1"]["id"], world["r2"]["id"], world["r3"]["id"]} <= set(ids_of(everyone))


async def test_one_reservation_for_an_api_user(world):
    client, orgs, r1 = world["client"], world["orgs"], world["r1"]
    path = f"/api/buyer-reservation/{r1['id']}"
    ok = await client.get(path, params={"organizationId": orgs["a_buyer"]}, headers=world["as_a"])
    assert (
        ok.status_code == 200
        and ok.json()["devicegroup_uid"] == r1["devicegroup_uid"]
        and ok.json()["state"] == "active"
    )
    missing = await client.get(path, headers=world["as_a"])
    assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
    foreign = await client.get(path, params={"organizationId": orgs["b_buyer"]}, headers=world["as_a"])
    assert foreign.status_code == 403
    developer = await client.get(path, params={"organizationId": orgs["a_dev"]}, headers=world["as_a"])
    assert developer.status_code == 403 and "Developer organization" in developer.json()["message"]
    wrong_org = await client.get(path, params={"organizationId": orgs["a_buyer2"]}, headers=world["as_a"])
    assert wrong_org.status_code == 404
    others = await client.get(path, params={"organizationId": orgs["b_buyer"]}, headers=world["as_b"])
    assert others.status_code == 404  # B's own organization, but not B's reservation
    assert (await client.get(path, headers=world["admin"])).status_code == 200


async def test_an_api_user_is_told_the_state_of_its_organizations_reservations_only(world):
    """GET /internal/reservations/{uid} (read-your-writes for other services): no organization to name there."""
    client, r1, r3 = world["client"], world["r1"], world["r3"]
    mine = await client.get(f"/internal/reservations/{r1['devicegroup_uid']}", headers=world["as_a"])
    assert mine.status_code == 200 and [e["type"] for e in mine.json()["events"]] == ["reservation.created"]
    assert mine.json()["events"][0]["payload"]["buyer_organization_id"] == world["orgs"]["a_buyer"]
    assert (await client.get(f"/internal/reservations/by-id/{r1['id']}", headers=world["as_b"])).status_code == 404
    assert (
        await client.get(f"/internal/reservations/{r3['devicegroup_uid']}", headers=world["as_a"])
    ).status_code == 404


async def test_device_group_paths_keep_working_for_buyers_and_api_users(world):
    client, orgs, r1 = world["client"], world["orgs"], world["r1"]
    owner = buyer(world["issuer"], org=orgs["a_buyer"])
    mine = (await client.get("/api/device-group/my", headers=owner)).json()
    assert r1["id"] in ids_of(mine) and world["r2"]["id"] not in ids_of(mine) and world["r3"]["id"] not in ids_of(mine)
    assert mine["totalCount"] == len(mine["deviceGroups"])
    assert (await client.get(f"/api/device-group/{r1['id']}", headers=owner)).status_code == 200
    api_mine = (await client.get("/api/device-group/my", params={"limit": 100}, headers=world["as_a"])).json()
    assert {r1["id"], world["r2"]["id"]} <= set(ids_of(api_mine)) and world["r3"]["id"] not in ids_of(api_mine)
    assert (await client.get(f"/api/device-group/{r1['id']}", headers=world["as_a"])).status_code == 200
    assert (await client.get(f"/api/device-group/{r1['id']}", headers=world["as_b"])).status_code == 404


async def test_an_api_user_ends_a_reservation_of_its_buyer_organization(world, kafka_bootstrap):
    client, orgs = world["client"], world["orgs"]
    res = await a_buyers_reservation(world, kafka_bootstrap)
    path = f"/api/device-group/{res['id']}/end"
    assert (await client.post(path, headers=world["as_a"])).status_code == 400
    assert (
        await client.post(path, params={"organizationId": orgs["b_buyer"]}, headers=world["as_b"])
    ).status_code == 404
    assert (
        await client.post(path, params={"organizationId": orgs["a_buyer"]}, headers=world["as_b"])
    ).status_code == 403
    ended = await client.post(path, params={"organizationId": orgs["a_buyer"]}, headers=world["as_a"])
    assert ended.status_code == 200 and ended.json()["endReason"] == "ended_by_buyer"


async def test_openapi_documents_access_of_the_api_user_paths(world):
    spec = world["runtime"].app.openapi()["paths"]
    for path, method in (("/api/buyer-reservation", "get"), ("/api/buyer-reservation/{reservation_id}", "get")):
        op = spec[path][method]
        assert op["x-permissions"] == [{"module": "BUYER_RESERVATION_MANAGEMENT_CRUDL", "action": "Read"}]
        assert "ApiUser" in op["x-roles"] and "DeviceOwner" not in op["x-roles"]
    names = {p["name"] for p in spec["/api/buyer-reservation"]["get"]["parameters"]}
    assert {"apiuserId", "organizationId", "pageNumber", "limit"} <= names


async def test_an_admin_reserves_for_a_buyer_organization_it_names(world, kafka_bootstrap):
    client, orgs, admin = world["client"], world["orgs"], world["admin"]
    [device] = await devices(world["runtime"], kafka_bootstrap, n=1)
    body = payload([device])
    for path, json in (
        ("/api/device-group", body),
        ("/api/buyer-reservation", body),
        ("/api/device-group", {**body, "organizationId": 1}),
    ):
        r = await client.post(path, json=json, headers=admin)
        assert r.status_code == 400 and "Buyer organization" in r.json()["message"], (path, r.text)
    developer = await client.post(f"/api/buyer-reservation?orgId={orgs['a_dev']}", json=body, headers=admin)
    assert developer.status_code == 403 and "Developer organization" in developer.json()["message"]
    made = await client.post(f"/api/buyer-reservation?orgId={orgs['a_buyer']}", json=body, headers=admin)
    assert (
        made.status_code == 201
        and made.json()["organizationId"] == orgs["a_buyer"]
        and made.json()["deviceIds"] == [device]
    )


async def test_an_api_user_changes_and_ends_a_reservation_of_its_buyer_organization(world, kafka_bootstrap):
    client, orgs = world["client"], world["orgs"]
    res = await a_buyers_reservation(world, kafka_bootstrap)
    for method, path, json in (
        ("PATCH", f"/api/buyer-reservation/{res['id']}", {"name": "renamed by A"}),
        ("DELETE", f"/api/buyer-reservation/endreservation/{res['id']}", {}),
    ):
        missing = await client.request(method, path, json=json, headers=world["as_a"])
        assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
        foreign = await client.request(
            method, path, json=json, params={"organizationId": orgs["a_buyer"]}, headers=world["as_b"]
        )
        assert foreign.status_code == 403
        others = await client.request(
            method, path, json=json, params={"organizationId": orgs["b_buyer"]}, headers=world["as_b"]
        )
        assert others.status_code == 404
        done = await client.request(
            method, path, json=json, params={"organizationId": orgs["a_buyer"]}, headers=world["as_a"]
        )
        assert done.status_code == 200, done.text
    shown = await client.get(
        f"/api/buyer-reservation/{res['id']}", params={"organizationId": orgs["a_buyer"]}, headers=world["as_a"]
    )
    assert shown.json()["name"] == "renamed by A" and shown.json()["state"] == "ended"
