"""The D-REC read rules, each accepted and refused, without I/O."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from opendrec_kit.timestamps import iso_exact
from opendrec_readings import domain
from opendrec_readings.domain import Device, LastRead, Read, Reads

COMMISSIONED = datetime(2020, 1, 1, tzinfo=UTC)
ONBOARDED = datetime(2023, 6, 1, tzinfo=UTC)
NOW = datetime(2024, 1, 1, tzinfo=UTC)
# 100 kW at 2000 kWh/kWp/year: the bound is ~27.4 kWh per hour in the first years.
DEVICE = Device(device_id=1, capacity_kw=100, commissioning_date=COMMISSIONED, onboarded_at=ONBOARDED)
H = timedelta(hours=1)


def read(index: int, end: datetime, wh: int, start: datetime | None = None) -> Read:
    return Read(index, start, end, wh)


def judge(read_type, device, last, reads: list[Read], **kwargs) -> domain.Verdict:
    return domain.validate_batch(read_type, device, last, Reads.of(reads), **kwargs)


def columns(rows: list[tuple]) -> list[list]:
    """(starttimestamp, endtimestamp, value) rows as the three columns parse_reads takes."""
    return [list(column) for column in zip(*rows, strict=False)]


def parse(rows: list[tuple], read_type, unit, tz) -> tuple[Reads, list[domain.ReadError]]:
    return domain.parse_reads(*columns(rows), read_type, unit, tz)


# -- units --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "wh"),
    [
        (Decimal("5000"), "Wh", 5000),
        (Decimal("1.2"), "kWh", 1200),
        (Decimal("0.000001"), "MWh", 1),
        (Decimal("2.5"), "GWh", 2_500_000_000),
        (Decimal("1.5E+3"), "Wh", 1500),
        (Decimal("1200.000"), "Wh", 1200),
        (7, "kWh", 7000),
        (Decimal("-3"), "Wh", -3),  # the sign is for the rules to judge
    ],
)
def test_units_convert_exactly_to_whole_watt_hours(value, unit, wh):
    assert domain.to_wh(value, unit) == wh


@pytest.mark.parametrize(
    ("value", "unit", "message"),
    [
        (Decimal("1.0005"), "kWh", "1000.5 Wh: only whole watt-hours"),
        (Decimal("0.5"), "Wh", "only whole watt-hours"),
        (Decimal("1.0000000000000000000001"), "GWh", "only whole watt-hours"),  # beyond float precision
        (Decimal("1E+30"), "Wh", "too large"),
        (Decimal("NaN"), "Wh", "finite"),
    ],
)
def test_units_refuse_fractions_of_a_watt_hour_and_absurd_values(value, unit, message):
    with pytest.raises(ValueError, match=message):
        domain.to_wh(value, unit)


# -- timestamps ----------------------------------------------------------------------


@pytest.mark.parametrize("blank", [None, "", " ", "  "])
def test_blank_timestamps_mean_none(blank):
    assert domain.parse_timestamp(blank, None) is None


def test_timestamps_in_utc_or_with_offset_become_utc():
    assert domain.parse_timestamp("2022-09-08T12:55:47.335Z", None) == datetime(
        2022, 9, 8, 12, 55, 47, 335000, tzinfo=UTC
    )
    assert domain.parse_timestamp("2022-09-08T18:25:47+05:30", None) == datetime(2022, 9, 8, 12, 55, 47, tzinfo=UTC)


def test_local_times_are_converted_with_the_timezone():
    tz = domain.resolve_timezone("asia/kolkata")  # case-insensitive, as the reference
    assert tz.key == "Asia/Kolkata"
    assert domain.parse_timestamp("2022-09-08 18:25:47.5", tz) == datetime(2022, 9, 8, 12, 55, 47, 500000, tzinfo=UTC)


def test_timestamps_refused_when_unparseable_local_without_zone_or_skipped_by_dst():
    with pytest.raises(ValueError, match="not an ISO 8601"):
        domain.parse_timestamp("08/09/2022", None)
    with pytest.raises(ValueError, match="no UTC offset"):
        domain.parse_timestamp("2022-09-08 12:55:47", None)
    with pytest.raises(ValueError, match="does not exist"):
        domain.parse_timestamp("2024-03-31 02:30:00", domain.resolve_timezone("Europe/Berlin"))
    with pytest.raises(ValueError, match="unknown time zone"):
        domain.resolve_timezone("Mars/Olympus")


def test_parse_reads_reports_every_bad_read_by_index():
    raw = [
        ("", "2023-07-01T00:00:00Z", Decimal("1")),
        (" ", "", Decimal("2")),
        (None, "yesterday", Decimal("3")),
        (None, "2023-07-02T00:00:00Z", Decimal("0.5")),
    ]
    reads, errors = parse(raw, "Delta", "Wh", None)
    assert [r.index for r in reads] == [0]
    assert [(e.index, e.reason.split(" ")[0]) for e in errors] == [
        (1, "endtimestamp"),
        (2, "endtimestamp"),
        (3, "value"),
    ]


def test_parse_reads_ignores_the_start_of_ongoing_reads_but_reads_it_for_history():
    raw = [("not a date", "2023-07-01T00:00:00Z", Decimal("1"))]
    reads, errors = parse(raw, "Delta", "kWh", None)
    assert not errors and reads.starts == [None] and reads.values_wh == [1000]
    reads, errors = parse(raw, "History", "kWh", None)
    assert not reads and "starttimestamp" in errors[0].reason


def test_fingerprint_identifies_identical_content():
    a = Reads.of([read(0, ONBOARDED + H, 10)])
    assert domain.fingerprint("Delta", a) == domain.fingerprint("Delta", Reads.of([read(0, ONBOARDED + H, 10)]))
    assert domain.fingerprint("Delta", a) != domain.fingerprint("Delta", Reads.of([read(0, ONBOARDED + H, 11)]))
    assert domain.fingerprint("Delta", a) != domain.fingerprint("Aggregate", a)


def test_fingerprint_keeps_its_encoding_so_batches_stored_earlier_are_still_recognised():
    """sha256 of the type and (start µs or -1, end µs, Wh) per read, as 64-bit integers: fingerprints
    stored with batches were made so, and a resubmission must still match them."""
    import hashlib
    import struct

    def micros(moment):
        return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)

    t = datetime(2023, 7, 1, 0, 0, 0, 7, tzinfo=UTC)
    history = [read(i, t + (i + 1) * H, 5 + i, None if i == 2 else t + i * H) for i in range(4)]
    delta = [read(i, t + i * i * timedelta(seconds=1), 10 * i) for i in range(6)]
    for read_type, reads in (("History", history), ("Delta", delta)):
        numbers = [n for r in reads for n in (-1 if r.start is None else micros(r.start), micros(r.end), r.value_wh)]
        expected = hashlib.sha256(read_type.encode() + struct.pack(f"={len(numbers)}q", *numbers)).digest()
        assert domain.fingerprint(read_type, Reads.of(reads)) == expected


# -- single rules: accept and refuse ---------------------------------------------------


def test_rule_value_positive():
    assert domain.rule_value_positive(1) is None
    assert "greater than 0" in domain.rule_value_positive(0)


def test_rule_meter_total_not_negative():
    assert domain.rule_meter_total_not_negative(0) is None
    assert "negative" in domain.rule_meter_total_not_negative(-1)


def test_rule_start_given():
    assert domain.rule_start_given(ONBOARDED) is None
    assert "required" in domain.rule_start_given(None)


def test_rule_start_before_end():
    assert domain.rule_start_before_end(ONBOARDED - H, ONBOARDED) is None
    assert "must be before" in domain.rule_start_before_end(ONBOARDED, ONBOARDED)


def test_rule_not_before_commissioning():
    assert domain.rule_not_before_commissioning(COMMISSIONED, DEVICE) is None
    assert "commissioning" in domain.rule_not_before_commissioning(COMMISSIONED - H, DEVICE)


def test_rule_history_before_onboarding():
    assert domain.rule_history_before_onboarding(ONBOARDED - H, ONBOARDED, DEVICE) is None
    assert "onboarding" in domain.rule_history_before_onboarding(ONBOARDED - H, ONBOARDED + H, DEVICE)
    three_years = datetime(2020, 6, 1, tzinfo=UTC)
    assert domain.rule_history_before_onboarding(three_years, three_years + H, DEVICE) is None
    assert "3 years" in domain.rule_history_before_onboarding(three_years - H, three_years, DEVICE)


def test_rule_end_after_onboarding():
    assert domain.rule_end_after_onboarding(ONBOARDED + H, DEVICE) is None
    assert "onboarding" in domain.rule_end_after_onboarding(ONBOARDED, DEVICE)


def test_rule_not_in_future():
    assert domain.rule_not_in_future(NOW, NOW) is None
    assert "future" in domain.rule_not_in_future(NOW + timedelta(seconds=1), NOW)


def test_rule_end_increasing():
    assert domain.rule_end_increasing(ONBOARDED + H, None) is None
    assert domain.rule_end_increasing(ONBOARDED + 2 * H, ONBOARDED + H) is None
    assert "previous read" in domain.rule_end_increasing(ONBOARDED + H, ONBOARDED + H)


def test_rule_total_increasing():
    assert domain.rule_total_increasing(101, 100) is None
    assert "greater than the previous total" in domain.rule_total_increasing(100, 100)


def test_rule_ongoing_type():
    assert domain.rule_ongoing_type(None, "Aggregate") is None
    assert domain.rule_ongoing_type("Delta", "Delta") is None
    assert domain.rule_ongoing_type("Delta", "History") is None  # History stays possible
    assert "Delta reads" in domain.rule_ongoing_type("Delta", "Aggregate")


def test_rule_no_overlap():
    assert domain.rule_no_overlap(ONBOARDED - 2 * H, ONBOARDED - H, ONBOARDED - H, ONBOARDED, "x") is None  # touching
    assert "overlaps" in domain.rule_no_overlap(
        ONBOARDED - 2 * H, ONBOARDED - H + timedelta(seconds=1), ONBOARDED - H, ONBOARDED, "x"
    )


def test_plausibility_bound_follows_the_formula():
    # 1.2 × 100 kW × 1000 × 10 h × 2000/8760, no degradation in the first years
    start = datetime(2021, 6, 1, tzinfo=UTC)
    assert domain.plausibility_bound_wh(DEVICE, start, start + 10 * H) == pytest.approx(
        1.2 * 100 * 1000 * 10 * 2000 / 8760
    )
    # 4 whole years since commissioning: 0.995^3; a device yield replaces the default
    older = Device(1, 100, COMMISSIONED, ONBOARDED, annual_yield=1500)
    start = datetime(2024, 2, 1, tzinfo=UTC)
    assert domain.plausibility_bound_wh(older, start, start + H) == pytest.approx(
        1.2 * 100 * 1000 * 1500 / 8760 * 0.995**3
    )


def test_rule_plausible():
    # 3 whole years after commissioning: 1.2 × 100 × 1000 × 2000/8760 × 0.995² = 27123.3 Wh in an hour
    start = ONBOARDED
    assert domain.rule_plausible(DEVICE, start, start + H, 27_123) is None
    refusal = domain.rule_plausible(DEVICE, start, start + H, 27_124)
    assert "must be below 27123 Wh" in refusal


def test_annual_yield_device_then_country_then_default():
    assert domain.annual_yield(1700, "IND", {"IND": 1600}) == 1700
    assert domain.annual_yield(None, "IND", {"IND": 1600}) == 1600
    assert domain.annual_yield(None, "NGA", {"IND": 1600}) == domain.DEFAULT_ANNUAL_YIELD


def test_annual_yield_a_configured_country_yield_comes_between_the_device_and_the_setting():
    assert domain.annual_yield(1700, "IND", {"IND": 1600}, 1200) == 1700  # the device's own still wins
    assert domain.annual_yield(None, "IND", {"IND": 1600}, 1200) == 1200  # replaces COUNTRY_YIELDS' value
    assert domain.annual_yield(0, "NGA", {}, 1800) == 1800
    assert domain.annual_yield(None, "IND", {"IND": 1600}, None) == 1600  # none Active: the setting


@pytest.mark.parametrize(("code", "alpha3"), [("IND", "IND"), ("ind", "IND"), (" gb ", "GBR"), ("DE", "DEU")])
def test_country_codes_are_iso_3166_alpha_3_as_devices_store_them(code, alpha3):
    assert domain.normalize_country_code(code) == alpha3


@pytest.mark.parametrize("code", ["", "XYZ", "INDIA", "I", "XX", "IN D"])
def test_other_country_codes_are_refused(code):
    with pytest.raises(ValueError, match="ISO 3166"):
        domain.normalize_country_code(code)


# -- History batches ---------------------------------------------------------------


def history(index: int, start: datetime, hours: int, wh: int) -> Read:
    return Read(index, start, start + hours * H, wh)


def test_history_accepted_becomes_intervals_and_leaves_ongoing_state_alone():
    reads = [history(0, ONBOARDED - 10 * H, 5, 1000), history(1, ONBOARDED - 5 * H, 5, 2000)]
    verdict = judge("History", DEVICE, LastRead(), reads, now=NOW)
    assert verdict.accepted
    assert [(i.start, i.end, i.wh) for i in verdict.intervals] == [(r.start, r.end, r.value_wh) for r in reads]
    assert verdict.last == LastRead()


def test_history_refused_reads_are_listed_by_index_and_nothing_is_accepted():
    reads = [
        history(0, ONBOARDED - 10 * H, 1, 1000),  # fine
        Read(1, None, ONBOARDED, 1000),  # no start
        Read(2, ONBOARDED - H, ONBOARDED - 2 * H, 10),  # start after end
        history(3, ONBOARDED - H, 2, 10),  # ends after onboarding
        history(4, COMMISSIONED - H, 2, 10),  # starts before commissioning (and > 3 years before onboarding)
        history(5, ONBOARDED - 20 * H, 1, 0),  # no energy
        history(6, ONBOARDED - 30 * H, 1, 10**9),  # implausible
    ]
    verdict = judge("History", DEVICE, LastRead(), reads, now=NOW)
    assert not verdict.intervals
    reasons = {e.index: e.reason for e in verdict.errors}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert "required" in reasons[1]
    assert "must be before" in reasons[2]
    assert "onboarding" in reasons[3]
    assert "commissioning" in reasons[4] and "3 years" in reasons[4]
    assert "greater than 0" in reasons[5]
    assert "not plausible" in reasons[6]


def test_history_overlap_with_accepted_history_or_within_the_batch_is_refused():
    accepted = [(ONBOARDED - 10 * H, ONBOARDED - 8 * H)]
    touching = [history(0, ONBOARDED - 8 * H, 2, 100), history(1, ONBOARDED - 12 * H, 2, 100)]
    assert judge("History", DEVICE, LastRead(), touching, now=NOW, history=accepted).accepted

    clashing = [
        history(0, ONBOARDED - 9 * H, 2, 100),
        history(1, ONBOARDED - 5 * H, 2, 100),
        history(2, ONBOARDED - 4 * H, 1, 100),
    ]
    verdict = judge("History", DEVICE, LastRead(), clashing, now=NOW, history=accepted)
    reasons = {e.index: e.reason for e in verdict.errors}
    assert sorted(reasons) == [0, 2]
    assert "an accepted read" in reasons[0]
    assert "read 1 of this batch" in reasons[2]


# -- Delta batches -----------------------------------------------------------------


def test_delta_first_read_counts_from_onboarding_then_from_the_previous_end():
    reads = [read(0, ONBOARDED + H, 100), read(1, ONBOARDED + 3 * H, 200)]
    verdict = judge("Delta", DEVICE, LastRead(), reads, now=NOW)
    assert verdict.accepted
    assert [(i.start, i.end, i.wh) for i in verdict.intervals] == [
        (ONBOARDED, ONBOARDED + H, 100),
        (ONBOARDED + H, ONBOARDED + 3 * H, 200),
    ]
    assert verdict.last == LastRead("Delta", ONBOARDED + 3 * H, 200, None)

    later = judge("Delta", DEVICE, verdict.last, [read(0, ONBOARDED + 4 * H, 50)], now=NOW)
    assert [(i.start, i.end) for i in later.intervals] == [(ONBOARDED + 3 * H, ONBOARDED + 4 * H)]


def test_delta_refusals_by_index_and_nothing_accepted():
    last = LastRead("Delta", ONBOARDED + 10 * H, 5, None)
    reads = [
        read(0, ONBOARDED + 11 * H, 100),  # fine
        read(1, ONBOARDED + 11 * H, 100),  # not after the previous end
        read(2, ONBOARDED + 12 * H, 0),  # no energy
        read(3, NOW + H, 100),  # future
        read(4, ONBOARDED + 13 * H, 10**7),  # implausible for 1 h
        read(5, ONBOARDED + 14 * H, 100),  # fine: judged from read 4's end although read 4 was bad
    ]
    verdict = judge("Delta", DEVICE, last, reads, now=NOW)
    assert not verdict.intervals and verdict.last == last
    reasons = {e.index: e.reason for e in verdict.errors}
    assert sorted(reasons) == [1, 2, 3, 4]
    assert "previous read's end" in reasons[1]
    assert "greater than 0" in reasons[2]
    assert "future" in reasons[3]
    assert "not plausible" in reasons[4]


def test_delta_refused_before_onboarding_or_commissioning():
    late = Device(1, 100, commissioning_date=ONBOARDED + 5 * H, onboarded_at=ONBOARDED)
    verdict = judge("Delta", late, LastRead(), [read(0, ONBOARDED, 10), read(1, ONBOARDED + 2 * H, 10)], now=NOW)
    reasons = {e.index: e.reason for e in verdict.errors}
    assert "onboarding" in reasons[0]
    assert "commissioning" in reasons[1]


def test_ongoing_type_is_fixed_by_the_first_ongoing_read():
    verdict = judge(
        "Aggregate", DEVICE, LastRead("Delta", ONBOARDED + H, 1, None), [read(0, ONBOARDED + 2 * H, 10)], now=NOW
    )
    assert [e.index for e in verdict.errors] == [None]
    assert "Delta reads" in verdict.errors[0].reason


# -- Aggregate batches -------------------------------------------------------------------


def test_aggregate_first_total_is_a_baseline_then_differences_are_energy():
    reads = [
        read(0, ONBOARDED + H, 1_000_000),
        read(1, ONBOARDED + 2 * H, 1_010_000),
        read(2, ONBOARDED + 4 * H, 1_030_000),
    ]
    verdict = judge("Aggregate", DEVICE, LastRead(), reads, now=NOW)
    assert verdict.accepted
    assert [(i.start, i.end, i.wh) for i in verdict.intervals] == [
        (ONBOARDED + H, ONBOARDED + 2 * H, 10_000),
        (ONBOARDED + 2 * H, ONBOARDED + 4 * H, 20_000),
    ]
    assert verdict.last == LastRead("Aggregate", ONBOARDED + 4 * H, 20_000, 1_030_000)


def test_aggregate_baseline_alone_carries_no_energy():
    verdict = judge("Aggregate", DEVICE, LastRead(), [read(0, ONBOARDED + H, 500)], now=NOW)
    assert verdict.accepted and len(verdict.intervals) == 0
    assert verdict.last == LastRead("Aggregate", ONBOARDED + H, 0, 500)


def test_aggregate_refusals():
    last = LastRead("Aggregate", ONBOARDED + H, 0, 1000)
    reads = [
        read(0, ONBOARDED + 2 * H, 1000),  # total not greater
        read(1, ONBOARDED + 2 * H, 2000),  # fine (judged against the total before read 0)
        read(2, ONBOARDED + 2 * H, 3000),  # end not after the previous
        read(3, ONBOARDED + 3 * H, -5),  # negative total
        read(4, ONBOARDED + 4 * H, 10**8),  # implausible difference
        read(5, NOW + H, 10**8 + 1),  # future
    ]
    verdict = judge("Aggregate", DEVICE, last, reads, now=NOW)
    assert not verdict.intervals and verdict.last == last
    reasons = {e.index: e.reason for e in verdict.errors}
    assert sorted(reasons) == [0, 2, 3, 4, 5]
    assert "greater than the previous total" in reasons[0]
    assert "previous read's end" in reasons[2]
    assert "negative" in reasons[3]
    assert "not plausible" in reasons[4]
    assert "future" in reasons[5]


def test_rule_device_takes_reads_refuses_a_deleted_device_saying_when():
    assert domain.rule_device_takes_reads("'D1'", None) is None
    deleted = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert (
        domain.rule_device_takes_reads("'D1'", deleted)
        == "device 'D1' was deleted on 2024-03-01T12:00:00.000Z: it takes no new reads"
    )


def test_rule_submission_names_device_refuses_another_external_id_or_organization():
    assert domain.rule_submission_names_device(7, ("E", 3), ("E", 3)) is None
    assert (
        domain.rule_submission_names_device(7, ("E", 3), ("E", 4)) == "device 7 is 'E' of organization 3, not 'E' of 4"
    )
    assert "not 'F' of 3" in domain.rule_submission_names_device(7, ("E", 3), ("F", 3))


def test_iso_prints_milliseconds_like_the_reference():
    assert iso_exact(datetime(2022, 9, 8, 12, 55, 47, 335000, tzinfo=UTC)) == "2022-09-08T12:55:47.335Z"
    assert iso_exact(datetime(2022, 9, 8, 12, 55, 47, 335001, tzinfo=UTC)) == "2022-09-08T12:55:47.335001Z"


def test_read_ingested_built_without_validation_passes_the_contracts_validation():
    import uuid as _uuid

    from opendrec_contracts import Envelope, ReadIngested, envelope_for, parse_event
    from opendrec_readings.domain import Interval, Intervals, ingested_events

    t = datetime(2024, 1, 1, 0, 0, 0, 250_001, tzinfo=UTC)  # sub-second instants survive
    # Three consecutive intervals (one event, starts left out), then two with gaps (another, starts sent).
    intervals = [Interval(t + timedelta(hours=i), t + timedelta(hours=i + 1), 100 + i) for i in range(3)]
    intervals += [Interval(t + timedelta(hours=i, seconds=1), t + timedelta(hours=i + 1), 100 + i) for i in (4, 6)]
    batch = _uuid.uuid4()
    device = {"device_id": 7, "external_id": "E", "organization_id": 3}
    events = ingested_events(device, "Delta", batch, Intervals.of(intervals), max_reads=3)
    assert [e.starts_us is None for e in events] == [True, False]

    parsed = [parse_event(Envelope.model_validate_json(envelope_for(e, "readings").model_dump_json())) for e in events]
    assert [(p.batch_id, p.device_id, p.external_id, p.organization_id, p.read_type) for p in parsed] == [
        (batch, 7, "E", 3, "Delta")
    ] * 2
    assert [p.intervals() for p in parsed] == [intervals[:3], intervals[3:]]
    assert all(isinstance(p, ReadIngested) for p in parsed)


# -- whole-batch fast paths: the same answers as read by read ---------------------------------


def _per_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn off the whole-batch paths, leaving the read-by-read rules."""
    monkeypatch.setattr(domain, "_parse_utc_batch", lambda *_: None)
    monkeypatch.setattr(domain, "_delta_all_accepted", lambda *_: None)
    monkeypatch.setattr(domain, "_aggregate_all_accepted", lambda *_: None)
    monkeypatch.setattr(domain, "_history_all_accepted", lambda *_: None)


