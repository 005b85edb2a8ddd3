"""Issuance (issue 14, D-REC's): one certificate per reservation x country x period, with a part per device;
whole kWh, the remainder carried; late and history certificates; expiry; exactly once under replays and two
concurrent sweeps. Real database (events handed to the handlers as the consumer does) and, for the sweeps, a
service of its own whose clock the test moves."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from opendrec_certificates import handlers, services
from opendrec_certificates.app import build
from opendrec_certificates.settings import Settings
from opendrec_contracts import ReadIngested
from opendrec_contracts.testing import device_registered
from opendrec_kit.testing import TokenIssuer, dispatch, settings_for_test, started

from .helpers import PERMS, T0, H, ids, reads, register, reservation, reservation_log

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def deliver(runtime, event) -> bool:
    """Hand an event to its handler as the consumer does (inbox claim, use case, outbox: one transaction)."""
    settlement = runtime.app.state.settlement
    handler = {
        "device.registered": partial(handlers.on_device_registered, settlement=settlement),
        "read.ingested": partial(handlers.on_read_ingested, settlement=settlement),
        "reservation.created": partial(handlers.on_reservation_created, settlement=settlement),
        "reservation.ended": handlers.on_reservation_ended,
    }[event.TYPE]
    return await dispatch(runtime.pool, "certificates", handler, event)


def interval_reads(device_id, owner, intervals, read_type="Delta"):
    """read.ingested of (start, end, Wh) intervals."""
    starts, ends, values = (list(c) for c in zip(*intervals, strict=True))
    return ReadIngested(
        batch_id=uuid.uuid4(),
        device_id=device_id,
        external_id=f"ext-{device_id}",
        organization_id=owner,
        read_type=read_type,
        **ReadIngested.columns(starts, ends, values),
    )


async def rounds(runtime, reservation_id):
    return await runtime.pool.fetch(
        """SELECT kind, sequence, country_code, period_start, period_end, allocated_wh, carry_in_wh, issued_wh,
                  carry_out_wh, target_reached FROM issuance_rounds WHERE reservation_id = $1
           ORDER BY period_start, sequence, country_code""",
        reservation_id,
    )


async def certificates_of(runtime, reservation_id):
    return await runtime.pool.fetch(
        """SELECT c.*, (SELECT array_agg(array[p.device_id, p.energy_wh] ORDER BY p.device_id)
                        FROM certificate_parts p WHERE p.certificate_id = c.id) AS parts
           FROM certificates c WHERE reservation_id = $1 ORDER BY period_start, sequence, country_code""",
        reservation_id,
    )


async def invariants(runtime, reservation_id):
    """What holds after any issuance: allocated + carry_in = issued + carry_out row by row (certificates and
    rounds); parts add up to the certificate; the carry chain of a (reservation, country) never loses or
    duplicates a Wh; no read certified beyond its energy, no part of a read in two certificates."""
    pool = runtime.pool
    assert not await pool.fetchval(
        "SELECT count(*) FROM certificates WHERE allocated_wh + carry_in_wh <> energy_wh + carry_out_wh"
    )
    assert not await pool.fetchval(
        """SELECT count(*) FROM certificates c WHERE energy_wh <>
               (SELECT sum(energy_wh) FROM certificate_parts p WHERE p.certificate_id = c.id)"""
    )
    totals = await pool.fetchrow(
        """SELECT (SELECT coalesce(sum(energy_wh), 0) FROM allocations WHERE reservation_id = $1
                   AND round_id IS NOT NULL) AS allocated,
                  (SELECT coalesce(sum(issued_wh), 0) FROM issuance_rounds WHERE reservation_id = $1) AS issued,
                  (SELECT coalesce(sum(energy_wh), 0) FROM certificates WHERE reservation_id = $1) AS certified,
                  (SELECT coalesce(sum(carry_wh), 0) FROM issuance_carry WHERE reservation_id = $1) AS carried""",
        reservation_id,
    )
    assert totals["issued"] == totals["certified"]
    assert totals["allocated"] == totals["issued"] + totals["carried"]  # never dropped, never twice
    assert not await pool.fetchval("SELECT count(*) FROM reads WHERE certified_wh > energy_wh")
    assert not await pool.fetchval(
        """SELECT count(*) FROM allocations a JOIN allocations b ON a.read_id = b.read_id
               AND a.reservation_id = b.reservation_id AND a.period_start < b.period_start AND a.end_at > b.start_at"""
    )


async def test_a_read_straddling_periods_is_split_exactly_and_the_kwh_remainder_carried(service):
    runtime, _client, _issuer = service
    dev, res = ids()
    buyer, owner = 950011, 950012
    await register(runtime, dev, owner)  # certified only once known here
    assert await deliver(runtime, reservation(res, dev, buyer))
    # 1,800 Wh from 10:20 to 11:50: 800 in hour 10 (40 min), 1,000 in hour 11 (50 min); then 600 and 700
    assert await deliver(
        runtime,
        interval_reads(
            dev,
            owner,
            [
                (T0 + timedelta(minutes=20), T0 + timedelta(minutes=110), 1800),
                (T0 + 2 * H, T0 + 3 * H, 600),
                (T0 + 3 * H, T0 + 4 * H, 700),
            ],
        ),
    )
    got = [
        (r["kind"], r["period_start"], r["allocated_wh"], r["carry_in_wh"], r["issued_wh"], r["carry_out_wh"])
        for r in await rounds(runtime, res)
    ]
    assert got == [
        ("period", T0, 800, 0, 0, 800),  # under 1 kWh: nothing issued, all carried
        ("period", T0 + H, 1000, 800, 1000, 800),
        ("period", T0 + 2 * H, 600, 800, 1000, 400),
        ("period", T0 + 3 * H, 700, 400, 1000, 100),
    ]
    issued = await certificates_of(runtime, res)
    assert [(r["period_start"], r["energy_wh"], r["carry_in_wh"], r["carry_out_wh"]) for r in issued] == [
        (T0 + H, 1000, 800, 800),
        (T0 + 2 * H, 1000, 800, 400),
        (T0 + 3 * H, 1000, 400, 100),
    ]
    await invariants(runtime, res)


async def test_a_late_read_gets_a_late_certificate_and_the_issued_one_is_never_reopened(service):
    runtime, client, issuer = service
    dev, res = ids()
    buyer, owner = 950021, 950022
    await register(runtime, dev, owner)  # certified only once known here
    assert await deliver(runtime, reservation(res, dev, buyer))
    assert await deliver(runtime, interval_reads(dev, owner, [(T0, T0 + timedelta(minutes=30), 2000)]))
    [first] = await certificates_of(runtime, res)
    for n, minutes in enumerate((30, 45), start=1):
        late = interval_reads(
            dev, owner, [(T0 + timedelta(minutes=minutes), T0 + timedelta(minutes=minutes + 15), 1000)]
        )
        assert await deliver(runtime, late)
        issued = await certificates_of(runtime, res)
        assert [(r["kind"], r["sequence"], r["energy_wh"]) for r in issued][-1] == ("late", n, 1000)
    issued = await certificates_of(runtime, res)
    assert [(r["kind"], r["sequence"], r["period_start"]) for r in issued] == [
        ("period", 0, T0),
        ("late", 1, T0),
        ("late", 2, T0),
    ]
    assert dict(issued[0]) == dict(first)  # unchanged
    entries = (
        await client.get(
            "/api/certificate-log/by-reservation-groupId",
            params={"groupId": res},
            headers=issuer.headers(organization_id=buyer, permissions=PERMS),
        )
    ).json()
    assert [(e["kind"], e["sequence"], e["readvalue_watthour"]) for e in entries] == [
        ("period", 0, 2000),
        ("late", 1, 1000),
        ("late", 2, 1000),
    ]
    await invariants(runtime, res)


async def test_history_reads_get_certificates_per_device_and_read_when_at_least_one_kwh(service):
    runtime, _client, _issuer = service
    dev, res = ids()
    buyer, owner = 950031, 950032
    await register(runtime, dev, owner)  # certified only once known here
    assert await deliver(runtime, reservation(res, dev, buyer, start=T0 - 1000 * H, frequency="monthly"))
    history = interval_reads(
        dev,
        owner,
        [(T0 - 500 * H, T0 - 400 * H, 2500), (T0 - 300 * H, T0 - 200 * H, 700)],
        read_type="History",
    )
    assert await deliver(runtime, history)
    issued = await certificates_of(runtime, res)
    assert [(r["kind"], r["sequence"], r["period_start"], r["period_end"], r["energy_wh"]) for r in issued] == [
        ("history", 1, T0 - 500 * H, T0 - 400 * H, 2000),  # whole kWh; the 700 Wh read gets none
    ]
    # both remainders (500 + 700 Wh) are carried into the reservation's next certificate
    assert await deliver(runtime, interval_reads(dev, owner, [(T0, T0 + H, 800)]))
    issued = await certificates_of(runtime, res)
    assert [(r["kind"], r["energy_wh"], r["carry_in_wh"], r["carry_out_wh"]) for r in issued][-1] == (
        "period",
        2000,
        1200,
        0,
    )
    await invariants(runtime, res)


async def test_replays_and_duplicates_change_nothing(service):
    runtime, _client, _issuer = service
    dev, res = ids()
    buyer, owner = 950041, 950042
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer)
    batch = reads(dev, owner, [1500, 1500, 400])
    assert await deliver(runtime, created)
    assert await deliver(runtime, batch)
    before = ([dict(r) for r in await certificates_of(runtime, res)], [dict(r) for r in await rounds(runtime, res)])
    ledger = await runtime.pool.fetchval("SELECT count(*) FROM ledger_entries")
    # the same events under new ids (a replay of every topic), and the sweep
    assert await deliver(runtime, created.model_copy())
    assert await deliver(runtime, batch.model_copy())
    settlement = runtime.app.state.settlement
    await services.certify_due(runtime.uow(), settlement.settle, settlement.clock())
    after = ([dict(r) for r in await certificates_of(runtime, res)], [dict(r) for r in await rounds(runtime, res)])
    assert after == before
    ids_ = [r["id"] for r in before[0]]
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE certificate_id = ANY($1) AND kind = 'issuance'", ids_
    ) == len(ids_)
    assert await runtime.pool.fetchval("SELECT count(*) FROM ledger_entries") >= ledger
    await invariants(runtime, res)


# -- a service whose clock the test moves: periods close as time passes ----------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


SETTLE = timedelta(seconds=60)


@pytest.fixture(scope="module")
async def clocked(postgres_url, kafka_bootstrap):
    """(runtime, clock): a service of its own; its sweep worker idles (the tests run sweeps themselves)."""
    runtime = build(
        settings_for_test(
            Settings,
            postgres_url,
            kafka_bootstrap,
            certify_settle_s=SETTLE.total_seconds(),
            certify_sweep_interval_s=3600,
            wait_for_reservation_watermarks=False,
        )
    )
    clock = Clock(datetime(2030, 6, 30, 10, 0, tzinfo=UTC))
    runtime.app.state.settlement.clock = clock
    issuer = TokenIssuer()
    issuer.trust_in(runtime)
    async with started(runtime) as client:
        yield runtime, clock, client, issuer


async def sweep(runtime, clock):
    return await services.certify_due(runtime.uow(), SETTLE, clock.now)


async def test_a_period_is_issued_once_closed_and_settled_and_two_concurrent_sweeps_issue_it_once(clocked):
    runtime, clock, *_ = clocked
    clock.now = datetime(2030, 6, 30, 10, 0, tzinfo=UTC)
    start = clock.now
    dev, res = ids()
    buyer, owner = 950051, 950052
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, start=start - 24 * H, end=start + 24 * H, frequency="daily")
    assert await deliver(runtime, created)
    # reads of this morning, settled: allocated, but the day (UTC) has not closed
    assert await deliver(runtime, reads(dev, owner, [1000, 2000, 3000], start=start - 4 * H))
    assert await runtime.pool.fetchval("SELECT count(*) FROM allocations WHERE reservation_id = $1", res) == 3
    assert await certificates_of(runtime, res) == []
    clock.now = datetime(2030, 7, 1, tzinfo=UTC) + SETTLE - timedelta(seconds=1)
    assert (await sweep(runtime, clock)).issued == 0  # closed, not settled
    clock.now += timedelta(seconds=1)
    first, second = await asyncio.gather(sweep(runtime, clock), sweep(runtime, clock))
    assert first.issued + second.issued == 1
    [issued] = await certificates_of(runtime, res)
    assert (issued["kind"], issued["period_start"], issued["period_end"], issued["energy_wh"]) == (
        "period",
        datetime(2030, 6, 30, tzinfo=UTC),
        datetime(2030, 7, 1, tzinfo=UTC),
        6000,
    )
    assert (
        await runtime.pool.fetchval("SELECT count(*) FROM ledger_entries WHERE certificate_id = $1", issued["id"]) == 1
    )
    assert await runtime.pool.fetchval("SELECT count(*) FROM holdings WHERE certificate_id = $1", issued["id"]) == 1
    assert (await sweep(runtime, clock)).issued == 0
    await invariants(runtime, res)


async def test_the_sweep_issues_a_closed_period_with_the_energy_of_devices_still_streaming(clocked):
    """A device streaming reads is never due itself (its latest read always waits to settle): the sweep issuing a
    closed period allocates the reservation's devices first, so the period is issued once, with every device's
    energy, not followed by a late certificate of a device whose last reads of it settled after its last event."""
    runtime, clock, *_ = clocked
    close = datetime(2030, 7, 2, 10, 0, tzinfo=UTC)
    a, res = ids()
    b = a + 2
    buyer, owner = 950071, 950072
    for device in (a, b):
        await register(runtime, device, owner)  # certified only once known here
    minute = timedelta(minutes=1)
    clock.now = close - H
    created = reservation(res, a, buyer, start=close - H, end=close).model_copy(update={"device_ids": [a, b]})
    assert await deliver(runtime, created)

    def stream(device, start, end, step=minute):
        return interval_reads(device, owner, [(t, t + step, 1000) for t in _range(start, end, step)])

    clock.now = close + timedelta(seconds=10)  # both devices' reads of the hour; the last minute not settled yet
    assert await deliver(runtime, stream(a, close - H, close))
    assert await deliver(runtime, stream(b, close - H, close))
    clock.now = close + timedelta(seconds=50)  # b goes on past the window: its last minute of it still unsettled
    assert await deliver(runtime, stream(b, close, close + timedelta(seconds=50), timedelta(seconds=50)))
    clock.now = close + timedelta(seconds=65)  # a goes on, its last minute settled: b's too, but b sent nothing since
    assert await deliver(runtime, stream(a, close, close + timedelta(seconds=65), timedelta(seconds=65)))
    assert await certificates_of(runtime, res) == []  # the event path waits for b
    assert (await sweep(runtime, clock)).issued == 1
    [issued] = await certificates_of(runtime, res)
    assert (issued["kind"], issued["energy_wh"], issued["parts"]) == ("period", 120_000, [[a, 60_000], [b, 60_000]])
    clock.now = close + timedelta(minutes=10)
    assert await deliver(runtime, stream(b, close + timedelta(seconds=50), close + timedelta(minutes=9)))
    assert (await sweep(runtime, clock)).issued == 0
    assert len(await certificates_of(runtime, res)) == 1  # no late certificate
    await invariants(runtime, res)


def _range(start, end, step):
    while start < end:
        yield start
        start += step


async def test_nothing_is_issued_after_the_expiry_and_what_waited_is_given_back(clocked):
    runtime, clock, *_ = clocked
    clock.now = datetime(2030, 8, 10, 10, 0, tzinfo=UTC)
    start = clock.now
    dev, res = ids()
    buyer, owner = 950061, 950062
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, start=start - 24 * H, end=start + H, frequency="daily").model_copy(
        update={"reservation_expiry": start + 2 * H}
    )
    assert await deliver(runtime, created)
    assert await deliver(runtime, reads(dev, owner, [1000, 2000], start=start - 3 * H))
    assert await runtime.pool.fetchval("SELECT sum(certified_wh) FROM reads WHERE device_id = $1", dev) == 3000
    clock.now = start + 2 * H  # the window closed at start + 1h, settled; but the reservation expired now
    await sweep(runtime, clock)
    assert await certificates_of(runtime, res) == []
    assert await runtime.pool.fetchval("SELECT sum(certified_wh) FROM reads WHERE device_id = $1", dev) == 0
    assert not await runtime.pool.fetchval("SELECT count(*) FROM allocations WHERE reservation_id = $1", res)


async def test_an_early_end_closes_the_last_period_at_the_end(clocked):
    runtime, clock, *_ = clocked
    clock.now = datetime(2030, 9, 10, 10, 0, tzinfo=UTC)
    start = clock.now
    dev, res = ids()
    buyer, owner = 950071, 950072
    await register(runtime, dev, owner)  # certified only once known here
    created = reservation(res, dev, buyer, start=start - 5 * H, end=start + 48 * H, frequency="daily")
    assert await deliver(runtime, created)
    assert await deliver(runtime, reads(dev, owner, [1000, 2000], start=start - 3 * H))
    from .test_reservation_end import ended

    assert await deliver(runtime, ended(created, start - H))
    clock.now = start - H + SETTLE
    await sweep(runtime, clock)
    [issued] = await certificates_of(runtime, res)
    assert (issued["period_start"], issued["period_end"], issued["energy_wh"]) == (start - 5 * H, start - H, 3000)


async def test_one_certificate_per_country_and_period_with_a_part_per_device(clocked):
    runtime, clock, client, issuer = clocked
    clock.now = datetime(2030, 10, 10, 10, 0, tzinfo=UTC)
    start = clock.now
    (a, res), (b, _), (c, _) = ids(), ids(), ids()
    buyer, owner, other = 950081, 950082, 950083
    for device, country in ((a, "DEU"), (b, "DEU"), (c, "KEN")):
        assert await deliver(runtime, device_registered(device, organization_id=owner, country_code=country))
    created = reservation(res, a, buyer, start=start - 24 * H, end=start + 48 * H, frequency="daily")
    created = created.model_copy(update={"device_ids": [a, b, c]})
    assert await deliver(runtime, created)
    assert await deliver(runtime, reads(a, owner, [1000, 3000], start=start - 4 * H))
    assert await deliver(runtime, reads(b, other, [2000], start=start - 3 * H))
    assert await deliver(runtime, reads(c, owner, [4000], start=start - 3 * H))
    clock.now = datetime(2030, 10, 11, tzinfo=UTC) + SETTLE
    await sweep(runtime, clock)
    day = datetime(2030, 10, 10, tzinfo=UTC)
    issued = await certificates_of(runtime, res)
    assert sorted((r["country_code"], r["period_start"], r["energy_wh"], r["parts"]) for r in issued) == [
        ("DEU", day, 6000, sorted([[a, 4000], [b, 2000]])),
        ("KEN", day, 4000, [[c, 4000]]),
    ]
    await invariants(runtime, res)
    body = (await reservation_log(client, issuer, created.reservation_uid, buyer)).json()
    two = next(x for x in body["certificatelog"] if len(x["perDeviceCertificateLog"]) > 1)
    assert {e["deviceId"]: e["readvalue_watthour"] for e in two["perDeviceCertificateLog"]} == {a: 4000, b: 2000}
    assert {e["certificateTransactionUID"] for e in two["perDeviceCertificateLog"]} == {two["id"]}
    assert sorted(two["metadata"]["deviceIds"]) == sorted([f"e{a}", f"e{b}"]) and two["energyWh"] == 6000
    ours = next(x for x in body["certificates"] if x["id"] == two["id"])
    assert (ours["deviceId"], ours["countryCode"], ours["kind"], len(ours["parts"])) == (None, "DEU", "period", 2)
    by_id = await client.get(
        "/api/certificate-log/by-reservation-groupId",
        params={"groupId": res},
        headers=issuer.headers(organization_id=buyer, permissions=PERMS),
    )
    assert by_id.headers["X-Total-Count"] == "3"  # one entry per device part
    # the owner of device b (its reads' organization) sees its own part only
    mine = await client.get(
        f"/api/certificate-log/issuer/certified/{created.reservation_uid}",
        headers=issuer.headers(organization_id=other, permissions=PERMS),
    )
    assert mine.status_code == 200, mine.text
    assert [(x["energyWh"], x["deviceId"]) for x in mine.json()["certificates"]] == [(2000, b)]
    assert mine.json()["totalEnergyWh"] == 2000


async def test_a_reservation_arriving_after_its_devices_reads_issues_one_certificate_per_period(service):
    runtime, _client, _issuer = service
    (a, res), (b, _) = ids(), ids()
    buyer, owner = 950091, 950092
    for device in (a, b):
        assert await deliver(runtime, device_registered(device, organization_id=owner, country_code="IND"))
    assert await deliver(runtime, reads(a, owner, [1500, 2500]))
    assert await deliver(runtime, reads(b, owner, [700, 300]))
    assert await deliver(runtime, reservation(res, a, buyer).model_copy(update={"device_ids": [a, b]}))
    issued = await certificates_of(runtime, res)
    assert [(r["kind"], r["period_start"], r["energy_wh"], r["carry_out_wh"], len(r["parts"])) for r in issued] == [
        ("period", T0, 2000, 200, 2),  # one certificate with both devices (2,200 Wh: 200 carried)
        ("period", T0 + H, 3000, 0, 2),
    ]
    issued_per_device = {}
    for r in issued:
        for device, wh in r["parts"]:
            issued_per_device[device] = issued_per_device.get(device, 0) + wh
    assert issued_per_device == {a: 4000, b: 1000}  # the carried 200 Wh left with the next certificate
    await invariants(runtime, res)
