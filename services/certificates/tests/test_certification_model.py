"""Issue 13: a model test of certification (Hypothesis stateful testing) on the real database, with two consumers
at once.

The model plays the other services: readings accepts reads of three devices (the ongoing read of each device as
time passes, and late ones in gaps; never one overlapping a read it accepted), reservations creates reservations of
overlapping device sets (a device never in two windows at once, up to their effective ends) with or without a
target, ends them early (at the moment of the decision), and writes watermarks that follow the clock or lag (never
past an end not delivered yet: the end is before it on its partition). Their events wait in the model's outbox; a
rule hands the next message of a key (a device's reads, a reservation's creation, its end: a partition's order,
keys and topics each at their own pace), or two of them at once on two connections (two consumers), to the
certificates handlers as the consumer does (inbox claim, use case, outbox, one transaction each); again under the
same id (a redelivery, also racing the first delivery) or the same content under a new id; a read overlapping one
already stored is handed over too (the database refuses it); the certification sweep runs alone or while an event
is handled; the clock moves.

After every step, against the database: Σ allocated per read ≤ its energy (and equal to what it counts as
certified); a capped reservation is allocated and issued no more than its target; every allocation and certificate
lies inside [start, effective end) of its reservation; nothing is allocated or certified of a device not known
yet (its device.registered, published at the start, is delivered at a random point of the program, as any other
message: the order does not matter); a certificate's country is its devices'; (the model's: also an end not delivered yet); nothing is
issued past reservations' watermark; no two reads of a device overlap; no Wh is certified twice (a read's
allocations never overlap in time; allocated = issued + carried); certified ≤ accepted per device and period; the
accepted energy is the model's (redeliveries add nothing). At the end every event is delivered, the watermark passes
everything and the sweep runs: nothing waits, and every read inside a reservation's window is certified (unless its
target was reached).

In `make test`: 25 programs of 20 steps. A long run: CERT_MODEL_EXAMPLES=1000 CERT_MODEL_STEPS=50 (and
`-o timeout=0`); it shrinks a failure to its shortest program. `-s` prints what the programs reached.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from opendrec_certificates import handlers, services
from opendrec_contracts import (
    DeviceRegistered,
    Envelope,
    ReadIngested,
    ReservationCreated,
    ReservationEnded,
    envelope_for,
)
from opendrec_contracts.testing import device_registered
from opendrec_kit import watermarks
from opendrec_kit.messaging import handle_batch
from opendrec_kit.testing import dispatch
from opendrec_kit.uow import UnitOfWork

from .helpers import migrated_database

T0 = datetime(2031, 3, 3, tzinfo=UTC)  # a Monday
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
SETTLE = timedelta(minutes=10)
HORIZON = T0 + timedelta(days=4)  # the clock stays before it; windows end before it
LATER = T0 + timedelta(days=30)  # the end of a program: everything closed and settled
DEVICES = 3
COUNTRIES = ("DEU", "DEU", "KEN")  # devices 0 and 1 share certificates; device 2 is of a country of its own
OWNER = 985001
EXAMPLES = int(os.environ.get("CERT_MODEL_EXAMPLES", "25"))
STEPS = int(os.environ.get("CERT_MODEL_STEPS", "20"))
LONG = "CERT_MODEL_EXAMPLES" in os.environ
REACHED: Counter[str] = Counter()  # what the programs reached (printed: pytest -s)

# A batch of reads, and a reservation, as the rules draw them.
BATCH = {
    "back": st.integers(1, 144),  # its start, in 5 minutes before the clock
    "lengths": st.lists(st.integers(1, 24), min_size=1, max_size=3),  # in 5 minutes
    "energies": st.lists(st.integers(0, 5000), min_size=3, max_size=3),
}
READS = {"device": st.integers(0, DEVICES - 1), **BATCH}
RESERVATIONS = {
    "devices": st.sets(st.integers(0, DEVICES - 1), min_size=2),  # a device reserved already is refused there
    "ago": st.integers(-2, 12),  # its start, in whole hours before the clock's (after it: negative)
    "hours": st.integers(2, 24),
    "frequency": st.sampled_from(["hourly", "daily"]),
    "target_steps": st.one_of(st.none(), st.integers(1, 8)),  # 1.5 kWh each (and 7 Wh: a fraction of a kWh)
}


@pytest.fixture(scope="module")
def database(postgres_url):
    """A certificates database of this module's own; each program uses ids of its own."""
    return migrated_database(postgres_url, "cert_model")