# 1 kW at 8760 kWh/kWp/year, commissioned on 1 June 2021: 1.2 kWh an hour, less 0.5% a year of age.
ONE_KW = Device(
    device_id=1,
    capacity_kw=1,
    commissioning_date=datetime(2021, 6, 1, tzinfo=UTC),
    onboarded_at=ONBOARDED,
    annual_yield=8760,
)


def _verdicts(read_type: str, device: Device, batches: dict[str, list[Read]], variants: list[dict]) -> dict:
    """The verdict on every batch under every variant (keyword arguments: last read, now, history), by (batch
    name, variant index)."""
    return {
        (name, n): judge(read_type, device, reads=reads, **variant)
        for name, reads in batches.items()
        for n, variant in enumerate(variants)
    }


def test_parse_reads_whole_batch_gives_what_read_by_read_gives(monkeypatch):
    rows = [
        ("", "2023-07-01T01:00:00Z", 5),
        (None, "2023-07-01T02:00:00.000250+00:00", 7),
        ("x", "2023-07-01T03:00:00Z", 0),
    ]
    history = [("2023-01-01T00:00:00Z", "2023-01-01T01:00:00Z", 3), ("2023-01-01T01:00:00Z", "2023-01-01T02:00:00Z", 4)]
    fast = [parse(rows, "Delta", "kWh", None), parse(history, "History", "Wh", None)]
    assert domain._parse_utc_batch(*columns(rows), "Delta", "kWh") is not None  # the fast path was taken
    _per_read(monkeypatch)
    assert fast == [parse(rows, "Delta", "kWh", None), parse(history, "History", "Wh", None)]


