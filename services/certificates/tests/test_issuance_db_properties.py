"""Properties of issuance against the real database (Hypothesis): random reads of two devices (any lengths,
overlapping periods, instants, History, redelivered; never overlapping each other, as readings accepts them), two reservations of both devices one after the other (one
maybe capped by a target), every event in a random order, handed to the handlers as the consumer does, then the
issuance sweep. Whatever the example: certified Wh never exceed accepted Wh per device and period (cumulatively:
a carry only moves energy forward), no interval of a read is counted in two certificates, and no Wh is lost or
issued twice between allocation, certificates and carry."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opendrec_certificates import handlers, services
from opendrec_contracts import ReadIngested, ReservationCreated
from opendrec_kit.periods import FREQUENCIES
from opendrec_kit.testing import dispatch
from opendrec_kit.uow import UnitOfWork

from .helpers import database_examples, migrated_database, registered

BASE = datetime(2028, 2, 20, tzinfo=UTC)  # leap day and a month end inside
MINUTE = timedelta(minutes=1)
LATER = BASE + timedelta(days=400)  # every window closed and settled


@pytest.fixture(scope="module")
def database(postgres_url):
    """A certificates database of this module's own (each example uses ids of its own)."""
    return migrated_database(postgres_url, "cert_props")


read_ = st.tuples(
    st.integers(0, 60 * 24 * 45),  # start, minutes after BASE
    st.integers(0, 60 * 24 * 4),  # length in minutes (0: an instant)
    st.integers(0, 10**6),  # Wh
    st.booleans(),  # History
)
example = st.fixed_dictionaries(
    {
        "frequency": st.sampled_from(FREQUENCIES),
        "reads": st.tuples(st.lists(read_, max_size=6), st.lists(read_, max_size=6)),
        "split": st.integers(60 * 24 * 2, 60 * 24 * 40),  # where the first reservation ends and the second starts
        "target": st.one_of(st.none(), st.integers(1, 3 * 10**6)),
        "redeliver": st.booleans(),
        "order": st.randoms(use_true_random=False),
        "countries": st.sampled_from([("DEU", "DEU"), ("DEU", "KEN")]),
    }
)


async def scenario(url: str, ex: dict) -> None:
    n = uuid.uuid4().int % 10**9 * 10
    devices, reservations = (n, n + 1), (n + 2, n + 3)
    owner = 970001
    settlement = handlers.Settlement(settle=timedelta(0), clock=lambda: LATER)
    split = BASE + ex["split"] * MINUTE
    events = []
    for (res, start, end, target), buyer in zip(
        ((reservations[0], BASE, split, ex["target"]), (reservations[1], split, BASE + timedelta(days=60), None)),
        (970002, 970003),
        strict=True,
    ):
        events.append(
            ReservationCreated(
                reservation_id=res, reservation_uid=uuid.uuid4(), name=f"p-{res}", buyer_organization_id=buyer,
                device_ids=list(devices), reservation_start=start, reservation_end=end, frequency=ex["frequency"],
                target_capacity_wh=target, authority_to_exceed=target is None,
            )
        )  # fmt: skip
    for device, reads in zip(devices, ex["reads"], strict=True):
        # as readings accepts them: a read overlapping one accepted before is refused (the database refuses it too)
        unique: dict[tuple[int, int], tuple[int, bool]] = {}
        for s, length, wh, history in reads:
            if not any(s < e and b < s + length for b, e in unique):
                unique[(s, s + length)] = (wh, history)
        for history in (False, True):
            mine = [(s, e, wh) for (s, e), (wh, h) in unique.items() if h is history]
            if mine:
                event = ReadIngested(
                    batch_id=uuid.uuid4(), device_id=device, external_id=f"p-{device}", organization_id=owner,
                    read_type="History" if history else "Delta",
                    **ReadIngested.columns(
                        [BASE + s * MINUTE for s, _, _ in mine], [BASE + e * MINUTE for _, e, _ in mine],
                        [wh for _, _, wh in mine],
                    ),
                )  # fmt: skip
                events.append(event)
                if ex["redeliver"]:
                    events.append(event.model_copy())  # the same reads under a new event id
    for device, country in zip(devices, ex["countries"], strict=True):  # made known at a random point
        events.append(registered(device, owner, country))
    ex["order"].shuffle(events)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        for event in events:
            handler = {
                "read.ingested": handlers.on_read_ingested,
                "reservation.created": handlers.on_reservation_created,
                "device.registered": handlers.on_device_registered,
            }[event.TYPE]
            assert await dispatch(pool, "certificates", partial(handler, settlement=settlement), event)
        for _ in range(2):
            await services.certify_due(UnitOfWork(pool, "certificates"), timedelta(0), LATER)
        await check(pool, devices, reservations, capped=ex["target"] is not None)
    finally:
        await pool.close()


