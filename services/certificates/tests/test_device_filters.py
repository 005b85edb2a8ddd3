"""certifiedlogOfdevices' filters (issue 14; D-REC's FilterDTO names where it has them): devices' external ids,
country, fuel, type, off-taker, capacity and commissioning date (from device.registered / device.updated),
generation dates and the entry's energy, all applying together; each validated (400 naming the field)."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from opendrec_certificates import handlers
from opendrec_contracts import DeviceUpdated, envelope_for
from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import announce_api_user_organizations, dispatch, eventually

from .helpers import PERMS, T0, H, ids, reads, reservation, z

pytestmark = pytest.mark.asyncio(loop_scope="session")
LOG = "/api/certificate-log/issuer/certifiedlogOfdevices"


async def deliver(runtime, handler, event, envelope=None):
    bound = partial(handler, settlement=runtime.app.state.settlement)
    return await dispatch(runtime.pool, "certificates", bound, event, envelope=envelope)


@pytest.fixture(scope="module")
async def world(service, kafka_bootstrap):
    """One buyer's reservation (hourly) of three devices of one developer: solar (IND, ES100, TC110, 5 kW,
    commissioned 2024, Residential; 1 then 2 kWh), wind (DEU, ES300, TC120, 500 kW, commissioned mid-2022,
    Commercial; 3 kWh) and one never registered here (4 kWh, not certified: no country, fuel or external id is
    known of it): three entries (certificate parts)."""
    runtime, client, issuer = service
    base = 870_000_000 + uuid.uuid4().int % 1_000_000 * 10
    _, _, orgs = await announce_api_user_organizations(kafka_bootstrap, runtime, base, ["buyer", "dev"])
    (solar, res), (wind, _), (unknown, _) = ids(), ids(), ids()
    tag = f"{base}"
    for device, fields in (
        (
            solar,
            {
                "country_code": "IND",
                "fuel_code": "ES100",
                "device_type_code": "TC110",
                "capacity_kw": 5,
                "commissioning_date": datetime(2024, 1, 1, tzinfo=UTC),
                "off_taker": "Residential",
                "sdg_benefits": ["SDG1", "SDG7"],
            },
        ),
        (
            wind,
            {
                "country_code": "DEU",
                "fuel_code": "ES300",
                "device_type_code": "TC120",
                "capacity_kw": 500,
                "commissioning_date": datetime(2022, 6, 1, tzinfo=UTC),
                "off_taker": "Commercial",
                "sdg_benefits": ["SDG13"],
            },
        ),
    ):
        registered = device_registered(device, organization_id=orgs["dev"], external_id=f"F-{tag}-{device}", **fields)
        assert await deliver(runtime, handlers.on_device_registered, registered)
    created = reservation(res, solar, orgs["buyer"]).model_copy(update={"device_ids": [solar, wind, unknown]})
    await deliver(runtime, handlers.on_reservation_created, created)
    await deliver(runtime, handlers.on_read_ingested, reads(solar, orgs["dev"], [1000, 2000]))
    await deliver(runtime, handlers.on_read_ingested, reads(wind, orgs["dev"], [3000]))
    await deliver(runtime, handlers.on_read_ingested, reads(unknown, orgs["dev"], [4000]))

    async def issued():
        """The sweep issues the closed periods without the unknown device (it never holds a period)."""
        return await runtime.pool.fetchval(
            "SELECT count(*) = 3 FROM certificate_parts p JOIN certificates c ON c.id = p.certificate_id"
            " WHERE c.reservation_id = $1",
            res,
        )

    await eventually(issued)
    # a certificate of the old log (D-REC's oldcertificatelog): one device and run, issued before D-REC's issuance
    # (migration 0007 keeps such ones as kind 'legacy'), in another reservation of the buyer, of the solar device
    old_res = res + 10**9
    await deliver(runtime, handlers.on_reservation_created, reservation(old_res, solar, orgs["buyer"]))
    legacy = uuid.uuid4()
    await runtime.pool.execute(
        """INSERT INTO certificates (id, reservation_id, device_id, owner_organization_id, buyer_organization_id,
                                     generation_start, generation_end, energy_wh, kind, period_start, period_end,
                                     allocated_wh, country_code)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 500, 'legacy', $6, $7, 500, 'IND')""",
        legacy,
        old_res,
        solar,
        orgs["dev"],
        orgs["buyer"],
        T0 - 2 * H,
        T0 - H,
    )
    await runtime.pool.execute(
        """INSERT INTO certificate_parts (id, certificate_id, device_id, owner_organization_id, energy_wh,
                                          generation_start, generation_end)
           SELECT id, id, device_id, owner_organization_id, energy_wh, generation_start, generation_end
           FROM certificates WHERE id = $1""",
        legacy,
    )
    return {
        "client": client,
        "solar": f"F-{tag}-{solar}",
        "wind": f"F-{tag}-{wind}",
        "buyer": issuer.headers(
            organization_id=orgs["buyer"], organization_type="Buyer", role="Buyer", permissions=PERMS
        ),
        "developer": issuer.headers(organization_id=orgs["dev"], organization_type="Developer", permissions=PERMS),
    }


async def log(world, params, who="buyer", old=None):
    """The entries' energies, sorted; `old` (if given): what the answer's oldcertificatelog must say."""
    r = await world["client"].get(LOG, params=params, headers=world[who])
    assert r.status_code == 200, (params, r.text)
    body = r.json()
    assert old is None or body["oldcertificatelog"] is old
    assert body["totalCount"] == len(body["certificatelog"])  # one page holds them all
    assert body["totalEnergyWh"] == sum(e["energyWh"] for e in body["certificatelog"])
    return sorted(e["energyWh"] for e in body["certificatelog"])


async def test_no_filter_every_entry(world):
    assert await log(world, {}) == [1000, 2000, 3000]
    assert await log(world, {}, "developer") == [1000, 2000, 3000]


async def test_external_ids_repeated_or_comma_separated(world):
    assert await log(world, {"externalId": world["solar"]}) == [1000, 2000]
    assert await log(world, [("externalId", world["solar"]), ("externalId", world["wind"])]) == [1000, 2000, 3000]
    assert await log(world, {"externalId": f"{world['wind']},{world['solar']}"}, "developer") == [1000, 2000, 3000]
    assert await log(world, {"externalId": world["solar"].lower()}) == []  # external ids match exactly
    assert await log(world, {"externalId": "nobody"}) == []


async def test_country_any_case_and_several(world):
    assert await log(world, {"country": "ind"}) == [1000, 2000]
    assert await log(world, {"country": "IND,DEU"}) == [1000, 2000, 3000]
    assert await log(world, [("country", "DEU"), ("country", "FRA")]) == [3000]


async def test_fuel_type_and_off_taker(world):
    assert await log(world, {"fuelCode": "es100"}) == [1000, 2000]
    assert await log(world, {"fuelCode": "ES100,ES300"}) == [1000, 2000, 3000]
    assert await log(world, {"deviceTypeCode": "TC120"}) == [3000]
    assert await log(world, {"offTaker": "residential"}) == [1000, 2000]
    assert await log(world, {"offTaker": "Commercial,Residential"}) == [1000, 2000, 3000]


async def test_capacity_range(world):
    assert await log(world, {"fromCapacity": 100}) == [3000]
    assert await log(world, {"toCapacity": 5}) == [1000, 2000]  # bounds included
    assert await log(world, {"fromCapacity": 5, "toCapacity": 500}) == [1000, 2000, 3000]
    assert await log(world, {"fromCapacity": 5.5, "toCapacity": 499.9}) == []


async def test_commissioning_date_range(world):
    assert await log(world, {"fromCommissioningDate": "2023-01-01"}) == [1000, 2000]
    assert await log(world, {"toCommissioningDate": "2023-01-01T00:00:00Z"}) == [3000]
    both = {"fromCommissioningDate": "2022-06-01T00:00:00Z", "toCommissioningDate": "2024-01-01T00:00:00Z"}
    assert await log(world, both) == [1000, 2000, 3000]


async def test_generation_date_range(world):
    assert await log(world, {"start_date": z(T0 + H)}) == [2000]  # generated in part from T0+H on
    assert await log(world, {"end_date": z(T0 + H)}) == [1000, 3000]  # [start, end): before T0+H
    half_past = z(T0 + H / 2)  # one moment: the entries generated across it
    assert await log(world, {"start_date": half_past, "end_date": half_past}) == [1000, 3000]
    assert await log(world, {"start_date": z(T0), "end_date": z(T0 + 2 * H)}) == [1000, 2000, 3000]
    assert await log(world, {"start_date": z(T0 + 2 * H)}) == []
    extremes = {"start_date": "0001-01-01T00:00:00Z", "end_date": "9999-12-31T23:59:59Z"}
    assert await log(world, {**extremes, "fromCommissioningDate": "0001-01-01"}) == [1000, 2000, 3000]


async def test_energy_range(world):
    assert await log(world, {"fromAmountread": 2000}) == [2000, 3000]
    assert await log(world, {"toAmountread": 1000}) == [1000]
    assert await log(world, {"fromAmountread": 1500, "toAmountread": 3000}) == [2000, 3000]


async def test_all_filters_apply_together(world):
    """D-REC ORs its filters (one matching is enough); here each narrows the answer."""
    assert await log(world, {"country": "IND", "start_date": z(T0 + H)}) == [2000]
    assert await log(world, {"fuelCode": "ES100", "fromCapacity": 100}) == []
    assert await log(world, {"country": "IND,DEU", "toCommissioningDate": "2023-01-01", "fromAmountread": 1}) == [3000]
    everything = {
        "externalId": world["solar"],
        "country": "IND",
        "fuelCode": "ES100",
        "deviceTypeCode": "TC110",
        "offTaker": "Residential",
        "fromCapacity": 1,
        "toCapacity": 10,
        "fromCommissioningDate": "2023-12-31",
        "toCommissioningDate": "2024-01-02",
        "start_date": z(T0),
        "end_date": z(T0 + H),
        "fromAmountread": 1000,
        "toAmountread": 1000,
    }
    assert await log(world, everything) == [1000]
    assert await log(world, {**everything, "fuelCode": "ES300"}) == []


async def test_sdg_benefits_any_of_the_devices_any_case(world):
    assert await log(world, {"SDGBenefits": "sdg7"}) == [1000, 2000]
    assert await log(world, {"SDGBenefits": "SDG13,SDG1"}) == [1000, 2000, 3000]
    assert await log(world, [("SDGBenefits", "SDG13"), ("SDGBenefits", "SDG2")], "developer") == [3000]
    assert await log(world, {"SDGBenefits": "SDG2"}) == []
    assert await log(world, {"SDGBenefits": "SDG7", "country": "DEU"}) == []  # together with the others


async def test_old_certificate_log_apart_from_the_new_one(world):
    """D-REC's oldcertificatelog: the new log unless it is true, then only the old one (here the legacy
    certificates, issued before D-REC's issuance); the answer says whether the view holds old ones."""
    assert await log(world, {}, old=True) == [1000, 2000, 3000]
    assert await log(world, {"oldcertificatelog": "false"}, old=True) == [1000, 2000, 3000]
    assert await log(world, {"oldcertificatelog": "true"}, old=True) == [500]
    assert await log(world, {"oldcertificatelog": "true"}, "developer", old=True) == [500]
    assert await log(world, {"oldcertificatelog": "true", "SDGBenefits": "SDG1"}, old=True) == [500]
    # filters apply to the old log too, and the flag follows them
    assert await log(world, {"oldcertificatelog": "true", "country": "DEU"}, old=False) == []
    assert await log(world, {"country": "DEU"}, old=False) == [3000]
    assert await log(world, {"end_date": z(T0)}, old=True) == []  # only the old certificate was generated before T0


