"""Listings: filters of /api/device/my, the admin listing, and devices free for a reservation."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_kit.testing import eventually, publish_events

from .test_api import dev, fields, new_org, payload
from .test_changes import ended, reservation

pytestmark = pytest.mark.asyncio(loop_scope="session")


# (countryCode, fuelCode, deviceTypeCode, offTaker, capacity, commissioningDate)
FLEET = [
    ("IN", "ES100", "TC120", "School", 10, "2020-01-15T00:00:00Z"),
    ("IND", "ES100", "TC110", "Residential", 50, "2021-06-30T12:00:00Z"),
    ("KE", "ES200", "TC120", "School", 100, "2021-06-30T23:30:00Z"),
    ("KEN", "ES300", "TC130", "Commercial", 250.5, "2022-03-01T00:00:00Z"),
    ("NG", "ES100", "TC120", "Health Facility", 5, "2023-07-07T07:07:07Z"),
]


@pytest.fixture(scope="module")
async def fleet(service):
    client, issuer = service
    org = new_org()
    ids = []
    for country, fuel, kind, taker, capacity, date in FLEET:
        body = payload(
            countryCode=country,
            fuelCode=fuel,
            deviceTypeCode=kind,
            offTaker=taker,
            capacity=capacity,
            commissioningDate=date,
            energyStorage=True,
        )
        r = await client.post("/api/device", json=body, headers=dev(issuer, org))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return org, ids


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [0, 1, 2, 3, 4]),
        ({"countryCode": "IND"}, [0, 1]),
        ({"countryCode": "ke,NGA"}, [2, 3, 4]),
        ({"fuelCode": "ES100"}, [0, 1, 4]),
        ({"fuelCode": ["ES200", "ES300"]}, [2, 3]),
        ({"deviceTypeCode": "TC120"}, [0, 2, 4]),
        ({"offTaker": "school"}, [0, 2]),
        ({"capacityMin": 50}, [1, 2, 3]),
        ({"capacityMax": 50}, [0, 1, 4]),
        ({"capacityMin": 10, "capacityMax": 100}, [0, 1, 2]),
        ({"commissioningDateFrom": "2021-06-30"}, [1, 2, 3, 4]),
        ({"commissioningDateTo": "2021-06-30"}, [0, 1, 2]),  # a bare date: the whole day
        ({"commissioningDateTo": "2021-06-30T12:00:00Z"}, [0, 1]),
        ({"commissioningDateFrom": "2021-07-01T00:00:00+05:30", "commissioningDateTo": "2022-12-31"}, [2, 3]),
        ({"countryCode": "IN", "fuelCode": "ES100", "offTaker": "Residential"}, [1]),
        ({"fuelCode": "ES410"}, []),
    ],
)
async def test_my_devices_filters(service, fleet, params, expected):
    client, issuer = service
    org, ids = fleet
    r = await client.get("/api/device/my", params=params, headers=dev(issuer, org))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["id"] for d in body["devices"]] == [ids[i] for i in reversed(expected)]
    assert body["totalCount"] == len(expected)


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"countryCode": "IN,XX"}, "countryCode", "'XX' is not an ISO 3166"),
        ({"fuelCode": "fuel8"}, "fuelCode", "Valid codes"),
        ({"deviceTypeCode": "TC999"}, "deviceTypeCode", "Valid codes"),
        ({"offTaker": "Spaceport"}, "offTaker", "Residential"),
        ({"capacityMin": -1}, "capacityMin", "greater than or equal to 0"),
        ({"capacityMin": "big"}, "capacityMin", "valid number"),
        ({"capacityMin": 10, "capacityMax": 5}, "capacityMax", "below capacityMin"),
        ({"commissioningDateFrom": "last year"}, "commissioningDateFrom", "ISO 8601"),
        ({"commissioningDateFrom": "0001-01-01T00:00:00+14:00"}, "commissioningDateFrom", "years 1900 to 2199"),
        ({"commissioningDateTo": "9999-12-31T23:59:59-14:00"}, "commissioningDateTo", "years 1900 to 2199"),
        ({"commissioningDateFrom": "2022-01-01", "commissioningDateTo": "2021-01-01"}, "commissioningDateTo", "before"),
        ({"afterId": 0}, "afterId", "greater than or equal to 1"),
        ({"limit": 1000}, "limit", "less than or equal to 100"),
    ],
)
async def test_bad_filters_are_400s_naming_the_parameter(service, params, field, fragment):
    client, issuer = service
    r = await client.get("/api/device/my", params=params, headers=dev(issuer, new_org()))
    assert r.status_code == 400, r.text
    assert fields(r) == {field}
    assert fragment in r.json()["details"][0]["message"]
    assert r.json()["details"][0]["where"] == "query"


async def test_keyset_pages_walk_the_same_order(service, fleet):
    client, issuer = service
    org, ids = fleet
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"afterId": after} if after else {})}
        body = (await client.get("/api/device/my", params=params, headers=dev(issuer, org))).json()
        seen += [d["id"] for d in body["devices"]]
        assert body["totalCount"] == 5
        after = body["nextAfterId"]
        if after is None:
            break
    assert seen == ids[::-1]


async def test_admin_lists_every_organization(service, fleet):
    client, issuer = service
    org, ids = fleet
    other = new_org()
    theirs = (await client.post("/api/device", json=payload(countryCode="KE"), headers=dev(issuer, other))).json()["id"]
    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
    everything = (await client.get("/api/device", params={"limit": 100}, headers=admin)).json()
    listed = [d["id"] for d in everything["devices"]]
    assert set(ids) | {theirs} <= set(listed) and listed == sorted(listed, reverse=True)
    assert everything["totalCount"] == len(listed)
    kenya = (await client.get("/api/device", params={"countryCode": "KE", "limit": 100}, headers=admin)).json()
    assert {d["id"] for d in kenya["devices"]} >= {ids[2], ids[3], theirs}
    assert all(d["countryCode"] == "KEN" for d in kenya["devices"])
    one_org = (await client.get("/api/device", params={"organizationId": other}, headers=admin)).json()
    assert [d["id"] for d in one_org["devices"]] == [theirs]
    page = (await client.get("/api/device", params={"limit": 2, "pagenumber": 2}, headers=admin)).json()
    assert [d["id"] for d in page["devices"]] == listed[2:4]
    denied = await client.get("/api/device", headers=dev(issuer, org))
    assert denied.status_code == 403 and denied.json()["message"] == "Only Admin may do this"
    assert (await client.get("/api/device")).status_code == 401


def buyer(issuer, perms="R"):
    return issuer.headers(
        organization_id=new_org(),
        organization_type="Buyer",
        role="Buyer",
        permissions={"DEVICE_MANAGEMENT_CRUDL": perms},
    )


async def test_buyers_see_devices_not_in_an_active_reservation(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    marker = f"avail-{uuid.uuid4().hex[:6]}"
    devices = []
    for _ in range(5):
        r = await client.post(
            "/api/device", json=payload(fuelCode="ES510", projectName=marker), headers=dev(issuer, org)
        )
        devices.append(r.json()["id"])
    now = datetime.now(UTC)
    active = reservation(devices[:2], now - timedelta(days=1), now + timedelta(days=90))
    ended = reservation([devices[2]], now - timedelta(days=90), now - timedelta(days=1))
    await publish_events(kafka_bootstrap, [active, ended])
    await eventually(
        lambda: client.runtime.pool.fetchval(
            "SELECT count(*) = 3 FROM reservation_devices WHERE reservation_id = ANY($1)",
            [active.reservation_id, ended.reservation_id],
        )
    )

    headers = buyer(issuer)
    r = await client.get(
        "/api/device/ungrouped/buyerreservation",
        params={"pagenumber": 1, "fuelCode": "ES510", "limit": 100},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    mine = [d["id"] for d in r.json()["devices"] if d["projectName"] == marker]
    assert mine == devices[2:][::-1]  # the reserved two are left out; the ended reservation frees its device
    page = (
        await client.get(
            "/api/device/ungrouped/buyerreservation",
            params={"pagenumber": 2, "limit": 1, "fuelCode": "ES510"},
            headers=headers,
        )
    ).json()
    assert page["currentPage"] == 2 and len(page["devices"]) == 1 and page["totalCount"] >= 3
    bad = await client.get("/api/device/ungrouped/buyerreservation", params={"pagenumber": 0}, headers=headers)
    assert bad.status_code == 400 and fields(bad) == {"pagenumber"}

    developer = await client.get("/api/device/ungrouped/buyerreservation", headers=dev(issuer, org))
    assert developer.status_code == 403 and "Buyer or SubBuyer" in developer.json()["message"]
    sub_buyer = issuer.headers(
        organization_id=new_org(),
        organization_type="Buyer",
        role="SubBuyer",
        permissions={"DEVICE_MANAGEMENT_CRUDL": "R"},
    )
    assert (await client.get("/api/device/ungrouped/buyerreservation", headers=sub_buyer)).status_code == 200
    # a Buyer naming another organization than its own
    other = await client.get("/api/device/ungrouped/buyerreservation", params={"organizationId": org}, headers=headers)
    assert other.status_code == 403 and "own organization" in other.json()["message"]
    assert (await client.get("/api/device/ungrouped/buyerreservation", headers=buyer(issuer, "W"))).status_code == 403
    assert (await client.get("/api/device/ungrouped/buyerreservation")).status_code == 401


async def test_a_device_whose_reservation_ended_is_offered_again(service, kafka_bootstrap):
    client, issuer = service
    org = new_org()
    marker = f"again-{uuid.uuid4().hex[:6]}"
    devices = [
        (
            await client.post(
                "/api/device", json=payload(fuelCode="ES530", projectName=marker), headers=dev(issuer, org)
            )
        ).json()["id"]
        for _ in range(4)
    ]
    now = datetime.now(UTC)
    stopping = reservation(devices[:2], now - timedelta(days=1), now + timedelta(days=90))
    running = reservation([devices[2]], now - timedelta(days=1), now + timedelta(days=90))
    headers = buyer(issuer)

    async def offered():
        r = await client.get(
            "/api/device/ungrouped/buyerreservation", params={"fuelCode": "ES530", "limit": 100}, headers=headers
        )
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()["devices"] if d["projectName"] == marker]

    async def offered_is(expected):
        return await offered() == expected

    await publish_events(kafka_bootstrap, [stopping, running])
    await eventually(lambda: offered_is([devices[3]]))
    await publish_events(kafka_bootstrap, [ended(stopping)])
    await eventually(lambda: offered_is([devices[3], devices[1], devices[0]]))

    # reservation.ended may be read before its reservation.created (two topics): the device stays free
    late = reservation([devices[3]], now - timedelta(days=1), now + timedelta(days=90))
    await publish_events(kafka_bootstrap, [ended(late)])
    await eventually(
        lambda: client.runtime.pool.fetchval(
            "SELECT count(*) = 1 FROM ended_reservations WHERE reservation_id = $1", late.reservation_id
        )
    )
    await publish_events(kafka_bootstrap, [late])
    await eventually(
        lambda: client.runtime.pool.fetchval(
            "SELECT count(*) = 1 FROM reservation_devices WHERE reservation_id = $1", late.reservation_id
        )
    )
    assert await offered() == [devices[3], devices[1], devices[0]]
    assert devices[2] not in await offered()


async def test_a_listed_device_changed_is_listed_changed_at_once(service):
    """Listings serialize a device once per version of its row: asked again they answer the same devices, and a
    device changed (or deleted) in between is listed as it is now, field for field as GET /api/device/{id} gives."""
    client, issuer = service
    org = new_org()
    ids = []
    for _ in range(3):
        r = await client.post("/api/device", json=payload(), headers=dev(issuer, org))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    first = (await client.get("/api/device/my", headers=dev(issuer, org))).json()
    assert first == (await client.get("/api/device/my", headers=dev(issuer, org))).json()
    for device in first["devices"]:
        assert device == (await client.get(f"/api/device/{device['id']}", headers=dev(issuer, org))).json()

    changed = first["devices"][1]
    r = await client.patch(
        f"/api/device/{changed['externalId']}",
        json={"projectName": "renamed", "capacity": 12.5},
        headers=dev(issuer, org),
    )
    assert r.status_code == 200, r.text
    assert (await client.delete(f"/api/device/{first['devices'][0]['id']}", headers=dev(issuer, org))).status_code in (
        200,
        204,
    )
    after = (await client.get("/api/device/my", headers=dev(issuer, org))).json()
    assert [d["id"] for d in after["devices"]] == [ids[1], ids[0]] and after["totalCount"] == 2
    assert after["devices"][0] == r.json()
    assert (after["devices"][0]["projectName"], after["devices"][0]["capacity"]) == ("renamed", 12.5)
    assert after["devices"][1] == first["devices"][2]


async def test_serialized_devices_are_bounded(monkeypatch):  # async as the module's other tests (its asyncio mark)
    import orjson

    from opendrec_devices.services import devices

    monkeypatch.setattr(devices, "to_drec", lambda row: {"id": row["id"], "v": row["row_version"]})
    rendered = devices.SerializedDevices(size=2)
    one = rendered.of({"id": 1, "row_version": 10})
    assert orjson.dumps([one]) == b'[{"id":1,"v":10}]'
    assert rendered.of({"id": 1, "row_version": 10}) is one  # the same version: serialized once
    assert orjson.dumps([rendered.of({"id": 1, "row_version": 11})]) == b'[{"id":1,"v":11}]'  # changed: anew
    rendered.of({"id": 2, "row_version": 5})  # a third version: the oldest kept (1 at 10) goes
    assert orjson.dumps([rendered.of({"id": 1, "row_version": 11}), rendered.of({"id": 2, "row_version": 5})]) == (
        b'[{"id":1,"v":11},{"id":2,"v":5}]'
    )
    assert len(rendered._json) == 2
