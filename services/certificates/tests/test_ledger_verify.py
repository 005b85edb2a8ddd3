"""The verifier CLI: an export round-trips (export -> verify OK); a single altered byte anywhere, a removed entry,
a moved entry, a page out of order are rejected with the first bad sequence and exit status 1."""

import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from opendrec_certificates.ledger import domain, verify

AT = datetime(2025, 3, 31, 23, 0, 0, 250000, tzinfo=UTC)
KINDS = ["issuance", "issuance", "transfer", "lock", "release", "retirement"]


def entries(n=len(KINDS)):
    found, sequence, previous = [], 0, domain.GENESIS
    cert = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")
    for i, kind in enumerate(KINDS[:n]):
        body = {
            "energy_wh": 1000 * (i + 1),
            "reads_hash": domain.reads_hash([(i, AT, AT + timedelta(hours=1), 1000 * (i + 1))]),
            "parts": [[i, 1000 * (i + 1)]],
            "beneficiary": "Société Générale — ☀",
            "note": 'quote " and \\ backslash',
        }
        entry = domain.next_entry(sequence, previous, kind, cert, body, AT + timedelta(minutes=i))
        found.append(entry)
        sequence, previous = entry.sequence, entry.hash
    return found


def export(items, after=0, head=None):
    head = head or ((items[-1].sequence, items[-1].hash) if items else (0, domain.GENESIS))
    return domain.canonical(domain.export_document(after, items, *head))


RAW = export(entries())


def verdict(*pages: bytes):
    """(ok, first bad sequence or None) as the verifier sees the pages."""
    try:
        verify.check([verify.load(p) for p in pages])
    except verify.Mismatch as bad:
        return False, bad.sequence
    return True, None


def test_an_export_round_trips():
    assert verdict(RAW) == (True, None)
    assert verdict(RAW + b"\n") == (True, None)  # as curl -o may save it


def test_an_empty_chain_verifies():
    assert verdict(export([])) == (True, None)


def region(name: str) -> range:
    """Byte positions of each occurrence's value of `"name":` in RAW (first occurrence for a unique key)."""
    start = RAW.index(f'"{name}":'.encode()) + len(name) + 3
    end = start
    depth = 0
    while end < len(RAW):
        c = RAW[end : end + 1]
        if c in b"[{":
            depth += 1
        elif c in b"]}":
            if depth == 0:
                break
            depth -= 1
        elif c == b"," and depth == 0:
            break
        end += 1
    return range(start, end)


@pytest.mark.parametrize(
    "field",
    ["body", "certificate_id", "kind", "previous_hash", "recorded_at", "sequence", "hash", "format", "after", "until"],
)
def test_a_single_altered_byte_in_any_field_is_rejected(field):
    positions = region(field)
    assert positions
    for at in positions:
        for altered in {RAW[at] ^ 0x01, RAW[at] ^ 0x20, (RAW[at] + 1) % 256}:
            raw = RAW[:at] + bytes([altered]) + RAW[at + 1 :]
            assert verdict(raw)[0] is False, (
                f"byte {at} ({RAW[at : at + 1]!r} -> {bytes([altered])!r}) in {field} passed"
            )


@pytest.mark.parametrize("step", range(7))
def test_every_single_altered_byte_of_the_file_is_rejected(step):
    """Every position (a seventh of them per case), each flipped to another byte."""
    for at in range(step, len(RAW), 7):
        raw = RAW[:at] + bytes([RAW[at] ^ 0x04]) + RAW[at + 1 :]
        assert verdict(raw)[0] is False, f"byte {at} altered passed"


@pytest.mark.parametrize("index", range(len(KINDS)))
def test_an_altered_body_names_its_sequence(index):
    items = entries()
    items[index] = domain.LedgerEntry(**{**items[index].__dict__, "body": {**items[index].body, "energy_wh": 1}})
    assert verdict(export(items, head=(entries()[-1].sequence, entries()[-1].hash))) == (False, index + 1)


@pytest.mark.parametrize("index", range(len(KINDS)))
def test_a_removed_entry_is_rejected(index):
    items = entries()
    full_head = (items[-1].sequence, items[-1].hash)
    doc = domain.export_document(0, items, *full_head)
    del doc["entries"][index]
    ok, sequence = verdict(domain.canonical(doc))
    assert not ok and sequence == index + 1


@pytest.mark.parametrize("index", range(len(KINDS) - 1))
def test_entries_swapped_are_rejected(index):
    doc = json.loads(RAW)
    doc["entries"][index], doc["entries"][index + 1] = doc["entries"][index + 1], doc["entries"][index]
    assert verdict(domain.canonical(doc)) == (False, index + 1)


def test_a_re_encoded_file_is_rejected_as_not_canonical():
    assert verdict(json.dumps(json.loads(RAW), indent=2).encode())[0] is False


def test_pages_verify_together_and_only_in_order():
    items = entries()
    head = (items[-1].sequence, items[-1].hash)
    first, second = export(items[:2], 0, head), export(items[2:], 2, head)
    assert verdict(first, second) == (True, None)
    assert verdict(second, first)[0] is False
    assert verdict(first)[0] is True  # a page alone: the head is further
    assert verify.verdict(verify.check([verify.load(first)])).endswith("verify the pages together")
    assert verdict(second) == (True, None)  # anchored on its first entry's previous_hash
    forged = list(items[2:])
    forged[0] = domain.next_entry(2, "f" * 64, forged[0].kind, forged[0].certificate_id, forged[0].body, AT)
    assert verdict(first, export(forged, 2, head)) == (False, 3)  # does not link to page one


def run(*args, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_the_cli_prints_the_head_and_a_verdict(tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(RAW)
    done = run("-m", "opendrec_certificates.ledger.verify", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    head = entries()[-1]
    assert done.stdout.splitlines() == [
        f"head: sequence {head.sequence} hash {head.hash}",
        f"OK: {len(KINDS)} entries verified (1..{len(KINDS)}), chained from the genesis, ending at the head",
    ]


def test_the_cli_exits_1_naming_the_first_bad_sequence(tmp_path):
    doc = json.loads(RAW)
    doc["entries"][3]["body"]["energy_wh"] += 1
    path = tmp_path / "export.json"
    path.write_bytes(domain.canonical(doc))
    done = run("-m", "opendrec_certificates.ledger.verify", str(path))
    assert done.returncode == 1
    assert done.stdout.startswith("REJECTED at sequence 4: hash does not match")


def test_a_copy_of_the_one_file_runs_alone(tmp_path):
    """A third party copies verify.py: it needs nothing but Python's standard library (run isolated, -I)."""
    shutil.copy(verify.__file__, tmp_path / "verify.py")
    (tmp_path / "export.json").write_bytes(RAW)
    done = run("-I", "verify.py", "export.json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    reads = tmp_path / "reads.json"
    reads.write_text(json.dumps([[1, "2025-03-31T23:00:00.250000Z", "2025-04-01T00:00:00.250000Z", 2000]]))
    done = run("-I", "verify.py", "--reads", "reads.json", cwd=tmp_path)
    assert done.stdout.strip() == domain.reads_hash([(1, AT, AT + timedelta(hours=1), 2000)])
    assert run("-I", "verify.py", "missing.json", cwd=tmp_path).returncode == 2
    assert run("-I", "verify.py", cwd=tmp_path).returncode == 2