READ_MODULE = "/api/certificate-log/certificateReadModule"


async def module(world, device_filter, who="buyer"):
    """certificateReadModule's certificates (energy, sorted) for a deviceFilter: JSON or Express's query object."""
    params: object = (
        {"deviceFilter": json.dumps(device_filter), "limit": 100}
        if isinstance(device_filter, dict)
        else [*device_filter, ("limit", "100")]
    )
    r = await world["client"].get(READ_MODULE, params=params, headers=world[who])
    assert r.status_code == 200, (device_filter, r.text)
    body = r.json()
    assert body["totalCount"] == len(body["result"])
    assert body["totalEnergyWh"] == sum(c["energyWh"] for c in body["result"])
    return sorted(c["energyWh"] for c in body["result"])


async def test_read_module_device_filters(world):
    """The read module shows every certificate (the old one too: D-REC's read model holds both); a deviceFilter
    keeps those with a device of the view passing all of its fields."""
    assert await module(world, {}) == [500, 1000, 2000, 3000]
    assert await module(world, {"countryCode": "deu"}) == [3000]
    assert await module(world, {"countryCode": ["IND", "DEU"]}) == [500, 1000, 2000, 3000]
    assert await module(world, {"fuelCode": "ES100"}) == [500, 1000, 2000]
    assert await module(world, {"deviceTypeCodes": ["TC120"]}) == [3000]
    assert await module(world, {"offTakers": ["Commercial", "residential"]}) == [500, 1000, 2000, 3000]
    assert await module(world, {"SDGBenefits": ["SDG13"]}) == [3000]
    assert await module(world, {"fromCapacity": 5, "toCapacity": 5}) == [500, 1000, 2000]  # bounds included
    assert await module(world, {"fromCapacity": 100}, "developer") == [3000]
    assert await module(world, {"fromCommissioningDate": "2023-01-01"}) == [500, 1000, 2000]
    assert await module(world, {"toCommissioningDate": "2022-06-01T00:00:00Z"}) == [3000]
    assert await module(world, {"fuelCode": "ES100", "countryCode": "DEU"}) == []  # all of them
    assert await module(world, {"fuelCode": "ES300", "offTakers": ["Commercial"], "SDGBenefits": ["SDG13"]}) == [3000]
    express = [("deviceFilter[offTakers][]", "Commercial"), ("deviceFilter[offTakers][]", "Residential")]
    assert await module(world, express) == [500, 1000, 2000, 3000]
    assert await module(world, [("deviceFilter[fuelCode]", "ES300"), ("deviceFilter[toCapacity]", "500")]) == [3000]


