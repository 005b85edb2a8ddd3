"""The charger gateway's use cases: each runs in the kit's unit of work (`async with uow:`), SQL through
`store`, rules from `domain`, events recorded with `uow.record*` (written to the outbox at commit).

Callers: the routes (`api.py`), the device read model's handlers (`handlers.py`, whose open unit of work the
use cases join) and the kazam-poller worker (`poller.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg

from opendrec_contracts import DeviceRegistered, DeviceUpdated, ReadRejected, ReadSubmitted
from opendrec_kit import ApiError, Principal, UnitOfWork, metrics
from opendrec_kit.organizations import ADMIN, API_USER, acting_organization, visible_organizations
from opendrec_kit.owners import OwnerServices
from opendrec_kit.paging import Page
from opendrec_kit.timestamps import iso

from . import domain, store
from .credentials import TokenCipher, UnreadableToken
from .kazam import KazamAccess, KazamClient, KazamError, KazamNotFound, KazamUnauthorized, KazamUnavailable

log = logging.getLogger(__name__)

DEVELOPER = "Developer"
T = TypeVar("T")


# ---------------------------------------------------------------- charger links


def link_answer(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "chargerId": row["charger_id"],
        "externalId": row["external_id"],
        "deviceId": row["device_id"],
        "organizationId": row["organization_id"],
        "linkedAt": iso(row["linked_at"]),
        "type": row["kind"],
        # transactions starting from here on (less the look-back) are what the next poll asks for (Kazam)
        "pollCursor": iso(datetime.fromtimestamp(row["poll_cursor"], UTC)),
        # verified; unverified: linked before linking proved ownership, checked on the next poll; refused: the
        # organization's Kazam credentials do not see the charger (not polled; the reason says why)
        "ownership": row["ownership"],
        "ownershipReason": row["ownership_reason"],
    }


async def _reachable(conn: asyncpg.Connection, user: Principal, organization_id: int | None) -> list[int] | None:
    """Organizations whose links the caller reaches (None: all, for an admin naming none). An API user
    naming none reaches all its Developer organizations."""
    kind = DEVELOPER if user.role == API_USER else None
    return await visible_organizations(conn, user, organization_id, organization_type=kind)


async def link_charger(
    uow: UnitOfWork,
    owners: OwnerServices,
    access: KazamAccess,
    cipher: TokenCipher,
    user: Principal,
    charger_id: str,
    external_id: str,
    organization_id: int | None,
    kind: str = "kazam",
) -> dict[str, Any]:
    """Link a charger to a device of the acting Developer organization (409 when the charger is linked): a Kazam
    charger if that organization's own Kazam credentials see it (`_prove_ownership`, asked once the device is
    found and the charger free, outside any transaction), or an OCPP charge point (`kind` ocpp), whose password is
    answered once (HTTP Basic on its WebSocket upgrade). A device not known here yet (registered a moment ago,
    device.registered on its way) is asked of devices once, outside any transaction, on the caller's behalf; a
    known one costs nothing more."""
    if user.role == ADMIN and organization_id in (None, user.organization_id):
        raise ApiError(
            400, "organizationId is required: an admin links chargers for the Developer organization it names"
        )
    async with uow.reading() as r:
        acting, device, account, taken = await _before_linking(r.conn, user, charger_id, external_id, organization_id)
    if device is None:
        path = f"/devices/by-external-id?organizationId={acting}&externalId={quote(external_id)}"
        await learn_devices(uow, owners, user, path)
        async with uow.reading() as r:
            acting, device, account, taken = await _before_linking(
                r.conn, user, charger_id, external_id, organization_id
            )
    if device is None:
        # Unknown here and to devices, or another organization's: the same answer, so existence is not disclosed.
        raise ApiError(404, f"No device with externalId {external_id!r} in organization {acting}")
    if taken:
        raise ApiError(409, f"Charger {charger_id!r} is already linked to a device")
    password: str | None = None
    password_hash: bytes | None = None
    if kind == "ocpp":
        # Security profile 1: the charge point's own password, answered once, kept as a salted scrypt hash.
        password = secrets.token_urlsafe(domain.OCPP_PASSWORD_BYTES)
        password_hash = domain.hash_password(password, secrets.token_bytes(16))
    else:
        await _prove_ownership(uow, access, cipher, acting, account, charger_id)
    async with uow:
        acting, row = await _link(uow, user, charger_id, external_id, organization_id, kind, password_hash)
    if row is None:  # the device was deleted meanwhile
        raise ApiError(404, f"No device with externalId {external_id!r} in organization {acting}")
    answer = link_answer(row)
    if password is not None:
        answer |= {"ocppUrl": f"/ocpp/{charger_id}", "ocppSubprotocol": "ocpp1.6", "ocppPassword": password}
    return answer


async def _before_linking(
    conn: asyncpg.Connection, user: Principal, charger_id: str, external_id: str, organization_id: int | None
) -> tuple[int, asyncpg.Record | None, asyncpg.Record | None, bool]:
    """The acting organization, its device named `external_id` (None: not known here), its Kazam account and
    whether the charger is linked already (a link whose ownership was refused gives way to one proven)."""
    acting = await acting_organization(conn, user, organization_id, organization_type=DEVELOPER)
    device = await store.find_device(conn, acting, external_id)
    account = await store.get_account(conn, acting)
    link = await store.find_link(conn, charger_id, None)
    return acting, device, account, link is not None and link["ownership"] != "refused"


async def _prove_ownership(
    uow: UnitOfWork,
    access: KazamAccess,
    cipher: TokenCipher,
    organization_id: int,
    account: asyncpg.Record | None,
    charger_id: str,
) -> None:
    """The organization's Kazam account must answer /getDeviceState for the charger (asked outside any
    transaction): another organization's charger is refused (403), as is an organization without working
    credentials (409: register them first)."""
    client, account = _client_for(access, cipher, organization_id, account)
    if client is None:
        raise ApiError(
            409,
            f"Organization {organization_id} has no working Kazam credentials: register them with "
            "PUT /api/charger/kazam/credentials before linking chargers",
        )
    try:
        await client.device_state(charger_id)
    except KazamNotFound:
        raise ApiError(403, f"Your organization's Kazam account does not see charger {charger_id!r}") from None
    except KazamUnauthorized as exc:
        if account is not None:
            await _needs_credentials(uow, organization_id, account["token_encrypted"], str(exc))
        raise ApiError(409, "Kazam refused your organization's credentials (401): register new ones") from None
    except KazamError as exc:
        access.count_error(exc.kind)
        raise ApiError(503, f"Kazam could not confirm charger {charger_id!r} now: {exc}") from None


def _client_for(
    access: KazamAccess, cipher: TokenCipher, organization_id: int, account: asyncpg.Record | None
) -> tuple[KazamClient | None, asyncpg.Record | None]:
    """The Kazam client of the organization's own account; the platform token (dev and test only) when it
    registered none; None when its account needs new credentials or none is usable."""
    if account is None:
        return (access.client(None, access.platform_token) if access.platform_token else None), None
    if account["status"] != "active":
        return None, account
    try:
        token = cipher.decrypt(account["token_encrypted"])
    except UnreadableToken:
        log.error("kazam token of an organization cannot be decrypted", extra={"organization_id": organization_id})
        return None, account
    return access.client(account["base_url"], token), account


async def _needs_credentials(uow: UnitOfWork, organization_id: int, token_encrypted: bytes, reason: str) -> None:
    async with uow:
        marked = await store.mark_needs_credentials(uow.conn, organization_id, token_encrypted, reason)
    if marked:
        log.warning(
            "kazam refused an organization's credentials: its chargers are not polled until new ones are registered",
            extra={"organization_id": organization_id, "reason": reason},
        )


async def _link(
    uow: UnitOfWork,
    user: Principal,
    charger_id: str,
    external_id: str,
    organization_id: int | None,
    kind: str,
    password_hash: bytes | None,
) -> tuple[int, asyncpg.Record | None]:
    """In the open unit of work: the acting organization and the new link (None: no such device known here)."""
    # the device's organization: an API user's named Developer organization, an admin's named one, one's own
    acting = await acting_organization(uow.conn, user, organization_id, organization_type=DEVELOPER)
    device = await store.find_device(uow.conn, acting, external_id)
    if device is None:
        return acting, None
    try:
        return acting, await store.insert_link(
            uow.conn, charger_id, device["device_id"], acting, user.user_id, kind, password_hash
        )
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


OWNERSHIP_CHECKS_PER_ROUND = 100  # per account: links left unverified (migration 0007) are checked a batch a round

# The counts of a poll round (logged, in metrics and in /readyz details).
POLL_COUNTS = (
    "chargers",
    "requests_failed",
    "transactions_seen",
    "new_reads",
    "skipped",
    "without_credentials",
    "breaker_open",
    "ownership_verified",
    "ownership_refused",
)


@dataclass(frozen=True)
class _Account:
    """The Kazam account a poll round asks for one organization's chargers."""

    organization_id: int
    client: KazamClient
    token_encrypted: bytes | None  # None: the platform token (dev and test only)

    @property
    def breaker(self) -> str:
        if self.token_encrypted is None:
            return domain.platform_breaker(self.client.base_url)
        return domain.own_breaker(self.organization_id)


