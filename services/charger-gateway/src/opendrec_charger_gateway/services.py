"""The charger gateway's use cases: each runs in the kit's unit of work (`async with uow:`), SQL through
`store`, rules from `domain`, events recorded with `uow.record*` (written to the outbox at commit).

Callers: the routes (`api.py`), the device read model's handlers (`handlers.py`, whose open unit of work the
use cases join) and the kazam-poller worker (`poller.py`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import asyncpg

from opendrec_contracts import DeviceRegistered, DeviceUpdated
from opendrec_kit import ApiError, Principal, UnitOfWork, metrics
from opendrec_kit.organizations import ADMIN, API_USER, acting_organization, visible_organizations
from opendrec_kit.owners import OwnerServices
from opendrec_kit.paging import Page
from opendrec_kit.timestamps import iso

from . import domain, store
from .kazam import KazamClient, KazamError

log = logging.getLogger(__name__)

DEVELOPER = "Developer"


# ---------------------------------------------------------------- charger links


def link_answer(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "chargerId": row["charger_id"],
        "externalId": row["external_id"],
        "deviceId": row["device_id"],
        "organizationId": row["organization_id"],
        "linkedAt": iso(row["linked_at"]),
        # transactions starting from here on (less the look-back) are what the next poll asks for
        "pollCursor": iso(datetime.fromtimestamp(row["poll_cursor"], UTC)),
    }


async def _reachable(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> list[int] | None:
    """Organizations whose links the caller reaches (None: all, for an admin naming none). An API user
    naming none reaches all its Developer organizations."""
    kind = DEVELOPER if user.role == API_USER else None
    return await visible_organizations(conn, user, organization_id, organization_type=kind)


async def link_charger(
    uow: UnitOfWork,
    owners: OwnerServices,
    user: Principal,
    charger_id: str,
    external_id: str,
    organization_id: int | None,
) -> dict[str, Any]:
    """Link a Kazam charger to a device of the acting Developer organization (409 when the charger is linked).
    A device not known here yet (registered a moment ago, device.registered on its way) is asked of devices once,
    outside any transaction, on the caller's behalf; a known one costs nothing more."""
    if user.role == ADMIN and organization_id in (None, user.organization_id):
        raise ApiError(
            400, "organizationId is required: an admin links chargers for the Developer organization it names"
        )
    async with uow:
        acting, row = await _link(uow, user, charger_id, external_id, organization_id)
    if row is None:
        path = f"/devices/by-external-id?organizationId={acting}&externalId={quote(external_id)}"
        await learn_devices(uow, owners, user, path)
        async with uow:
            acting, row = await _link(uow, user, charger_id, external_id, organization_id)
    if row is None:
        # Unknown here and to devices, or another organization's: the same answer, so existence is not disclosed.
        raise ApiError(404, f"No device with externalId {external_id!r} in organization {acting}")
    return link_answer(row)


async def _link(
    uow: UnitOfWork, user: Principal, charger_id: str, external_id: str, organization_id: int | None
) -> tuple[int, asyncpg.Record | None]:
    """In the open unit of work: the acting organization and the new link (None: no such device known here)."""
    # the device's organization: an API user's named Developer organization, an admin's named one, one's own
    acting = await acting_organization(uow.conn, user, organization_id, organization_type=DEVELOPER)
    device = await store.find_device(uow.conn, acting, external_id)
    if device is None:
        return acting, None
    try:
        return acting, await store.insert_link(uow.conn, charger_id, device["device_id"], acting, user.user_id)
    except store.ChargerTaken:
        raise ApiError(409, f"Charger {charger_id!r} is already linked to a device") from None


