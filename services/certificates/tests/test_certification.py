"""Certificates from reads and reservations over the real broker and database."""

import asyncio
from functools import partial

import pytest

from opendrec_certificates import handlers
from opendrec_kit.testing import dispatch, eventually, handling, publish_envelopes, publish_events, wait_for_event

from .helpers import (
    PERMS,
    T0,
    H,
    _equals,
    _ge,
    certificates,
    energy,
    ids,
    reads,
    register,
    registered,
    reservation,
    total_certified,
    z,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_reads_then_reservation_and_reservation_then_reads_certify_the_same(service, kafka_bootstrap):
    _runtime, client, issuer = service
    (dev_a, res_a), (dev_b, res_b) = ids(), ids()
    buyer, owner = 900001, 900002
    # Order 1: reads before the reservation is known.
    await publish_events(kafka_bootstrap, [registered(dev_a, owner), reads(dev_a, owner, [1000, 2000])])
    await publish_events(kafka_bootstrap, [reservation(res_a, dev_a, buyer)])
    # Order 2: the reservation first.
    await publish_events(kafka_bootstrap, [reservation(res_b, dev_b, buyer)])
    await publish_events(kafka_bootstrap, [reads(dev_b, owner, [1000, 2000]), registered(dev_b, owner)])

    async def both_done():
        a = await total_certified(client, issuer, res_a, buyer)
        b = await total_certified(client, issuer, res_b, buyer)
        return (a, b) if a == 3000 and b == 3000 else None

    await eventually(both_done)
    body = (await certificates(client, issuer, res_a, buyer)).json()
    assert [c["energyWh"] for c in body] == [c["readvalue_watthour"] for c in body] == [1000, 2000]  # one per hour
    assert body[0]["certificateStartDate"] == z(T0) == "2025-03-01T10:00:00.000Z"
    assert body[0]["certificate_issuance_startdate"] == z(T0) and body[0]["certificate_issuance_enddate"] == z(T0 + H)
    event, _ = await wait_for_event(
        kafka_bootstrap,
        "certificate.issued",
        lambda e: e["payload"]["reservation_id"] == res_b and e["payload"]["energy_wh"] == 2000,
    )
    assert event["payload"]["parts"] == [{"device_id": dev_b, "owner_organization_id": owner, "energy_wh": 2000}]
    assert (event["payload"]["kind"], event["payload"]["sequence"], event["payload"]["period_start"]) == (
        "period",
        0,
        "2025-03-01T11:00:00Z",
    )


async def test_a_redelivered_event_changes_nothing(service, kafka_bootstrap):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 900011, 900012
    await publish_events(kafka_bootstrap, [registered(dev, owner), reservation(res, dev, buyer)])
    batch = reads(dev, owner, [7000])
    [env] = await publish_events(kafka_bootstrap, [batch])
    await eventually(lambda: _equals(total_certified(client, issuer, res, buyer), 7000))
    duplicates_before = runtime.consumer_stats["read.ingested"]["duplicates"]
    # The same envelope again (as after a consumer crash before its offset commit) ...
    await publish_envelopes(kafka_bootstrap, [("read.ingested", str(dev), env.model_dump_json().encode())])
    # ... and the same reads under a new event id (a replay by the producer).
    await publish_events(kafka_bootstrap, [batch])
    await eventually(lambda: _ge(runtime.consumer_stats["read.ingested"], "duplicates", duplicates_before + 1))
    marker_dev, marker_res = ids()  # a later event on the same topic proves the replay was processed
    await publish_events(
        kafka_bootstrap,
        [registered(marker_dev, owner), reservation(marker_res, marker_dev, buyer), reads(marker_dev, owner, [5000])],
    )
    await eventually(lambda: _equals(total_certified(client, issuer, marker_res, buyer), 5000))
    assert await total_certified(client, issuer, res, buyer) == 7000
    assert len((await certificates(client, issuer, res, buyer)).json()) == 1


async def test_target_without_authority_to_exceed_caps_certified_energy(service, kafka_bootstrap):
    _, client, issuer = service
    dev, res = ids()
    buyer, owner = 900021, 900022
    await publish_events(
        kafka_bootstrap, [registered(dev, owner), reservation(res, dev, buyer, target=2500, exceed=False)]
    )
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000, 1000, 1000])])
    await eventually(lambda: _equals(total_certified(client, issuer, res, buyer), 2500))
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000], start=T0 + 5 * H)])
    marker_dev, marker_res = ids()
    await publish_events(
        kafka_bootstrap,
        [registered(marker_dev, owner), reservation(marker_res, marker_dev, buyer), reads(marker_dev, owner, [5000])],
    )
    await eventually(lambda: _equals(total_certified(client, issuer, marker_res, buyer), 5000))
    assert await total_certified(client, issuer, res, buyer) == 2500


