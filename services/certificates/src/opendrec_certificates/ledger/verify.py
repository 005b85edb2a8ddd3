"""Verify an OpenDREC ledger export offline. Python 3.11+, standard library only: copy this one file.

    python -m opendrec_certificates.ledger.verify export.json [next-page.json ...]
    python verify.py export.json                      # the same, from a copy of this file
    python verify.py --reads reads.json               # the reads_hash of read intervals (see below)

An export is the answer of `GET /api/certificate/ledger?after=<sequence>&limit=<n>` saved as it came (curl -o):
`{"after": a, "entries": [...], "format": "opendrec-ledger/1", "head": {"hash": h, "sequence": n}, "until": u}`
(entries a+1..u, and the chain's head when it was read) written in the canonical encoding below. Pages given in order are checked as one chain (each page's `after` = the previous page's
last sequence). Every byte counts: the file must be exactly the canonical encoding of what it holds (a trailing
newline aside), each entry's hash must be the SHA-256 of its fields, each entry must link to the one before, the
first entry of `after=0` to 64 zeros, and the head must be the last entry when the export reaches it.

Canonical encoding: JSON, UTF-8, keys sorted, no spaces
(`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`); integers for Wh (no floats);
instants as UTC strings with microseconds and `Z` (`2024-01-01T00:00:00.000000Z`); UUIDs lowercase.
An entry's hash = SHA-256 (hex) of the canonical encoding of its fields but `hash`:
`{"body", "certificate_id", "kind", "previous_hash", "recorded_at", "sequence"}`.

reads_hash: SHA-256 of the canonical encoding of the list of `[device_id, start, end, energy_wh]` of the read
intervals a certificate covers, sorted; `--reads` takes a JSON array of such lists (or of objects with those keys).

Prints the head and a one-line verdict. Exit status: 0 verified, 1 a mismatch (the first bad sequence is named),
2 a file that cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

FORMAT = "opendrec-ledger/1"
GENESIS = "0" * 64
KINDS = ("issuance", "transfer", "retirement", "lock", "release")
HASHED = ("body", "certificate_id", "kind", "previous_hash", "recorded_at", "sequence")
ENTRY_KEYS = {*HASHED, "hash"}
HEX64 = re.compile(r"[0-9a-f]{64}")
INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class Mismatch(Exception):
    def __init__(self, sequence: int | None, reason: str) -> None:
        super().__init__(reason)
        self.sequence = sequence
        self.reason = reason


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({key: entry[key] for key in HASHED})).hexdigest()


def _instant(text: str) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"instant without a time zone: {text!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reads_hash(reads: list[Any]) -> str:
    rows = []
    for read in reads:
        if isinstance(read, dict):
            read = [read["device_id"], read["start"], read["end"], read["energy_wh"]]
        device_id, start, end, energy_wh = read
        rows.append((int(device_id), _instant(start), _instant(end), int(energy_wh)))
    return hashlib.sha256(canonical([list(row) for row in sorted(rows)])).hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(entry: Any, expected: int, previous: str | None) -> str:
    """The entry's hash, once its shape, link and hash hold (`previous` None: the first one of a partial export)."""
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        raise Mismatch(expected, "an entry must have exactly the fields " + ", ".join(sorted(ENTRY_KEYS)))
    if not _is_int(entry["sequence"]) or entry["sequence"] != expected:
        raise Mismatch(expected, f"sequence {entry['sequence']!r} where {expected} was due (entry missing or moved)")
    if entry["kind"] not in KINDS:
        raise Mismatch(expected, f"unknown kind {entry['kind']!r}")
    certificate_id = entry["certificate_id"]
    if not isinstance(certificate_id, str) or not _is_uuid(certificate_id):
        raise Mismatch(expected, f"certificate_id {certificate_id!r} is not a lowercase UUID")
    if not isinstance(entry["body"], dict):
        raise Mismatch(expected, "body is not an object")
    if not isinstance(entry["recorded_at"], str) or not INSTANT.fullmatch(entry["recorded_at"]):
        raise Mismatch(expected, f"recorded_at {entry['recorded_at']!r} is not a UTC instant with microseconds")
    for field in ("previous_hash", "hash"):
        if not isinstance(entry[field], str) or not HEX64.fullmatch(entry[field]):
            raise Mismatch(expected, f"{field} is not 64 lowercase hex digits")
    if previous is not None and entry["previous_hash"] != previous:
        raise Mismatch(expected, "previous_hash is not the hash of the entry before it (chain broken)")
    if entry_hash(entry) != entry["hash"]:
        raise Mismatch(expected, "hash does not match the entry's fields (entry altered)")
    return str(entry["hash"])


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def load(raw: bytes) -> dict[str, Any]:
    """The export in `raw`, if it is canonical (a mismatch otherwise: a re-encoded or altered file)."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Mismatch(None, f"not JSON: {error}") from None
    body = raw[:-1] if raw.endswith(b"\n") else raw
    again = canonical(document) if isinstance(document, dict) else b""
    if body != again:
        at = next((i for i, (a, b) in enumerate(zip(body, again, strict=False)) if a != b), min(len(body), len(again)))
        raise Mismatch(None, f"the file is not the canonical encoding of its content (first difference at byte {at})")
    return document


def check(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Check pages of an export in order; returns what was verified: first and last sequence, whether the chain
    was checked from the genesis, the head and whether the export reached it."""
    previous: str | None = None
    expected: int | None = None
    first: int | None = None
    last_hash: str | None = None
    head: dict[str, Any] = {}
    for document in documents:
        if set(document) != {"after", "entries", "format", "head", "until"} or document["format"] != FORMAT:
            raise Mismatch(expected, f"not an export of format {FORMAT} (fields after, entries, format, head, until)")
        after, entries, head, until = document["after"], document["entries"], document["head"], document["until"]
        if not _is_int(after) or after < 0 or not isinstance(entries, list):
            raise Mismatch(expected, "after must be a sequence (≥ 0) and entries a list")
        if expected is None:
            previous = GENESIS if after == 0 else None
            first = after + 1
        elif after != expected - 1:
            raise Mismatch(expected, f"this page starts after {after}, the one before ended at {expected - 1}")
        expected = after + 1
        for entry in entries:
            previous = last_hash = _check_entry(entry, expected, previous)
            expected += 1
        if not _is_int(until) or until != expected - 1:
            raise Mismatch(expected, f"the page says it ends at {until!r}, its entries end at {expected - 1}")
        if not isinstance(head, dict) or set(head) != {"hash", "sequence"}:
            raise Mismatch(expected, "head must be {hash, sequence}")
        if not _is_int(head["sequence"]) or head["sequence"] < expected - 1:
            raise Mismatch(expected - 1, f"head {head['sequence']!r} is before the last entry {expected - 1}")
        if head["sequence"] == expected - 1 and previous is not None and head["hash"] != previous:
            raise Mismatch(expected - 1, "the head's hash is not the last entry's (entries removed or altered)")
        if not isinstance(head["hash"], str) or not HEX64.fullmatch(head["hash"]):
            raise Mismatch(head["sequence"], "the head's hash is not 64 lowercase hex digits")
    assert expected is not None and first is not None
    return {
        "first": first,
        "last": expected - 1,
        "from_genesis": first == 1,
        "head": head,
        "reached_head": head["sequence"] == expected - 1,
        "last_hash": last_hash,
    }


