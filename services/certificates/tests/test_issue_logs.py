"""A reservation's log in D-REC's three shapes (issue 15): the per-device issue log (by-reservation-groupId, a bare
array), the issuer's certificates with their per-device log (issuer/certified/{groupUid}) and the group's issue log
(GET /api/buyer-reservation/certificatelog/{id}); who may read the last one, its 404 and its validation."""

import uuid
from datetime import UTC, datetime
from functools import partial

import pytest

from opendrec_certificates import handlers
from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import announce_api_user_organizations, dispatch

from .helpers import PERMS, T0, H, certificates, ids, reads, register, reservation, reservation_log, z

pytestmark = pytest.mark.asyncio(loop_scope="session")
GROUP_LOG = "/api/buyer-reservation/certificatelog/{}"
NOW = datetime.now(UTC)


async def deliver(runtime, handler, event):
    settlement = runtime.app.state.settlement
    assert await dispatch(runtime.pool, "certificates", partial(handler, settlement=settlement), event)


@pytest.fixture(scope="module")
async def world(service, kafka_bootstrap):
    """A reservation of `buyer` on two devices, `owner`'s (registered: country, time zone; 1 and 2 kWh) and
    `other_owner`'s (registered in KEN, no time zone: 5 kWh); API user A holds `buyer`, API user B another Buyer organization."""
    runtime, client, issuer = service
    base = 840_000_000 + uuid.uuid4().int % 1_000_000 * 10
    a, b, orgs = await announce_api_user_organizations(kafka_bootstrap, runtime, base, ["a_buyer", "b_buyer", "a_dev"])
    owner, other_owner, stranger = base + 7, base + 8, base + 9
    (dev, res), (dev2, _) = ids(), ids()
    registered = device_registered(dev, organization_id=owner, country_code="DEU", timezone="Europe/Berlin")
    await deliver(runtime, handlers.on_device_registered, registered)
    await register(runtime, dev2, other_owner, "KEN")
    created = reservation(res, dev, orgs["a_buyer"]).model_copy(update={"device_ids": [dev, dev2]})
    await deliver(runtime, handlers.on_reservation_created, created)
    await deliver(runtime, handlers.on_read_ingested, reads(dev, owner, [1000, 2000]))
    await deliver(runtime, handlers.on_read_ingested, reads(dev2, other_owner, [5000]))

    def api_user(who, own):
        return issuer.headers(
            role="ApiUser", organization_type="ApiUser", organization_id=own, permissions=PERMS, apiUserId=who
        )

    return {
        "client": client,
        "issuer": issuer,
        "orgs": orgs,
        "res": res,
        "uid": str(created.reservation_uid),
        "dev": dev,
        "dev2": dev2,
        "external_id": registered.external_id,
        "buyer": issuer.headers(
            organization_id=orgs["a_buyer"], organization_type="Buyer", role="Buyer", permissions=PERMS
        ),
        "owner": issuer.headers(organization_id=owner, permissions=PERMS),
        "stranger": issuer.headers(organization_id=stranger, permissions=PERMS),
        "as_a": api_user(a, base + 5),
        "as_b": api_user(b, base + 6),
    }


