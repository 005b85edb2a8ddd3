"""The Kazam poller: every KAZAM_POLL_SECONDS, finished transactions of linked chargers become reads.

Per request group: ask Kazam, then in ONE transaction lock the links, record the new transactions
(unique txn_id), add their `read.submitted` events to the outbox and advance the cursors. A
transaction seen again is already recorded and produces nothing. Kazam being unreachable costs
one group one tick: it is logged and asked again on the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

from opendrec_kit import outbox

from . import domain, store
from .kazam import KazamClient, KazamError

log = logging.getLogger(__name__)


class KazamPoller:
    def __init__(
        self,
        pool: asyncpg.Pool,
        kazam: KazamClient,
        producer: str,
        *,
        interval_s: float,
        lookback_s: int,
        chargers_per_request: int,
    ) -> None:
        self.pool = pool
        self.kazam = kazam
        self.producer = producer
        self.interval_s = interval_s
        self.lookback_s = lookback_s
        self.chargers_per_request = chargers_per_request
        self.ticks = 0  # completed polls, successful or not (tests and logs count them)
        self.last: dict[str, Any] = {}

    async def run(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the database is away: this tick is lost, the next one retries
                log.exception("kazam poll failed; the next tick retries")
                self.ticks += 1
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))

    async def tick(self) -> dict[str, Any]:
        now = int(time.time())
        async with self.pool.acquire() as conn:
            links = await store.all_links(conn)
        stats = {"chargers": len(links), "requests_failed": 0, "transactions_seen": 0, "new_reads": 0, "skipped": 0}
        for cursor, group in domain.group_by_cursor(links, self.chargers_per_request):
            start, end = domain.query_window(cursor, now, self.lookback_s)
            try:
                transactions = await self.kazam.transactions([link.charger_id for link in group], start, end)
            except KazamError as exc:
                stats["requests_failed"] += 1
                log.warning(
                    "kazam unreachable or refusing; retrying next tick",
                    extra={"chargers": len(group), "error": str(exc)},
                )
                continue
            stats["transactions_seen"] += len(transactions)
            new, skipped = await self._commit(group, transactions, end)
            stats["new_reads"] += new
            stats["skipped"] += skipped
        self.ticks += 1
        self.last = stats
        if links:
            log.info("kazam poll", extra=stats)
        return stats

    async def _commit(
        self, group: list[domain.Link], transactions: list[dict[str, Any]], window_end: int
    ) -> tuple[int, int]:
        async with self.pool.acquire() as conn, conn.transaction():
            current = {link.charger_id: link for link in await store.lock_links(conn, [g.charger_id for g in group])}
            # Only links unchanged since the poll began: an unlinked or re-linked charger's
            # transactions must not be credited to a device it no longer feeds.
            live = {
                g.charger_id: g
                for g in group
                if (locked := current.get(g.charger_id))
                and (locked.device_id, locked.linked_at) == (g.device_id, g.linked_at)
            }
            outcome = domain.plan(transactions, live, window_end)
            new_ids = await store.record_transactions(conn, outcome.records)
            reads = [read for txn_id, read in outcome.reads.items() if txn_id in new_ids]
            if reads:
                await outbox.add_many(conn, reads, self.producer)
            await store.set_cursors(conn, outcome.cursors)
        skipped = sum(1 for r in outcome.records if r[0] in new_ids and r[6] == "skipped")
        for r in outcome.records:
            if r[0] in new_ids and r[6] == "skipped":
                log.warning("kazam transaction skipped", extra={"txn_id": r[0], "charger_id": r[1], "reason": r[7]})
        return len(reads), skipped