async def poll_kazam(
    uow: UnitOfWork, access: KazamAccess, cipher: TokenCipher, *, lookback_s: int, chargers_per_request: int
) -> dict[str, int]:
    """One poll of every linked charger, each organization's with its own Kazam credentials (`_poll_account`).
    Returns the round's counts."""
    now = int(time.time())
    async with uow.reading() as r:
        links = await store.all_links(r.conn)
        accounts = {
            a["organization_id"]: a
            for a in await store.accounts_of(r.conn, list({link.organization_id for link in links}))
        }
    stats = dict.fromkeys(POLL_COUNTS, 0) | {"chargers": len(links)}
    by_organization: dict[int, list[domain.Link]] = defaultdict(list)
    for link in links:
        by_organization[link.organization_id].append(link)
    for organization_id, own in sorted(by_organization.items()):
        client, account = _client_for(access, cipher, organization_id, accounts.get(organization_id))
        if client is None:
            stats["without_credentials"] += len(own)
            continue
        token = account["token_encrypted"] if account is not None else None
        try:
            await _poll_account(
                uow, access, _Account(organization_id, client, token), own, stats, now, lookback_s, chargers_per_request
            )
        except KazamUnauthorized as exc:  # the account's other requests would be refused as well
            if token is None:
                log.warning("kazam refused the platform token", extra={"error": str(exc)})
            else:
                await _needs_credentials(uow, organization_id, token, str(exc))
    access.last_poll_at, access.last_poll_unix = time.monotonic(), time.time()
    metrics.charger_poll("kazam", stats)
    if links:
        log.info("kazam poll", extra=stats)
    return stats