async def test_reads_outside_the_window_are_not_certified(service, kafka_bootstrap):
    _, client, issuer = service
    dev, res = ids()
    buyer, owner = 900031, 900032
    await publish_events(
        kafka_bootstrap, [registered(dev, owner), reservation(res, dev, buyer, start=T0 + 2 * H, end=T0 + 3 * H)]
    )
    await publish_events(kafka_bootstrap, [reads(dev, owner, [1000, 2000, 3000, 4000])])  # hours 0..3
    await eventually(lambda: _equals(total_certified(client, issuer, res, buyer), 3000))


async def test_who_sees_the_certificate_log(service, kafka_bootstrap):
    _, client, issuer = service
    dev, res = ids()
    buyer, owner, stranger = 900041, 900042, 900043
    await publish_events(
        kafka_bootstrap, [registered(dev, owner), reservation(res, dev, buyer), reads(dev, owner, [10000])]
    )
    await eventually(lambda: _equals(total_certified(client, issuer, res, buyer), 10000))
    owner_view = await certificates(client, issuer, res, owner)
    assert owner_view.status_code == 200 and energy(owner_view.json()) == 10000
    hidden = await certificates(client, issuer, res, stranger)
    assert hidden.status_code == 404 and hidden.json()["statusCode"] == 404
    no_perm = await client.get(
        "/api/certificate-log/by-reservation-groupId",
        params={"groupId": res},
        headers=issuer.headers(organization_id=buyer),
    )
    assert no_perm.status_code == 403 and "CERTIFICATE_LOG_MANAGEMENT_CRUDL" in no_perm.json()["message"]
    anonymous = await client.get("/api/certificate-log/by-reservation-groupId", params={"groupId": res})
    assert anonymous.status_code == 401
    bad = await client.get(
        "/api/certificate-log/by-reservation-groupId",
        params={"groupId": "abc"},
        headers=issuer.headers(organization_id=buyer, permissions=PERMS),
    )
    assert bad.status_code == 400 and bad.json()["details"][0]["field"] == "groupId"


async def test_devices_certified_at_the_same_time_never_exceed_their_reservations_target(service, kafka_bootstrap):
    # Two devices of one reservation, certified in two transactions at once (two consumers, or two
    # replicas): the second must see what the first certified, or each could fill what is left.
    runtime, client, issuer = service
    (first_dev, res), (second_dev, _) = ids(), ids()
    buyer, owner = 900061, 900062
    created = reservation(res, first_dev, buyer, target=1500, exceed=False).model_copy(
        update={"device_ids": [first_dev, second_dev]}
    )
    await register(runtime, first_dev, owner)
    await register(runtime, second_dev, owner)
    await publish_events(kafka_bootstrap, [created])
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM reservations WHERE reservation_id = $1", res))
    first, second = reads(first_dev, owner, [1000]), reads(second_dev, owner, [1000])

    take_reads = partial(handlers.on_read_ingested, settlement=runtime.app.state.settlement)
    second_pids: list[int] = []

    async def take_second(event, ctx) -> None:
        second_pids.append(ctx.conn.get_server_pid())  # whose wait to look for
        await take_reads(event, ctx)

    async def blocked() -> bool:
        n = await runtime.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid = ANY($1::int[])",
            second_pids,
        )
        return n == 1

    # The first read's transaction stays open (uncommitted) while the second is handled as a consumer would.
    async with handling(runtime.pool, "certificates", take_reads, first):
        waiting = asyncio.create_task(dispatch(runtime.pool, "certificates", take_second, second))
        try:
            assert await eventually(blocked, timeout=5)  # the second waits for the first transaction
            assert not waiting.done()
        except BaseException:
            waiting.cancel()
            raise
    assert await waiting  # handled once the first committed

    body = (await certificates(client, issuer, res, buyer)).json()
    assert sorted(c["energyWh"] for c in body) == [500, 1000]
    assert energy(body) == 1500