async def check(pool: asyncpg.Pool, devices: tuple[int, int], reservations: tuple[int, int], capped: bool) -> None:
    # a read is never certified beyond its energy, and its allocations are exactly what it counts as certified
    assert not await pool.fetchval(
        """SELECT count(*) FROM reads r WHERE r.device_id = ANY($1::bigint[]) AND (r.certified_wh > r.energy_wh
               OR r.certified_wh <> coalesce((SELECT sum(a.energy_wh) FROM allocations a WHERE a.read_id = r.id), 0))""",
        list(devices),
    )
    # accepted Wh per period: a read's allocation to a period is at most the read's energy in proportion to the
    # time of the period it covers (rounded up; the parts of a read add up to its share exactly)
    assert not await pool.fetchval(
        """SELECT count(*) FROM allocations a JOIN reads r ON r.id = a.read_id
           WHERE a.device_id = ANY($1::bigint[]) AND r.end_at > r.start_at
             AND a.energy_wh > ceil(r.energy_wh * extract(epoch FROM a.end_at - a.start_at)
                                    / extract(epoch FROM r.end_at - r.start_at))""",
        list(devices),
    )
    # no interval of a read is counted twice: its allocations (any reservation, any period) never overlap
    assert not await pool.fetchval(
        """SELECT count(*) FROM allocations a JOIN allocations b ON a.read_id = b.read_id
               AND (a.reservation_id, a.period_start) < (b.reservation_id, b.period_start)
               AND a.start_at < b.end_at AND b.start_at < a.end_at
           WHERE a.device_id = ANY($1::bigint[])""",
        list(devices),
    )
    # every closed period was issued (a capped reservation gave back what it could not take)
    assert not await pool.fetchval(
        "SELECT count(*) FROM allocations WHERE reservation_id = ANY($1::bigint[]) AND round_id IS NULL",
        list(reservations),
    )
    for res in reservations:
        # certified Wh never exceed accepted Wh per device and period: a device's part of a certificate holds no
        # more than its energy allocated in that certificate's round plus the carry the certificate took in (a
        # remainder under 1 kWh moves to the next certificate issued for the reservation and country)
        assert not await pool.fetchval(
            """SELECT count(*) FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
               WHERE c.reservation_id = $1
                 AND p.energy_wh > c.carry_in_wh + (SELECT coalesce(sum(a.energy_wh), 0) FROM allocations a
                                                    WHERE a.round_id = c.id AND a.device_id = p.device_id)""",
            res,
        )
        # row by row and in total: allocated + carry in = issued + carry out; parts add up to their certificate
        assert not await pool.fetchval(
            """SELECT count(*) FROM certificates c WHERE c.reservation_id = $1
                   AND (c.allocated_wh + c.carry_in_wh <> c.energy_wh + c.carry_out_wh
                        OR c.energy_wh <> (SELECT sum(p.energy_wh) FROM certificate_parts p WHERE p.certificate_id = c.id))""",
            res,
        )
        totals = await pool.fetchrow(
            """SELECT (SELECT coalesce(sum(energy_wh), 0) FROM allocations WHERE reservation_id = $1) AS allocated,
                      (SELECT coalesce(sum(energy_wh), 0) FROM certificates WHERE reservation_id = $1) AS certified,
                      (SELECT coalesce(sum(issued_wh), 0) FROM issuance_rounds WHERE reservation_id = $1) AS issued,
                      (SELECT coalesce(sum(carry_wh), 0) FROM issuance_carry WHERE reservation_id = $1) AS carried,
                      (SELECT target_capacity_wh FROM reservations WHERE reservation_id = $1) AS target""",
            res,
        )
        assert totals["certified"] == totals["issued"]
        assert totals["allocated"] == totals["certified"] + totals["carried"]  # never dropped, never twice
        if totals["target"] is not None:
            assert totals["certified"] <= totals["target"]
    # each device: everything certified for it, in all reservations, is energy it generated (accepted)
    for device in devices:
        certified, accepted = await pool.fetchrow(
            """SELECT (SELECT coalesce(sum(energy_wh), 0) FROM certificate_parts WHERE device_id = $1),
                      (SELECT coalesce(sum(energy_wh), 0) FROM reads WHERE device_id = $1)""",
            device,
        )
        assert certified <= accepted


# Each example is a few real transactions: 30 of them, and no long shrinking (a failure prints its example).
@database_examples(30)
@given(ex=example)
def test_issuance_properties_hold_in_the_database(database, ex):
    asyncio.run(scenario(database, ex))