async def list_links(
    uow: UnitOfWork, user: Principal, organization_id: int | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """One page of the charger links the caller reaches (an API user's Developer organizations'; an admin's:
    all), and how many there are in all."""
    async with uow.reading() as r:
        scope = await _reachable(r.conn, user, organization_id)
        rows = await store.list_links(r.conn, scope, page.limit, page.offset)
        total = await store.count_links(r.conn, scope)
    return [link_answer(row) for row in rows], total


async def unlink_charger(uow: UnitOfWork, user: Principal, charger_id: str, organization_id: int | None) -> None:
    """Free a charger linked in one of the caller's organizations (404 when there is none)."""
    async with uow:
        scope = await _reachable(uow.conn, user, organization_id)
        deleted = await store.delete_link(uow.conn, charger_id, scope)
    if not deleted:
        raise ApiError(404, f"No charger {charger_id!r} linked in your organization(s)")


# ---------------------------------------------------------------- device read model
# device.registered, device.updated and device.deleted come on three topics, read by three consumers at once:
# a device's events are applied one transaction at a time (store.lock_device), a deletion is remembered even
# before the device is known, and a state older (by the event's occurred_at) than the stored one is ignored.


async def take_device_state(uow: UnitOfWork, event: DeviceRegistered | DeviceUpdated, state_at: datetime) -> bool:
    """The device as registered or updated at `state_at` (its current state: a renamed external id is linkable
    under its new name only). False: ignored (the device was deleted, or a newer state is stored). Its events'
    handlers and read-your-writes (`learn_devices`) both take a device through here."""
    device = domain.DeviceState(event.device_id, event.external_id, event.organization_id, event.onboarded_at, state_at)
    async with uow:
        await store.lock_device(uow.conn, device.device_id)
        return await store.upsert_device(uow.conn, device)


async def learn_devices(uow: UnitOfWork, owners: OwnerServices, user: Principal, path: str) -> None:
    """Read-your-writes: ask devices (`path`, under /internal) on the caller's behalf for devices not known here
    yet and take each as its event would be taken (the newer state wins, whichever comes first)."""
    for known in await owners.ask("devices", path, user):
        if isinstance(known.event, DeviceRegistered | DeviceUpdated):
            await take_device_state(uow, known.event, known.occurred_at)


async def delete_device(uow: UnitOfWork, device_id: int, deleted_at: datetime) -> int:
    """The device is deleted (remembered even if not known yet): its chargers are unlinked and no longer
    polled, its external id free for a new device. Returns how many chargers were unlinked."""
    async with uow:
        await store.lock_device(uow.conn, device_id)
        unlinked = await store.delete_device(uow.conn, device_id, deleted_at)
    if unlinked:
        log.info("device deleted: its chargers are unlinked", extra={"device_id": device_id, "chargers": unlinked})
    return unlinked


# ---------------------------------------------------------------- Kazam transactions -> reads


async def poll_kazam(
    uow: UnitOfWork, kazam: KazamClient, *, lookback_s: int, chargers_per_request: int
) -> dict[str, int]:
    """One poll of every linked charger: per request group, ask Kazam (outside any transaction: a slow Kazam
    holds no lock), then record the outcome in one transaction (`record_transactions`). Kazam unreachable or
    refusing costs that group this round only (logged). Returns the round's counts."""
    now = int(time.time())
    async with uow.reading() as r:
        links = await store.all_links(r.conn)
    stats = {"chargers": len(links), "requests_failed": 0, "transactions_seen": 0, "new_reads": 0, "skipped": 0}
    for cursor, group in domain.group_by_cursor(links, chargers_per_request):
        start, end = domain.query_window(cursor, now, lookback_s)
        try:
            transactions = await kazam.transactions([link.charger_id for link in group], start, end)
        except KazamError as exc:
            stats["requests_failed"] += 1
            log.warning(
                "kazam unreachable or refusing; retrying next poll", extra={"chargers": len(group), "error": str(exc)}
            )
            continue
        stats["transactions_seen"] += len(transactions)
        new, skipped = await record_transactions(uow, group, transactions, end)
        stats["new_reads"] += new
        stats["skipped"] += skipped
    metrics.charger_poll("kazam", stats)
    if links:
        log.info("kazam poll", extra=stats)
    return stats


async def record_transactions(
    uow: UnitOfWork, group: list[domain.Link], transactions: list[dict[str, Any]], window_end: int
) -> tuple[int, int]:
    """One Kazam answer for a group of links, in one transaction: lock the links, record the transactions not
    seen before (unique txn_id), record a `read.submitted` for each new finished one and advance the cursors.
    Returns (new reads, new skipped transactions)."""
    async with uow:
        locked = {link.charger_id: link for link in await store.lock_links(uow.conn, [g.charger_id for g in group])}
        # Only links unchanged since the poll began: an unlinked or re-linked charger's
        # transactions must not be credited to a device it no longer feeds.
        live = {
            g.charger_id: g
            for g in group
            if (now := locked.get(g.charger_id)) and (now.device_id, now.linked_at) == (g.device_id, g.linked_at)
        }
        outcome = domain.plan(transactions, live, window_end)
        new_ids = await store.record_transactions(uow.conn, outcome.records)
        reads = [read for txn_id, read in outcome.reads.items() if txn_id in new_ids]
        uow.record_all(reads)
        await store.set_cursors(uow.conn, outcome.cursors)
    skipped = [r for r in outcome.records if r[0] in new_ids and r[6] == "skipped"]
    for r in skipped:
        log.warning("kazam transaction skipped", extra={"txn_id": r[0], "charger_id": r[1], "reason": r[7]})
    return len(reads), len(skipped)
