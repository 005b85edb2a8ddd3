"""Charging sessions (issue 19): interval reads over exactly [start, end], judged by what a charger can deliver.

The rules as pure functions, then read.submitted with `charging_sessions` against the real Postgres (the
handler as the consumer runs it) and one through the broker to read.ingested.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_contracts import Envelope, MeterRead, ReadIngested, ReadSubmitted, parse_event
from opendrec_kit.testing import dispatch, publish_events, wait_for_event
from opendrec_readings import domain
from opendrec_readings.domain import LastRead, Read, Reads
from opendrec_readings.handlers import Handlers

from .test_service import H, Service, delta, new_device, running, submission

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
CHARGER = domain.Device(
    device_id=1,
    capacity_kw=22,
    commissioning_date=T0 - timedelta(days=400),
    onboarded_at=T0 - timedelta(days=30),
    annual_yield=1600,
)
NOW = T0 + timedelta(days=1)


def sessions(*spans: tuple[datetime, datetime, int]) -> Reads:
    return Reads.of(Read(i, start, end, wh) for i, (start, end, wh) in enumerate(spans))


def judge(reads: Reads, last: LastRead = LastRead(), stored=()) -> domain.Verdict:
    return domain.validate_charging_sessions(CHARGER, last, reads, now=NOW, stored=stored)


# -- the rules ---------------------------------------------------------------------------------------------------


def test_a_one_minute_session_at_20_kw_on_a_22_kw_charger_is_accepted_over_its_own_interval():
    # The case: the solar rule refused it ("must be below 6 Wh"); 330 Wh in 60 s is 19.8 kW.
    verdict = judge(sessions((T0, T0 + timedelta(seconds=60), 330)))
    assert verdict.accepted
    assert list(verdict.intervals) == [(T0, T0 + timedelta(seconds=60), 330)]
    assert verdict.last == LastRead("Delta", T0 + timedelta(seconds=60), 330, None)
    assert domain.rule_plausible(CHARGER, T0, T0 + timedelta(seconds=60), 330)  # what used to refuse it


def test_full_rated_power_is_accepted_and_more_than_the_tolerance_allows_is_refused_with_the_reason():
    hour = (T0, T0 + H)
    full_power = 22_000  # 22 kW for one hour
    bound = math.floor(22_000 * domain.CHARGER_POWER_TOLERANCE)  # 23,100 Wh
    assert judge(sessions((*hour, full_power))).accepted
    assert judge(sessions((*hour, bound))).accepted
    refused = judge(sessions((*hour, bound + 1)))
    assert not refused.accepted and len(refused.intervals) == 0
    [error] = refused.errors
    assert error.index == 0
    assert "more than a 22 kW charger can deliver: at most 23100 Wh (capacity × hours × 1.05)" in error.reason
    assert "3600 s" in error.reason


def test_a_session_is_placed_over_its_own_interval_whatever_the_gap_since_the_previous_read():
    # Energy delivered 10:00-11:00 after an idle night is energy of 10:00-11:00.
    last = LastRead("Delta", T0 - timedelta(hours=14), 5000, None)
    verdict = judge(sessions((T0, T0 + H, 7000)), last)
    assert list(verdict.intervals) == [(T0, T0 + H, 7000)]
    assert verdict.last.end == T0 + H


def test_a_late_session_fills_a_gap_before_the_last_read_which_stays():
    last = LastRead("Delta", T0 + 5 * H, 900, None)
    stored = [(T0 + 4 * H, T0 + 5 * H)]
    verdict = judge(sessions((T0, T0 + H, 7000)), last, stored)
    assert verdict.accepted and list(verdict.intervals) == [(T0, T0 + H, 7000)]
    assert verdict.last == last


def test_overlaps_with_a_stored_read_or_another_session_of_the_batch_are_refused():
    stored = [(T0, T0 + H)]
    clash = judge(sessions((T0 + timedelta(minutes=30), T0 + 2 * H, 1000)), stored=stored)
    assert "overlaps a stored read of this device" in clash.errors[0].reason
    touching = judge(sessions((T0 + H, T0 + 2 * H, 1000)), stored=stored)  # [start, end]: sharing an instant is fine
    assert touching.accepted
    batch = judge(sessions((T0 + 2 * H, T0 + 3 * H, 1000), (T0 + 150 * timedelta(minutes=1), T0 + 4 * H, 1000)))
    assert [e.index for e in batch.errors] == [1] and "overlaps session 0 of this batch" in batch.errors[0].reason


def test_each_session_rule_says_what_is_wrong():
    cases = {
        "starttimestamp is required": (None, T0, 10),
        "must be before endtimestamp": (T0 + H, T0, 10),
        "before the device's onboarding date": (CHARGER.onboarded_at - H, CHARGER.onboarded_at + H, 10),
        "is in the future": (NOW - H, NOW + H, 10),
        "value must be greater than 0": (T0, T0 + H, 0),
    }
    for reason, (start, end, wh) in cases.items():
        verdict = judge(Reads.of([Read(0, start, end, wh)]))
        assert not verdict.accepted and reason in verdict.errors[0].reason, (reason, verdict.errors)


def test_a_device_reporting_aggregate_reads_takes_no_sessions():
    verdict = judge(sessions((T0, T0 + H, 10)), LastRead("Aggregate", T0 - H, 0, 100))
    assert verdict.errors[0].index is None and "reports Aggregate reads" in verdict.errors[0].reason


def test_the_fingerprint_of_sessions_includes_their_starts():
    one = sessions((T0, T0 + H, 10))
    other = sessions((T0 + timedelta(minutes=1), T0 + H, 10))
    assert domain.fingerprint(domain.CHARGING_SESSIONS, one) != domain.fingerprint(domain.CHARGING_SESSIONS, other)
    assert domain.fingerprint("Delta", one) == domain.fingerprint("Delta", other)  # a Delta's start is not its own


# -- read.submitted against the real database --------------------------------------------------------------------


def session_event(device, start: datetime, end: datetime, wh: int, txn: str) -> ReadSubmitted:
    return ReadSubmitted(
        submission_id=f"kazam:{txn}",
        device_id=device.device_id,
        external_id=device.external_id,
        organization_id=device.organization_id,
        read_type="Delta",
        source="kazam",
        reads=[MeterRead(start=start, end=end, value_wh=wh)],
        charging_sessions=True,
    )


@pytest.fixture(scope="module")
async def service(postgres_url, kafka_bootstrap):
    async with running(postgres_url, kafka_bootstrap, service_name="readings-sessions") as (runtime, client, issuer):
        yield Service(runtime, client, issuer, kafka_bootstrap)


async def submit(service: Service, event: ReadSubmitted) -> dict:
    handlers = Handlers(service.runtime.settings)
    await dispatch(service.runtime.pool, "charger-gateway", handlers.on_read_submitted, event)
    [row] = await service.fetch("SELECT status, reasons FROM submissions WHERE submission_id = $1", event.submission_id)
    return dict(row)


async def test_sessions_become_reads_over_their_interval_at_the_boundary_of_rated_power(service):
    device = await service.register(capacity_kw=22)
    start = device.onboarded_at + 10 * H  # after an idle stretch since onboarding
    minute = start + timedelta(seconds=60)
    assert (await submit(service, session_event(device, start, minute, 330, "a")))["status"] == "accepted"
    # Full rated power for an hour, then more than the tolerance allows.
    full = session_event(device, start + 2 * H, start + 3 * H, 22_000, "b")
    assert (await submit(service, full))["status"] == "accepted"
    over = session_event(device, start + 4 * H, start + 5 * H, 23_101, "c")
    refused = await submit(service, over)
    assert refused["status"] == "rejected"
    assert "more than a 22 kW charger can deliver: at most 23100 Wh" in refused["reasons"]
    # A session arriving late fills its gap; one overlapping a stored read is refused.
    late = session_event(device, start + H, start + 90 * timedelta(minutes=1), 5000, "d")
    assert (await submit(service, late))["status"] == "accepted"
    clash = await submit(service, session_event(device, start + 150 * timedelta(minutes=1), start + 4 * H, 10, "e"))
    assert clash["status"] == "rejected" and "overlaps a stored read" in clash["reasons"]

    rows = await service.intervals(device.device_id)
    assert [(r["start_at"], r["end_at"], r["wh"], r["read_type"], r["source"]) for r in rows] == [
        (start, minute, 330, "Delta", "kazam"),
        (start + H, start + 90 * timedelta(minutes=1), 5000, "Delta", "kazam"),
        (start + 2 * H, start + 3 * H, 22_000, "Delta", "kazam"),
    ]
    # The last read is the latest session's end: a Delta read sent afterwards counts from there, no overlap.
    after = await service.post(device, delta(device, [20], wh=100))
    assert after.status_code == 201, after.text
    newest = (await service.intervals(device.device_id))[-1]
    assert (newest["start_at"], newest["end_at"]) == (start + 3 * H, device.onboarded_at + 20 * H)


async def test_a_session_before_a_delta_read_already_counted_is_refused_as_an_overlap(service):
    device = await service.register(capacity_kw=22)
    assert (await service.post(device, delta(device, [5], wh=100))).status_code == 201  # onboarding to +5 h
    clash = await submit(
        service, session_event(device, device.onboarded_at + H, device.onboarded_at + 2 * H, 1000, "f")
    )
    assert clash["status"] == "rejected" and "overlaps a stored read" in clash["reasons"]


async def test_a_session_is_announced_as_read_ingested_over_its_interval(service):
    device = await service.register(capacity_kw=7.4)
    start = device.onboarded_at + 3 * H
    event = session_event(device, start, start + timedelta(minutes=20), 2400, "g")
    await publish_events(service.bootstrap, [event])
    announced, _ = await wait_for_event(
        service.bootstrap, "read.ingested", lambda e: e["payload"]["device_id"] == device.device_id
    )
    ingested = parse_event(Envelope.model_validate(announced))
    assert isinstance(ingested, ReadIngested) and ingested.read_type == "Delta"
    assert ingested.intervals() == [(start, start + timedelta(minutes=20), 2400)]
    # An older submission without the field is a Delta read from the previous end, as before.
    assert submission(device, [5]).charging_sessions is False
    assert new_device().device_type_code == "TC110"
