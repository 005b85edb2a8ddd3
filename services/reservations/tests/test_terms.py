"""Issue 15: a reservation's dates and expiry, its target against its devices, changing it (PATCH), D-REC's end
(DELETE .../endreservation), the listings and the current information, against the real database and broker."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import eventually, publish_events, wait_for_event

from .helpers import PERMS, buyer, devices, payload, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = timedelta(days=1)
MODULE = "BUYER_RESERVATION_MANAGEMENT_CRUDL"


def of(uid):
    return lambda e: e["payload"]["reservation_uid"] == uid


def at(value):
    return datetime.fromisoformat(value)


# -- creating: dates, expiry, target ----------------------------------------------------------------------


async def test_the_expiry_is_named_or_defaults_and_travels_in_reservation_created(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2)
    now = datetime.now(UTC)
    start, end = now - DAY, now + 10 * DAY
    named = await reserve(
        client, buyer(issuer), ids[:1], start=start, end=end, reservationExpiryDate=(end + 5 * DAY).isoformat()
    )
    assert at(named["reservationExpiryDate"]) == end + 5 * DAY
    event, _ = await wait_for_event(kafka_bootstrap, "reservation.created", of(named["devicegroup_uid"]))
    assert at(event["payload"]["reservation_expiry"]) == end + 5 * DAY
    default = await reserve(client, buyer(issuer), ids[1:], start=start, end=end)
    assert at(default["reservationExpiryDate"]) == end + 60 * DAY  # RESERVATION_EXPIRY_DAYS
    # The group's attributes, from its devices (helpers.registered: 100 kW, IND, ES100, TC110).
    assert default["countryCode"] == ["IND"] and default["fuelCode"] == ["ES100"]
    assert default["deviceTypeCodes"] == ["TC110"] and default["aggregatedCapacity"] == 100
    assert default["capacityRange"] == "51kW - 500kW" and len(default["commissioningDateRange"]) == 1
    assert default["targetVolumeInMegaWattHour"] == 20 and default["offTakers"] == []


async def test_bad_dates_are_refused_each_named(service, kafka_bootstrap):
    runtime, client, issuer = service
    [device] = await devices(runtime, kafka_bootstrap, n=1)
    now = datetime.now(UTC)
    cases = {
        "reservationExpiryDate": payload(
            [device], start=now, end=now + 2 * DAY, reservationExpiryDate=(now + DAY).isoformat()
        ),
        "reservationEndDate": payload([device], start=now, end=now + 4000 * DAY),
    }
    for field, body in cases.items():
        r = await client.post("/api/device-group", json=body, headers=buyer(issuer))
        assert r.status_code == 400 and [d["field"] for d in r.json()["details"]] == [field], (field, r.text)
    naive = payload([device], reservationExpiryDate="2030-01-01T00:00:00")
    r = await client.post("/api/device-group", json=naive, headers=buyer(issuer))
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "reservationExpiryDate"
    # nothing was made meanwhile: the device is still free
    assert (await client.post("/api/device-group", json=payload([device]), headers=buyer(issuer))).status_code == 201


async def test_a_target_the_devices_cannot_reach_is_refused_unless_the_buyer_continues(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2)  # 100 kW each
    now = datetime.now(UTC)
    # 200 kW × 24 h = 4.8 MWh
    day = {"start": now + DAY, "end": now + 2 * DAY}
    strict = {"continueWithReservationIfTargetCapacityIsLessThanDeviceTotalCapacityBetweenDuration": False}
    r = await client.post(
        "/api/device-group", json=payload(ids, targetCapacityInMegaWattHour=5, **strict, **day), headers=buyer(issuer)
    )
    assert r.status_code == 400 and r.json()["message"].startswith("Target Capacity Cannot be reached")
    details = r.json()["details"]
    assert details["meteredTimePeriodInHours"] == 24 and details["targetCapacityInMegaWattHour"] == 5
    assert details["probablyAchievableCapacityInMegaWattHour"] == pytest.approx(4.8)
    ok = await client.post(
        "/api/device-group", json=payload(ids, targetCapacityInMegaWattHour=4.8, **strict, **day), headers=buyer(issuer)
    )
    assert ok.status_code == 201, ok.text
    later = {"start": now + 3 * DAY, "end": now + 4 * DAY}
    lenient = await client.post(
        "/api/device-group", json=payload(ids, targetCapacityInMegaWattHour=5, **later), headers=buyer(issuer)
    )
    assert lenient.status_code == 201  # continueWith... true (and absent: as before) reserves anyway


# -- PATCH /api/buyer-reservation/{id} ---------------------------------------------------------------------


async def test_a_buyer_changes_its_reservation_and_reservation_updated_says_so(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2)
    now = datetime.now(UTC)
    res = await reserve(client, buyer(issuer, org=720), ids, start=now - DAY, end=now + 10 * DAY)
    path = f"/api/buyer-reservation/{res['id']}"
    new_end = now + 20 * DAY
    r = await client.patch(
        path,
        json={
            "name": "renamed",
            "targetCapacityInMegaWattHour": 7.5,
            "reservationEndDate": new_end.isoformat(),
            "authorityToExceed": False,
        },
        headers=buyer(issuer, org=720),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "renamed" and body["targetCapacityInMegaWattHour"] == 7.5
    assert at(body["reservationEndDate"]) == new_end and body["authorityToExceed"] is False
    # the old expiry (old end + 60 days) is still after the new end: it stays
    assert at(body["reservationExpiryDate"]) == at(res["reservationExpiryDate"])
    event, _ = await wait_for_event(kafka_bootstrap, "reservation.updated", of(res["devicegroup_uid"]))
    p = event["payload"]
    assert p["revision"] == 1 and p["name"] == "renamed" and p["target_capacity_wh"] == 7_500_000
    assert at(p["reservation_end"]) == new_end and p["authority_to_exceed"] is False
    assert p["device_ids"] == sorted(ids) and p["buyer_organization_id"] == 720

    # An end past the expiry moves the expiry to the new end + 60 days; a named expiry is taken as given.
    far = now + 100 * DAY
    moved = await client.patch(path, json={"reservationEndDate": far.isoformat()}, headers=buyer(issuer, org=720))
    assert moved.status_code == 200 and at(moved.json()["reservationExpiryDate"]) == far + 60 * DAY
    named = await client.patch(
        path, json={"reservationExpiryDate": (far + DAY).isoformat()}, headers=buyer(issuer, org=720)
    )
    assert named.status_code == 200 and at(named.json()["reservationExpiryDate"]) == far + DAY
    assert named.json()["name"] == "renamed"  # what is not given stays
    shown = (await client.get(f"/api/device-group/{res['id']}", headers=buyer(issuer, org=720))).json()
    assert shown["reservationExpiryDate"] == named.json()["reservationExpiryDate"]


async def test_bad_changes_are_refused_and_change_nothing(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2)
    now = datetime.now(UTC)
    mine = buyer(issuer, org=721)
    res = await reserve(client, mine, ids[:1], start=now - 2 * DAY, end=now + 10 * DAY, frequency="daily")
    path = f"/api/buyer-reservation/{res['id']}"
    nothing = await client.patch(path, json={}, headers=mine)
    assert nothing.status_code == 400 and "Nothing to change" in nothing.json()["message"]
    cases = [
        ({"reservationEndDate": (now - 3 * DAY).isoformat()}, 400, "must be after reservationStartDate"),
        ({"reservationEndDate": (now - DAY).isoformat()}, 409, "cannot reduce below start time"),
        ({"reservationEndDate": (now + 4000 * DAY).isoformat()}, 400, "too far ahead"),
        ({"reservationExpiryDate": (now + 5 * DAY).isoformat()}, 400, "Expiry date cannot be less"),
        ({"name": ""}, 400, "name"),
        ({"targetCapacityInMegaWattHour": 0}, 400, "targetCapacityInMegaWattHour"),
        ({"reservationEndDate": "tomorrow"}, 400, "reservationEndDate"),
    ]
    for change, status, words in cases:
        r = await client.patch(path, json=change, headers=mine)
        assert r.status_code == status and words in r.text, (change, r.text)
    # Moving the end later needs the devices free until then.
    other = await reserve(client, buyer(issuer, org=722), ids[:1], start=now + 15 * DAY, end=now + 20 * DAY)
    busy = await client.patch(path, json={"reservationEndDate": (now + 16 * DAY).isoformat()}, headers=mine)
    assert busy.status_code == 409 and busy.json()["details"] == [
        {"deviceId": ids[0], "reason": "already reserved in an overlapping window"}
    ]
    shown = (await client.get(f"/api/device-group/{res['id']}", headers=mine)).json()
    assert shown["reservationEndDate"] == res["reservationEndDate"] and shown["name"] == res["name"]
    assert other["deviceIds"] == ids[:1]
    # up to the other's start is fine
    ok = await client.patch(path, json={"reservationEndDate": (now + 15 * DAY).isoformat()}, headers=mine)
    assert ok.status_code == 200, ok.text
    # Instants without a UTC (were 500s, issue 12) are refused naming the field; nothing changes.
    for field, moment in (
        ("reservationEndDate", "0001-01-01T00:00:00+14:00"),
        ("reservationExpiryDate", "9999-12-31T23:59:59-14:00"),
    ):
        far = await client.patch(path, json={field: moment}, headers=mine)
        assert far.status_code == 400 and far.json()["details"][0]["field"] == field, far.text
        assert "years 1900 to 2199" in far.json()["details"][0]["message"]
    assert (await client.get(f"/api/device-group/{res['id']}", headers=mine)).json()["reservationEndDate"] == ok.json()[
        "reservationEndDate"
    ]
    # An ended reservation is not changed any more.
    assert (await client.post(f"/api/device-group/{res['id']}/end", headers=mine)).status_code == 200
    ended = await client.patch(path, json={"name": "late"}, headers=mine)
    assert ended.status_code == 409 and "has already ended" in ended.json()["message"]


async def reserved_for_ten_days(service, kafka_bootstrap, org):
    """A reservation by organization `org` of one new device, from now for 10 days."""
    runtime, client, issuer = service
    [device] = await devices(runtime, kafka_bootstrap, n=1)
    now = datetime.now(UTC)
    return await reserve(client, buyer(issuer, org=org), [device], start=now, end=now + 10 * DAY)


async def test_only_the_buyer_organization_or_an_admin_changes_a_reservation(service, kafka_bootstrap):
    runtime, client, issuer = service
    res = await reserved_for_ten_days(service, kafka_bootstrap, org=723)
    path = f"/api/buyer-reservation/{res['id']}"
    change = {"name": "hijacked"}
    assert (await client.patch(path, json=change, headers=buyer(issuer, org=724))).status_code == 404
    naming = await client.patch(path, json=change, params={"organizationId": 723}, headers=buyer(issuer, org=724))
    assert naming.status_code == 403
    read_only = await client.patch(path, json=change, headers=buyer(issuer, org=723, permissions={MODULE: "RW"}))
    assert read_only.status_code == 403 and f"Update permission on {MODULE}" in read_only.json()["message"]
    developer = issuer.headers(organization_id=723, organization_type="Developer", permissions=PERMS)
    assert (await client.patch(path, json=change, headers=developer)).status_code == 403
    assert (await client.patch(path, json=change)).status_code == 401
    assert (await client.get(f"/api/device-group/{res['id']}", headers=buyer(issuer, org=723))).json()["name"] == res[
        "name"
    ]
    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
    by_admin = await client.patch(path, json={"name": "by admin"}, headers=admin)
    assert by_admin.status_code == 200 and by_admin.json()["name"] == "by admin"
    op = runtime.app.openapi()["paths"]["/api/buyer-reservation/{reservation_id}"]["patch"]
    assert op["x-permissions"] == [{"module": MODULE, "action": "Update"}]


# -- DELETE /api/buyer-reservation/endreservation/{id} ---------------------------------------------------


async def test_drec_end_with_its_end_date_or_without_a_body_ends_it_now(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2)
    now = datetime.now(UTC)
    mine = buyer(issuer, org=725)
    first = await reserve(client, mine, ids[:1], start=now - DAY, end=now + 10 * DAY)
    path = f"/api/buyer-reservation/endreservation/{first['id']}"
    wrong = await client.request("DELETE", path, json={"endresavationdate": (now + DAY).isoformat()}, headers=mine)
    assert wrong.status_code == 400 and "is not the end date" in wrong.json()["message"]
    bad = await client.request("DELETE", path, json={"endresavationdate": "soon"}, headers=mine)
    assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "endresavationdate"
    assert (await client.get(f"/api/device-group/{first['id']}", headers=mine)).json()["state"] == "active"
    ended = await client.request("DELETE", path, json={"endresavationdate": first["reservationEndDate"]}, headers=mine)
    assert ended.status_code == 200, ended.text
    assert ended.json()["state"] == "ended" and ended.json()["endReason"] == "ended_by_buyer"
    event, _ = await wait_for_event(kafka_bootstrap, "reservation.ended", of(first["devicegroup_uid"]))
    assert event["payload"]["reason"] == "ended_by_buyer"
    again = await client.request("DELETE", path, json={"endresavationdate": first["reservationEndDate"]}, headers=mine)
    assert again.status_code == 409 and "already ended" in again.json()["message"]

    second = await reserve(client, mine, ids[1:], start=now - DAY, end=now + 10 * DAY)
    plain = await client.delete(f"/api/buyer-reservation/endreservation/{second['id']}", headers=mine)
    assert plain.status_code == 200 and plain.json()["endReason"] == "ended_by_buyer"


async def test_only_the_buyer_organization_ends_it_the_drec_way(service, kafka_bootstrap):
    _, client, issuer = service
    res = await reserved_for_ten_days(service, kafka_bootstrap, org=726)
    path = f"/api/buyer-reservation/endreservation/{res['id']}"
    assert (await client.delete(path, headers=buyer(issuer, org=727))).status_code == 404
    assert (
        await client.delete(path, params={"organizationId": 726}, headers=buyer(issuer, org=727))
    ).status_code == 403
    assert (await client.delete(path, headers=buyer(issuer, org=726, permissions={MODULE: "RW"}))).status_code == 403
    assert (await client.delete(path)).status_code == 401
    assert (await client.delete("/api/buyer-reservation/endreservation/abc", headers=buyer(issuer))).status_code == 400
    assert (await client.get(f"/api/device-group/{res['id']}", headers=buyer(issuer, org=726))).json()[
        "state"
    ] == "active"


# -- listings ----------------------------------------------------------------------------------------------


async def test_my_reservations_on_the_buyer_reservation_path_and_the_device_group_listing(service, kafka_bootstrap):
    runtime, client, issuer = service
    [device] = await devices(runtime, kafka_bootstrap, n=1)
    res = await reserve(client, buyer(issuer, org=728), [device])
    for path in ("/api/buyer-reservation/my", "/api/device-group"):
        mine = await client.get(path, params={"pagenumber": 1, "limit": 5}, headers=buyer(issuer, org=728))
        assert mine.status_code == 200, (path, mine.text)
        assert [g["id"] for g in mine.json()["deviceGroups"]] == [res["id"]] and mine.json()["totalCount"] == 1
        others = (await client.get(path, headers=buyer(issuer, org=729))).json()
        assert res["id"] not in [g["id"] for g in others["deviceGroups"]]
        assert (await client.get(path, params={"limit": 1000}, headers=buyer(issuer, org=728))).status_code == 400
        assert (await client.get(path, headers=buyer(issuer, org=728, permissions={}))).status_code == 403
        developer = issuer.headers(organization_id=728, organization_type="Developer", permissions=PERMS)
        assert (await client.get(path, headers=developer)).status_code == 403
        assert (await client.get(path)).status_code == 401


# -- current information -----------------------------------------------------------------------------------


async def test_current_information_of_an_active_reservation(service, kafka_bootstrap):
    runtime, client, issuer = service
    now = datetime.now(UTC)
    onboarded = now - 5 * DAY
    device = uuid.uuid4().int % 10**9
    await publish_events(
        kafka_bootstrap,
        [
            device_registered(
                device,
                external_id=f"history-{device}",
                organization_id=500,
                capacity_kw=10,
                commissioning_date=now - 400 * DAY,
                onboarded_at=onboarded,
            )
        ],
    )
    await eventually(lambda: runtime.pool.fetchval("SELECT true FROM devices WHERE device_id = $1", device))
    mine = buyer(issuer, org=730)
    start, end = now - 30 * DAY, now + 30 * DAY
    res = await reserve(client, mine, [device], start=start, end=end, frequency="daily")
    path = f"/api/buyer-reservation/current-information/{res['devicegroup_uid']}"
    r = await client.get(path, headers=mine)
    assert r.status_code == 200, r.text
    info = r.json()
    history = info["historynextissuansinfo"]
    assert history["totalItems"] == 1 and history["currentPage"] == 1 and history["totalPages"] == 1
    [entry] = history["AllDeviceshistnextissuansinfo"]
    assert entry["device_externalid"] == f"history-{device}" and at(entry["device_createdAt"]) == onboarded
    assert at(entry["reservationStartDate"]) == start and at(entry["reservationEndDate"]) == onboarded
    ongoing = info["ongoing_next_issuance"]
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert ongoing == {"groupId": res["id"], "start_date": _z(today), "end_date": _z(today + DAY)}

    assert (await client.get(path, headers=buyer(issuer, org=731))).status_code == 404
    assert (await client.get(path, headers=buyer(issuer, org=730, permissions={}))).status_code == 403
    assert (await client.get(path)).status_code == 401
    assert (await client.get("/api/buyer-reservation/current-information/not-a-uid", headers=mine)).status_code == 400
    unknown = f"/api/buyer-reservation/current-information/{uuid.uuid4()}"
    assert (await client.get(unknown, headers=mine)).status_code == 404
    assert (await client.post(f"/api/device-group/{res['id']}/end", headers=mine)).status_code == 200
    expired = await client.get(path, headers=mine)
    assert expired.status_code == 409 and expired.json()["message"] == "Reservation expired"


def _z(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