@pytest.mark.parametrize(
    ("device_filter", "field"),
    [
        ({"fuelCode": "E" * 33}, "deviceFilter[fuelCode]"),
        ({"deviceTypeCodes": [7]}, "deviceFilter[deviceTypeCodes]"),
        ({"offTakers": ["Resi\x01dential"]}, "deviceFilter[offTakers]"),
        ({"SDGBenefits": ["S" * 65]}, "deviceFilter[SDGBenefits]"),
        ({"SDGBenefits": [str(i) for i in range(101)]}, "deviceFilter[SDGBenefits]"),
        ({"countryCode": "INDIA"}, "deviceFilter[countryCode]"),
        ({"fromCapacity": -1}, "deviceFilter[fromCapacity]"),
        ({"toCapacity": "big"}, "deviceFilter[toCapacity]"),
        ({"toCapacity": 1e10}, "deviceFilter[toCapacity]"),
        ({"fromCapacity": 10, "toCapacity": 5}, "deviceFilter[fromCapacity]"),
        ({"fromCommissioningDate": "yesterday"}, "deviceFilter[fromCommissioningDate]"),
        ({"toCommissioningDate": "0001-01-01T00:00:00+01:00"}, "deviceFilter[toCommissioningDate]"),
        (
            {"fromCommissioningDate": "2024-01-02", "toCommissioningDate": "2024-01-01"},
            "deviceFilter[fromCommissioningDate]",
        ),
        ({"gridInterconnection": True}, "deviceFilter[gridInterconnection]"),
        ({"aggregatedCapacity": 5}, "deviceFilter[aggregatedCapacity]"),
        ({"yieldValue": 1500}, "deviceFilter[yieldValue]"),
        ({"colour": "red"}, "deviceFilter[colour]"),
    ],
)
async def test_read_module_each_bad_device_filter_is_400_naming_its_field(world, device_filter, field):
    r = await world["client"].get(
        READ_MODULE, params={"deviceFilter": json.dumps(device_filter)}, headers=world["buyer"]
    )
    assert r.status_code == 400, (device_filter, r.text)
    assert r.json()["details"][0]["field"] == field, r.text