async def test_by_group_id_answers_the_per_device_issue_log_as_a_bare_array(world):
    r = await certificates(world["client"], world["issuer"], world["res"], world["orgs"]["a_buyer"])
    assert r.status_code == 200, r.text
    entries = r.json()
    assert r.headers["X-Total-Count"] == "3" and len(entries) == 3
    # D-REC's CheckCertificateIssueDateLogForDeviceEntity fields, by generation start
    by_start = sorted(entries, key=lambda e: (e["certificate_issuance_startdate"], e["readvalue_watthour"]))
    assert [(e["certificate_issuance_startdate"], e["certificate_issuance_enddate"]) for e in by_start] == [
        (z(T0), z(T0 + H)),
        (z(T0), z(T0 + H)),
        (z(T0 + H), z(T0 + 2 * H)),
    ]
    assert sorted(e["readvalue_watthour"] for e in entries) == [1000, 2000, 5000]
    for e in entries:
        assert e["groupId"] == world["res"] and e["status"] == "Issued"
        assert uuid.UUID(e["id"]) and e["certificateTransactionUID"] == e["certificateId"] != e["id"]
        assert e["readvalue_watthour"] == e["energyWh"]  # ours kept alongside
        assert e["createdAt"] == e["updatedAt"] == e["issuedAt"]
        assert (e["devicegroup_uid"], e["reservationName"]) == (world["uid"], f"res-{world['res']}")
    assert {e["deviceId"]: e["externalId"] for e in entries} == {
        world["dev"]: world["external_id"],
        world["dev2"]: f"ext-{world['dev2']}",
    }


