"""The ledger's rules, pure: the canonical encoding, the entry hash, the chain check, and the hash of read intervals.

Canonical encoding (what every hash is taken over): JSON, UTF-8, keys sorted, no spaces
(`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`), where
- energy is an integer of Wh (floats are refused: their text differs between languages);
- an instant is a string in UTC with microseconds and `Z`: `2024-01-01T00:00:00.000000Z`;
- a UUID is its lowercase hyphenated string; a Decimal its string; a tuple a list.

Entry n's hash = SHA-256 (lowercase hex) of the canonical encoding of
`{"sequence": n, "kind": ..., "certificate_id": ..., "body": {...}, "recorded_at": ..., "previous_hash": ...}`;
entry 1's previous_hash is 64 zeros. The verifier (`verify.py`, stdlib only) restates these rules for a third party.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

KINDS = ("issuance", "transfer", "retirement", "lock", "release")
GENESIS = "0" * 64


class LedgerError(ValueError):
    """A body that cannot be written canonically, or an unknown kind."""


def instant(moment: datetime) -> str:
    """An instant as the ledger writes it: UTC, microseconds, `Z`."""
    if moment.tzinfo is None:
        raise LedgerError("instants in the ledger must be timezone-aware")
    if moment.tzinfo is UTC and moment.year >= 1000:
        # the same text, 3 times faster than strftime, twice as fast as isoformat (every read interval of a
        # certificate is written in its reads_hash); strftime writes years before 1000 with fewer digits
        m = moment
        return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - twice as fast as the f-string (measured)
            m.year,
            m.month,
            m.day,
            m.hour,
            m.minute,
            m.second,
            m.microsecond,
        )
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    """The inverse of `instant` (accepts any ISO-8601 with an offset or `Z`)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise LedgerError(f"instant without a time zone: {text!r}")
    return moment.astimezone(UTC)