async def test_a_device_not_registered_here_is_not_certified(world):
    """The 4 kWh device's registration never arrived: no country, fuel or external id is known of it, and its
    energy waits for it (certified once known), in no view and under no filter."""
    assert 4000 not in await log(world, {"fromAmountread": 0})
    assert 4000 not in await log(world, {}, "developer")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"country": "INDIA"}, "country"),
        ({"country": "I1"}, "country"),
        ({"country": "I"}, "country"),
        ({"fuelCode": "E" * 33}, "fuelCode"),
        ({"deviceTypeCode": "T" * 33}, "deviceTypeCode"),
        ({"offTaker": "Resi\x01dential"}, "offTaker"),
        ({"externalId": "x" * 257}, "externalId"),
        ({"externalId": "a\x00b"}, "externalId"),
        ({"externalId": ",".join(str(i) for i in range(101))}, "externalId"),
        ({"fromCapacity": -1}, "fromCapacity"),
        ({"toCapacity": "nan"}, "toCapacity"),
        ({"toCapacity": 10**10}, "toCapacity"),
        ({"fromCapacity": "big"}, "fromCapacity"),
        ({"fromCapacity": 10, "toCapacity": 5}, "fromCapacity"),
        ({"fromCommissioningDate": "yesterday"}, "fromCommissioningDate"),
        ({"toCommissioningDate": "2024-13-01"}, "toCommissioningDate"),
        ({"fromCommissioningDate": "2024-01-02", "toCommissioningDate": "2024-01-01"}, "fromCommissioningDate"),
        ({"start_date": "soon"}, "start_date"),
        ({"start_date": "0001-01-01T00:00:00+05:00"}, "start_date"),  # before year 1 in UTC
        ({"end_date": "9999-12-31T23:59:59-05:00"}, "end_date"),
        ({"toCommissioningDate": "0001-01-01T00:00:00+01:00"}, "toCommissioningDate"),
        ({"end_date": "2025-02-30"}, "end_date"),
        ({"start_date": z(T0 + H), "end_date": z(T0)}, "start_date"),
        ({"fromAmountread": -1}, "fromAmountread"),
        ({"toAmountread": 2**63}, "toAmountread"),
        ({"toAmountread": 1.5}, "toAmountread"),
        ({"fromAmountread": 2, "toAmountread": 1}, "fromAmountread"),
        ({"SDGBenefits": "S" * 65}, "SDGBenefits"),
        ({"SDGBenefits": "SDG1\x00"}, "SDGBenefits"),
        ({"oldcertificatelog": "perhaps"}, "oldcertificatelog"),
    ],
)
async def test_each_bad_filter_is_400_naming_its_field(world, params, field):
    r = await world["client"].get(LOG, params=params, headers=world["buyer"])
    assert r.status_code == 400, (params, r.text)
    assert r.json()["details"][0]["field"] == field, r.text