@dataclass
class Reservation:
    """A reservation as the reservations service decided it (its end too, delivered or not)."""

    created: ReservationCreated
    ended_at: datetime | None = None
    end_delivered: bool = False

    @property
    def start(self) -> datetime:
        return self.created.reservation_start

    @property
    def end(self) -> datetime:
        """Its effective end."""
        end = self.created.reservation_end
        return end if self.ended_at is None else min(end, self.ended_at)

    @property
    def capped(self) -> bool:
        return self.created.target_capacity_wh is not None and not self.created.authority_to_exceed


@dataclass
class Message:
    envelope: Envelope
    event: Any


class CertificationModel(RuleBasedStateMachine):
    url: str = ""  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.pool: asyncpg.Pool = self.run(open_pool(self.url))
        n = uuid.uuid4().int % 10**8 * 100
        self.devices = [n + i for i in range(DEVICES)]
        self.next_reservation = n + 50
        self.clock = T0 + 12 * HOUR
        self.watermark: datetime | None = None
        self.settlement = handlers.Settlement(SETTLE, clock=lambda: self.clock, watermarked=True)
        self.accepted: dict[int, list[tuple[datetime, datetime, int]]] = {d: [] for d in self.devices}  # readings'
        self.stored: dict[int, list[tuple[datetime, datetime, int]]] = {d: [] for d in self.devices}  # delivered
        self.reservations: dict[int, Reservation] = {}
        self.pending: list[Message] = []  # published, not delivered yet
        self.delivered: list[Message] = []
        self.known: set[int] = set()  # devices whose device.registered was delivered
        self.run(self._prepare())
        for device, country in zip(self.devices, COUNTRIES, strict=True):
            self.publish(
                device_registered(device, organization_id=OWNER, country_code=country, external_id=f"m-{device}")
            )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _prepare(self) -> None:
        # Watermarks are the database's (one consumer per topic); the sweep's queue too: a program starts with its own.
        await self.pool.execute("DELETE FROM watermarks")
        await self.pool.execute("DELETE FROM certification_due")

    # -- the other services' decisions ------------------------------------------------------------------------

    @rule(**READS)
    def read(self, device: int, back: int, lengths: list[int], energies: list[int]) -> None:
        """Readings accepts a batch of consecutive reads (5-minute steps) up to 12 hours before the clock: an ongoing
        read, or a late one in a gap; a read overlapping one it accepted is refused there (the others go on)."""
        device_id = self.devices[device]
        start = max(self.clock - back * 5 * MINUTE, T0)
        batch = []
        for length, wh in zip(lengths, energies, strict=False):
            end = start + length * 5 * MINUTE
            if end > self.clock:
                break
            if not any(start < e and s < end for s, e, _ in self.accepted[device_id]):
                batch.append((start, end, wh))
            start = end
        if not batch:
            return
        self.accepted[device_id] += batch
        self.publish(reads_event(device_id, batch))

    @initialize(
        **RESERVATIONS,
        before=st.lists(st.fixed_dictionaries(BATCH), min_size=1, max_size=DEVICES),
        after=st.lists(st.fixed_dictionaries(BATCH), min_size=2, max_size=DEVICES),
    )
    def begin(self, before: list[dict[str, Any]], after: list[dict[str, Any]], **reservation: Any) -> None:
        """A program starts with reads of the first devices published, then a reservation, then more reads of the
        first devices (delivered first to last: the reservation meets energy of several devices already stored, then
        energy of several devices arrives for it at once), reservations' watermark at the clock."""
        for device, batch in enumerate(before):
            self.read(device, **batch)
        self.create_reservation(**reservation)
        for device, batch in enumerate(after):
            self.read(device, **batch)
        self.watermark_advances(0)

    @rule(**RESERVATIONS)
    def create_reservation(
        self, devices: set[int], ago: int, hours: int, frequency: str, target_steps: int | None
    ) -> None:
        """Reservations creates a reservation of the devices free over its window (the others are refused there)."""
        start = max(T0 + (self.clock - T0) // HOUR * HOUR - ago * HOUR, T0)
        window = (start, min(start + hours * HOUR, HORIZON))
        free = [
            self.devices[d]
            for d in sorted(devices)
            if not any(
                self.devices[d] in r.created.device_ids and window[0] < r.end and r.start < window[1]
                for r in self.reservations.values()
            )
        ]
        if not free or window[1] <= window[0]:
            return
        target_wh = None if target_steps is None else target_steps * 1500 + 7
        reservation_id = self.next_reservation
        self.next_reservation += 1
        created = ReservationCreated(
            reservation_id=reservation_id, reservation_uid=uuid.uuid4(), name=f"model-{reservation_id}",
            buyer_organization_id=985100 + reservation_id % 100, device_ids=free, reservation_start=window[0],
            reservation_end=window[1], frequency=frequency, target_capacity_wh=target_wh,
            authority_to_exceed=target_wh is None,
        )  # fmt: skip
        self.reservations[reservation_id] = Reservation(created)
        self.publish(created)

    @precondition(lambda self: any(self._endable()))
    @rule(which=st.integers(0, 100))
    def end_reservation(self, which: int) -> None:
        """The buyer ends a running reservation now (its devices are free from now on)."""
        endable = self._endable()
        r = endable[which % len(endable)]
        r.ended_at = self.clock
        c = r.created
        self.publish(
            ReservationEnded(
                reservation_id=c.reservation_id, reservation_uid=c.reservation_uid,
                buyer_organization_id=c.buyer_organization_id, device_ids=c.device_ids, ended_at=self.clock,
                reason="ended_by_buyer",
            )
        )  # fmt: skip

    def _endable(self) -> list[Reservation]:
        return [r for r in self.reservations.values() if r.ended_at is None and r.start < self.clock < r.end]

    @rule(
        minutes=st.integers(1, 24),
        metered=st.lists(st.one_of(st.none(), st.integers(0, 5000)), min_size=DEVICES, max_size=DEVICES),
        watermark=st.booleans(),
    )
    def tick(self, minutes: int, metered: list[int | None], watermark: bool) -> None:
        """Time passes: devices send the ongoing read of what they made since their last one (Wh; None: not yet), and
        reservations' watermark follows the clock, or lags (a paused consumer, a stalled relay)."""
        self.clock = min(self.clock + minutes * 5 * MINUTE, HORIZON)
        for device_id, wh in zip(self.devices, metered, strict=True):
            start = max((e for _, e, _ in self.accepted[device_id]), default=T0)
            if wh is not None and start < self.clock:
                self.accepted[device_id].append((start, self.clock, wh))
                self.publish(reads_event(device_id, [(start, self.clock, wh)]))
        if watermark:
            self.watermark_advances(0)

    @rule(back=st.integers(0, 12))
    def watermark_advances(self, back: int) -> None:
        """Reservations' watermark: what the subscriptions record on meeting it (one partition per topic). It never
        passes an end not delivered yet: the end's event is before it on the partition."""
        at = self.clock - back * 5 * MINUTE
        for r in self.reservations.values():
            if r.ended_at is not None and not r.end_delivered:
                at = min(at, r.ended_at)
        if self.watermark is not None and at <= self.watermark:
            return
        self.watermark = at
        for topic in services.RESERVATION_DECISIONS:
            self.run(watermarks.record(self.pool, f"certificates.{topic}", topic, 0, at, 1))

    def publish(self, event: Any) -> None:
        self.pending.append(Message(envelope_for(event, "model"), event))

    # -- the certificates service's consumers and worker ------------------------------------------------------

    async def _deliver(self, message: Message) -> bool:
        """What the consumer does with one message."""
        handler = {
            ReadIngested.TYPE: partial(handlers.on_read_ingested, settlement=self.settlement),
            ReservationCreated.TYPE: partial(handlers.on_reservation_created, settlement=self.settlement),
            ReservationEnded.TYPE: handlers.on_reservation_ended,
            DeviceRegistered.TYPE: partial(handlers.on_device_registered, settlement=self.settlement),
        }[message.envelope.type]
        return await dispatch(
            self.pool, "certificates", handler, message.event, consumer="certificates", envelope=message.envelope
        )

    def _delivered(self, message: Message) -> None:
        self.pending.remove(message)
        self.delivered.append(message)
        event = message.event
        if isinstance(event, ReadIngested):
            self.stored[event.device_id] += event.intervals()
        elif isinstance(event, ReservationEnded):
            self.reservations[event.reservation_id].end_delivered = True
        elif isinstance(event, DeviceRegistered):
            self.known.add(event.device_id)

    async def _sweep(self) -> services.Sweep:
        """The certification worker's step, as app.py runs it."""
        s = self.settlement
        now = await services.known_until(UnitOfWork(self.pool, "certificates"), s.settle, s.clock(), s.watermarked)
        return await services.certify_due(UnitOfWork(self.pool, "certificates"), s.settle, now)

    def _heads(self) -> list[Message]:
        """The next message of each key (a device's reads, a reservation's creation, its end): a partition delivers
        its messages in order, partitions and topics each at their own pace (a paused consumer, a rebalance)."""
        heads: dict[tuple[str, Any], Message] = {}
        for message in self.pending:
            heads.setdefault((message.envelope.type, getattr(message.event, message.event.KEY)), message)
        return list(heads.values())

    @precondition(lambda self: self.pending)
    @rule(which=st.integers(0, 100))
    def deliver(self, which: int) -> None:
        heads = self._heads()
        message = heads[which % len(heads)]
        assert self.run(self._deliver(message))
        self._delivered(message)

    @precondition(lambda self: len(self._heads()) >= 2)
    @rule(which=st.integers(0, 100), other=st.integers(0, 100))
    def deliver_two_at_once(self, which: int, other: int) -> None:
        """Two consumers (two partitions, or two topics) handle a message each at the same time."""
        heads = self._heads()
        first = heads[which % len(heads)]
        rest = [m for m in heads if m is not first]
        second = rest[other % len(rest)]
        assert self.run(gather(self._deliver(first), self._deliver(second))) == [True, True]
        self._delivered(first)
        self._delivered(second)

    @precondition(lambda self: len(self._heads()) >= 2)
    @rule(which=st.integers(0, 100), other=st.integers(0, 100))
    def deliver_two_contending(self, which: int, other: int) -> None:
        """Two consumers at once on the same devices: a reservation's creation or end and reads of one of its devices,
        reads of two devices of one reservation (where the locks matter)."""
        heads = self._heads()
        first = heads[which % len(heads)]
        rivals = [m for m in heads if m is not first and self._devices_of(m) & self._devices_of(first)]
        if not rivals:
            return
        second = rivals[other % len(rivals)]
        assert self.run(gather(self._deliver(first), self._deliver(second))) == [True, True]
        self._delivered(first)
        self._delivered(second)

    def _devices_of(self, message: Message) -> set[int]:
        """The devices a message touches: a read's, a reservation's; reads also touch the devices sharing a
        reservation with theirs (its target); a device's registration certifies its reads, as they do."""
        event = message.event
        if isinstance(event, ReadIngested | DeviceRegistered):
            return {event.device_id}.union(
                *(r.created.device_ids for r in self.reservations.values() if event.device_id in r.created.device_ids)
            )
        return set(event.device_ids)

    @precondition(lambda self: sum(isinstance(m.event, ReadIngested) for m in self.pending) >= 2)
    @rule(count=st.integers(2, 8))
    def deliver_reads_in_a_batch(self, count: int) -> None:
        """The consumer's batch of read.ingested (issue 16): the reads at hand, of any devices, each device's in order,
        in one transaction (a device's runs of reads continuing one another across its events are stored as one)."""
        batch = [m for m in self.pending if isinstance(m.event, ReadIngested)][:count]
        handled = self.run(
            handle_batch(
                self.pool,
                "certificates",
                "certificates",
                [(m.envelope, m.event) for m in batch],
                partial(handlers.on_reads_ingested, settlement=self.settlement),
            )
        )
        assert len(handled) == len(batch)
        for message in batch:
            self._delivered(message)

    @precondition(lambda self: self.pending)
    @rule(which=st.integers(0, 100))
    def delivered_twice_at_once(self, which: int) -> None:
        """A redelivery racing the first delivery (a rebalance): handled once."""
        heads = self._heads()
        message = heads[which % len(heads)]
        assert sorted(self.run(gather(self._deliver(message), self._deliver(message)))) == [False, True]
        self._delivered(message)

    @precondition(lambda self: self.delivered)
    @rule(which=st.integers(0, 100), as_new=st.booleans())
    def redeliver(self, which: int, as_new: bool) -> None:
        """A message handled before, again: under its id (the inbox knows it), or the same content under a new id
        (a producer's retry): nothing changes."""
        message = self.delivered[which % len(self.delivered)]
        if as_new:
            event = message.event.model_copy()
            assert self.run(self._deliver(Message(envelope_for(event, "model"), event)))
        else:
            assert not self.run(self._deliver(message))

    @rule()
    def sweep(self) -> None:
        self.run(self._sweep())

    @precondition(lambda self: self.pending)
    @rule(which=st.integers(0, 100))
    def sweep_while_delivering(self, which: int) -> None:
        heads = self._heads()
        message = heads[which % len(heads)]
        _, handled = self.run(gather(self._sweep(), self._deliver(message)))
        assert handled
        self._delivered(message)

    @precondition(lambda self: any(self.stored.values()))
    @rule(
        device=st.integers(0, DEVICES - 1),
        which=st.integers(0, 100),
        shift=st.integers(-11, 11).filter(lambda k: k != 0),
    )
    def overlapping_read(self, device: int, which: int, shift: int) -> None:
        """A read overlapping one stored (readings never sends one): the database refuses it, nothing changes."""
        with_reads = [d for d in self.devices if self.stored[d]]
        device_id = with_reads[device % len(with_reads)]
        start, end, _ = self.stored[device_id][which % len(self.stored[device_id])]
        moved = start + shift * (end - start) / 12  # the same length, overlapping it by at least a twelfth
        event = reads_event(device_id, [(moved, moved + (end - start), 999)])
        with pytest.raises(asyncpg.IntegrityConstraintViolationError):
            self.run(self._deliver(Message(envelope_for(event, "model"), event)))

    # -- what must hold after every step ----------------------------------------------------------------------

    @invariant()
    def certification_holds(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        conn = self.pool
        devices = self.devices
        ids = sorted(self.reservations)
        # Σ allocated per read ≤ its energy, and exactly what the read counts as certified
        bad = await conn.fetch(
            """SELECT r.id, r.energy_wh, r.certified_wh FROM reads r WHERE r.device_id = ANY($1::bigint[])
                 AND (r.certified_wh > r.energy_wh OR r.certified_wh <>
                      coalesce((SELECT sum(a.energy_wh) FROM allocations a WHERE a.read_id = r.id), 0))""",
            devices,
        )
        assert not bad, f"reads allocated beyond their energy or miscounted: {bad}"
        # no two reads of a device overlap
        bad = await conn.fetch(
            """SELECT a.device_id, a.start_at, a.end_at, b.start_at, b.end_at FROM reads a JOIN reads b
                 ON b.device_id = a.device_id AND a.id < b.id AND a.start_at < b.end_at AND b.start_at < a.end_at
               WHERE a.device_id = ANY($1::bigint[])""",
            devices,
        )
        assert not bad, f"overlapping reads stored: {bad}"
        # the accepted energy is the model's: redeliveries and refused reads added nothing
        stored = {
            r["device_id"]: (r["n"], r["wh"])
            for r in await conn.fetch(
                "SELECT device_id, count(*) AS n, sum(energy_wh) AS wh FROM reads WHERE device_id = ANY($1::bigint[])"
                " GROUP BY device_id",
                devices,
            )
        }
        for device, reads in self.stored.items():
            n, energy = stored.get(device, (0, 0))
            assert (n, energy) == (len(reads), sum(wh for _, _, wh in reads)), (device, n, energy)
        # no Wh certified twice: a read's allocations (any reservation, any period) never overlap in time
        bad = await conn.fetch(
            """SELECT a.read_id FROM allocations a JOIN allocations b ON a.read_id = b.read_id
                   AND (a.reservation_id, a.period_start) < (b.reservation_id, b.period_start)
                   AND a.start_at < b.end_at AND b.start_at < a.end_at
               WHERE a.device_id = ANY($1::bigint[])""",
            devices,
        )
        assert not bad, f"a read's interval allocated twice: {bad}"
        # every allocation, round and certificate part inside its reservation's window [start, effective end) as
        # reservations decided it (an end not delivered yet included): nothing of the time after an end
        starts = [self.reservations[i].start for i in ids]
        ends = [self.reservations[i].end for i in ids]
        bad = await conn.fetch(
            """WITH w (id, s, e) AS (SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]))
               SELECT 'allocation' AS what, a.reservation_id, a.start_at AS lo, a.end_at AS hi
                 FROM allocations a JOIN w ON w.id = a.reservation_id WHERE a.start_at < w.s OR a.end_at > w.e
               UNION ALL
               SELECT 'round', i.reservation_id, i.period_start, i.period_end
                 FROM issuance_rounds i JOIN w ON w.id = i.reservation_id WHERE i.period_start < w.s OR i.period_end > w.e
               UNION ALL
               SELECT 'part', c.reservation_id, p.generation_start, p.generation_end
                 FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id JOIN w ON w.id = c.reservation_id
                WHERE p.generation_start < w.s OR p.generation_end > w.e""",
            ids,
            starts,
            ends,
        )
        assert not bad, f"certified outside the window: {bad}"
        # nothing allocated or certified of a device not known yet (its country and externalId are not)
        unknown = [d for d in devices if d not in self.known]
        bad = await conn.fetch(
            """SELECT 'allocation' AS what, device_id FROM allocations WHERE device_id = ANY($1::bigint[])
               UNION ALL
               SELECT 'part', device_id FROM certificate_parts WHERE device_id = ANY($1::bigint[])""",
            unknown,
        )
        assert not bad, f"certified energy of a device not known yet: {bad}"
        # a certificate's country is its devices' (every part's device of that country)
        bad = await conn.fetch(
            """SELECT c.id FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
               JOIN devices d ON d.device_id = p.device_id
               WHERE c.reservation_id = ANY($1::bigint[]) AND c.country_code IS DISTINCT FROM d.country_code""",
            ids,
        )
        assert not bad, f"a certificate of another country than its devices': {bad}"
        # nothing issued past reservations' watermark (periods close by it, not by the clock)
        last = await conn.fetchval(
            "SELECT max(period_end) FROM issuance_rounds WHERE reservation_id = ANY($1::bigint[])", ids
        )
        assert last is None or (self.watermark is not None and last <= self.watermark), (last, self.watermark)
        for reservation_id in ids:
            await self._check_reservation(conn, reservation_id)
        # certified ≤ accepted per device and period: a part holds no more than its device's energy allocated in
        # that certificate's round plus the carry the certificate took in; and per device in all
        bad = await conn.fetch(
            """SELECT c.id FROM certificates c JOIN certificate_parts p ON p.certificate_id = c.id
               WHERE c.reservation_id = ANY($1::bigint[])
                 AND p.energy_wh > c.carry_in_wh + (SELECT coalesce(sum(a.energy_wh), 0) FROM allocations a
                                                    WHERE a.round_id = c.id AND a.device_id = p.device_id)""",
            ids,
        )
        assert not bad, f"a part holds more than its device's energy in the period: {bad}"
        for device in devices:
            certified, accepted = await conn.fetchrow(
                """SELECT (SELECT coalesce(sum(energy_wh), 0) FROM certificate_parts WHERE device_id = $1),
                          (SELECT coalesce(sum(energy_wh), 0) FROM reads WHERE device_id = $1)""",
                device,
            )
            assert certified <= accepted

    async def _check_reservation(self, conn: asyncpg.Pool, reservation_id: int) -> None:
        t = await conn.fetchrow(
            """SELECT (SELECT coalesce(sum(energy_wh), 0) FROM allocations WHERE reservation_id = $1) AS allocated,
                      (SELECT coalesce(sum(energy_wh), 0) FROM allocations
                        WHERE reservation_id = $1 AND round_id IS NOT NULL) AS taken,
                      (SELECT coalesce(sum(allocated_wh), 0) FROM issuance_rounds WHERE reservation_id = $1) AS rounds,
                      (SELECT coalesce(sum(issued_wh), 0) FROM issuance_rounds WHERE reservation_id = $1) AS issued,
                      (SELECT coalesce(sum(energy_wh), 0) FROM certificates WHERE reservation_id = $1) AS certified,
                      (SELECT coalesce(sum(carry_wh), 0) FROM issuance_carry WHERE reservation_id = $1) AS carried,
                      (SELECT count(*) FROM certificates c WHERE reservation_id = $1
                          AND c.energy_wh <> (SELECT sum(p.energy_wh) FROM certificate_parts p
                                              WHERE p.certificate_id = c.id)) AS parts_off""",
            reservation_id,
        )
        # allocated = issued + carried, round by round and in total; parts add up to their certificate
        assert t["taken"] == t["rounds"], dict(t)
        assert t["issued"] == t["certified"] and t["rounds"] == t["certified"] + t["carried"], dict(t)
        assert t["parts_off"] == 0
        r = self.reservations[reservation_id]
        if r.capped:
            target = r.created.target_capacity_wh
            assert t["allocated"] <= target and t["certified"] <= target, (dict(t), target)

    # -- at the end: everything delivered, the watermark past everything, the sweep ----------------------------

    def teardown(self) -> None:
        try:
            self.run(self._drain())
        finally:
            self.run(self.pool.close())
            self.loop.close()

    async def _drain(self) -> None:
        for message in list(self.pending):
            assert await self._deliver(message)
            self._delivered(message)
        self.clock = LATER
        self.watermark = LATER
        for topic in services.RESERVATION_DECISIONS:
            await watermarks.record(self.pool, f"certificates.{topic}", topic, 0, LATER, 1)
        for _ in range(3):  # due devices, then the periods they closed
            await self._sweep()
        await self._check()
        waiting = await self.pool.fetchval(
            "SELECT count(*) FROM allocations WHERE reservation_id = ANY($1::bigint[]) AND round_id IS NULL",
            sorted(self.reservations),
        )
        assert waiting == 0, "allocations left unissued after every period closed"
        # what the program reached, for --hypothesis-show-statistics
        kinds = await self.pool.fetch(
            "SELECT DISTINCT kind, target_reached FROM certificates WHERE reservation_id = ANY($1::bigint[])",
            sorted(self.reservations),
        )
        REACHED.update(
            f"certificates {k['kind']}" + (" reaching a target" if k["target_reached"] else "") for k in kinds
        )
        REACHED.update(["programs"] + ["an early end"] * any(r.ended_at for r in self.reservations.values()))
        for reservation_id, r in self.reservations.items():
            reached = await self.pool.fetchval(
                """SELECT EXISTS (SELECT 1 FROM certificates WHERE reservation_id = $1 AND target_reached)
                       OR (SELECT coalesce(sum(energy_wh), 0) FROM allocations WHERE reservation_id = $1) >= $2""",
                reservation_id,
                r.created.target_capacity_wh if r.capped else 2**62,
            )
            if reached:
                continue
            for device in r.created.device_ids:
                inside = [(s, e) for s, e, wh in self.stored[device] if r.start <= s and e <= r.end and wh]
                left = await self.pool.fetch(
                    """SELECT start_at, end_at, energy_wh, certified_wh FROM reads
                       WHERE device_id = $1 AND (start_at, end_at) IN (SELECT * FROM unnest($2::timestamptz[],
                             $3::timestamptz[])) AND certified_wh < energy_wh""",
                    device,
                    [s for s, _ in inside],
                    [e for _, e in inside],
                )
                assert not left, f"reads inside reservation {reservation_id}'s window left uncertified: {left}"


async def open_pool(url: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=2, max_size=4)  # two consumers at once, and the sweep


async def gather(*coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros))


def reads_event(device_id: int, reads: list[tuple[datetime, datetime, int]]) -> ReadIngested:
    return ReadIngested(
        batch_id=uuid.uuid4(), device_id=device_id, external_id=f"m-{device_id}", organization_id=OWNER,
        read_type="Delta",
        **ReadIngested.columns([s for s, _, _ in reads], [e for _, e, _ in reads], [wh for _, _, wh in reads]),
    )  # fmt: skip


def test_certification_model_with_two_consumers(database):
    CertificationModel.url = database
    run_state_machine_as_test(
        CertificationModel,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            # no long shrinking in make test (the failing program is printed all the same); a long run shrinks
            phases=[Phase.explicit, Phase.reuse, Phase.generate, *([Phase.shrink] if LONG else [])],
            print_blob=True,
        ),
    )
    print(f"\nprograms reaching each state: {dict(sorted(REACHED.items()))}")