@pytest.mark.parametrize(
    "rows",
    [
        [("", "2023-07-01T01:00:00+02:00", 5)],  # an offset other than UTC
        [("", "2023-07-01T01:00:00", 5)],  # local time without a zone: refused
        [("", " 2023-07-01T01:00:00Z", 5)],  # surrounding blanks
        [("", "2023-07-01T01:00:00Z", Decimal("1.5"))],
        [("", "2023-07-01T01:00:00Z", 2**62)],  # too large in kWh
        [("", None, 5)],
    ],
)
def test_parse_reads_leaves_anything_unusual_to_the_read_by_read_rules(rows, monkeypatch):
    assert domain._parse_utc_batch(*columns(rows), "Delta", "kWh") is None
    answer = parse(rows, "Delta", "kWh", None)
    _per_read(monkeypatch)
    assert answer == parse(rows, "Delta", "kWh", None)


def test_micros_since_is_exact_for_even_and_uneven_spacing():
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    t = datetime(2023, 7, 1, 0, 0, 0, 7, tzinfo=UTC)
    for moments in (
        [t + i * timedelta(minutes=15) for i in range(50)],
        [t + i * i * timedelta(seconds=1) for i in range(50)],
        [t, t, t],
        [t + timedelta(hours=3 - i) for i in range(4)],
    ):
        assert list(domain.micros_since(epoch, moments)) == [(m - epoch) // timedelta(microseconds=1) for m in moments]


@pytest.mark.parametrize("commissioned", [COMMISSIONED, datetime(2016, 2, 29, 13, 30, 0, 5, tzinfo=UTC)])
def test_plausibility_bounds_for_a_batch_are_the_formula_to_the_last_bit(commissioned):
    device = Device(
        device_id=1, capacity_kw=3.7, commissioning_date=commissioned, onboarded_at=ONBOARDED, annual_yield=1555.5
    )
    bounds = domain.PlausibilityBounds(device)
    # Starts every 7 h 13 min across several anniversaries (and a 29 February), and right at and around them.
    starts = [commissioned + timedelta(days=300) + i * timedelta(hours=7, minutes=13) for i in range(12_000)]
    edges = [domain.years_before(commissioned, -y) for y in range(1, 6)] + [
        datetime(y, 3, 1, tzinfo=UTC) for y in (2017, 2018, 2019)
    ]
    us = timedelta(microseconds=1)
    for start in starts + [e + d for e in edges for d in (-us, 0 * us, us)]:
        for length in (timedelta(minutes=15), timedelta(hours=7, minutes=13)):
            assert bounds.bound(start, start + length) == domain.plausibility_bound_wh(device, start, start + length)
    ends = [s + timedelta(hours=7, minutes=13) for s in starts]
    exact = [math.ceil(domain.plausibility_bound_wh(device, s, e)) - 1 for s, e in zip(starts, ends, strict=True)]
    starts_us, ends_us = [domain.micros(s) for s in starts], [domain.micros(e) for e in ends]
    assert bounds.all_below(starts_us, ends_us, exact)
    for i in (0, 4_000, 11_999):  # one read at its bound (rounded up) is enough to refuse
        at_bound = math.ceil(domain.plausibility_bound_wh(device, starts[i], ends[i]))
        assert not bounds.all_below(starts_us, ends_us, [*exact[:i], at_bound, *exact[i + 1 :]])


def test_delta_whole_batch_verdict_is_the_read_by_read_verdict(monkeypatch):
    device = ONE_KW
    now = datetime(2026, 1, 1, tzinfo=UTC)
    # Hourly reads across an anniversary of commissioning.
    ends = [datetime(2024, 5, 31, 20, tzinfo=UTC) + i * H for i in range(10)]
    bound = [domain.plausibility_bound_wh(device, e - H, e) for e in ends]
    batches = {
        "all plausible": [read(i, e, math.ceil(b) - 1) for i, (e, b) in enumerate(zip(ends, bound, strict=True))],
        "one at its bound": [
            read(i, e, math.ceil(b) if i == 6 else 1) for i, (e, b) in enumerate(zip(ends, bound, strict=True))
        ],
        "one not after the one before": [read(i, ends[3] if i == 5 else e, 1) for i, e in enumerate(ends)],
        "one in the future": [read(i, now + H if i == 9 else e, 1) for i, e in enumerate(ends)],
        "one zero": [read(i, e, 0 if i == 2 else 1) for i, e in enumerate(ends)],
        "uneven": [read(i, e + i * timedelta(minutes=i), 1) for i, e in enumerate(ends)],
    }
    lasts = [LastRead(), LastRead("Delta", ends[0] - H, 1, None), LastRead("Delta", ends[0], 1, None)]
    variants = [{"last": last, "now": now} for last in lasts]
    fast = _verdicts("Delta", device, batches, variants)
    assert fast[("all plausible", 1)].accepted and not fast[("one at its bound", 1)].accepted
    assert domain._delta_all_accepted(device, lasts[1], Reads.of(batches["all plausible"]), now) is not None  # taken
    _per_read(monkeypatch)
    assert _verdicts("Delta", device, batches, variants) == fast


def test_aggregate_whole_batch_verdict_is_the_read_by_read_verdict(monkeypatch):
    device = ONE_KW
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ends = [datetime(2024, 5, 31, 20, tzinfo=UTC) + i * H for i in range(10)]
    # Energies just under the bound of each hour (across an anniversary), as meter totals from 1,000 Wh.
    energies = [math.ceil(domain.plausibility_bound_wh(device, e - H, e)) - 1 for e in ends]
    totals = [1000 + sum(energies[: i + 1]) for i in range(10)]

    def batch(totals=totals, ends=ends):
        return [read(i, e, total) for i, (e, total) in enumerate(zip(ends, totals, strict=True))]

    batches = {
        "all plausible": batch(),
        "one at its bound": batch(totals=[t + (1 if i >= 6 else 0) for i, t in enumerate(totals)]),
        "one total not greater": batch(totals=[totals[3] if i == 4 else t for i, t in enumerate(totals)]),
        "one total lower": batch(totals=[5 if i == 7 else t for i, t in enumerate(totals)]),
        "negative baseline": batch(totals=[t - totals[0] - 1 for t in totals]),  # -1, then plausible increases
        "one not after the one before": batch(ends=[ends[3] if i == 5 else e for i, e in enumerate(ends)]),
        "one in the future": batch(ends=[now + H if i == 9 else e for i, e in enumerate(ends)]),
        "baseline alone": batch()[:1],
        "uneven": [read(i, e + i * timedelta(minutes=i), 1000 + i) for i, e in enumerate(ends)],
    }
    lasts = [LastRead(), LastRead("Aggregate", ends[0] - H, 5, 1000), LastRead("Aggregate", ends[0], 5, 900)]
    variants = [{"last": last, "now": now} for last in lasts]
    fast = _verdicts("Aggregate", device, batches, variants)
    assert fast[("all plausible", 0)].accepted and fast[("all plausible", 1)].accepted
    assert not fast[("one at its bound", 1)].accepted and fast[("baseline alone", 0)].accepted
    for n in (0, 1):  # taken, with and without a baseline in the batch
        assert domain._aggregate_all_accepted(device, lasts[n], Reads.of(batches["all plausible"]), now) is not None
    _per_read(monkeypatch)
    assert _verdicts("Aggregate", device, batches, variants) == fast


def test_history_whole_batch_verdict_is_the_read_by_read_verdict(monkeypatch):
    device = ONE_KW
    # Hourly reads up to onboarding, across an anniversary of commissioning (1 June 2022), each just under its bound.
    starts = [datetime(2022, 5, 31, 20, tzinfo=UTC) + i * H for i in range(10)]
    bound = [math.ceil(domain.plausibility_bound_wh(device, s, s + H)) - 1 for s in starts]

    def batch(starts=starts, hours=1, whs=bound):
        return [history(i, s, hours, wh) for i, (s, wh) in enumerate(zip(starts, whs, strict=True))]

    early = domain.years_before(ONBOARDED, 3)
    batches = {
        "all plausible": batch(),
        "with gaps": batch(starts=[s + i * H for i, s in enumerate(starts)]),
        "out of order": list(reversed(batch())),
        "one at its bound": batch(whs=[b + (1 if i == 6 else 0) for i, b in enumerate(bound)]),
        "one zero": batch(whs=[0 if i == 2 else b for i, b in enumerate(bound)]),
        "overlapping the next": batch(hours=2),
        "ending after onboarding": batch(starts=[ONBOARDED - 5 * H + i * H for i in range(10)], whs=[1] * 10),
        "starting too early": batch(starts=[early - 2 * H + i * H for i in range(10)], whs=[1] * 10),
        "before commissioning": [history(0, datetime(2021, 5, 31, 23, tzinfo=UTC), 1, 1), *batch()[1:]],
        "no start": [*batch()[:3], read(3, starts[3] + H, 1), *batch()[4:]],
    }
    assert early < datetime(2021, 6, 1, tzinfo=UTC) < starts[0]
    histories = [
        [],
        [(starts[0] - 3 * H, starts[0]), (starts[-1] + H, starts[-1] + 2 * H)],  # touching the batch on both sides
        [(starts[4] + timedelta(minutes=30), starts[4] + timedelta(minutes=45))],  # inside one read
        [(starts[0] - H, starts[0] + timedelta(seconds=1))],  # overlapping the first by a second
    ]
    variants = [{"last": LastRead(), "now": NOW, "history": known} for known in histories]
    fast = _verdicts("History", device, batches, variants)
    assert (
        fast[("all plausible", 1)].accepted
        and not fast[("all plausible", 2)].accepted
        and not fast[("all plausible", 3)].accepted
    )
    for n in (0, 1):  # taken, with and without accepted History around
        assert (
            domain._history_all_accepted(device, LastRead(), Reads.of(batches["all plausible"]), histories[n])
            is not None
        )
    _per_read(monkeypatch)
    assert _verdicts("History", device, batches, variants) == fast


def test_plausibility_bounds_refuse_energy_exactly_at_the_bound():
    # 1 kW at 8760 kWh/kWp/year in its first year: exactly 1,200 Wh per hour.
    device = Device(
        device_id=1, capacity_kw=1, commissioning_date=COMMISSIONED, onboarded_at=COMMISSIONED, annual_yield=8760
    )
    starts = [COMMISSIONED + i * H for i in range(3)]
    ends = [s + H for s in starts]
    assert domain.plausibility_bound_wh(device, starts[0], ends[0]) == 1200
    starts_us, ends_us = [domain.micros(s) for s in starts], [domain.micros(e) for e in ends]
    assert domain.PlausibilityBounds(device).all_below(starts_us, ends_us, [1199, 1199, 1199])
    assert not domain.PlausibilityBounds(device).all_below(starts_us, ends_us, [1199, 1200, 1199])


@pytest.mark.parametrize(
    "reads",
    [
        [
            {"starttimestamp": "", "endtimestamp": "2023-07-01T01:00:00Z", "value": 5},
            {"endtimestamp": None, "value": 7, "x": 1},
        ],
        [{"endtimestamp": "2023-07-01T01:00:00Z", "value": 0.1}],  # a decimal: exact digits, not a float
        [{"endtimestamp": "2023-07-01T01:00:00Z", "value": "12"}],
        [{"endtimestamp": "2023-07-01T01:00:00Z", "value": True}],
        [{"endtimestamp": 20230701, "value": 1}],
        [{"endtimestamp": "2023-07-01T01:00:00Z"}],
        ["not a read"],
        [],
    ],
)
def test_request_body_read_quickly_or_exactly_gives_the_same_reads_or_errors(reads, monkeypatch):
    import json

    from fastapi.exceptions import RequestValidationError

    from opendrec_readings import api

    def outcome():
        raw = json.dumps({"type": "Delta", "unit": "kWh", "reads": reads}).encode()
        try:
            body, (starts, ends, values) = api.parse_body(raw)
        except RequestValidationError as exc:
            return exc.errors()
        return body.type, body.unit, [(*row, type(row[2])) for row in zip(starts, ends, values, strict=True)]

    quick = outcome()
    monkeypatch.setattr(api, "_plain_reads", lambda _: None)  # always the exact path
    assert quick == outcome()
    if reads and isinstance(reads[0], dict) and reads[0].get("value") == 0.1:
        assert quick[2][0][2:] == (Decimal("0.1"), Decimal)


# -- time zones and calendar sums (the reference's time-zones and accumulationType) ------------


def test_every_time_zone_listed_is_accepted_by_reads():
    names = domain.search_timezones(None)
    assert all(domain.resolve_timezone(name).key == name for name in names)
    assert domain.search_timezones("kolkata") == ["Asia/Kolkata"]
    with pytest.raises(ValueError, match="unknown time zone"):
        domain.resolve_timezone("localtime")


def test_calendar_periods_and_their_parameters():
    assert domain.calendar_period("Monthly", 2024, 12) == domain.CalendarPeriod(
        "day", datetime(2024, 12, 1), datetime(2025, 1, 1)
    )
    assert domain.calendar_period("Monthly", 2024, 2).after == datetime(2024, 3, 1)
    assert domain.calendar_period("Yearly", 2024, None) == domain.CalendarPeriod(
        "month", datetime(2024, 1, 1), datetime(2025, 1, 1)
    )
    assert domain.accumulation_problem("Monthly", 2, 2024) is None
    assert domain.accumulation_problem("Yearly", None, 2024) is None
    assert domain.accumulation_problem(None, None, None) is None
    assert domain.accumulation_problem(None, 2, None) == ("Year", "Year is required when month is given")
    assert domain.accumulation_problem("Monthly", None, 2024)[0] == "Month"
    assert domain.accumulation_problem("Yearly", None, None)[0] == "Year"
    assert domain.accumulation_problem("Yearly", 3, 2024)[0] == "Month"
