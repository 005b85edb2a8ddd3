"""The registry's use cases: each an `async def` taking the kit's unit of work and plain arguments.

Every lifecycle operation (transfer, its accept/reject/cancel, retirement, lock, release) runs in one unit of work:
it resolves the organization acted for (kit `acting_organization`), claims the client's Idempotency-Key, locks
the certificate part's holdings (in id order, so operations on one part line up), moves serial ranges and
balances (`domain` for the rules, `store` for the SQL), records one event per serial range moved and appends it
to the ledger (`ledger.services.append`), then keeps the answer under the key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opendrec_contracts import CertificateLocked, CertificateReleased, CertificateRetired, CertificateTransferred
from opendrec_kit.auth import Principal
from opendrec_kit.errors import ApiError
from opendrec_kit.organizations import Acting, acting_organization, known_organization, visible_organizations
from opendrec_kit.paging import Page, total_pages
from opendrec_kit.timestamps import iso, iso_or_none
from opendrec_kit.uow import UnitOfWork

from ..ledger import services as ledger
from . import domain, store
from .domain import (
    DECISIONS,
    LOCK_STATE,
    Balances,
    Decision,
    Holding,
    IssuedCertificate,
    LockOutcome,
    LockPurpose,
    SerialRange,
    State,
    TransferStatus,
)
from .settings import RegistrySettings

Answer = tuple[int, dict[str, Any]]  # HTTP status, body


async def issue_holdings(uow: UnitOfWork, certificate: IssuedCertificate) -> list[Holding]:
    """One holding per part of an issued certificate, owned by its buyer organization, with the part's serial range
    (the device's next serials). Called by issuance inside its unit of work; a certificate already holding its
    parts (issuance replayed) gets them back unchanged."""
    async with uow:
        existing = await store.holdings_of_certificate(uow.conn, certificate.certificate_id)
        if existing:
            return [store.holding_of(row, await store.ranges_of(uow.conn, row["id"])) for row in existing]
        holdings = []
        for device_id, energy_wh in certificate.parts:
            if energy_wh <= 0:
                continue  # a part without energy has no serials
            start = await store.take_serials(uow.conn, device_id, energy_wh)
            serials = SerialRange(start, start + energy_wh - 1)
            holding_id = uuid.uuid4()
            row = await store.insert_holding(
                uow.conn,
                holding_id,
                certificate.certificate_id,
                device_id,
                certificate.buyer_organization_id,
                certificate.country_code,
                certificate.period_start,
                certificate.period_end,
                energy_wh,
            )
            await store.insert_range(uow.conn, device_id, holding_id, serials, None)
            holdings.append(store.holding_of(row, [serials]))
        return holdings


async def issue_holdings_many(uow: UnitOfWork, certificates: list[IssuedCertificate]) -> None:
    """issue_holdings for the certificates of one issuance, in their order (the same serials as one by one: each
    device's next serials, certificate after certificate), with one statement per table."""
    async with uow:
        conn = uow.conn
        held = await store.certificates_with_holdings(conn, [c.certificate_id for c in certificates])
        wanted = [
            (c, device_id, energy_wh)
            for c in certificates
            if c.certificate_id not in held  # issuance replayed: its holdings stay as they are
            for device_id, energy_wh in c.parts
            if energy_wh > 0  # a part without energy has no serials
        ]
        if not wanted:
            return
        needed: dict[int, int] = {}
        for _, device_id, energy_wh in wanted:
            needed[device_id] = needed.get(device_id, 0) + energy_wh
        next_serial = await store.take_serials_many(conn, needed)
        holdings, ranges = [], []
        for c, device_id, energy_wh in wanted:
            start = next_serial[device_id]
            next_serial[device_id] = start + energy_wh
            holding_id = uuid.uuid4()
            holdings.append(
                (
                    holding_id,
                    c.certificate_id,
                    device_id,
                    c.buyer_organization_id,
                    c.country_code,
                    c.period_start,
                    c.period_end,
                    energy_wh,
                )
            )
            ranges.append((device_id, holding_id, SerialRange(start, start + energy_wh - 1)))
        await store.insert_holdings(conn, holdings)
        await store.insert_ranges(conn, ranges)


# -- answers -------------------------------------------------------------------------------------------------------


def _serials(prefix: str, holding: Holding, ranges: list[SerialRange] | tuple[SerialRange, ...]) -> str:
    return domain.serial_number(
        prefix, holding.device_id, holding.country_code, holding.period_start, holding.period_end, domain.merged(ranges)
    )


def holding_answer(holding: Holding, prefix: str) -> dict[str, Any]:
    b = holding.balances
    held = [r for r in holding.ranges if r.state != "transferring"]
    return {
        "id": str(holding.id),
        "certificateId": str(holding.certificate_id),
        "deviceId": holding.device_id,
        "organizationId": holding.organization_id,
        "countryCode": holding.country_code,
        "vintageFrom": iso(holding.period_start),
        "vintageTo": iso(holding.period_end),
        "serialNumber": _serials(prefix, holding, held) if held else None,
        "totalWh": b.total,
        "availableWh": b.available,
        "balanceWh": b.balance,
        "onSaleWh": b.on_sale,
        "onRetirementWh": b.on_retirement,
        "retiredWh": b.retired,
        "onExportingWh": b.on_exporting,
        "exportedWh": b.exported,
        "onAuctionWh": b.on_auction,
        "tradingCount": holding.trading_count,
        "ranges": [{"serialStart": r.start, "serialEnd": r.end, "state": r.state} for r in holding.ranges],
    }


def _ranges_json(ranges: list[SerialRange]) -> str:
    return json.dumps([{"serialStart": r.start, "serialEnd": r.end, "energyWh": r.energy_wh} for r in ranges])


def _operation_answer(row: Mapping[str, Any]) -> dict[str, Any]:
    """What every operation's answer holds: which energy of which certificate part it moved."""
    return {
        "id": str(row["id"]),
        "holdingId": str(row["holding_id"]),
        "certificateId": str(row["certificate_id"]),
        "deviceId": row["device_id"],
        "energyWh": row["energy_wh"],
        "serialNumber": row["serial_number"],
        "ranges": json.loads(row["ranges"]),
    }


def transfer_answer(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_operation_answer(row),
        "fromOrganizationId": row["from_organization_id"],
        "toOrganizationId": row["to_organization_id"],
        "status": row["status"],
        "createdAt": iso(row["created_at"]),
        "decidedAt": iso_or_none(row["decided_at"]),
    }


def lock_answer(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_operation_answer(row),
        "organizationId": row["organization_id"],
        "purpose": row["purpose"],
        "status": row["status"],
        "createdAt": iso(row["created_at"]),
        "releasedAt": iso_or_none(row["released_at"]),
    }


def retirement_answer(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_operation_answer(row),
        "organizationId": row["organization_id"],
        "beneficiary": row["beneficiary"],
        "location": row["location"],
        "purpose": row["purpose"],
        "reportingStart": iso(row["reporting_start"]),
        "reportingEnd": iso(row["reporting_end"]),
        "retiredAt": iso(row["retired_at"]),
    }


# -- the steps every operation shares ------------------------------------------------------------------------------


async def _once(
    uow: UnitOfWork,
    user: Principal,
    key: str,
    operation: str,
    request: dict[str, Any],
    run: Callable[[], Awaitable[Answer]],
) -> Answer:
    """Run the operation once per Idempotency-Key (inside the open unit of work): the same key and request again
    answer what the first one answered; the same key with another request is a 409. A refused request (4xx)
    keeps nothing: it may be retried under its key."""
    if not key.strip():
        raise ApiError(400, "Idempotency-Key must not be blank")
    fingerprint = domain.request_hash(operation, request)
    prior = await store.claim_request(uow.conn, user.user_id, key, fingerprint)
    if prior is not None:
        if prior["request_hash"] != fingerprint:
            raise ApiError(409, f"Idempotency-Key {key!r} was already used for another request")
        answer: dict[str, Any] = json.loads(prior["answer"])
        return prior["status_code"], answer
    status, answer = await run()
    await store.answer_request(uow.conn, user.user_id, key, status, json.dumps(answer))
    return status, answer


def _holding(rows: list[Any], holding_id: uuid.UUID, organization_id: int) -> Holding:
    """The holding among its part's locked rows, if it is the organization's (404 otherwise: whether another's
    exists is not disclosed)."""
    for row in rows:
        if row["id"] == holding_id and row["organization_id"] == organization_id:
            return store.holding_of(row)
    raise ApiError(404, f"No holding {holding_id} of organization {organization_id}")


async def _take(
    uow: UnitOfWork, holding: Holding, energy_wh: int, state: State, operation_id: uuid.UUID
) -> list[SerialRange]:
    """The first `energy_wh` available serials of the holding into `state`, marked with the operation (409 when
    there are not enough); the cut range's rest stays available."""
    try:
        taken, rest = domain.take(await store.ranges_of(uow.conn, holding.id), energy_wh)
    except domain.NotEnoughEnergy as exc:
        raise ApiError(
            409, f"Holding {holding.id} has {exc.available} Wh available; {exc.wanted} Wh were asked"
        ) from None
    for r in taken:
        await store.mark_range(uow.conn, holding.device_id, r, state, operation_id)
    if rest is not None:
        await store.insert_range(uow.conn, holding.device_id, holding.id, rest, None)
    return [SerialRange(r.start, r.end, state) for r in taken]


async def _operation_ranges(uow: UnitOfWork, operation_id: uuid.UUID) -> list[SerialRange]:
    rows = await store.ranges_of_operation(uow.conn, operation_id)
    return [SerialRange(r["serial_start"], r["serial_end"], r["state"]) for r in rows]


def _range_fields(holding: Holding, organization_id: int, r: SerialRange, prefix: str) -> dict[str, Any]:
    """What every lifecycle event of one range carries."""
    return {
        "certificate_id": holding.certificate_id,
        "device_id": holding.device_id,
        "organization_id": organization_id,
        "energy_wh": r.energy_wh,
        "serial_start": r.start,
        "serial_end": r.end,
        "serial_number": _serials(prefix, holding, [r]),
    }


async def _announce(uow: UnitOfWork, kind: str, events: list[Any]) -> None:
    """Each event recorded (published at commit) and appended to the ledger, in this unit of work (the ledger's
    head is locked last, after the part's holdings). The event carries its entry's time (`recorded_at`) and its
    entry's body is the event itself: the ledger can be rebuilt from the events."""
    for event in events:
        stamped = event.model_copy(update={"recorded_at": event.recorded_at or _now()})
        uow.record(stamped)
        await ledger.append(uow, kind, stamped.certificate_id, ledger_body(stamped), recorded_at=stamped.recorded_at)


def ledger_body(event: Any) -> dict[str, Any]:
    """A lifecycle event's ledger entry body: its type and payload, without its time (the entry's recorded_at)."""
    return {"type": event.TYPE, **event.model_dump(exclude={"recorded_at"})}


def _now() -> datetime:
    return datetime.now(UTC)


def _part_row(rows: list[Any], holding_id: uuid.UUID) -> Holding:
    return store.holding_of(next(r for r in rows if r["id"] == holding_id))


async def holder(uow: UnitOfWork, acting: Acting) -> Acting:
    """The organization a lifecycle request acts for, resolved before its body is read: naming another's
    organization is refused (400/403/404) whatever the body holds."""
    async with uow.reading() as r:
        org = await acting_organization(r.conn, acting.user, acting.organization_id)
    return Acting(acting.user, org)


# -- transfers -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferRequest:
    holding_id: uuid.UUID
    to_organization_id: int
    energy_wh: int
    direct: bool = False


async def transfer(
    uow: UnitOfWork, acting: Acting, key: str, request: TransferRequest, settings: RegistrySettings
) -> Answer:
    """Hand `energy_wh` of a holding (its first available serials) to another organization: pending until the
    receiver accepts, or at once (`direct`) where REGISTRY_DIRECT_TRANSFERS allows it."""
    async with uow:
        org = await acting_organization(uow.conn, acting.user, acting.organization_id)
        fingerprint = {
            "organization": org,
            "holding": request.holding_id,
            "to": request.to_organization_id,
            "energy_wh": request.energy_wh,
            "direct": request.direct,
        }

        async def run() -> Answer:
            if request.to_organization_id == org:
                raise ApiError(400, "A transfer goes to another organization")
            if request.direct and not settings.registry_direct_transfers:
                raise ApiError(400, "Direct transfers are not allowed here: the receiver accepts (direct: false)")
            holding = _holding(await store.lock_part(uow.conn, request.holding_id), request.holding_id, org)
            if await known_organization(uow.conn, acting.user, request.to_organization_id) is None:
                raise ApiError(404, f"Organization {request.to_organization_id} does not exist")
            transfer_id = uuid.uuid4()
            status: TransferStatus = "direct" if request.direct else "pending"
            ranges = await _take(uow, holding, request.energy_wh, "transferring", transfer_id)
            row = await store.insert_transfer(
                uow.conn,
                transfer_id,
                holding,
                request.to_organization_id,
                request.energy_wh,
                status,
                _serials(settings.registry_prefix, holding, ranges),
                _ranges_json(ranges),
                _now(),
            )
            await store.change_balances(uow.conn, holding.id, Balances(total=-request.energy_wh))
            if request.direct:
                await _hand_over(uow, holding, request.to_organization_id, transfer_id, request.energy_wh)
            events = [
                CertificateTransferred(
                    **_range_fields(holding, org, r, settings.registry_prefix),
                    transfer_id=transfer_id,
                    to_organization_id=request.to_organization_id,
                    status=status,
                )
                for r in ranges
            ]
            await _announce(uow, "transfer", events)
            return 201, transfer_answer(row)

        return await _once(uow, acting.user, key, "transfer", fingerprint, run)


async def _hand_over(uow: UnitOfWork, source: Holding, receiver: int, transfer_id: uuid.UUID, energy_wh: int) -> None:
    """The transfer's ranges into the receiver's holding of the part (made if it has none): available there."""
    row = await store.receiving_holding(uow.conn, source.id, receiver, uuid.uuid4())
    await store.move_ranges(uow.conn, transfer_id, row["id"], "available", keep_operation=False)
    await store.change_balances(uow.conn, row["id"], Balances(total=energy_wh), trades=1)
    await store.change_balances(uow.conn, source.id, Balances(), trades=1)


async def decide_transfer(
    uow: UnitOfWork, acting: Acting, key: str, transfer_id: uuid.UUID, decision: Decision, settings: RegistrySettings
) -> Answer:
    """A pending transfer accepted or rejected by its receiver, or cancelled by its sender; 409 once decided."""
    status = DECISIONS[decision]
    async with uow:
        org = await acting_organization(uow.conn, acting.user, acting.organization_id)

        async def run() -> Answer:
            row = await store.lock_transfer(uow.conn, transfer_id)
            if row is None or org not in (row["from_organization_id"], row["to_organization_id"]):
                raise ApiError(404, f"No transfer {transfer_id} from or to organization {org}")
            deciding = row["from_organization_id"] if decision == "cancel" else row["to_organization_id"]
            if org != deciding:
                who = "sender" if decision == "cancel" else "receiver"
                raise ApiError(403, f"Only the {who} of transfer {transfer_id} may {decision} it")
            if row["status"] != "pending":
                raise ApiError(409, f"Transfer {transfer_id} is {row['status']} already")
            source = _part_row(await store.lock_part(uow.conn, row["holding_id"]), row["holding_id"])
            ranges = await _operation_ranges(uow, transfer_id)
            if status == "accepted":
                await _hand_over(uow, source, row["to_organization_id"], transfer_id, row["energy_wh"])
            else:  # back to the sender
                await store.move_ranges(uow.conn, transfer_id, source.id, "available", keep_operation=False)
                await store.change_balances(uow.conn, source.id, Balances(total=row["energy_wh"]))
            decided = await store.decide_transfer(uow.conn, transfer_id, status, _now())
            events = [
                CertificateTransferred(
                    **_range_fields(source, org, r, settings.registry_prefix),
                    transfer_id=transfer_id,
                    to_organization_id=row["to_organization_id"],
                    status=status,
                )
                for r in ranges
            ]
            await _announce(uow, "transfer", events)
            return 200, transfer_answer(decided)

        request = {"organization": org, "transfer": transfer_id}
        return await _once(uow, acting.user, key, f"transfer.{decision}", request, run)


async def transfers(uow: UnitOfWork, acting: Acting, page: Page, status: str | None) -> dict[str, Any]:
    """Transfers from or to the organization (an admin naming none: all), newest first."""
    async with uow.reading() as r:
        organizations = await visible_organizations(r.conn, acting.user, acting.organization_id)
        rows, total = await store.transfers_of(r.conn, organizations, status, page.limit, page.offset)
    return {
        "transfers": [transfer_answer(row) for row in rows],
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
    }


# -- retirements -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetirementRequest:
    holding_id: uuid.UUID
    energy_wh: int
    beneficiary: str
    purpose: str
    reporting_start: datetime
    reporting_end: datetime
    location: str | None = None


async def retire(
    uow: UnitOfWork, acting: Acting, key: str, request: RetirementRequest, settings: RegistrySettings
) -> Answer:
    """Claim `energy_wh` of a holding (its first available serials) for a beneficiary: irreversible."""
    async with uow:
        org = await acting_organization(uow.conn, acting.user, acting.organization_id)

        async def run() -> Answer:
            holding = _holding(await store.lock_part(uow.conn, request.holding_id), request.holding_id, org)
            retirement_id = uuid.uuid4()
            ranges = await _take(uow, holding, request.energy_wh, "retired", retirement_id)
            await store.change_balances(uow.conn, holding.id, Balances(retired=request.energy_wh))
            row = await store.insert_retirement(
                uow.conn,
                retirement_id,
                holding,
                request.energy_wh,
                request.beneficiary,
                request.location,
                request.purpose,
                request.reporting_start,
                request.reporting_end,
                _serials(settings.registry_prefix, holding, ranges),
                _ranges_json(ranges),
                _now(),
            )
            events = [
                CertificateRetired(
                    **_range_fields(holding, org, r, settings.registry_prefix),
                    retirement_id=retirement_id,
                    beneficiary=request.beneficiary,
                    location=request.location,
                    purpose=request.purpose,
                    reporting_start=request.reporting_start,
                    reporting_end=request.reporting_end,
                )
                for r in ranges
            ]
            await _announce(uow, "retirement", events)
            return 201, retirement_answer(row)

        fingerprint = {"organization": org, **request.__dict__}
        return await _once(uow, acting.user, key, "retirement", fingerprint, run)


# -- locks -----------------------------------------------------------------------------------------------------------

LOCK_COLUMN = {"sale": "on_sale", "export": "on_exporting", "auction": "on_auction"}


async def lock(
    uow: UnitOfWork,
    acting: Acting,
    key: str,
    holding_id: uuid.UUID,
    energy_wh: int,
    purpose: LockPurpose,
    settings: RegistrySettings,
) -> Answer:
    """Set `energy_wh` of a holding (its first available serials) aside for a sale, an export or an auction."""
    async with uow:
        org = await acting_organization(uow.conn, acting.user, acting.organization_id)

        async def run() -> Answer:
            holding = _holding(await store.lock_part(uow.conn, holding_id), holding_id, org)
            lock_id = uuid.uuid4()
            ranges = await _take(uow, holding, energy_wh, LOCK_STATE[purpose], lock_id)
            await store.change_balances(uow.conn, holding.id, Balances(**{LOCK_COLUMN[purpose]: energy_wh}))
            row = await store.insert_lock(
                uow.conn,
                lock_id,
                holding,
                purpose,
                energy_wh,
                _serials(settings.registry_prefix, holding, ranges),
                _ranges_json(ranges),
                _now(),
            )
            events = [
                CertificateLocked(
                    **_range_fields(holding, org, r, settings.registry_prefix), lock_id=lock_id, purpose=purpose
                )
                for r in ranges
            ]
            await _announce(uow, "lock", events)
            return 201, lock_answer(row)

        fingerprint = {"organization": org, "holding": holding_id, "energy_wh": energy_wh, "purpose": purpose}
        return await _once(uow, acting.user, key, "lock", fingerprint, run)


async def release(
    uow: UnitOfWork, acting: Acting, key: str, lock_id: uuid.UUID, outcome: LockOutcome, settings: RegistrySettings
) -> Answer:
    """End a lock: its energy available again (`released`) or gone as the lock intended (`exported`: counted in
    Exported from then on); 409 once ended."""
    async with uow:
        org = await acting_organization(uow.conn, acting.user, acting.organization_id)

        async def run() -> Answer:
            row = await store.lock_lock(uow.conn, lock_id)
            if row is None or row["organization_id"] != org:
                raise ApiError(404, f"No lock {lock_id} of organization {org}")
            if row["status"] != "locked":
                raise ApiError(409, f"Lock {lock_id} is {row['status']} already")
            holding = _part_row(await store.lock_part(uow.conn, row["holding_id"]), row["holding_id"])
            ranges = await _operation_ranges(uow, lock_id)
            energy_wh = row["energy_wh"]
            delta = {LOCK_COLUMN[row["purpose"]]: -energy_wh}
            if outcome == "exported":
                delta["exported"] = energy_wh
            await store.move_ranges(
                uow.conn,
                lock_id,
                holding.id,
                "exported" if outcome == "exported" else "available",
                keep_operation=outcome == "exported",
            )
            await store.change_balances(uow.conn, holding.id, Balances(**delta))
            ended = await store.end_lock(uow.conn, lock_id, outcome, _now())
            events = [
                CertificateReleased(
                    **_range_fields(holding, org, r, settings.registry_prefix), lock_id=lock_id, outcome=outcome
                )
                for r in ranges
            ]
            await _announce(uow, "release", events)
            return 200, lock_answer(ended)

        request = {"organization": org, "lock": lock_id, "outcome": outcome}
        return await _once(uow, acting.user, key, "release", request, run)


# -- reading -----------------------------------------------------------------------------------------------------------


async def holdings(uow: UnitOfWork, acting: Acting, page: Page, settings: RegistrySettings) -> dict[str, Any]:
    """The organization's holdings with energy (an admin naming none: all), oldest first, with their ranges."""
    async with uow.reading() as r:
        organizations = await visible_organizations(r.conn, acting.user, acting.organization_id)
        rows, total = await store.holdings_page(r.conn, organizations, None, page.limit, page.offset)
        ranges = await store.ranges_of_holdings(r.conn, [row["id"] for row in rows])
    return {
        "holdings": [
            holding_answer(store.holding_of(row, ranges[row["id"]]), settings.registry_prefix) for row in rows
        ],
        "currentPage": page.number,
        "totalPages": total_pages(total, page.limit),
        "totalCount": total,
    }


def _seed_time(moment: datetime) -> str:
    """The inventory's Datetime as the seed writes it: UTC, seconds, no zone ('2021-11-06T00:00:00')."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def inventory_item(row: Mapping[str, Any], ranges: list[SerialRange], settings: RegistrySettings) -> dict[str, Any]:
    """One REC inventory item, field for field as the seed (quantities in MWh, decimal(18,6))."""
    holding = store.holding_of(row, ranges)
    b = holding.balances
    held = [r for r in ranges if r.state != "transferring"]
    country = holding.country_code or row["device_country_code"]
    return {
        "Id": str(holding.id),
        # From device.registered / device.updated: null for a device whose registration predates them (or never
        # arrived). No project name travels in the device's events: its external id names it.
        "DeviceId": None if row["device_uuid"] is None else str(row["device_uuid"]),
        "DeviceName": row["project_name"] or row["external_id"],  # the project name, as the seed names a device
        "DeviceUniqueId": row["external_id"],
        "RegistryId": domain.registry_id(holding.device_id),
        "SerialNumber": domain.serial_number(
            settings.registry_prefix,
            holding.device_id,
            country,
            holding.period_start,
            holding.period_end,
            domain.merged(held),
        ),
        "Total": domain.quantity(b.total),
        "Balance": domain.quantity(b.balance),
        "Available": domain.quantity(b.available),
        "OnSale": domain.quantity(b.on_sale),
        "OnRetirement": domain.quantity(b.on_retirement),
        "OnExporting": domain.quantity(b.on_exporting),
        "OnAuction": domain.quantity(b.on_auction),
        "Retired": domain.quantity(b.retired),
        "Exported": domain.quantity(b.exported),
        "VintageFrom": _seed_time(holding.period_start),
        "VintageTo": _seed_time(holding.period_end),
        "CountryCode": country,
        # The fuel's I-REC name as the seed shows it ("Solar"), its code for a device announced before names were.
        "FuelType": row["fuel_name"] or row["fuel_code"],
        "EnergyValue": row["fuel_name"] or row["fuel_code"],
        "VintageYear": holding.period_start.year,
        "TradingCount": holding.trading_count,
        "RecItemType": row["rec_item_type"],
        "Registry": {"Value": settings.registry_prefix, "Description": settings.registry_description},
    }


async def inventory(
    uow: UnitOfWork,
    acting: Acting,
    current_page: int,
    items_per_page: int,
    registries: list[str],
    device_ids: list[uuid.UUID],
    settings: RegistrySettings,
) -> dict[str, Any] | None:
    """The REC inventory of the organization: its holdings with energy as the seed's items, and the seed's Meta.
    None: the page asked for lies past the last one (the seed's 404)."""
    async with uow.reading() as r:
        organizations = await visible_organizations(r.conn, acting.user, acting.organization_id)
        ours = not registries or settings.registry_prefix.lower() in {x.lower() for x in registries}
        rows: list[Any] = []
        total = 0
        if ours:
            offset = (current_page - 1) * items_per_page
            rows, total = await store.holdings_page(r.conn, organizations, device_ids or None, items_per_page, offset)
        ranges = await store.ranges_of_holdings(r.conn, [row["id"] for row in rows])
    pages = total_pages(total, items_per_page)
    if total and current_page > pages:
        return None
    return {
        "Data": [inventory_item(row, ranges[row["id"]], settings) for row in rows],
        "Meta": {"CurrentPage": current_page, "TotalPage": pages, "ItemsPerPage": items_per_page, "TotalItems": total},
        "Errors": None,
        "StatusCode": 200,
        "Message": "Success",
    }


async def redemption_report(uow: UnitOfWork, acting: Acting, settings: RegistrySettings) -> list[dict[str, Any]]:
    """The organization's claims (an admin naming none: everyone's) in D-REC's redemption-report fields
    (certificate-log.service getCertificateRedemptionReport), then ours."""
    async with uow.reading() as r:
        organizations = await visible_organizations(r.conn, acting.user, acting.organization_id)
        rows = await store.redemptions(r.conn, organizations)
    return [
        {
            "compliance": settings.registry_description,
            "certificateId": str(row["certificate_id"]),
            "fuelCode": [],
            "country": [row["country_code"]] if row["country_code"] else [],
            "capacityRange": None,
            "offTakers": [],
            "commissioningDateRange": None,
            "redemptionDate": iso(row["reporting_start"]),
            "certifiedEnergy": row["energy_wh"] / domain.WH_PER_MWH,
            "beneficiary": row["beneficiary"],
            "beneficiary_address": row["location"],
            "claimCoiuntryCode": row["country_code"],
            "purpose": row["purpose"],
            **{"retirement": retirement_answer(row)},
        }
        for row in rows
    ]