async def _poll_account(
    uow: UnitOfWork,
    access: KazamAccess,
    account: _Account,
    links: list[domain.Link],
    stats: dict[str, int],
    now: int,
    lookback_s: int,
    chargers_per_request: int,
) -> None:
    """One organization's chargers with its own account: links not verified yet are checked first (only verified
    ones are polled); then per request group, ask Kazam (outside any transaction: a slow Kazam holds no lock) and
    record the outcome in one transaction (`record_transactions`). A failing request costs that group this round
    only. Raises KazamUnauthorized (401): the account's token no longer works."""
    verified = [link for link in links if link.ownership == "verified"]
    unverified = [link for link in links if link.ownership == "unverified"]
    for link in unverified[:OWNERSHIP_CHECKS_PER_ROUND]:  # the rest next round: a round stays short
        if await _verify_ownership(uow, access, account, link, stats):
            verified.append(link)
    for cursor, group in domain.group_by_cursor(verified, chargers_per_request):
        start, end = domain.query_window(cursor, now, lookback_s)
        ask = partial(account.client.transactions, [link.charger_id for link in group], start, end)
        transactions = await _asked(uow, access, account, stats, len(group), ask)
        if transactions is None:
            continue
        stats["transactions_seen"] += len(transactions)
        new, skipped = await record_transactions(uow, group, transactions, end)
        stats["new_reads"] += new
        stats["skipped"] += skipped


