"""read.ingested taken many events a transaction (issue 16: D-REC clients send one read a request, one event each):
the same certificates as one at a time, and an event the database refuses never takes the others with it."""

import uuid
from functools import partial

import pytest

from opendrec_certificates import handlers
from opendrec_contracts import ReadIngested, ReservationCreated, envelope_for
from opendrec_kit import dlq
from opendrec_kit.messaging import handle_batch
from opendrec_kit.testing import dispatch, eventually, publish_events, wait_for_event

from .helpers import T0, H, reads, register, reservation, total_certified

pytestmark = pytest.mark.asyncio(loop_scope="session")


def single_reads(devices: list[int], owner: int, hours: int) -> list[ReadIngested]:
    """One hourly read an event, the devices taking turns (as D-REC clients send them)."""
    return [reads(d, owner, [1000 + 10 * h + i], start=T0 + h * H) for h in range(hours) for i, d in enumerate(devices)]


def reservation_of(reservation_id: int, devices: list[int], buyer: int) -> ReservationCreated:
    return reservation(reservation_id, devices[0], buyer).model_copy(update={"device_ids": devices})


async def allocated(pool, reservation_id: int) -> list[tuple]:
    """What the reservation took of each device's reads, per period (the device's place in the reservation)."""
    rows = await pool.fetch(
        """SELECT a.period_start, rank() OVER (PARTITION BY a.period_start ORDER BY a.device_id) AS place,
                  sum(a.energy_wh) AS wh
           FROM allocations a WHERE a.reservation_id = $1 GROUP BY a.period_start, a.device_id
           ORDER BY a.period_start, a.device_id""",
        reservation_id,
    )
    return [(r["period_start"], r["place"], r["wh"]) for r in rows]


async def issued(pool, reservation_id: int) -> tuple[int, int, list[int]]:
    """Wh issued, Wh carried to a next certificate, and each certificate's number of parts (in period order)."""
    wh = await pool.fetchval(
        "SELECT coalesce(sum(energy_wh), 0) FROM certificates WHERE reservation_id = $1", reservation_id
    )
    carry = await pool.fetchval(
        "SELECT coalesce(sum(carry_wh), 0) FROM issuance_carry WHERE reservation_id = $1", reservation_id
    )
    parts = await pool.fetch(
        """SELECT count(p.id) AS n FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
           WHERE c.reservation_id = $1 GROUP BY c.id ORDER BY min(c.period_start), min(c.sequence)""",
        reservation_id,
    )
    return wh, carry, [r["n"] for r in parts]


async def test_a_batch_certifies_what_one_event_at_a_time_does(service):
    runtime, _client, _issuer = service
    settlement = runtime.app.state.settlement
    base = uuid.uuid4().int % 10**8 * 10
    one_devices, batch_devices = [base + 1, base + 2, base + 3], [base + 4, base + 5, base + 6]
    buyer, owner = 900301, 900302
    for device in one_devices + batch_devices:
        await register(runtime, device, owner)
    for reservation_id, devices in ((base, one_devices), (base + 7, batch_devices)):
        assert await dispatch(
            runtime.pool,
            "certificates",
            partial(handlers.on_reservation_created, settlement=settlement),
            reservation_of(reservation_id, devices, buyer),
        )
    for event in single_reads(one_devices, owner, 6):
        assert await dispatch(
            runtime.pool, "certificates", partial(handlers.on_read_ingested, settlement=settlement), event
        )
    events = single_reads(batch_devices, owner, 6)
    items = [(envelope_for(e, "readings"), e) for e in events]
    handled = await handle_batch(
        runtime.pool,
        "batch-test",
        "certificates",
        items + items[:4],
        partial(handlers.on_reads_ingested, settlement=settlement),
    )
    assert handled == [env.event_id for env, _ in items]  # the repeated ones once

    # Every device's energy of every period taken alike, and all of it issued or carried, both ways.
    assert await allocated(runtime.pool, base + 7) == await allocated(runtime.pool, base)
    total = sum(e.intervals()[0][2] for e in events)
    (one_wh, one_carry, one_parts), (wh, carry, parts) = (
        await issued(runtime.pool, base),
        await issued(runtime.pool, base + 7),
    )
    assert one_wh + one_carry == wh + carry == total
    # One at a time, a period's first read (closed already) issues it, and the other devices' reads of it come
    # late (a certificate each); taken together, each period's certificate holds every device.
    assert parts == [3] * 6 and len(one_parts) > 6


async def test_a_read_overlapping_another_refuses_its_batch_whole(service):
    runtime, _client, _issuer = service
    settlement = runtime.app.state.settlement
    device = uuid.uuid4().int % 10**9
    first, overlapping, fine = (
        reads(device, 900312, [1000]),
        reads(device, 900312, [500], start=T0 + H / 2),
        reads(device, 900312, [700], start=T0 + 5 * H),
    )
    items = [(envelope_for(e, "readings"), e) for e in (first, overlapping, fine)]
    with pytest.raises(Exception, match="reads_no_overlap"):
        await handle_batch(
            runtime.pool,
            "batch-test",
            "certificates",
            items,
            partial(handlers.on_reads_ingested, settlement=settlement),
        )
    assert await runtime.pool.fetchval("SELECT count(*) FROM reads WHERE device_id = $1", device) == 0
    assert (
        await runtime.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", [env.event_id for env, _ in items]
        )
        == 0
    )


async def test_the_consumer_dead_letters_the_overlapping_event_and_certifies_the_others(service, kafka_bootstrap):
    runtime, client, issuer = service
    device, other = (uuid.uuid4().int % 10**9 for _ in range(2))
    res, buyer, owner = device + 1, 900321, 900322
    await register(runtime, device, owner)
    await register(runtime, other, owner)
    await publish_events(kafka_bootstrap, [reservation_of(res, [device, other], buyer)])
    await eventually(lambda: runtime.pool.fetchval("SELECT 1 FROM reservations WHERE reservation_id = $1", res))
    overlapping = reads(device, owner, [500], start=T0 + H / 2)
    # published back to back: the consumer takes them in one batch (or a few); the outcome is the same
    envelopes = await publish_events(
        kafka_bootstrap,
        [
            reads(device, owner, [1000]),
            overlapping,
            reads(other, owner, [2000]),
            reads(device, owner, [3000], start=T0 + 2 * H),
        ],
    )
    _dead, headers = await wait_for_event(
        kafka_bootstrap, dlq.dlq_topic("read.ingested"), lambda e: e.get("event_id") == str(envelopes[1].event_id)
    )
    assert "reads_no_overlap" in headers["x-error-message"]
    assert await eventually(lambda: _is(total_certified(client, issuer, res, buyer), 6000)) == 6000


async def _is(awaitable, expected):
    value = await awaitable
    return value if value == expected else None
