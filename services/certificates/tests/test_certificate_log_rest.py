"""The rest of D-REC's certificate log (issue 15): every issue log entry the caller may see (GET /api/certificate-log),
the certificate read module (filtered by period, volume and deviceFilter), the per-device CSV export (D-REC's
spelling and ours), and the refused endpoints: the blockchain claim amount and the issuer's cron triggers."""

import csv
import io
import json
import uuid
from functools import partial

import pytest

from opendrec_certificates import domain, handlers, services
from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import announce_api_user_organizations, dispatch

from .helpers import PERMS, T0, H, ids, reads, register, reservation, z

pytestmark = pytest.mark.asyncio(loop_scope="session")
ALL = "/api/certificate-log"
MODULE = "/api/certificate-log/certificateReadModule"
EXPORTS = ("/api/certificate-log/expoert_perdevice/{}", "/api/certificate-log/export_perdevice/{}")
ISSUER = [
    ("GET", "/api/drec-issuer/ongoing"),
    ("GET", "/api/drec-issuer/history"),
    ("POST", "/api/drec-issuer"),
    ("GET", "/api/drec-issuer/lateongoing"),
    ("POST", "/api/drec-issuer/missinglateongoing/onetimerun"),
]


async def deliver(runtime, handler, event):
    settlement = runtime.app.state.settlement
    assert await dispatch(runtime.pool, "certificates", partial(handler, settlement=settlement), event)


@pytest.fixture(scope="module")
async def world(service, kafka_bootstrap):
    """r1: a_buyer's reservation (target 10 MWh, named like a formula) of a_dev's registered device (DEU; 1 and
    2 kWh in two hours) and of another organization's device (KEN, 5 kWh): three certificates (T0 DEU, T0 KEN,
    T0+H DEU). r2: b_buyer's reservation (target 100 MWh) of another device: 7 kWh."""
    runtime, client, issuer = service
    base = 850_000_000 + uuid.uuid4().int % 1_000_000 * 10
    a, b, orgs = await announce_api_user_organizations(kafka_bootstrap, runtime, base, ["a_buyer", "a_dev", "b_buyer"])
    other_owner = base + 8
    (dev, res), (dev2, _), (dev3, res2) = ids(), ids(), ids()
    registered = device_registered(
        dev, organization_id=orgs["a_dev"], country_code="DEU", external_id=f"-{dev}+cmd", timezone="Europe/Berlin"
    )
    await deliver(runtime, handlers.on_device_registered, registered)
    await register(runtime, dev2, other_owner, "KEN")
    await register(runtime, dev3, base + 9)
    created = reservation(res, dev, orgs["a_buyer"], target=10_000_000).model_copy(
        update={"device_ids": [dev, dev2], "name": f'=HYPERLINK("x") {res}'}
    )
    await deliver(runtime, handlers.on_reservation_created, created)
    await deliver(runtime, handlers.on_read_ingested, reads(dev, orgs["a_dev"], [1000, 2000]))
    await deliver(runtime, handlers.on_read_ingested, reads(dev2, other_owner, [5000]))
    created2 = reservation(res2, dev3, orgs["b_buyer"], target=100_000_000)
    await deliver(runtime, handlers.on_reservation_created, created2)
    await deliver(runtime, handlers.on_read_ingested, reads(dev3, base + 9, [7000]))

    def api_user(who, own):
        return issuer.headers(
            role="ApiUser", organization_type="ApiUser", organization_id=own, permissions=PERMS, apiUserId=who
        )

    return {
        "runtime": runtime,
        "client": client,
        "orgs": orgs,
        "res": res,
        "uid": str(created.reservation_uid),
        "uid2": str(created2.reservation_uid),
        "name": created.name,
        "external_id": registered.external_id,
        "dev": dev,
        "dev2": dev2,
        "buyer": issuer.headers(
            organization_id=orgs["a_buyer"], organization_type="Buyer", role="Buyer", permissions=PERMS
        ),
        "developer": issuer.headers(organization_id=orgs["a_dev"], organization_type="Developer", permissions=PERMS),
        "stranger": issuer.headers(organization_id=base + 9, organization_type="Developer", permissions=PERMS),
        "unpermitted": issuer.headers(organization_id=orgs["a_buyer"], organization_type="Buyer", role="Buyer"),
        "admin": issuer.headers(role="Admin", organization_type="Admin", organization_id=1, permissions=PERMS),
        "as_a": api_user(a, base + 5),
        "as_b": api_user(b, base + 6),
    }