async def _verify_ownership(
    uow: UnitOfWork, access: KazamAccess, account: _Account, link: domain.Link, stats: dict[str, int]
) -> bool:
    """A link made before linking proved ownership: the linking organization's credentials must see the charger
    (getDeviceState answers for it). Visible: verified, and polled from now on; not visible: refused (kept, with
    the reason, and never polled: another organization may link the charger). Kazam not answering: checked again
    next round. Returns whether the link is verified."""
    try:
        ask = partial(account.client.device_state, link.charger_id)
        answered = await _asked(uow, access, account, stats, 1, ask, not_found=True)
    except KazamNotFound:
        reason = f"the Kazam account of organization {link.organization_id} does not see charger {link.charger_id!r}"
        async with uow:
            refused = await store.set_ownership(uow.conn, link.charger_id, link.linked_at, "refused", reason)
        if refused:
            stats["ownership_refused"] += 1
            log.warning("charger link refused: not the linking organization's charger", extra={"reason": reason})
        return False
    if answered is None:
        return False
    async with uow:
        verified = await store.set_ownership(uow.conn, link.charger_id, link.linked_at, "verified", None)
    stats["ownership_verified"] += verified
    return verified


async def _asked(
    uow: UnitOfWork,
    access: KazamAccess,
    account: _Account,
    stats: dict[str, int],
    chargers: int,
    call: Callable[[], Awaitable[T]],
    *,
    not_found: bool = False,
) -> T | None:
    """One Kazam request of a poll round, through the account's circuit breaker (in the database: every replica
    and a restarted process see the same state). None: not asked (the breaker is open; `chargers` counted) or
    failed (counted and logged; Kazam unavailable after the retries counts against the breaker). A 401
    (KazamUnauthorized) is raised, as is device_not_found (KazamNotFound) when the caller takes it (`not_found`)."""
    async with uow:
        allowed = await store.breaker_allows(uow.conn, account.breaker, access.breaker_cooldown_s)
    if not allowed:
        stats["breaker_open"] += chargers
        return None
    try:
        answer = await call()
    except KazamNotFound:
        if not_found:
            await _breaker_closed(uow, account)  # Kazam answered
            raise
        access.count_error(KazamNotFound.kind)
        stats["requests_failed"] += 1
        log.warning("kazam does not see a charger", extra={"organization_id": account.organization_id})
        return None
    except KazamError as exc:
        access.count_error(exc.kind)
        stats["requests_failed"] += 1
        if isinstance(exc, KazamUnauthorized):
            raise
        if isinstance(exc, KazamUnavailable):
            async with uow:
                await store.breaker_failed(
                    uow.conn, account.breaker, access.breaker_failures, access.breaker_cooldown_s
                )
        log.warning(
            "kazam unreachable or refusing; retrying next poll",
            extra={"organization_id": account.organization_id, "chargers": chargers, "error": str(exc)},
        )
        return None
    await _breaker_closed(uow, account)
    return answer


async def _breaker_closed(uow: UnitOfWork, account: _Account) -> None:
    async with uow:
        await store.breaker_closed(uow.conn, account.breaker)


async def kazam_details(uow: UnitOfWork, access: KazamAccess, last_round: dict[str, int]) -> dict[str, Any]:
    """For /readyz: how the Kazam polling goes. Poll lag (seconds since this process's last complete round),
    transactions recorded in the last minute (every replica's), errors by kind (this process's, since it started),
    open breakers and links by ownership (every replica's), and the counts of this process's last round."""
    async with uow.reading() as r:
        per_minute = await store.count_transactions_since(r.conn, 60)
        breakers_open = await store.count_open_breakers(r.conn)
        links = await store.count_links_by_ownership(r.conn)
    lag = access.poll_lag_s(time.monotonic())
    return {
        "pollLagSeconds": None if lag is None else round(lag, 3),
        "lastPollAt": iso(datetime.fromtimestamp(access.last_poll_unix, UTC)) if access.last_poll_unix else None,
        "transactionsPerMinute": per_minute,
        "errors": dict(sorted(access.errors.items())),
        "breakersOpen": breakers_open,
        "links": links,
        "lastRound": last_round,
    }


async def rotate_credentials(uow: UnitOfWork, cipher: TokenCipher, limit: int = 100) -> int:
    """Re-encrypt tokens stored under an older key with the first one (key rotation); returns how many."""
    async with uow:
        rows = await store.accounts_to_rotate(uow.conn, cipher.current, limit)
        done = 0
        for row in rows:
            try:
                new, key = cipher.rotate(row["token_encrypted"])
            except UnreadableToken:
                log.error("kazam token under a removed key", extra={"organization_id": row["organization_id"]})
                continue
            await store.set_encrypted_token(uow.conn, row["organization_id"], row["token_encrypted"], new, key)
            done += 1
    return done


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


