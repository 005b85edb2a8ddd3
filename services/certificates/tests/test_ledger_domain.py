"""The ledger's rules, pure: canonical encoding, entry hashes, the chain check, reads_hash; and the stdlib verifier
(verify.py, a third party's copy) agrees with them on any entry."""

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opendrec_certificates.ledger import domain, verify

AT = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
CERT = uuid.UUID("12345678-1234-5678-1234-567812345678")


def chain(bodies, start=AT):
    entries, sequence, previous = [], 0, domain.GENESIS
    for n, body in enumerate(bodies):
        entry = domain.next_entry(sequence, previous, "issuance", CERT, body, start + timedelta(seconds=n))
        entries.append(entry)
        sequence, previous = entry.sequence, entry.hash
    return entries


def test_the_hash_is_sha256_of_the_documented_canonical_json():
    entry = domain.next_entry(0, domain.GENESIS, "issuance", CERT, {"energy_wh": 5000, "b": "é"}, AT)
    text = (
        '{"body":{"b":"é","energy_wh":5000},"certificate_id":"12345678-1234-5678-1234-567812345678",'
        '"kind":"issuance","previous_hash":"' + "0" * 64 + '","recorded_at":"2024-02-29T23:59:59.999999Z",'
        '"sequence":1}'
    )
    assert entry.hash == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert entry.sequence == 1 and entry.previous_hash == domain.GENESIS


def test_instants_are_utc_with_microseconds():
    plus_two = timezone(timedelta(hours=2))
    assert domain.instant(datetime(2025, 1, 1, 2, tzinfo=plus_two)) == "2025-01-01T00:00:00.000000Z"
    assert domain.parse_instant("2025-01-01T00:00:00.000000Z") == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(domain.LedgerError):
        domain.instant(datetime(2025, 1, 1))


def test_bodies_are_normalized_to_json_types():
    body = {"id": CERT, "at": AT, "price": Decimal("1.50"), "parts": ((1, 2),), "whole": 3.0}
    assert domain.normalized(body) == {
        "id": str(CERT),
        "at": "2024-02-29T23:59:59.999999Z",
        "price": "1.50",
        "parts": [[1, 2]],
        "whole": 3,
    }


@pytest.mark.parametrize("bad", [{"wh": 0.5}, {"wh": float("nan")}, {1: "x"}, {"x": object()}, {"x": {2, 3}}])
def test_what_cannot_be_written_canonically_is_refused(bad):
    with pytest.raises(domain.LedgerError):
        domain.next_entry(0, domain.GENESIS, "issuance", CERT, bad, AT)


def test_an_unknown_kind_is_refused():
    with pytest.raises(domain.LedgerError, match="kind"):
        domain.next_entry(0, domain.GENESIS, "mint", CERT, {}, AT)


def test_first_break_names_the_first_bad_sequence():
    entries = chain([{"n": n} for n in range(5)])
    assert domain.first_break(entries) is None
    altered = list(entries)
    altered[2] = domain.LedgerEntry(**{**altered[2].__dict__, "body": {"n": 99}})
    assert domain.first_break(altered) == 3
    assert domain.first_break(entries[:1] + entries[2:]) == 2  # removed
    assert domain.first_break([entries[1], entries[0], *entries[2:]]) == 1  # reordered
    assert domain.first_break(entries[2:], previous=entries[1].hash, start=3) is None  # a page


def test_reads_hash_is_the_sorted_canonical_list():
    a = (7, AT, AT + timedelta(hours=1), 1500)
    b = (3, AT, AT + timedelta(minutes=30), 200)
    expected = hashlib.sha256(
        json.dumps(
            [
                [3, "2024-02-29T23:59:59.999999Z", "2024-03-01T00:29:59.999999Z", 200],
                [7, "2024-02-29T23:59:59.999999Z", "2024-03-01T00:59:59.999999Z", 1500],
            ],
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    assert domain.reads_hash([a, b]) == domain.reads_hash([b, a]) == expected
    assert domain.reads_hash([a, a, b]) != expected  # a read twice counts twice
    assert domain.reads_hash([(7, AT, AT + timedelta(hours=1), 1501), b]) != expected
    as_json = [[d, domain.instant(s), domain.instant(e), wh] for d, s, e, wh in (a, b)]
    assert verify.reads_hash(as_json) == expected  # the verifier recomputes it
    assert (
        verify.reads_hash([{"device_id": 7, "start": as_json[0][1], "end": as_json[0][2], "energy_wh": 1500}, b_obj(b)])
        == expected
    )


def b_obj(read):
    d, s, e, wh = read
    return {"device_id": d, "start": s.isoformat(), "end": e.isoformat(), "energy_wh": wh}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
bodies = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
instants = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]),
)


@settings(max_examples=200, deadline=None, database=None)
@given(body=bodies, at=instants, kind=st.sampled_from(domain.KINDS), cert=st.uuids())
def test_the_verifier_agrees_with_the_ledger_on_any_entry(body, at, kind, cert):
    entry = domain.next_entry(41, "ab" * 32, kind, cert, body, at)
    document = domain.entry_document(entry)
    assert verify.entry_hash(document) == entry.hash
    assert verify._check_entry(document, 42, "ab" * 32) == entry.hash
    again = domain.next_entry(41, "ab" * 32, kind, cert, json.loads(domain.canonical(entry.body)), entry.recorded_at)
    assert again == entry  # what the store gives back hashes the same


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(bodies, min_size=0, max_size=6))
def test_any_chain_exported_verifies(chain_bodies):
    entries = chain(chain_bodies)
    head = (entries[-1].sequence, entries[-1].hash) if entries else (0, domain.GENESIS)
    raw = domain.canonical(domain.export_document(0, entries, *head))
    result = verify.check([verify.load(raw)])
    assert result["from_genesis"] and result["reached_head"] and result["last"] == len(entries)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# instants as integer microseconds since the epoch, from year 1 (before year 1000 the other path) to 9999
micros = st.integers(
    (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1),
    (datetime(9999, 12, 30, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1),
)
near = st.integers(1_740_000_000_000_000, 1_740_000_000_000_000 + 3 * 86_400_000_000)  # a few days, to the us
reads_us = st.lists(
    st.tuples(st.integers(1, 3), st.one_of(near, micros), st.integers(0, 7_200_000_000), st.integers(0, 10**6)).map(
        lambda r: (r[0], r[1], r[1] + r[2], r[3])
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(reads=reads_us)
def test_reads_hash_from_microseconds_is_the_same_bytes(reads):
    # issue 16: certificates hash their read parts from the runs' integer microseconds; the reads_hash of their
    # instants is the one a certificate's ledger entry holds and the verifier recomputes
    as_moments = [
        (d, EPOCH + timedelta(microseconds=s), EPOCH + timedelta(microseconds=e), wh) for d, s, e, wh in reads
    ]
    assert domain.reads_hash_us(reads) == domain.reads_hash(as_moments)
    consecutive = [
        (1, s, s + 60_000_000, 5) for s in range(1_740_000_000_000_000, 1_740_000_000_000_000 + 10**9, 60_000_000)
    ]
    assert domain.reads_hash_us(consecutive) == domain.reads_hash(
        [(d, EPOCH + timedelta(microseconds=s), EPOCH + timedelta(microseconds=e), wh) for d, s, e, wh in consecutive]
    )
