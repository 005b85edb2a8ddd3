"""Energy of a device is certified only once the device is known here (device.registered or device.updated): its
country is part of its certificates' key and its externalId names it in the logs. Reads arriving first (another
topic, any order) are stored and wait; device.registered certifies them, for every reservation holding the device."""

from functools import partial

import pytest

from opendrec_certificates import handlers, services
from opendrec_contracts import DeviceUpdated
from opendrec_kit.testing import dispatch, eventually

from .helpers import PERMS, T0, H, ids, reads, register, registered, reservation

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def deliver(runtime, handler, event):
    assert await dispatch(
        runtime.pool, "certificates", partial(handler, settlement=runtime.app.state.settlement), event
    )


async def log_entries(client, issuer, reservation_id, buyer):
    r = await client.get(
        "/api/certificate-log/by-reservation-groupId",
        params={"groupId": reservation_id},
        headers=issuer.headers(organization_id=buyer, permissions=PERMS),
    )
    assert r.status_code == 200, r.text
    return r.json()


async def sweep(runtime):
    """The certification worker's step, as app.py runs it."""
    settlement = runtime.app.state.settlement
    return await services.certify_due(runtime.uow(), settlement.settle, settlement.clock())


async def test_reads_of_a_device_not_known_wait_for_its_registration(service):
    runtime, client, issuer = service
    device, res = ids()
    buyer, owner = 900501, 900502
    await deliver(runtime, handlers.on_reservation_created, reservation(res, device, buyer))
    await deliver(runtime, handlers.on_read_ingested, reads(device, owner, [1000, 2000]))
    await sweep(runtime)
    # stored, but nothing allocated or issued: its country and externalId are not known yet
    assert await runtime.pool.fetchval("SELECT count(*) FROM reads WHERE device_id = $1", device) == 2
    assert await runtime.pool.fetchval("SELECT count(*) FROM allocations WHERE device_id = $1", device) == 0
    assert await log_entries(client, issuer, res, buyer) == []

    await register(runtime, device, owner, "KEN")
    entries = await log_entries(client, issuer, res, buyer)
    assert [(e["readvalue_watthour"], e["kind"]) for e in entries] == [(1000, "period"), (2000, "period")]
    assert {(e["countryCode"], e["externalId"], e["deviceId"]) for e in entries} == {("KEN", f"ext-{device}", device)}
    # a second announcement of the device (device.updated) certifies nothing twice
    updated = DeviceUpdated(**registered(device, owner, "KEN").model_dump())
    await deliver(runtime, handlers.on_device_updated, updated)
    assert len(await log_entries(client, issuer, res, buyer)) == 2


async def test_a_reservation_is_issued_without_a_device_not_known_and_its_energy_follows_late(service):
    runtime, client, issuer = service
    (known, res), (unknown, _) = ids(), ids()
    buyer, owner = 900511, 900512
    await register(runtime, known, owner, "DEU")
    created = reservation(res, known, buyer, end=T0 + 2 * H).model_copy(update={"device_ids": [known, unknown]})
    await deliver(runtime, handlers.on_reservation_created, created)
    await deliver(runtime, handlers.on_read_ingested, reads(known, owner, [1000, 2000]))
    await deliver(runtime, handlers.on_read_ingested, reads(unknown, owner, [3000, 4000]))

    async def issued():
        await sweep(runtime)  # a device that sends nothing never holds a period: the sweep issues it
        entries = await log_entries(client, issuer, res, buyer)
        return entries if len(entries) == 2 else None

    entries = await eventually(issued)
    assert {(e["deviceId"], e["readvalue_watthour"], e["kind"]) for e in entries} == {
        (known, 1000, "period"),
        (known, 2000, "period"),
    }

    await register(runtime, unknown, owner, "DEU")

    async def late():
        await sweep(runtime)
        entries = await log_entries(client, issuer, res, buyer)
        return entries if len(entries) == 4 else None

    entries = await eventually(late)
    # its energy in late certificates of the periods already issued, of its own country, named by its externalId
    assert {
        (e["deviceId"], e["externalId"], e["countryCode"], e["readvalue_watthour"], e["kind"], e["sequence"])
        for e in entries
        if e["deviceId"] == unknown
    } == {
        (unknown, f"ext-{unknown}", "DEU", 3000, "late", 1),
        (unknown, f"ext-{unknown}", "DEU", 4000, "late", 1),
    }
