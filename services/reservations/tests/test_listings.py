"""Listings in D-REC's shape (groupedData, pageNumber) and with D-REC's filters (UnreservedDeviceGroupsFilterDTO)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import eventually, publish_events

from .helpers import T0, buyer, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = timedelta(days=1)
LISTINGS = ("/api/buyer-reservation/my", "/api/device-group/my", "/api/buyer-reservation", "/api/device-group")


@pytest.fixture(scope="module")
async def groups(service, kafka_bootstrap):
    """Three reservations of one buyer organization: Alpha (IND solar, from T0 for 30 days), Beta (KEN wind,
    from T0 + 40 days for 10) and Gamma (IND wind, a past window: ended)."""
    runtime, client, issuer = service
    org = 740_000 + uuid.uuid4().int % 1000
    base = uuid.uuid4().int % 10**9
    kinds = {base: ("IND", "ES100"), base + 1: ("KEN", "ES200"), base + 2: ("IND", "ES200")}
    await publish_events(
        kafka_bootstrap,
        [
            device_registered(d, organization_id=500, capacity_kw=100, country_code=c, fuel_code=f)
            for d, (c, f) in kinds.items()
        ],
    )

    async def known():
        return await runtime.pool.fetchval(
            "SELECT count(*) FROM devices WHERE device_id = ANY($1::bigint[])", list(kinds)
        ) == len(kinds)

    await eventually(known)
    headers = buyer(issuer, org=org)
    now = datetime.now(UTC)
    made = {
        "alpha": await reserve(client, headers, [base], name="Alpha 100%_solar", start=T0, end=T0 + 30 * DAY),
        "beta": await reserve(client, headers, [base + 1], name="Beta wind", start=T0 + 40 * DAY, end=T0 + 50 * DAY),
        "gamma": await reserve(client, headers, [base + 2], name="Gamma", start=now - 3 * DAY, end=now - 2 * DAY),
    }
    return client, headers, {k: v["id"] for k, v in made.items()}


def names(answer, ids):
    by_id = {v: k for k, v in ids.items()}
    return sorted(by_id[g["id"]] for g in answer["groupedData"])


async def test_listings_answer_grouped_data_and_page_number_as_d_rec(groups):
    client, headers, _ = groups
    for path in LISTINGS:
        r = await client.get(path, params={"pagenumber": 1, "limit": 2}, headers=headers)
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        assert body["groupedData"] == body["deviceGroups"] and len(body["groupedData"]) == 2
        assert body["pageNumber"] == body["currentPage"] == 1
        assert body["totalCount"] == 3 and body["totalPages"] == 2
        for item in body["groupedData"]:
            assert {"id", "name", "devicegroup_uid", "deviceIds", "reservationStartDate"} <= item.keys()
            assert len(item["deviceIds"]) == 1


@pytest.mark.parametrize("path", LISTINGS)
async def test_filters_each_narrow_the_listing_and_combine(groups, path):
    client, headers, ids = groups
    cases = [
        ({}, ["alpha", "beta", "gamma"]),
        ({"country": "IND"}, ["alpha", "gamma"]),
        ({"country": "ken"}, ["beta"]),
        ({"country": "IND,KEN"}, []),  # a group's countries include every one named
        ({"fuelCode": "ES200"}, ["beta", "gamma"]),
        ({"fuelCode": ["ES100", "ES200"]}, []),
        ({"name": "ALPHA"}, ["alpha"]),
        ({"name": "100%_s"}, ["alpha"]),
        ({"name": "%"}, ["alpha"]),  # taken literally: only Alpha's name has one
        ({"name": "a_"}, []),
        ({"start_date": (T0 - DAY).isoformat(), "end_date": (T0 + 31 * DAY).isoformat()}, ["alpha"]),
        ({"start_date": T0.date().isoformat(), "end_date": (T0 + 60 * DAY).date().isoformat()}, ["alpha", "beta"]),
        ({"reservationActive": "Active"}, ["alpha", "beta"]),
        ({"reservationActive": "deactive"}, ["gamma"]),
        ({"reservationActive": "All"}, ["alpha", "beta", "gamma"]),
        ({"country": "IND", "reservationActive": "Active"}, ["alpha"]),
        ({"fuelCode": "ES200", "name": "beta"}, ["beta"]),
    ]
    for params, expected in cases:
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code == 200, (params, r.text)
        assert names(r.json(), ids) == expected, params
        assert r.json()["totalCount"] == len(expected), params


@pytest.mark.parametrize("path", LISTINGS)
async def test_bad_filters_are_refused_each_named(groups, path):
    client, headers, _ = groups
    later = (T0 + DAY).isoformat()
    cases = [
        ({"country": "INDIA"}, "country"),
        ({"country": "IN1"}, "country"),
        ({"fuelCode": "solar"}, "fuelCode"),
        ({"fuelCode": ",".join(f"ES{n:03}" for n in range(51))}, "fuelCode"),
        ({"reservationActive": "maybe"}, "reservationActive"),
        ({"name": "x" * 201}, "name"),
        ({"start_date": "yesterday", "end_date": later}, "start_date"),
        ({"start_date": T0.isoformat()}, "end_date"),
        ({"end_date": later}, "start_date"),
        ({"start_date": later, "end_date": T0.isoformat()}, "end_date"),
        ({"start_date": later, "end_date": later}, "end_date"),
        ({"offTaker": "School"}, "offTaker"),
        ({"sdgbenefit": "SDG 7"}, "sdgbenefit"),
    ]
    for params, field in cases:
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code == 400, (params, r.text)
        assert field in [d["field"] for d in r.json()["details"]], (params, r.text)
    both = await client.get(path, params={"offTaker": "School", "start_date": later}, headers=headers)
    assert both.status_code == 400 and {"offTaker", "end_date"} <= {d["field"] for d in both.json()["details"]}


async def test_filters_do_not_widen_what_a_caller_may_list(groups, service):
    client, _, ids = groups
    _, _, issuer = service
    other = await client.get("/api/buyer-reservation/my", params={"country": "IND"}, headers=buyer(issuer, org=741))
    assert other.status_code == 200 and not {g["id"] for g in other.json()["groupedData"]} & set(ids.values())
    assert (await client.get("/api/buyer-reservation/my", params={"country": "IND"})).status_code == 401


def developer(issuer, org: int) -> dict:
    return issuer.headers(
        organization_id=org,
        organization_type="Developer",
        role="OrganizationAdmin",
        permissions={"DEVICE_MANAGEMENT_CRUDL": "RWUD"},
    )


async def test_a_developer_sees_the_reservations_holding_its_devices_and_only_its_own_devices_in_them(
    service, kafka_bootstrap
):
    """Issue 17: a developer learns which reservations hold its devices before any certificate exists."""
    runtime, client, issuer = service
    mine, theirs = (760_000 + uuid.uuid4().int % 1000 for _ in range(2))
    base = uuid.uuid4().int % 10**9
    owners = {base: mine, base + 1: mine, base + 2: theirs}
    await publish_events(kafka_bootstrap, [device_registered(d, organization_id=o) for d, o in owners.items()])

    async def known():
        count = await runtime.pool.fetchval(
            "SELECT count(*) FROM devices WHERE device_id = ANY($1::bigint[])", list(owners)
        )
        return count == len(owners)

    await eventually(known)
    buying = buyer(issuer, org=761_000 + uuid.uuid4().int % 1000)
    now = datetime.now(UTC)
    shared = await reserve(client, buying, [base, base + 2], name="Shared", start=now - DAY, end=now + 30 * DAY)
    alone = await reserve(client, buying, [base + 1], name="Alone", start=now - DAY, end=now + 30 * DAY)
    assert (await client.post(f"/api/device-group/{alone['id']}/end", headers=buying)).status_code == 200

    path = "/api/device-group/of-my-devices"
    r = await client.get(path, headers=developer(issuer, mine))
    assert r.status_code == 200, r.text
    held = r.json()
    assert (held["organizationId"], held["totalCount"]) == (mine, 2)
    assert [(g["id"], g["deviceIds"], g["state"]) for g in held["reservations"]] == [
        (alone["id"], [base + 1], "ended"),
        (shared["id"], [base], "active"),  # the other organization's device in it is not shown
    ]
    assert held["reservations"][1]["reservationEndDate"] == shared["reservationEndDate"]
    page = await client.get(path, params={"limit": 1, "pageNumber": 2}, headers=developer(issuer, mine))
    assert [g["id"] for g in page.json()["reservations"]] == [shared["id"]] and page.json()["totalPages"] == 2
    other = (await client.get(path, headers=developer(issuer, theirs))).json()
    assert [(g["id"], g["deviceIds"]) for g in other["reservations"]] == [(shared["id"], [base + 2])]

    # A buyer organization owns no devices: none held; another developer's are not for asking.
    as_buyer = await client.get(path, headers=buyer(issuer, org=762_000, permissions={"DEVICE_MANAGEMENT_CRUDL": "R"}))
    assert as_buyer.status_code == 200 and as_buyer.json()["reservations"] == [] and as_buyer.json()["totalCount"] == 0
    naming = await client.get(path, params={"organizationId": theirs}, headers=developer(issuer, mine))
    assert naming.status_code == 403
    assert (await client.get(path, headers=buying)).status_code == 403  # no device permission