async def test_the_issuer_log_carries_d_recs_certificatelog_beside_ours(world):
    r = await reservation_log(world["client"], world["issuer"], world["uid"], world["orgs"]["a_buyer"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["totalItems"], body["totalCount"], body["currentPage"], body["totalPages"]) == (3, 3, 1, 1)
    assert body["totalEnergyWh"] == 8000 == sum(c["energyWh"] for c in body["certificatelog"])
    ours = {c["id"]: c for c in body["certificates"]}
    per_device = {  # by certificate: here one device each (the two devices' countries differ)
        e["certificateTransactionUID"]: e
        for e in (await certificates(world["client"], world["issuer"], world["res"], world["orgs"]["a_buyer"])).json()
    }
    assert [c["id"] for c in body["certificatelog"]] == list(ours)  # the same certificates, in the same order
    for c in body["certificatelog"]:
        start, end = datetime.fromisoformat(c["certificateStartDate"]), datetime.fromisoformat(c["certificateEndDate"])
        assert c["deviceId"] == str(world["res"])  # D-REC issues to the group
        assert (c["generationStartTime"], c["generationEndTime"]) == (int(start.timestamp()), int(end.timestamp()))
        assert (c["certificateStartDate"], c["certificateEndDate"]) == (
            ours[c["id"]]["certificateStartDate"],
            ours[c["id"]]["certificateEndDate"],
        )
        [entry] = c["perDeviceCertificateLog"]
        timezone = "Europe/Berlin" if entry["deviceId"] == world["dev"] else None
        assert entry == {**per_device[c["id"]], "timezone": timezone}
        assert c["metadata"] == {
            "groupId": str(world["res"]),
            "buyerReservationId": world["uid"],
            "deviceIds": [entry["externalId"]] if entry["externalId"] else [],
            "certificateTransactionUID": c["id"],
        }


async def test_the_group_issue_log_has_one_entry_per_certificate(world):
    r = await world["client"].get(GROUP_LOG.format(world["res"]), headers=world["buyer"])
    assert r.status_code == 200, r.text
    entries = r.json()
    assert r.headers["X-Total-Count"] == "3" and sum(e["readvalue_watthour"] for e in entries) == 8000
    for e in entries:
        assert e["groupid"] == str(world["res"]) and e["status"] == "Issued" and e["issuer_certificate_id"] is None
        assert e["certificateTransactionUID"] == e["id"] and e["readvalue_watthour"] == e["energyWh"]
        assert e["countryCode"] == ("DEU" if e["deviceId"] == world["dev"] else "KEN")
        assert e["certificate_payload"] == {
            "deviceId": str(world["res"]),
            "energyValue": str(e["readvalue_watthour"]),
            "fromTime": e["certificate_issuance_startdate"],
            "toTime": e["certificate_issuance_enddate"],
            "metadata": {
                "groupId": str(world["res"]),
                "buyerReservationId": world["uid"],
                "deviceIds": [e["externalId"]] if e["externalId"] else [],
                "certificateTransactionUID": e["id"],
            },
        }
    # paged like the other logs, the total over every page
    page = await world["client"].get(
        GROUP_LOG.format(world["res"]), params={"limit": 2, "pageNumber": 2}, headers=world["buyer"]
    )
    assert len(page.json()) == 1 and page.headers["X-Total-Count"] == "3"
    assert page.json()[0]["id"] == entries[2]["id"]


async def test_the_group_issue_log_is_seen_as_the_other_reservation_logs(world):
    client, res, orgs = world["client"], world["res"], world["orgs"]
    path = GROUP_LOG.format(res)
    # a device owner sees its own devices' certificates only
    mine = await client.get(path, headers=world["owner"])
    assert mine.status_code == 200 and sorted(e["readvalue_watthour"] for e in mine.json()) == [1000, 2000]
    assert mine.headers["X-Total-Count"] == "2"
    # an API user naming its buyer organization sees all of it; naming none, another's or a developer: refused
    named = await client.get(path, params={"organizationId": orgs["a_buyer"]}, headers=world["as_a"])
    assert named.status_code == 200 and len(named.json()) == 3
    missing = await client.get(path, headers=world["as_a"])
    assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
    foreign = await client.get(path, params={"organizationId": orgs["b_buyer"]}, headers=world["as_a"])
    assert foreign.status_code == 403 and "not one of your organizations" in foreign.json()["message"]
    developer = await client.get(path, params={"organizationId": orgs["a_dev"]}, headers=world["as_a"])
    assert developer.status_code == 403 and "Developer organization" in developer.json()["message"]
    b_own = await client.get(path, params={"organizationId": orgs["b_buyer"]}, headers=world["as_b"])
    assert b_own.status_code == 404
    # anybody else: as if it did not exist
    hidden = await client.get(path, headers=world["stranger"])
    assert hidden.status_code == 404
    assert hidden.json()["message"] == f"No reservation {res} is known to the certificate log (yet)"
    # no token, no permission of the module
    assert (await client.get(path)).status_code == 401
    no_perm = await client.get(path, headers=world["issuer"].headers(organization_id=orgs["a_buyer"]))
    assert no_perm.status_code == 403
    # an admin sees all of it
    admin = world["issuer"].headers(role="Admin", organization_type="Admin", organization_id=1, permissions=PERMS)
    assert len((await client.get(path, headers=admin)).json()) == 3


async def test_the_group_issue_log_refuses_bad_input(world):
    client = world["client"]
    for bad_id in ("0", "-1", str(2**63), "abc"):
        r = await client.get(GROUP_LOG.format(bad_id), headers=world["buyer"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] == "id", (bad_id, r.text)
    for bad in ({"pageNumber": 0}, {"limit": 0}, {"limit": 1001}, {"organizationId": "x"}):
        r = await client.get(GROUP_LOG.format(world["res"]), params=bad, headers=world["buyer"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] in bad, (bad, r.text)


async def test_the_group_issue_log_of_an_unknown_reservation_is_a_404_and_a_just_created_one_is_learned(
    service, reservations_owner
):
    _runtime, client, issuer = service
    dev, res = ids()
    buyer = 940001
    headers = issuer.headers(organization_id=buyer, permissions=PERMS)
    r = await client.get(GROUP_LOG.format(res), headers=headers)
    assert r.status_code == 404
    assert r.json()["message"] == f"No reservation {res} is known to the certificate log (yet)"
    assert reservations_owner.asked[-1][0] == f"/internal/reservations/by-id/{res}"
    # created a moment ago, before reservation.created came: asked of the reservations service, its empty log
    created = reservation(res, dev, buyer)
    reservations_owner.knows(f"/reservations/by-id/{res}", [(created, NOW)], producer="reservations")
    r = await client.get(GROUP_LOG.format(res), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == [] and r.headers["X-Total-Count"] == "0"
    asked = len(reservations_owner.asked)
    assert (await client.get(GROUP_LOG.format(res), headers=headers)).json() == []
    assert len(reservations_owner.asked) == asked  # known now
