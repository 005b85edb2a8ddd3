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
