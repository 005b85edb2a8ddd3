"""Properties of issuance (Hypothesis): certified Wh never exceed accepted Wh per device and period, no interval is
counted in two certificates, and allocated + carry_in = issued + carry_out for every certificate."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from opendrec_certificates.domain import KWH, Read, Reservation, allocate, issue_round, share_in_window
from opendrec_kit.periods import FREQUENCIES

BASE = datetime(2028, 1, 1, tzinfo=UTC)  # a leap year: February 29 falls inside
MINUTE = timedelta(minutes=1)

reads_ = st.lists(
    st.tuples(
        st.integers(0, 200_000),  # start, minutes after BASE (~139 days)
        st.integers(0, 30_000),  # length in minutes (0: an instant)
        st.integers(0, 10**7),  # Wh
        st.integers(0, 10**7),  # Wh already certified elsewhere (capped at the energy)
        st.booleans(),  # History
    ),
    max_size=15,
)


@settings(max_examples=300, deadline=None)
@given(
    reads=reads_,
    frequency=st.sampled_from(FREQUENCIES),
    window=st.tuples(st.integers(0, 200_000), st.integers(1, 200_000)),
    target=st.one_of(st.none(), st.integers(0, 10**8)),
    exceed=st.booleans(),
)
def test_allocations_never_exceed_a_read_and_never_overlap(reads, frequency, window, target, exceed):
    start = BASE + window[0] * MINUTE
    end = start + window[1] * MINUTE
    res = Reservation(1, start, end, frequency, target, exceed, 0)
    given_reads = [
        Read(i, BASE + s * MINUTE, BASE + (s + n) * MINUTE, wh, min(done, wh), history)
        for i, (s, n, wh, done, history) in enumerate(reads)
    ]
    out = allocate(given_reads, res)
    for read in given_reads:
        mine = sorted((a for a in out if a.read_id == read.id), key=lambda a: (a.start, a.end))
        total = sum(a.energy_wh for a in mine)
        assert total <= read.uncertified_wh  # never more than the read has left
        share = share_in_window(read, start, end)
        assert total <= (share[0] if share else 0)  # never more than its share of the window
        if not res.capped and share is not None:
            assert total == min(share[0], read.uncertified_wh)  # exactly its share: no Wh lost in the split
        for a in mine:
            assert a.energy_wh > 0 and start <= a.start <= a.end <= end
            assert a.period_start <= a.start and (a.end <= a.period_end or a.start == a.end)
        for x, y in pairwise(mine):
            assert x.end <= y.start  # no interval of a read in two periods (certificates)
        assert len({a.period_start for a in mine}) == len(mine)  # one allocation per (read, period)
    if res.capped:
        assert sum(a.energy_wh for a in out) <= (target or 0)


@settings(max_examples=300, deadline=None)
@given(
    rounds=st.lists(st.dictionaries(st.integers(1, 4), st.integers(1, 5_000), min_size=1, max_size=4), max_size=12),
    target=st.one_of(st.none(), st.integers(1, 40_000)),
)
def test_the_carry_chain_loses_and_duplicates_nothing(rounds, target):
    carry: dict[int, int] = {}
    issued_total = allocated_total = 0
    per_device_allocated: dict[int, int] = {}
    per_device_issued: dict[int, int] = {}
    for allocated in rounds:
        if target is not None:
            room = target - allocated_total  # allocation stops at the target (domain.allocate)
            capped = {}
            for device in sorted(allocated):
                take = min(allocated[device], max(room, 0))
                room -= take
                if take:
                    capped[device] = take
            allocated = capped
            if not allocated:
                break
        allocated_total += sum(allocated.values())
        for d, wh in allocated.items():
            per_device_allocated[d] = per_device_allocated.get(d, 0) + wh
        full = target is not None and allocated_total >= target
        r = issue_round(carry, allocated, target_left=None if target is None else target - issued_total, full=full)
        assert r.allocated_wh + r.carry_in_wh == r.issued_wh + r.carry_out_wh  # row by row
        assert sum(wh for _, wh in r.parts) == r.issued_wh and all(wh > 0 for _, wh in r.parts)
        assert sum(wh for _, wh in r.carry_out) == r.carry_out_wh
        assert full or target is not None or r.issued_wh % KWH == 0
        issued_total += r.issued_wh
        for d, wh in r.parts:
            per_device_issued[d] = per_device_issued.get(d, 0) + wh
        carry = dict(r.carry_out)
        if r.target_reached:
            assert issued_total == target
            break
    assert issued_total + sum(carry.values()) == allocated_total  # never dropped, never issued twice
    if target is None:
        assert issued_total == allocated_total // KWH * KWH
    else:
        assert issued_total <= target
    for d, wh in per_device_issued.items():
        assert wh <= per_device_allocated[d]  # a device's certified Wh never exceed its accepted Wh