async def _denied(client, world, method, path, **kw):
    """No token: 401; a token without the module's Read: 403."""
    assert (await client.request(method, path, **kw)).status_code == 401
    denied = await client.request(method, path, headers=world["unpermitted"], **kw)
    assert denied.status_code == 403 and "CERTIFICATE_LOG_MANAGEMENT_CRUDL" in denied.json()["message"]


# -- GET /api/certificate-log ---------------------------------------------------------------------------------------


async def test_every_issue_log_entry_the_buyer_may_see_as_a_bare_array(world):
    r = await world["client"].get(ALL, headers=world["buyer"])
    assert r.status_code == 200, r.text
    entries = r.json()
    assert isinstance(entries, list) and r.headers["X-Total-Count"] == "3"
    assert sorted(e["readvalue_watthour"] for e in entries) == [1000, 2000, 5000]
    assert {e["groupId"] for e in entries} == {world["res"]} and {e["devicegroup_uid"] for e in entries} == {
        world["uid"]
    }
    first = min(entries, key=lambda e: (e["certificate_issuance_startdate"], e["readvalue_watthour"]))
    assert (first["certificate_issuance_startdate"], first["certificate_issuance_enddate"]) == (z(T0), z(T0 + H))
    for key in ("id", "status", "externalId", "certificateTransactionUID", "createdAt", "updatedAt"):
        assert key in first
    page = await world["client"].get(ALL, params={"limit": 2, "pageNumber": 2}, headers=world["buyer"])
    assert len(page.json()) == 1 and page.headers["X-Total-Count"] == "3"


async def test_every_issue_log_entry_scoped_to_a_developer_an_api_user_and_an_admin(world):
    client, orgs = world["client"], world["orgs"]
    mine = await client.get(ALL, headers=world["developer"])
    assert sorted(e["readvalue_watthour"] for e in mine.json()) == [1000, 2000]  # its device's parts only
    assert {e["externalId"] for e in mine.json()} == {world["external_id"]}
    named = await client.get(ALL, params={"organizationId": orgs["b_buyer"]}, headers=world["as_b"])
    assert [e["readvalue_watthour"] for e in named.json()] == [7000]
    missing = await client.get(ALL, headers=world["as_a"])
    assert missing.status_code == 400 and "organizationId is required" in missing.json()["message"]
    foreign = await client.get(ALL, params={"organizationId": orgs["b_buyer"]}, headers=world["as_a"])
    assert foreign.status_code == 403
    other = await client.get(ALL, params={"organizationId": orgs["b_buyer"]}, headers=world["buyer"])
    assert other.status_code == 403
    admin = await client.get(ALL, params={"organizationId": orgs["a_buyer"]}, headers=world["admin"])
    assert admin.headers["X-Total-Count"] == "3"
    everything = await client.get(ALL, params={"limit": 1}, headers=world["admin"])
    assert everything.status_code == 200 and int(everything.headers["X-Total-Count"]) >= 4


