"""The registry's pure rules: serial numbers, splitting, balances; a Hypothesis property test of operation
sequences keeping the two balance formulas and every serial in exactly one range."""

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opendrec_certificates.registry import domain
from opendrec_certificates.registry.domain import Balances, SerialRange


def test_the_serial_number_is_written_as_the_seeds():
    number = domain.serial_number(
        "IREC",
        7,
        "SG",
        datetime(2021, 11, 6, tzinfo=UTC),
        datetime(2021, 11, 10, tzinfo=UTC),
        [(1767250000, 1768249999)],
    )
    assert number == "IREC-DEV00000007-SG-2021-1106-1110-1767.250000 to 1768.249999"


def test_serial_numbers_across_a_year_several_ranges_and_no_country():
    number = domain.serial_number(
        "DREC", 1, None, datetime(2021, 12, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC), [(1, 5), (11, 1_000_000)]
    )
    assert number == "DREC-DEV00000001-XX-2021-1201-0101-0.000001 to 0.000005, 0.000011 to 1.000000"
    assert domain.vintage(datetime(2021, 12, 30, tzinfo=UTC), datetime(2022, 1, 2, tzinfo=UTC)) == "2021-2022-1230-0102"


def test_quantities_are_exact_mwh():
    assert [domain.mwh(w) for w in (0, 1, 999_999, 1_000_000, 1767250000)] == [
        "0.000000",
        "0.000001",
        "0.999999",
        "1.000000",
        "1767.250000",
    ]
    assert (domain.quantity(1_000_000), domain.quantity(250_000), domain.quantity(1)) == (1, 0.25, 0.000001)


def test_an_operation_takes_the_first_available_serials_and_cuts_the_last_range():
    ranges = [SerialRange(1, 10, "retired"), SerialRange(11, 20), SerialRange(31, 40)]
    taken, rest = domain.take(ranges, 15)
    assert taken == [SerialRange(11, 20), SerialRange(31, 35)] and rest == SerialRange(36, 40)
    taken, rest = domain.take(ranges, 10)
    assert taken == [SerialRange(11, 20)] and rest is None
    with pytest.raises(domain.NotEnoughEnergy):
        domain.take(ranges, 21)
    with pytest.raises(ValueError):
        domain.take(ranges, 0)


def test_merged_joins_adjacent_ranges():
    assert domain.merged([SerialRange(6, 9, "retired"), SerialRange(1, 5), SerialRange(11, 12)]) == [(1, 9), (11, 12)]


def test_balances_follow_the_seeds_formulas():
    b = Balances(total=100, on_sale=10, retired=20, on_exporting=5, exported=7, on_auction=3)
    assert b.available == 100 - 10 - 0 - 20 - 5 - 7 - 3 == 55
    assert b.balance == 55 + 10 + 0 + 5 + 3 == 73


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["transfer", "settle", "retire", "lock", "release", "export"]), st.integers(1, 400)),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(energy=st.integers(1, 1000), operations=OPERATIONS)
def test_any_sequence_of_operations_keeps_the_formulas_and_every_serial_once(energy, operations):
    """A model of one holding: operations as the use cases do them (take the first available serials, then change
    states); after each, balances_of satisfies both formulas and the ranges cover 1..energy exactly once."""
    ranges = [SerialRange(1, energy)]
    pending: list[list[SerialRange]] = []  # each operation's ranges (locks and transfers that can end)

    def apply(taken, state):
        nonlocal ranges
        starts = {r.start for r in taken}
        kept = [r for r in ranges if r.start not in starts]
        cut = [r for r in ranges if r.start in starts and r.end != next(t.end for t in taken if t.start == r.start)]
        rests = [SerialRange(next(t.end for t in taken if t.start == r.start) + 1, r.end) for r in cut]
        ranges = kept + rests + [SerialRange(t.start, t.end, state) for t in taken]

    for operation, wh in operations:
        if operation in ("transfer", "retire", "lock"):
            try:
                taken, _ = domain.take(ranges, wh)
            except domain.NotEnoughEnergy:
                continue
            state = {"transfer": "transferring", "retire": "retired", "lock": "on_sale"}[operation]
            apply(taken, state)
            if operation != "retire":
                pending.append([SerialRange(t.start, t.end, state) for t in taken])
        elif pending:
            ended = pending.pop(wh % len(pending))
            back = "exported" if operation == "export" and ended[0].state == "on_sale" else "available"
            if operation == "settle" and ended[0].state == "transferring":
                back = "gone"  # accepted: the serials leave this holding
            starts = {r.start for r in ended}
            ranges = [r for r in ranges if r.start not in starts]
            if back != "gone":
                ranges += [SerialRange(r.start, r.end, back) for r in ended]  # type: ignore[arg-type]  # a State
            else:
                energy -= sum(r.energy_wh for r in ended)
        b = domain.balances_of(ranges)
        assert b.available >= 0 and min(b.on_sale, b.retired, b.exported) >= 0
        assert (
            b.available
            == b.total - b.on_sale - b.on_retirement - b.retired - b.on_exporting - b.exported - b.on_auction
        )
        assert b.balance == b.available + b.on_sale + b.on_retirement + b.on_exporting + b.on_auction
        in_transfer = sum(r.energy_wh for r in ranges if r.state == "transferring")
        assert b.total + in_transfer == sum(r.energy_wh for r in ranges) == energy
        serials = sorted((r.start, r.end) for r in ranges)
        assert all(a[1] < b_[0] for a, b_ in itertools.pairwise(serials))  # never overlapping