def normalized(value: Any) -> Any:
    """`value` with only JSON types left (str, int, bool, None, lists, objects with string keys), by the rules
    above; what the ledger stores and hashes."""
    kind = type(value)
    # the exact JSON types first (issue 16: an issuance body is ~20 values; abstract-class checks cost the most)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise LedgerError(f"object keys in the ledger must be strings: {key!r}")
            out[key] = normalized(item)
        return out
    if kind is list:
        return [normalized(item) for item in value]
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise LedgerError(f"no floats in the ledger (write Wh as integers, other numbers as strings): {value!r}")
    if isinstance(value, datetime):
        return instant(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise LedgerError(f"object keys in the ledger must be strings: {key!r}")
            out[key] = normalized(item)
        return out
    if isinstance(value, list | tuple):
        return [normalized(item) for item in value]
    raise LedgerError(f"cannot write {type(value).__name__} in the ledger")


def canonical(value: Any) -> bytes:
    """The canonical encoding of an already normalized value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class LedgerEntry:
    sequence: int
    kind: str
    certificate_id: uuid.UUID
    body: dict[str, Any]  # normalized
    recorded_at: datetime
    previous_hash: str
    hash: str


def entry_hash(
    sequence: int, kind: str, certificate_id: uuid.UUID, body: Mapping[str, Any], recorded_at: datetime, previous: str
) -> str:
    return sha256(
        canonical(
            {
                "sequence": sequence,
                "kind": kind,
                "certificate_id": str(certificate_id),
                "body": normalized(body),
                "recorded_at": instant(recorded_at),
                "previous_hash": previous,
            }
        )
    )


def next_entry(
    head_sequence: int,
    head_hash: str,
    kind: str,
    certificate_id: uuid.UUID,
    body: Mapping[str, Any],
    recorded_at: datetime,
) -> LedgerEntry:
    """The entry that follows the head (sequence, hash) of the chain."""
    if kind not in KINDS:
        raise LedgerError(f"unknown ledger entry kind {kind!r} (one of {', '.join(KINDS)})")
    clean = normalized(body)
    recorded_at = parse_instant(instant(recorded_at))  # to the microsecond, in UTC, as stored
    sequence = head_sequence + 1
    return LedgerEntry(
        sequence=sequence,
        kind=kind,
        certificate_id=certificate_id,
        body=clean,
        recorded_at=recorded_at,
        previous_hash=head_hash,
        hash=entry_hash(sequence, kind, certificate_id, clean, recorded_at, head_hash),
    )


def first_break(entries: Sequence[LedgerEntry], previous: str = GENESIS, start: int = 1) -> int | None:
    """The sequence of the first entry whose link or hash does not hold (None: the chain holds), from `previous`
    (the hash before the first entry) and `start` (its expected sequence)."""
    expected = start
    for entry in entries:
        if entry.sequence != expected or entry.previous_hash != previous:
            return expected
        if entry_hash(entry.sequence, entry.kind, entry.certificate_id, entry.body, entry.recorded_at, previous) != (
            entry.hash
        ):
            return expected
        previous, expected = entry.hash, expected + 1
    return None


# -- the read intervals a certificate covers -------------------------------------------------------------------------

Read = tuple[int, datetime, datetime, int]  # (device_id, start, end, energy_wh)


def reads_hash(reads: Iterable[Read]) -> str:
    """SHA-256 (hex) of the canonical encoding of the reads as a list of `[device_id, start, end, energy_wh]`,
    sorted (by device, start, end, energy), instants as above. The order reads are given in does not matter;
    a read given twice counts twice. To recompute: list the intervals, sort, encode, hash."""
    rows = sorted((int(d), s, e, int(wh)) for d, s, e, wh in reads)
    if rows and min(row[1] for row in rows).astimezone(UTC).year >= 1000:
        # Issue 16 (every read interval of a certificate is written here): sorted as instants, not as their text,
        # each instant written once (a read's end is mostly the next one's start), the list written without the
        # JSON encoder. The same bytes: from year 1000 on an instant's text is fixed-width, so its order is the
        # instants' order, and integers and such strings (digits, '-', ':', '.', 'T', 'Z') encode as written here.
        return _sorted_rows_hash(rows, instant)
    written: dict[datetime, str] = {}  # a read's end is the next one's start: each instant written once

    def at(moment: datetime) -> str:
        text = written.get(moment)
        if text is None:
            text = written[moment] = instant(moment)
        return text

    texts = sorted((d, at(s), at(e), wh) for d, s, e, wh in rows)
    return sha256(canonical([list(row) for row in texts]))


DAY_US = 86_400_000_000
YEAR_1000_US = -30_610_224_000_000_000  # 1000-01-01T00:00:00Z in microseconds since the Unix epoch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_DAYS: dict[int, str] = {}  # day since the epoch -> "YYYY-MM-DDT" (cleared past _DAYS_KEPT days)
_DAYS_KEPT = 100_000
_CLOCK: dict[int, str] = {}  # second of a day -> "HH:MM:SS." (86,400 at most)


def _instant_us(us: int) -> str:
    """`instant` of the moment `us` microseconds after the Unix epoch (from the year 1000 on): its day's and its
    second's text kept once written (a certificate's reads are mostly of one day, and every day has the same
    seconds)."""
    day, of_day = divmod(us, DAY_US)
    second, micro = divmod(of_day, 1_000_000)
    date = _DAYS.get(day)
    if date is None:
        if len(_DAYS) >= _DAYS_KEPT:
            _DAYS.clear()
        date = _DAYS[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    clock = _CLOCK.get(second)
    if clock is None:
        clock = _CLOCK[second] = "%02d:%02d:%02d." % (second // 3600, second // 60 % 60, second % 60)  # noqa: UP031 - as instant()
    return date + clock + ("000000Z" if micro == 0 else "%06dZ" % micro)  # noqa: UP031 - as instant()


def reads_hash_us(reads: Iterable[tuple[int, int, int, int]]) -> str:
    """`reads_hash` of reads given as (device_id, start, end, energy_wh) with instants in integer microseconds since
    the Unix epoch: the same bytes (issue 16: no datetime a read, each instant written once, the text of its day and
    second kept)."""
    rows = sorted(reads)
    if not rows or min(row[1] for row in rows) < YEAR_1000_US:
        return reads_hash(
            (d, _EPOCH + timedelta(microseconds=s), _EPOCH + timedelta(microseconds=e), wh) for d, s, e, wh in rows
        )
    return _sorted_rows_hash(rows, _instant_us)


def _sorted_rows_hash(rows: list[tuple[int, Any, Any, int]], text_of: Callable[[Any], str]) -> str:
    """`reads_hash` of sorted rows whose instants `text_of` writes as `instant` does (from the year 1000 on), each
    instant written once (a read's end is mostly the next one's start), the list written without the JSON encoder."""
    parts = []
    last, last_text = None, ""
    for d, s, e, wh in rows:
        start = last_text if s == last else text_of(s)
        last, last_text = e, text_of(e)
        parts.append(f'[{d},"{start}","{last_text}",{wh}]')
    return sha256(("[" + ",".join(parts) + "]").encode())


# -- what the ledger answers -----------------------------------------------------------------------------------------

EXPORT_FORMAT = "opendrec-ledger/1"
MAX_PAGE = 1000


def entry_document(entry: LedgerEntry) -> dict[str, Any]:
    """An entry as exported: its hashed fields as hashed (recorded_at to the microsecond), and its hash."""
    return {
        "sequence": entry.sequence,
        "kind": entry.kind,
        "certificate_id": str(entry.certificate_id),
        "body": entry.body,
        "recorded_at": instant(entry.recorded_at),
        "previous_hash": entry.previous_hash,
        "hash": entry.hash,
    }


def export_document(after: int, entries: Sequence[LedgerEntry], head_sequence: int, head_hash: str) -> dict[str, Any]:
    """A page of the chain (entries after+1..until) and the head when it was read; answered in the canonical
    encoding, so that the verifier can insist every byte is as written."""
    return {
        "format": EXPORT_FORMAT,
        "after": after,
        "until": after + len(entries),
        "entries": [entry_document(e) for e in entries],
        "head": {"sequence": head_sequence, "hash": head_hash},
    }


READS_HASH_RULE = (
    "SHA-256 (hex) of the canonical JSON (sorted keys, no spaces, UTF-8) of the list of [device_id, start, end, "
    "energy_wh] of the read intervals the certificate covers, sorted; instants in UTC with microseconds and Z "
    "(2024-01-01T00:00:00.000000Z), energy in integer Wh. The verifier computes it: verify.py --reads reads.json."
)


def proof_document(
    certificate_id: uuid.UUID, entries: Sequence[LedgerEntry], head_sequence: int, head_hash: str
) -> dict[str, Any]:
    """A certificate's proof: its entries and their hashes, the chain head, and the reads_hash its issuance covers."""
    issuance = next((e for e in entries if e.kind == "issuance"), None)
    first = entries[0].sequence if entries else head_sequence
    return {
        "certificate_id": str(certificate_id),
        "entries": [entry_document(e) for e in entries],
        "head": {"sequence": head_sequence, "hash": head_hash},
        "reads_hash": issuance.body.get("reads_hash") if issuance is not None else None,
        "how_to_verify": {
            "entry_hash": "SHA-256 (hex) of the canonical JSON of the entry's fields but hash (body, certificate_id, "
            "kind, previous_hash, recorded_at, sequence): JSON with sorted keys, no spaces, UTF-8.",
            "chain": f"GET /api/certificate/ledger?after={first - 1}&limit={MAX_PAGE} (then after=<until> while "
            "until < head.sequence), save each page as it came, and run `python -m "
            "opendrec_certificates.ledger.verify page1.json page2.json ...` (one stdlib-only file): it checks every "
            "hash and link from this certificate's first entry to the head. From after=0 it checks the whole chain.",
            "reads_hash": READS_HASH_RULE,
        },
    }