async def test_every_issue_log_entry_validates_its_query_and_access(world):
    client = world["client"]
    for bad in ({"pageNumber": 0}, {"limit": 0}, {"limit": 1001}, {"organizationId": "x"}, {"pageNumber": "y"}):
        r = await client.get(ALL, params=bad, headers=world["buyer"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] in bad, (bad, r.text)
    await _denied(client, world, "GET", ALL)


# -- GET /api/certificate-log/certificateReadModule ----------------------------------------------------------------


async def _module(world, headers="buyer", **params):
    return await world["client"].get(MODULE, params=params, headers=world[headers])


async def test_the_read_module_answers_the_issuers_certificates_three_a_page(world):
    r = await _module(world)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["pageNumber"], body["totalPages"], body["totalCount"]) == (1, 1, 3)
    assert sorted(c["energyWh"] for c in body["result"]) == [1000, 2000, 5000] and body["totalEnergyWh"] == 8000
    first = body["result"][0]
    assert first["crm_deviceId"] == str(world["res"]) and first["crm_internalCertificateId"] == first["id"]
    assert first["crm_metadata"]["buyerReservationId"] == world["uid"]
    assert first["crm_metadata"]["certificateTransactionUID"] == first["id"]
    assert first["crm_generationStartTime"] == int(T0.timestamp()) and first["crm_claims"] == []
    assert first["reservationName"] == world["name"] and body["view"] == "buyer"
    two = (await _module(world, limit=2, pageNumber=2)).json()
    assert (len(two["result"]), two["totalPages"], two["totalCount"]) == (1, 2, 3)
    beyond = await _module(world, limit=2, pageNumber=3)
    assert beyond.status_code == 404 and "out of range" in beyond.json()["message"]


async def test_the_read_module_filters_by_generation_period(world):
    later = (await _module(world, certificateStartDate=(T0 + H).replace(minute=1).isoformat())).json()
    assert [c["energyWh"] for c in later["result"]] == [2000]
    earlier = (await _module(world, certiifcateEndDate="2025-03-01T10:30:00")).json()  # no zone: UTC
    assert sorted(c["energyWh"] for c in earlier["result"]) == [1000, 5000]
    spelled = (await _module(world, certificateEndDate="2025-03-01T10:30:00Z")).json()
    assert spelled["totalCount"] == 2
    both = (
        await _module(world, certificateStartDate=T0.isoformat(), certiifcateEndDate=(T0 + H / 2).isoformat())
    ).json()
    assert both["totalCount"] == 2
    reversed_ = await _module(world, certificateStartDate=(T0 + H).isoformat(), certiifcateEndDate=T0.isoformat())
    assert reversed_.status_code == 400 and reversed_.json()["details"][0]["field"] == "certificateStartDate"
    disagree = await _module(world, certiifcateEndDate=T0.isoformat(), certificateEndDate=(T0 + H).isoformat())
    assert disagree.status_code == 400
    bad = await _module(world, certificateStartDate="yesterday")
    assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "certificateStartDate"
    before_year_1 = await _module(world, certificateStartDate="0001-01-01T00:00:00+05:00")  # no such moment in UTC
    assert before_year_1.status_code == 400 and before_year_1.json()["details"][0]["field"] == "certificateStartDate"


async def test_the_read_module_filters_by_reservation_volume(world):
    assert (await _module(world, targetVolumeCertificateGenerationRequestedInMegaWattHour=10)).json()["totalCount"] == 3
    none = await _module(world, targetVolumeCertificateGenerationRequestedInMegaWattHour="9.999999")
    assert none.status_code == 200 and none.json()["result"] == [] and none.json()["totalPages"] == 0
    for bad in ("-1", "NaN", "inf", "x", "1e13"):
        r = await _module(world, targetVolumeCertificateGenerationRequestedInMegaWattHour=bad)
        assert r.status_code == 400, (bad, r.text)


