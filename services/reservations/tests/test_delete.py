"""DELETE /api/buyer-reservation/{id} (D-REC's remove): only a reservation nothing can have been certified against
vanishes; once its window began it is ended instead (409)."""

from datetime import UTC, datetime, timedelta

import pytest

from opendrec_kit.testing import all_events, eventually, wait_for_event

from .helpers import PERMS, buyer, devices, outbox_drained, payload, reserve

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = timedelta(days=1)


def for_uid(uid):
    return lambda e: e["payload"]["reservation_uid"] == uid


async def test_a_reservation_not_begun_is_deleted_announced_as_ended_and_its_devices_are_free(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2)
    now = datetime.now(UTC)
    res = await reserve(client, buyer(issuer, org=750), ids, start=now + 2 * DAY, end=now + 9 * DAY)
    r = await client.delete(f"/api/buyer-reservation/{res['id']}", headers=buyer(issuer, org=750))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["deleted"] is True and body["id"] == res["id"] and body["state"] == "ended"
    assert body["endReason"] == "deleted"
    event, _ = await wait_for_event(kafka_bootstrap, "reservation.ended", for_uid(res["devicegroup_uid"]))
    ended_at = datetime.fromisoformat(event["payload"]["ended_at"])
    assert now <= ended_at < datetime.fromisoformat(res["reservationStartDate"])  # before it began: held nothing
    assert event["payload"]["reason"] == "deleted" and event["payload"]["device_ids"] == sorted(ids)

    assert (await client.get(f"/api/buyer-reservation/{res['id']}", headers=buyer(issuer, org=750))).status_code == 404
    listed = (await client.get("/api/buyer-reservation/my", headers=buyer(issuer, org=750))).json()
    assert res["id"] not in [g["id"] for g in listed["groupedData"]]
    again = await client.delete(f"/api/buyer-reservation/{res['id']}", headers=buyer(issuer, org=750))
    assert again.status_code == 404
    # Its devices are free for the same window.
    same = payload(
        ids,
        start=now + 2 * DAY,
        end=now + 9 * DAY,
        continueWithReservationIfOneOrMoreDevicesUnavailableForReservation=False,
    )
    assert (await client.post("/api/device-group", json=same, headers=buyer(issuer, org=751))).status_code == 201


async def test_one_ended_before_it_began_is_deleted_without_a_second_announcement(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=1)
    now = datetime.now(UTC)
    res = await reserve(client, buyer(issuer, org=752), ids, start=now + DAY, end=now + 5 * DAY)
    ended = await client.post(f"/api/device-group/{res['id']}/end", headers=buyer(issuer, org=752))
    assert ended.status_code == 200
    r = await client.delete(f"/api/buyer-reservation/{res['id']}", headers=buyer(issuer, org=752))
    assert r.status_code == 200 and r.json()["endedAt"] == ended.json()["endedAt"]
    await eventually(lambda: outbox_drained(runtime))
    assert len(await all_events(kafka_bootstrap, "reservation.ended", for_uid(res["devicegroup_uid"]))) == 1


async def test_a_reservation_whose_window_began_is_not_deleted(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=2)
    now = datetime.now(UTC)
    res = await reserve(client, buyer(issuer, org=753), ids[:1], start=now - DAY, end=now + DAY)
    path = f"/api/buyer-reservation/{res['id']}"
    r = await client.delete(path, headers=buyer(issuer, org=753))
    assert r.status_code == 409, r.text
    message = r.json()["message"]
    assert "cannot be deleted" in message and f"/api/buyer-reservation/endreservation/{res['id']}" in message
    shown = await client.get(path, headers=buyer(issuer, org=753))
    assert shown.status_code == 200 and shown.json()["state"] == "active"  # nothing changed
    assert (await client.post(f"/api/device-group/{res['id']}/end", headers=buyer(issuer, org=753))).status_code == 200
    ended = await client.delete(path, headers=buyer(issuer, org=753))
    assert ended.status_code == 409 and "stays on record" in ended.json()["message"]
    # A past window (History energy) began long ago: kept as well.
    past = await reserve(client, buyer(issuer, org=753), ids[1:], start=now - 9 * DAY, end=now - 8 * DAY)
    old = await client.delete(f"/api/buyer-reservation/{past['id']}", headers=buyer(issuer, org=753))
    assert old.status_code == 409 and "stays on record" in old.json()["message"]
    await eventually(lambda: outbox_drained(runtime))
    assert len(await all_events(kafka_bootstrap, "reservation.ended", for_uid(res["devicegroup_uid"]))) == 1


async def test_only_the_buyer_organization_with_delete_permission_or_an_admin_deletes(service, kafka_bootstrap):
    runtime, client, issuer = service
    ids = await devices(runtime, kafka_bootstrap, n=1)
    now = datetime.now(UTC)
    res = await reserve(client, buyer(issuer, org=754), ids, start=now + DAY, end=now + 5 * DAY)
    path = f"/api/buyer-reservation/{res['id']}"
    other = await client.delete(path, headers=buyer(issuer, org=755))
    assert other.status_code == 404 and other.json()["message"] == f"No reservation {res['id']}"
    assert (
        await client.delete(path, params={"organizationId": 754}, headers=buyer(issuer, org=755))
    ).status_code == 403
    sub_buyer = issuer.headers(
        organization_id=754,
        organization_type="Buyer",
        role="SubBuyer",
        permissions={"BUYER_RESERVATION_MANAGEMENT_CRUDL": "RWU"},
    )
    refused = await client.delete(path, headers=sub_buyer)
    assert refused.status_code == 403
    assert "Delete permission on BUYER_RESERVATION_MANAGEMENT_CRUDL" in refused.json()["message"]
    developer = issuer.headers(
        organization_id=754, organization_type="Developer", role="OrganizationAdmin", permissions=PERMS
    )
    assert (await client.delete(path, headers=developer)).status_code == 403
    assert (await client.delete(path)).status_code == 401
    assert (await client.delete("/api/buyer-reservation/abc", headers=buyer(issuer, org=754))).status_code == 400
    assert (await client.delete("/api/buyer-reservation/0", headers=buyer(issuer, org=754))).status_code == 400
    missing = await client.delete("/api/buyer-reservation/999999999999", headers=buyer(issuer, org=754))
    assert missing.status_code == 404
    assert (await client.get(path, headers=buyer(issuer, org=754))).status_code == 200  # still there

    admin = issuer.headers(organization_id=1, organization_type="Admin", role="Admin")
    assert (await client.delete(path, headers=admin)).status_code == 200
    assert (await client.get(path, headers=buyer(issuer, org=754))).status_code == 404


async def test_openapi_shows_who_may_delete_a_reservation(service):
    runtime, _, _ = service
    op = runtime.app.openapi()["paths"]["/api/buyer-reservation/{reservation_id}"]["delete"]
    assert op["x-permissions"] == [{"module": "BUYER_RESERVATION_MANAGEMENT_CRUDL", "action": "Delete"}]
    assert "Buyer" in op["x-roles"] and "SubBuyer" not in op["x-roles"]
