"""The ledger's use cases: append an entry (inside the caller's unit of work), export the chain, prove a certificate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from opendrec_kit import UnitOfWork

from . import domain, store
from .domain import LedgerEntry


async def append(
    uow: UnitOfWork,
    kind: str,
    certificate_id: uuid.UUID,
    body: dict[str, Any],
    *,
    recorded_at: datetime | None = None,
) -> LedgerEntry:
    """Append one entry to the chain, in the caller's unit of work (joined if open): it commits or rolls back with
    the caller's change. The head row stays locked until that transaction ends, so concurrent appends line up and
    never fork the chain; take it last in a transaction (after the caller's own row locks) to keep lock order.

    `recorded_at`: when the fact happened, written into the hash. Pass the event's own time (e.g. the certificate's
    issue time) so that the ledger rebuilt from the events is the same chain; by default the clock now."""
    [entry] = await append_many(uow, [(kind, certificate_id, body, recorded_at)])
    return entry


async def append_many(
    uow: UnitOfWork, facts: list[tuple[str, uuid.UUID, dict[str, Any], datetime | None]]
) -> list[LedgerEntry]:
    """Append entries (kind, certificate id, body, recorded_at) in this order, as `append` does one by one, with
    one lock of the head, one insert and one move of the head (an issuance of many certificates)."""
    if not facts:
        return []
    async with uow:
        head_sequence, head_hash = await store.lock_head(uow.conn)
        entries = []
        for kind, certificate_id, body, recorded_at in facts:
            entry = domain.next_entry(
                head_sequence, head_hash, kind, certificate_id, body, recorded_at or datetime.now(UTC)
            )
            entries.append(entry)
            head_sequence, head_hash = entry.sequence, entry.hash
        await store.insert_entries(uow.conn, entries)
        await store.move_head(uow.conn, head_sequence, head_hash)
    return entries


class BeyondHead(Exception):
    """An export asked from after the chain's head."""

    def __init__(self, head: int) -> None:
        super().__init__(f"after is beyond the chain's head ({head})")
        self.head = head


async def export(uow: UnitOfWork, after: int, limit: int) -> bytes:
    """A page of the chain and its head, from one snapshot (the head is consistent with the rows), in the canonical
    encoding (the verifier insists on every byte)."""
    async with uow.reading() as r:
        head_sequence, head_hash = await store.head(r.conn)
        if after > head_sequence:
            raise BeyondHead(head_sequence)
        rows = await store.entries_after(r.conn, after, limit)
    entries = [store.row_entry(row) for row in rows]
    return domain.canonical(domain.export_document(after, entries, head_sequence, head_hash))


async def proof(uow: UnitOfWork, certificate_id: uuid.UUID) -> dict[str, Any] | None:
    """A certificate's proof (None: the ledger has no entry of it)."""
    async with uow.reading() as r:
        head_sequence, head_hash = await store.head(r.conn)
        rows = await store.entries_of(r.conn, certificate_id)
    if not rows:
        return None
    entries = [store.row_entry(row) for row in rows]
    return domain.proof_document(certificate_id, entries, head_sequence, head_hash)