async def test_the_read_module_filters_by_device_country(world):
    as_json = (await _module(world, deviceFilter=json.dumps({"countryCode": "deu"}))).json()
    assert sorted(c["energyWh"] for c in as_json["result"]) == [1000, 2000]
    as_object = await world["client"].get(MODULE, params={"deviceFilter[countryCode]": "DEU"}, headers=world["buyer"])
    assert as_object.json()["totalCount"] == 2
    nowhere = (await _module(world, deviceFilter='{"countryCode": "SGP"}')).json()
    assert nowhere["totalCount"] == 0
    for params, field in (
        ({"deviceFilter": "not json"}, "deviceFilter"),
        ({"deviceFilter": "[1]"}, "deviceFilter"),
        ({"deviceFilter": '{"countryCode": "D1"}'}, "deviceFilter[countryCode]"),
        ({"deviceFilter": '{"countryCode": 7}'}, "deviceFilter[countryCode]"),
        ({"deviceFilter": '{"gridInterconnection": true}'}, "deviceFilter[gridInterconnection]"),
        ({"deviceFilter[yieldValue]": "1500"}, "deviceFilter[yieldValue]"),
        ({"deviceFilter[colour]": "red"}, "deviceFilter[colour]"),
        ({"deviceFilter": "x" * 2001}, "deviceFilter"),
    ):
        r = await world["client"].get(MODULE, params=params, headers=world["buyer"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] == field, (params, r.text)


async def test_the_read_module_is_the_organizations_view(world):
    client, orgs = world["client"], world["orgs"]
    dev = (await _module(world, "developer")).json()
    assert dev["view"] == "developer" and sorted(c["energyWh"] for c in dev["result"]) == [1000, 2000]
    b = await client.get(MODULE, params={"organizationId": orgs["b_buyer"]}, headers=world["as_b"])
    assert [c["energyWh"] for c in b.json()["result"]] == [7000]
    assert (await client.get(MODULE, headers=world["as_a"])).status_code == 400
    foreign = await client.get(MODULE, params={"organizationId": orgs["b_buyer"]}, headers=world["as_a"])
    assert foreign.status_code == 403
    assert (
        await client.get(MODULE, params={"organizationId": orgs["b_buyer"]}, headers=world["buyer"])
    ).status_code == 403
    for bad in ({"pageNumber": 0}, {"limit": 1001}, {"organizationId": 0}):
        r = await client.get(MODULE, params=bad, headers=world["buyer"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] in bad
    await _denied(client, world, "GET", MODULE)


# -- the per-device CSV export ---------------------------------------------------------------------------------------


def _rows(r):
    return list(csv.reader(io.StringIO(r.text)))


@pytest.mark.parametrize("path", EXPORTS)
async def test_the_export_is_the_reservations_per_device_log_as_csv(world, path):
    r = await world["client"].get(path.format(world["uid"]), headers=world["buyer"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv") and r.headers["X-Total-Count"] == "3"
    disposition = r.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="_HYPERLINK(_x_) {world["res"]} ') and disposition.endswith(
        '.csv"'
    )
    header, *lines = _rows(r)
    assert header == list(domain.EXPORT_COLUMNS) and header[:7] == [
        "externalId",
        "reservation_name",
        "certificate_issuance_startdate",
        "certificate_issuance_enddate",
        "readvalue_watthour",
        "certificateTransactionUID",
        "blockchainCertificateId",
    ]
    assert [line[2] for line in lines] == [z(T0), z(T0), z(T0 + H)]  # by period
    assert sorted(int(line[4]) for line in lines) == [1000, 2000, 5000]
    # cells a spreadsheet would run as formulas are text: the reservation's name, the device's externalId
    assert {line[1] for line in lines} == {"'" + world["name"]}
    assert {line[0] for line in lines} == {"'" + world["external_id"], f"ext-{world['dev2']}"}
    assert {line[6] for line in lines} == {""}


async def test_the_export_is_streamed_in_chunks_and_paged(world, monkeypatch):
    client, path = world["client"], EXPORTS[1].format(world["uid"])
    whole = _rows(await client.get(path, headers=world["buyer"]))
    monkeypatch.setattr(services, "EXPORT_CHUNK", 1)  # a part a chunk: every later chunk continues after the last
    assert _rows(await client.get(path, headers=world["buyer"])) == whole
    first = await client.get(path, params={"limit": 2}, headers=world["buyer"])
    second = await client.get(path, params={"limit": 2, "pageNumber": 2}, headers=world["buyer"])
    assert first.headers["X-Total-Count"] == "3" and _rows(first)[1:] + _rows(second)[1:] == whole[1:]
    empty = await client.get(path, params={"pageNumber": 5}, headers=world["buyer"])
    assert _rows(empty) == [whole[0]]


async def test_the_export_is_seen_as_the_other_reservation_logs(world):
    client, orgs, path = world["client"], world["orgs"], EXPORTS[0].format(world["uid"])
    owner = await client.get(path, headers=world["developer"])
    assert sorted(int(line[4]) for line in _rows(owner)[1:]) == [1000, 2000]  # its device's parts only
    api = await client.get(path, headers=world["as_a"])  # names none: one of its Buyer organizations holds it
    assert api.status_code == 200 and len(_rows(api)) == 4
    for headers in ("as_b", "stranger"):
        assert (await client.get(path, headers=world[headers])).status_code == 404
    named = await client.get(path, params={"organizationId": orgs["b_buyer"]}, headers=world["as_a"])
    assert named.status_code == 403
    assert (await client.get(EXPORTS[0].format(world["uid2"]), headers=world["buyer"])).status_code == 404
    unknown = await client.get(EXPORTS[1].format(uuid.uuid4()), headers=world["buyer"])
    assert unknown.status_code == 404 and "known to the certificate log" in unknown.json()["message"]
    admin = await client.get(path, headers=world["admin"])
    assert admin.status_code == 200 and len(_rows(admin)) == 4


async def test_the_export_validates_its_path_and_query(world):
    client = world["client"]
    assert (await client.get(EXPORTS[0].format("not-a-uuid"), headers=world["buyer"])).status_code == 400
    for bad in ({"limit": 0}, {"limit": services.EXPORT_MAX_ROWS + 1}, {"pageNumber": 0}, {"organizationId": "x"}):
        r = await client.get(EXPORTS[1].format(world["uid"]), params=bad, headers=world["buyer"])
        assert r.status_code == 400 and r.json()["details"][0]["field"] in bad, (bad, r.text)
    for path in EXPORTS:
        await _denied(client, world, "GET", path.format(world["uid"]))


# -- refused -------------------------------------------------------------------------------------------------------


async def test_the_claim_amount_in_ethers_is_refused_naming_the_retirements(world):
    client = world["client"]
    r = await client.get(
        "/api/certificate-log/claim-amount-in-ethers-json", params={"amount": "5"}, headers=world["buyer"]
    )
    assert r.status_code == 410 and "POST /api/certificate/retirements" in r.json()["message"]
    assert r.json()["success"] is False
    await _denied(client, world, "GET", "/api/certificate-log/claim-amount-in-ethers-json")


async def test_the_issuer_triggers_are_refused_for_everyone_without_a_token(world):
    client = world["client"]
    for method, path in ISSUER:
        for headers in ({}, world["admin"], world["buyer"]):
            r = await client.request(method, path, headers=headers, json={"groupId": 1} if method == "POST" else None)
            assert r.status_code == 410, (method, path, r.text)
            assert "certification sweep" in r.json()["message"] and path in r.json()["message"]


async def test_openapi_declares_the_access_and_the_refusals(world):
    spec = world["runtime"].app.openapi()["paths"]
    for path in (
        ALL,
        MODULE,
        "/api/certificate-log/expoert_perdevice/{groupUid}",
        "/api/certificate-log/export_perdevice/{groupUid}",
    ):
        op = spec[path]["get"]
        assert op["x-permissions"] == [{"module": "CERTIFICATE_LOG_MANAGEMENT_CRUDL", "action": "Read"}], path
        assert "ApiUser" in op["x-roles"]
    claim = spec["/api/certificate-log/claim-amount-in-ethers-json"]["get"]
    assert "410" in claim["responses"] and claim["x-access"] == "signed-in"
    for method, path in ISSUER:
        op = spec[path][method.lower()]
        assert op["x-access"] == "public" and "410" in op["responses"], path
        assert "requestBody" not in op
    assert "text/csv" in spec[EXPORTS[0].replace("{}", "{groupUid}")]["get"]["responses"]["200"]["content"]