async def test_device_updated_replaces_the_device_unless_older(service):
    """device.updated carries the full current state; ordered by the envelope's occurred_at, an older state
    (registered or updated, whichever topic brings it later) never overwrites a newer one."""
    runtime, _, _ = service
    device, _ = ids()
    now = datetime.now(UTC)
    registered = device_registered(device, fuel_code="ES100", capacity_kw=5)
    updated = DeviceUpdated(
        **{**registered.model_dump(), "fuel_code": "ES300", "capacity_kw": 7, "off_taker": "School"}
    )
    older = DeviceUpdated(**{**registered.model_dump(), "fuel_code": "ES999", "external_id": "stale"})

    def at(event, moment):
        return envelope_for(event, "devices").model_copy(update={"occurred_at": moment})

    assert await deliver(runtime, handlers.on_device_updated, updated, at(updated, now))
    assert await deliver(runtime, handlers.on_device_registered, registered, at(registered, now - timedelta(seconds=5)))
    assert await deliver(runtime, handlers.on_device_updated, older, at(older, now - timedelta(seconds=1)))
    row = await runtime.pool.fetchrow("SELECT * FROM devices WHERE device_id = $1", device)
    assert (row["fuel_code"], row["capacity_kw"], row["off_taker"], row["external_id"]) == (
        "ES300",
        7,
        "School",
        registered.external_id,
    )
    assert row["device_uuid"] == registered.device_uuid and row["device_type_code"] == "TC110"
    assert row["commissioning_date"] == registered.commissioning_date and row["state_at"] == now
    newer = DeviceUpdated(**{**updated.model_dump(), "fuel_code": "ES200"})
    assert await deliver(runtime, handlers.on_device_updated, newer, at(newer, now + timedelta(seconds=1)))
    assert await runtime.pool.fetchval("SELECT fuel_code FROM devices WHERE device_id = $1", device) == "ES200"