async def read_refused(uow: UnitOfWork, event: ReadRejected) -> bool:
    """Readings refused the read of a Kazam or OCPP transaction: kept with the transaction (GET .../transactions)."""
    reasons = json.dumps([{"index": r.index, "reason": r.reason} for r in event.reasons])
    if event.source == domain.SOURCE and event.submission_id.startswith(f"{domain.SOURCE}:"):
        async with uow:
            return await store.mark_refused(uow.conn, event.submission_id.removeprefix(f"{domain.SOURCE}:"), reasons)
    if event.source == domain.OCPP_SOURCE:
        charger_id, _, number = event.submission_id.removeprefix(f"{domain.OCPP_SOURCE}:").rpartition(":")
        if charger_id and number.isdigit():
            async with uow:
                return await store.mark_ocpp_refused(uow.conn, charger_id, int(number), reasons)
    return False


# ---------------------------------------------------------------- Kazam credentials of an organization


def account_answer(row: asyncpg.Record) -> dict[str, Any]:
    """Never the token."""
    return {
        "organizationId": row["organization_id"],
        "baseUrl": row["base_url"],
        "status": row["status"],
        "statusReason": row["status_reason"],
        "registeredAt": iso(row["registered_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


async def register_credentials(
    uow: UnitOfWork, cipher: TokenCipher, user: Principal, organization_id: int | None, token: str, base_url: str | None
) -> dict[str, Any]:
    """Register (or replace) the acting Developer organization's Kazam credentials, encrypted at rest; an account
    that needed new credentials is active again and its links are polled from the next round. Its links refused
    (the old credentials did not see their chargers) are checked again, and its breaker starts closed."""
    encrypted, key = cipher.encrypt(token)
    async with uow:
        acting = await acting_organization(uow.conn, user, organization_id, organization_type=DEVELOPER)
        row = await store.upsert_account(uow.conn, acting, base_url, encrypted, key, user.user_id)
        await store.check_refused_links_again(uow.conn, acting)
        await store.breaker_closed(uow.conn, domain.own_breaker(acting))
    return account_answer(row)


async def credentials(uow: UnitOfWork, user: Principal, organization_id: int | None) -> dict[str, Any]:
    """The organization's Kazam account as registered (never its token); 404 when it has none (a Buyer
    organization never has: only Developer organizations register one)."""
    async with uow.reading() as r:
        acting = await acting_organization(r.conn, user, organization_id)
        row = await store.get_account(r.conn, acting)
    if row is None:
        raise ApiError(404, f"Organization {acting} has registered no Kazam credentials")
    return account_answer(row)


async def delete_credentials(uow: UnitOfWork, user: Principal, organization_id: int | None) -> None:
    async with uow:
        acting = await acting_organization(uow.conn, user, organization_id, organization_type=DEVELOPER)
        deleted = await store.delete_account(uow.conn, acting)
        await store.breaker_closed(uow.conn, domain.own_breaker(acting))
    if not deleted:
        raise ApiError(404, f"Organization {acting} has registered no Kazam credentials")


# ---------------------------------------------------------------- a linked charger: state, uptime, transactions


async def _linked(
    conn: asyncpg.Connection, user: Principal, charger_id: str, organization_id: int | None
) -> asyncpg.Record:
    """The charger's link in one of the organizations the caller reaches; 404 otherwise (another organization's
    charger answers as an unlinked one)."""
    link = await store.find_link(conn, charger_id, await _reachable(conn, user, organization_id))
    if link is None:
        raise ApiError(404, f"No charger {charger_id!r} linked in your organization(s)")
    return link


def _kazam_client(
    access: KazamAccess, cipher: TokenCipher, link: asyncpg.Record, account: asyncpg.Record | None
) -> tuple[KazamClient, bytes | None]:
    """The client of the Kazam account of the link's organization, and its encrypted token (None: the platform's)."""
    if link["kind"] != "kazam":
        raise ApiError(409, f"Charger {link['charger_id']!r} is an OCPP charge point: Kazam knows nothing of it")
    client, account = _client_for(access, cipher, link["organization_id"], account)
    if client is None:
        raise ApiError(409, f"Organization {link['organization_id']} needs to register working Kazam credentials")
    return client, None if account is None else account["token_encrypted"]


async def _ask(uow: UnitOfWork, access: KazamAccess, organization_id: int, token: bytes | None, call: Any) -> Any:
    try:
        return await call
    except KazamUnauthorized as exc:
        access.count_error(exc.kind)
        if token is not None:
            await _needs_credentials(uow, organization_id, token, str(exc))
        raise ApiError(409, "Kazam refused the organization's credentials (401): register new ones") from None
    except KazamNotFound:
        raise ApiError(404, "Kazam no longer knows this charger for the organization's account") from None
    except KazamError as exc:
        access.count_error(exc.kind)
        raise ApiError(503, f"Kazam is not answering now: {exc}") from None


async def charger_state(
    uow: UnitOfWork,
    access: KazamAccess,
    cipher: TokenCipher,
    user: Principal,
    charger_id: str,
    organization_id: int | None,
) -> dict[str, Any]:
    """Kazam's device state of a linked charger, its charge_state code with the collection's words; an OCPP charge
    point's from what it reported (BootNotification, StatusNotification per connector)."""
    async with uow.reading() as r:
        link = await _linked(r.conn, user, charger_id, organization_id)
        if link["kind"] == "ocpp":
            return await _ocpp_state(r.conn, link)
        account = await store.get_account(r.conn, link["organization_id"])
    client, token = _kazam_client(access, cipher, link, account)
    state = await _ask(uow, access, link["organization_id"], token, client.device_state(charger_id))
    seen = domain.unix(state.get("timestamp"))
    try:
        seen_at = iso(datetime.fromtimestamp(seen, UTC)) if seen is not None else None
    except (OverflowError, OSError, ValueError):  # Kazam's clock, not ours: shown as unknown
        seen_at = None
    return {
        "chargerId": charger_id,
        "externalId": link["external_id"],
        "chargeState": state.get("charge_state"),
        "chargeStateName": domain.charge_state_name(state.get("protocol"), state.get("charge_state")),
        "availability": domain.availability(state),
        "online": bool(state.get("network")),
        "protocol": state.get("protocol"),
        "timestamp": seen_at,
        "kazam": state,
    }


async def charger_uptime(
    uow: UnitOfWork,
    access: KazamAccess,
    cipher: TokenCipher,
    user: Principal,
    charger_id: str,
    organization_id: int | None,
    first: date,
    last: date,
) -> dict[str, Any]:
    """Kazam's uptime of a linked charger over whole IST days (getDeviceUptime starts at 00:00 IST)."""
    try:
        start, end = domain.ist_day_window(first, last)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    async with uow.reading() as r:
        link = await _linked(r.conn, user, charger_id, organization_id)
        account = await store.get_account(r.conn, link["organization_id"])
    client, token = _kazam_client(access, cipher, link, account)
    answer = await _ask(uow, access, link["organization_id"], token, client.device_uptime([charger_id], start, end))
    return {
        "chargerId": charger_id,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "startTime": start,
        "endTime": end,
        "timezone": "Asia/Kolkata",
        "uptime": answer.get(charger_id),
    }


async def _ocpp_state(conn: asyncpg.Connection, link: asyncpg.Record) -> dict[str, Any]:
    point = await store.charge_point(conn, link["charger_id"])
    connectors = await store.connector_statuses(conn, link["charger_id"])
    return {
        "chargerId": link["charger_id"],
        "externalId": link["external_id"],
        "protocol": "ocpp1.6",
        "vendor": point["vendor"] if point else None,
        "model": point["model"] if point else None,
        "firmwareVersion": point["firmware_version"] if point else None,
        "bootedAt": iso(point["booted_at"]) if point and point["booted_at"] else None,
        "lastHeardAt": iso(point["last_heard_at"]) if point else None,
        "connectors": [
            {
                "connectorId": c["connector_id"],
                "status": c["status"],
                "errorCode": c["error_code"],
                "info": c["info"],
                "timestamp": iso(c["status_at"]),
            }
            for c in connectors
        ],
    }


async def charger_transactions(
    uow: UnitOfWork, user: Principal, charger_id: str, organization_id: int | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """What became of each Kazam transaction of a linked charger: submitted as a read (and refused by readings,
    with its reasons, if so), or skipped and why; newest first."""
    async with uow.reading() as r:
        link = await _linked(r.conn, user, charger_id, organization_id)
        if link["kind"] == "ocpp":
            rows = await store.ocpp_transactions(r.conn, charger_id, page.limit, page.offset)
            total = await store.count_ocpp_transactions(r.conn, charger_id)
            return [_ocpp_transaction_answer(row) for row in rows], total
        rows = await store.list_transactions(r.conn, charger_id, page.limit, page.offset)
        total = await store.count_charger_transactions(r.conn, charger_id)
    return [_transaction_answer(row) for row in rows], total


def _ocpp_transaction_answer(row: asyncpg.Record) -> dict[str, Any]:
    refused = row["refused_reasons"]
    if row["status"] == "open":
        outcome = "open"
    elif refused is not None:
        outcome = "refused"
    else:
        outcome = "read" if row["outcome"] == "submitted" else "skipped"
    stop_wh = row["meter_stop_wh"]
    return {
        "txnId": str(row["transaction_id"]),
        "deviceId": row["device_id"],
        "connectorId": row["connector_id"],
        "startTime": iso(row["started_at"]),
        "endTime": iso(row["stopped_at"]) if row["stopped_at"] else None,
        "meterStartWh": row["meter_start_wh"],
        "meterStopWh": stop_wh,
        "valueWh": stop_wh - row["meter_start_wh"] if stop_wh is not None and row["outcome"] == "submitted" else None,
        "status": row["status"],  # open, finished, closed_by_next (left open: closed from its last meter values)
        "outcome": outcome,
        "reason": row["reason"],
        "refusedReasons": json.loads(refused) if isinstance(refused, str) else refused,
    }


def _transaction_answer(row: asyncpg.Record) -> dict[str, Any]:
    refused = row["refused_reasons"]
    outcome = "refused" if refused is not None else ("read" if row["outcome"] == "submitted" else "skipped")
    return {
        "txnId": row["txn_id"],
        "deviceId": row["device_id"],
        "startTime": iso(row["start_time"]) if row["start_time"] else None,
        "endTime": iso(row["end_time"]) if row["end_time"] else None,
        "valueWh": row["value_wh"],
        "outcome": outcome,
        "reason": row["reason"],
        "refusedReasons": json.loads(refused) if isinstance(refused, str) else refused,
        "recordedAt": iso(row["recorded_at"]),
    }


# ---------------------------------------------------------------- OCPP 1.6J charge points
# Called by the central system's WebSocket adapter (ocpp_server.py), one message at a time per connection. Every
# use case is safe to repeat: a charge point resends what it got no answer to, and may reconnect and resend.


async def ocpp_authenticate(
    uow: UnitOfWork, throttle: domain.PasswordThrottle, charger_id: str, password: str, address: str
) -> float | None:
    """Security profile 1, at the WebSocket upgrade: None when `password` is this linked OCPP charge point's;
    otherwise the seconds the client `address` is to wait before its next attempt (0: the password is wrong; more:
    it was not checked, the address is held back by its wrong passwords or those naming this charge point)."""
    wait = throttle.admit(address, time.monotonic())
    if wait:
        metrics.charger_error(domain.OCPP_SOURCE, "auth_held_back")
        return wait
    try:
        async with uow.reading() as r:
            link = await store.ocpp_link(r.conn, charger_id)
        # scrypt off the event loop: it costs tens of milliseconds of CPU (hashlib releases the GIL)
        right = link is not None and await asyncio.to_thread(
            domain.password_matches, password, link["ocpp_password_hash"]
        )
    except BaseException:  # e.g. the database away: not the client's failure
        throttle.released(address)
        raise
    throttle.checked(charger_id, address, right, time.monotonic())
    if not right:
        metrics.charger_error(domain.OCPP_SOURCE, "auth_refused")
    return None if right else 0.0


async def ocpp_boot(uow: UnitOfWork, charger_id: str, vendor: str, model: str, firmware: str | None) -> bool:
    """BootNotification: what the charge point says of itself. False: it is no longer linked (Rejected)."""
    async with uow:
        if await store.ocpp_link(uow.conn, charger_id) is None:
            return False
        await store.record_boot(uow.conn, charger_id, vendor, model, firmware)
    return True


async def ocpp_heard(uow: UnitOfWork, charger_id: str) -> None:
    """Heartbeat (and any message): the charge point is alive."""
    async with uow:
        await store.heard_from(uow.conn, charger_id)


async def ocpp_status(
    uow: UnitOfWork, charger_id: str, connector_id: int, status: str, error_code: str, info: str | None, at: datetime
) -> None:
    async with uow:
        await store.record_connector_status(uow.conn, charger_id, connector_id, status, error_code, info, at)
        await store.heard_from(uow.conn, charger_id)


async def ocpp_start(
    uow: UnitOfWork, charger_id: str, connector_id: int, id_tag: str, meter_start_wh: int, started_at: datetime
) -> int | None:
    """StartTransaction: the transaction id (the same one for a resent StartTransaction); None when the charge
    point is no longer linked. A transaction of the connector left open by a lost connection (it started another
    since) is closed from its last MeterValues (a read up to then) or reported as abandoned."""
    async with uow:
        link = await store.ocpp_link(uow.conn, charger_id, lock=True)
        if link is None:
            return None
        transaction_id, new = await store.start_transaction(
            uow.conn, charger_id, link["device_id"], connector_id, id_tag, meter_start_wh, started_at
        )
        if new:
            for left_open in await store.open_transactions_before(uow.conn, charger_id, connector_id, started_at):
                log.warning(
                    "ocpp transaction left open; closed from its last meter values",
                    extra={"charger_id": charger_id, "transaction_id": left_open["transaction_id"]},
                )
                await _finish(
                    uow, link, left_open, "closed_by_next", left_open["last_meter_wh"], left_open["last_meter_at"]
                )
    return transaction_id


async def ocpp_meter_values(
    uow: UnitOfWork, charger_id: str, transaction_id: int | None, meter_values: list[dict[str, Any]]
) -> None:
    """MeterValues during a transaction: its latest energy register (used if the transaction is left open)."""
    reading = domain.energy_register_wh(meter_values)
    async with uow:
        await store.heard_from(uow.conn, charger_id)
        if transaction_id is not None and reading is not None:
            await store.record_meter(uow.conn, charger_id, transaction_id, reading[1], reading[0])


async def ocpp_stop(
    uow: UnitOfWork, charger_id: str, transaction_id: int, meter_stop_wh: int, stopped_at: datetime
) -> bool:
    """StopTransaction: the transaction becomes exactly one read (meterStop - meterStart over [start, stop]); a
    StopTransaction sent again, or of a transaction closed meanwhile, changes nothing. False: unknown transaction."""
    async with uow:
        link = await store.ocpp_link(uow.conn, charger_id, lock=True)
        row = await store.lock_transaction(uow.conn, charger_id, transaction_id)
        if row is None:
            log.warning("ocpp stop of an unknown transaction", extra={"charger_id": charger_id, "id": transaction_id})
            return False
        if row["status"] != "open":
            return True  # already closed: one read per transaction
        await _finish(uow, link, row, "finished", meter_stop_wh, stopped_at)
    return True


async def _finish(
    uow: UnitOfWork,
    link: asyncpg.Record | None,
    row: asyncpg.Record,
    status: str,
    meter_stop_wh: int | None,
    stopped_at: datetime | None,
) -> None:
    """Close a transaction in the open unit of work and record its read (or why there is none)."""
    read: ReadSubmitted | None = None
    reason: str | None = None
    if link is None or link["device_id"] != row["device_id"]:
        reason = "the charge point is no longer linked to the device it charged for"
    elif meter_stop_wh is None or stopped_at is None:
        status, reason = "abandoned", "left open without meter values: no energy known"
    else:
        try:
            read = domain.ocpp_session(
                link["charger_id"],
                row["transaction_id"],
                link["device_id"],
                link["external_id"],
                link["organization_id"],
                (row["started_at"], row["meter_start_wh"]),
                (stopped_at, meter_stop_wh),
            )
        except domain.InvalidTransaction as exc:
            reason = str(exc)
    outcome = "submitted" if read is not None else "skipped"
    metrics.charger_transactions("ocpp", 1, outcome)
    await store.close_transaction(uow.conn, row["transaction_id"], status, meter_stop_wh, stopped_at, outcome, reason)
    if read is not None:
        uow.record(read)
    else:
        metrics.charger_error("ocpp", "abandoned" if status == "abandoned" else "no_read")
        log.warning(
            "ocpp transaction without a read",
            extra={"charger_id": row["charger_id"], "transaction_id": row["transaction_id"], "reason": reason},
        )