def verdict(result: dict[str, Any]) -> str:
    count = result["last"] - result["first"] + 1
    text = f"OK: {count} entries verified ({result['first']}..{result['last']})"
    text += ", chained from the genesis" if result["from_genesis"] else ", anchored on the first entry's previous_hash"
    if result["reached_head"]:
        return text + ", ending at the head"
    return text + f"; the head is further: fetch ?after={result['last']} and verify the pages together"


def say(text: str, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--reads":
        with open(argv[1], "rb") as file:
            say(reads_hash(json.load(file)))
        return 0
    if not argv or any(arg.startswith("-") for arg in argv):
        say(__doc__ or "", sys.stderr)
        return 2
    documents = []
    for path in argv:
        try:
            with open(path, "rb") as file:
                raw = file.read()
        except OSError as error:
            say(f"cannot read {path}: {error}", sys.stderr)
            return 2
        try:
            documents.append(load(raw))
        except Mismatch as bad:
            say(f"REJECTED: {path}: {bad.reason}")
            return 1
    try:
        result = check(documents)
    except Mismatch as bad:
        where = f"sequence {bad.sequence}" if bad.sequence is not None else "the export"
        say(f"REJECTED at {where}: {bad.reason}")
        return 1
    say(f"head: sequence {result['head']['sequence']} hash {result['head']['hash']}")
    say(verdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
